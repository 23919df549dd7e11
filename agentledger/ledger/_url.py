"""`open_ledger`: build a ledger backend from a URL, as the CLI and the worker configuration give it."""

from __future__ import annotations

from agentledger.errors import LedgerConfigError
from agentledger.ledger._facade import Ledger
from agentledger.ledger.backends.memory import MemoryLedger

__all__ = ['open_ledger']

_SUPPORTED = (
    'sqlite:///relative/path.db, sqlite:////absolute/path.db, a file path ending in .db, s3://bucket/prefix, '
    'or memory://, each optionally followed by ?mode=ro'
)
_MODES = {'ro': True, 'rw': False}


def open_ledger(url: str, *, read_only: bool = False) -> Ledger:
    """Return the (unopened) ledger `url` names; `await ledger.open()` or use it with `async with`.

    Supported: `sqlite:///relative/path.db` and `sqlite:////absolute/path.db` (three slashes, then
    the path, as SQLAlchemy spells it), a bare file path ending in `.db`, `s3://bucket/prefix` (an
    `S3Ledger`, configured by the standard AWS environment and profiles, or by the non-secret
    options it accepts as query parameters) and `memory://`. Anything else raises
    `LedgerConfigError` listing these.

    `read_only=True`, or the query parameter `mode=ro` on any of them (`sqlite:///runs.db?mode=ro`,
    `s3://bucket/prefix?mode=ro`), opens the ledger read-only: it reads without writing anything, not
    even to open, and every write raises `LedgerReadOnlyError`. Either one makes it read-only; `mode=rw`
    is the default.
    """
    location, url_read_only = _split_mode(url)
    read_only = read_only or url_read_only
    if location == 'memory://':
        return MemoryLedger(read_only=read_only)
    if location.startswith('sqlite:'):
        if not location.startswith('sqlite:///') or location == 'sqlite:///':
            raise LedgerConfigError(f'a SQLite ledger URL is sqlite:/// followed by the path; supported: {_SUPPORTED}')
        return _sqlite(location.removeprefix('sqlite:///'), read_only)
    if '://' not in location and location.endswith('.db'):
        return _sqlite(location, read_only)
    if location.startswith('s3://'):
        # Imported here so that importing agentledger.ledger (which workflow code does) never imports boto3.
        from agentledger.ledger.backends.s3 import S3Ledger

        return S3Ledger(location, read_only=read_only)
    # Only the scheme is echoed: a URL may carry credentials.
    scheme = location.split('://', 1)[0] if '://' in location else None
    shown = f'scheme {scheme!r}' if scheme else 'URL (no scheme)'
    raise LedgerConfigError(f'unsupported ledger {shown}; supported: {_SUPPORTED}')


def _split_mode(url: str) -> tuple[str, bool]:
    """`url` without its `mode` query parameter, and whether that parameter asks for read-only."""
    base, separator, query = url.partition('?')
    if not separator:
        return url, False
    kept: list[str] = []
    read_only = False
    for item in query.split('&'):
        name, _, value = item.partition('=')
        if name != 'mode':
            kept.append(item)
        elif value in _MODES:
            read_only = _MODES[value]
        else:
            # The value is not echoed: whatever follows `mode=` by mistake may be anything.
            raise LedgerConfigError("the ledger URL option mode is 'ro' (read-only) or 'rw' (the default)")
    return base + (f'?{"&".join(kept)}' if kept else ''), read_only


def _sqlite(path: str, read_only: bool) -> Ledger:
    # Imported here so that importing agentledger.ledger (which workflow code does) never imports aiosqlite.
    from agentledger.ledger.backends.sqlite import SqliteLedger

    if '?' in path:
        raise LedgerConfigError('the only option a SQLite ledger URL takes is mode=ro or mode=rw')
    return SqliteLedger(path, read_only=read_only)
