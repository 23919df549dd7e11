"""`open_ledger`: build a ledger backend from a URL, as the CLI and the worker configuration give it."""

from __future__ import annotations

from agentledger.errors import LedgerConfigError
from agentledger.ledger._facade import Ledger
from agentledger.ledger.backends.memory import MemoryLedger

__all__ = ['open_ledger']

_SUPPORTED = (
    'sqlite:///relative/path.db, sqlite:////absolute/path.db, a file path ending in .db, s3://bucket/prefix, '
    'or memory://'
)


def open_ledger(url: str) -> Ledger:
    """Return the (unopened) ledger `url` names; `await ledger.open()` or use it with `async with`.

    Supported: `sqlite:///relative/path.db` and `sqlite:////absolute/path.db` (three slashes, then
    the path, as SQLAlchemy spells it), a bare file path ending in `.db`, `s3://bucket/prefix` (an
    `S3Ledger`, configured by the standard AWS environment and profiles, or by the non-secret
    options it accepts as query parameters) and `memory://`. Anything else raises
    `LedgerConfigError` listing these.
    """
    if url == 'memory://':
        return MemoryLedger()
    if url.startswith('sqlite:'):
        if not url.startswith('sqlite:///') or url == 'sqlite:///':
            raise LedgerConfigError(f'a SQLite ledger URL is sqlite:/// followed by the path; supported: {_SUPPORTED}')
        return _sqlite(url.removeprefix('sqlite:///'))
    if '://' not in url and url.endswith('.db'):
        return _sqlite(url)
    if url.startswith('s3://'):
        # Imported here so that importing agentledger.ledger (which workflow code does) never imports boto3.
        from agentledger.ledger.backends.s3 import S3Ledger

        return S3Ledger(url)
    # Only the scheme is echoed: a URL may carry credentials.
    scheme = url.split('://', 1)[0] if '://' in url else None
    shown = f'scheme {scheme!r}' if scheme else 'URL (no scheme)'
    raise LedgerConfigError(f'unsupported ledger {shown}; supported: {_SUPPORTED}')


def _sqlite(path: str) -> Ledger:
    # Imported here so that importing agentledger.ledger (which workflow code does) never imports aiosqlite.
    from agentledger.ledger.backends.sqlite import SqliteLedger

    return SqliteLedger(path)
