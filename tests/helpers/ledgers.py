"""The ledger backends the conformance suite runs against, and test-only views of what each stores.

A new backend is added here: to `BACKENDS`, `make_ledger` and `read_only_view` (and, for the storage
checks, to `stored_content`, `tamper`, `drop_run_record` and `corrupt_run_record`; to `make_sharing_pair`
if two processes can share its store).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from agentledger.ledger import Ledger, MemoryLedger, RetryPolicy
from agentledger.ledger.backends.s3 import S3Ledger
from agentledger.ledger.backends.sqlite import SqliteLedger

from .s3_server import admin_client, s3_ledger, shared_s3_server
from .s3_server import stored_content as s3_stored_content
from .s3_server import tamper as s3_tamper

BACKENDS = ['memory', 'sqlite', 's3']

# The backends whose store two ledgers (two worker processes) can share.
SHARED_BACKENDS = ['sqlite', 's3']


FAST_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)


def make_ledger(backend: str, tmp_path: Path) -> Ledger:
    """The one place that knows how to build each backend (unopened)."""
    if backend == 'memory':
        return MemoryLedger()
    if backend == 'sqlite':
        return SqliteLedger(tmp_path / 'ledger.db', retry=FAST_RETRY)
    if backend == 's3':
        return s3_ledger(retry=FAST_RETRY)
    raise ValueError(f'unknown backend {backend!r}')


# Test-only views of what a backend stores, to check storage itself (C7, C8) and to corrupt it (C17).
# A new backend adds its branch here; the ledger's public API has no such reads on purpose.
def stored_content(ledger: Ledger) -> tuple[int, int]:
    """How many distinct messages and blobs the backend holds."""
    if isinstance(ledger, MemoryLedger):
        return len(ledger.store._messages), len(ledger.store._blobs)
    if isinstance(ledger, SqliteLedger):
        with closing(sqlite3.connect(ledger.store.path)) as raw:
            [(messages,)] = raw.execute('SELECT COUNT(*) FROM messages').fetchall()
            [(blobs,)] = raw.execute('SELECT COUNT(*) FROM blobs').fetchall()
        return messages, blobs
    if isinstance(ledger, S3Ledger):
        return s3_stored_content(ledger)
    raise NotImplementedError(f'no storage view for {type(ledger).__name__}: add one to stored_content')


def tamper(ledger: Ledger, table: str, digest: str, data: bytes | None) -> None:
    """Overwrite (or, with `None`, delete) one stored message or blob behind the ledger's back."""
    if isinstance(ledger, MemoryLedger):
        store = ledger.store._messages if table == 'messages' else ledger.store._blobs
        if data is None:
            del store[digest]
        else:
            store[digest] = data
        return
    if isinstance(ledger, SqliteLedger):
        if data is None:
            changed = raw_sql(Path(ledger.store.path), f'DELETE FROM {table} WHERE hash = ?', (digest,))
        else:
            changed = raw_sql(Path(ledger.store.path), f'UPDATE {table} SET data = ? WHERE hash = ?', (data, digest))
        assert changed == 1
        return
    if isinstance(ledger, S3Ledger):
        s3_tamper(ledger, table, digest, data)
        return
    raise NotImplementedError(f'no tampering for {type(ledger).__name__}: add it to tamper')


def drop_run_record(ledger: Ledger, run_id: str) -> None:
    """Lose a run's record behind the ledger's back (its events, acceptances and snapshots stay)."""
    if isinstance(ledger, MemoryLedger):
        del ledger.store._runs[run_id]
    elif isinstance(ledger, SqliteLedger):
        assert raw_sql(Path(ledger.store.path), 'DELETE FROM runs WHERE run_id = ?', (run_id,)) == 1
    elif isinstance(ledger, S3Ledger):
        client, key = admin_client(ledger.endpoint), f'{ledger.prefix}runs/{run_id}/run.json'
        client.head_object(Bucket=ledger.bucket, Key=key)
        client.delete_object(Bucket=ledger.bucket, Key=key)
    else:
        raise NotImplementedError(f'no way to lose a run record of {type(ledger).__name__}: add it here')


def corrupt_run_record(ledger: Ledger, run_id: str) -> bool:
    """Write bytes that are not JSON where a run's record is stored; `False` for a backend that stores no bytes."""
    if isinstance(ledger, MemoryLedger):
        return False  # records are held as objects: there is nothing to decode, so nothing to corrupt
    if isinstance(ledger, SqliteLedger):
        query = "UPDATE runs SET temporal_run_ids = 'not json' WHERE run_id = ?"
        assert raw_sql(Path(ledger.store.path), query, (run_id,)) == 1
        return True
    if isinstance(ledger, S3Ledger):
        client, key = admin_client(ledger.endpoint), f'{ledger.prefix}runs/{run_id}/run.json'
        client.head_object(Bucket=ledger.bucket, Key=key)
        client.put_object(Bucket=ledger.bucket, Key=key, Body=b'{"run_id": "' + run_id.encode() + b'", trailing')
        return True
    raise NotImplementedError(f'no way to corrupt a run record of {type(ledger).__name__}: add it here')


def raw_sql(path: Path, sql: str, parameters: tuple[Any, ...] = ()) -> int:
    """Run one statement with the plain sqlite3 module, as another program touching the file would."""
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        return raw.execute(sql, parameters).rowcount


def read_only_view(ledger: Ledger) -> Ledger:
    """An unopened ledger over the same store as `ledger`, opened read-only, as a reading process opens it."""
    if isinstance(ledger, MemoryLedger):
        return Ledger(ledger.store, read_only=True)
    if isinstance(ledger, SqliteLedger):
        return SqliteLedger(ledger.store.path, retry=FAST_RETRY, read_only=True)
    if isinstance(ledger, S3Ledger):
        return shared_s3_server().ledger(ledger.bucket, ledger.prefix.rstrip('/'), retry=FAST_RETRY, read_only=True)
    raise NotImplementedError(f'no read-only view of {type(ledger).__name__}: add one to read_only_view')


def make_sharing_pair(backend: str, tmp_path: Path) -> tuple[Ledger, Ledger]:
    """Two ledgers on one store, as two worker processes have them (own connections or clients)."""
    if backend == 'sqlite':
        return SqliteLedger(tmp_path / 'ledger.db'), SqliteLedger(tmp_path / 'ledger.db')
    if backend == 's3':
        server = shared_s3_server()
        bucket = server.new_bucket()
        return server.ledger(bucket), server.ledger(bucket)
    raise ValueError(f'{backend!r} has no store two ledgers can share')


@contextmanager
def unwritable(path: Path) -> Iterator[dict[str, tuple[bytes, int]]]:
    """The SQLite ledger at `path` as a process without write access finds it; yields its directory's files.

    The file is switched to rollback-journal mode first, so that a reader creates no `-wal` or `-shm`
    beside it (a WAL file's reader does, where it may): any file that appears, and any change of the
    file's bytes or mtime, was a write. Then the file is made 0444 and its directory 0555, which binds
    every user but root (the tests may run as root, so they check the files rather than rely on the
    modes). The modes are restored afterwards, so that the test's directory can be removed.
    """
    raw_sql(path, 'PRAGMA journal_mode = DELETE')
    path.chmod(0o444)
    path.parent.chmod(0o555)
    try:
        yield directory_state(path.parent)
    finally:
        path.parent.chmod(0o755)
        path.chmod(0o644)


def directory_state(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of `directory` with its bytes and mtime (ns)."""
    return {item.name: (item.read_bytes(), item.stat().st_mtime_ns) for item in sorted(directory.iterdir())}
