"""`SqliteLedger`: a ledger in one SQLite file, shared by the worker processes of one host.

Schema (version 3, see `_MIGRATIONS`)::

    runs            one row per ledger run. The columns `Ledger.runs` filters and sorts on are real,
                    indexed columns (`agent_name`, `status`, `conversation_id`, `parent_run_id`,
                    `workflow_id`, `forked_from_run_id`, and `started_at_us, run_id` for newest-first
                    paging); the nested values (`temporal_run_ids`, `usage`, `error`, `forked_from`)
                    are JSON text, and so is `degraded` (what a ledger outage under the `warn`
                    policy left out, added in version 3). Datetimes are stored as ISO 8601 text exactly as given, plus
                    `started_at_us` (UTC microseconds since the epoch) because ISO text with different
                    UTC offsets does not sort by instant. `forked_from_run_id` repeats
                    `forked_from.run_id` so that the lineage filter is an index lookup.
    events          append-only. `seq INTEGER PRIMARY KEY AUTOINCREMENT` is the causal order (never
                    reused, even after deletes); `event_key UNIQUE` with `INSERT OR IGNORE` collapses
                    at-least-once deliveries; `body` is `StepEvent.to_json()` without `seq` (the row's
                    own) and `state` (derived on read, never stored).
    acceptances     one row per accepted activity, keyed by `Acceptance.key`; `body` is its JSON.
    messages        content-addressed: `hash` is a message's content hash and `data` its stored JSON
                    (see `agentledger.model._content`). Written with `INSERT OR IGNORE`, so a message
                    shared by many snapshots, continuations and forks is one row; verified on read.
    blobs           content-addressed binary parts cut out of messages, keyed like `messages`.
    snapshots       one row per snapshot: `seq INTEGER PRIMARY KEY AUTOINCREMENT` is the order they
                    were stored in, `snapshot_id UNIQUE` with `INSERT OR IGNORE` makes the write
                    idempotent, `body` is `SnapshotRecord.to_json()` (its message hashes, not messages).
    records         keyed records (model-call journal, once-only effects): `(namespace, key)` is the
                    primary key, `scope` (a workflow id) is indexed for listing, `version` counts the
                    record's writes and `body` is its JSON value. A create is `INSERT` after checking
                    the key is free and a replace an `UPDATE ... WHERE version = ?`, both inside the
                    writer's `BEGIN IMMEDIATE` transaction, so exactly one of two racing writers wins,
                    across processes too.
    payload_references
                    one row per (manifest, namespace, workflow_id): a workflow whose Temporal history
                    references a payload stored as chunks (its manifest is a `blobs` row), with the
                    latest time it stored it (`stored_at` ISO text, `stored_at_us` to compare).
                    Upserted; `agentledger gc` reads them all and deletes those of collected payloads.
    schema_version  one row: the version the file was migrated to.

Older files (version 1: no lineage columns, no snapshot tables; version 2: no `degraded`, no records,
no payload references) are migrated in place on `open()`.

Why WAL: readers (the CLI, the read connection of every worker) never block the writer and see
only committed transactions; with `synchronous=NORMAL` a commit survives a crash of the process
(an OS crash or power loss may roll back the last commits, but never corrupts the file).

Why group commit: every transaction takes the file's write lock and appends to the WAL, and a
worker records events for many concurrent activities. One writer task drains every write that
queued up while the previous transaction ran and commits them together, so a slow commit delays a
batch rather than serialising every activity behind it, and other processes sharing the file wait
for the lock once per batch. Each read-modify-write (a run start or seal folded into its run row)
runs inside that writer's `BEGIN IMMEDIATE` transaction, so it is atomic within the process and
across processes sharing the file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import aiosqlite

from agentledger.errors import LedgerConfigError, LedgerCorruptionError, LedgerError, LedgerUnavailableError
from agentledger.ledger._facade import Ledger, RetryPolicy, RunFilter
from agentledger.model._keyed import KeyedRecord
from agentledger.model._records import (
    Acceptance,
    ErrorInfo,
    ForkRef,
    PayloadReference,
    RunRecord,
    RunSeal,
    RunStart,
    RunStatus,
    SnapshotKind,
    SnapshotRecord,
    StepEvent,
    Usage,
)
from agentledger.model._rules import apply_run_start, apply_seal

__all__ = ['SCHEMA_VERSION', 'SqliteLedger']

logger = logging.getLogger('agentledger.ledger')

SCHEMA_VERSION = 3
"""The schema version this code writes; `open()` migrates older files up to it."""

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            workflow_id TEXT NOT NULL,
            agent_name TEXT NOT NULL,
            status TEXT NOT NULL,
            started_at TEXT NOT NULL,
            started_at_us INTEGER NOT NULL,
            updated_at TEXT NOT NULL,
            ended_at TEXT,
            task_queue TEXT NOT NULL,
            conversation_id TEXT,
            parent_run_id TEXT,
            parent_tool_call_id TEXT,
            temporal_run_ids TEXT NOT NULL,
            usage TEXT NOT NULL,
            error TEXT,
            prompt_preview TEXT,
            output_preview TEXT
        )
        """,
        'CREATE INDEX runs_newest ON runs (started_at_us DESC, run_id DESC)',
        'CREATE INDEX runs_agent ON runs (agent_name, started_at_us DESC, run_id DESC)',
        'CREATE INDEX runs_status ON runs (status, started_at_us DESC, run_id DESC)',
        'CREATE INDEX runs_conversation ON runs (conversation_id, started_at_us DESC, run_id DESC)',
        'CREATE INDEX runs_parent ON runs (parent_run_id, started_at_us DESC, run_id DESC)',
        'CREATE INDEX runs_workflow ON runs (workflow_id, started_at_us DESC, run_id DESC)',
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            event_key TEXT NOT NULL UNIQUE,
            run_id TEXT NOT NULL,
            body TEXT NOT NULL
        )
        """,
        'CREATE INDEX events_run ON events (run_id, seq)',
        """
        CREATE TABLE acceptances (
            acceptance_key TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            body TEXT NOT NULL
        )
        """,
        'CREATE INDEX acceptances_run ON acceptances (run_id)',
    ],
    2: [
        'ALTER TABLE runs ADD COLUMN forked_from TEXT',
        'ALTER TABLE runs ADD COLUMN forked_from_run_id TEXT',
        'CREATE INDEX runs_forked_from ON runs (forked_from_run_id, started_at_us DESC, run_id DESC)',
        'CREATE TABLE messages (hash TEXT PRIMARY KEY, data BLOB NOT NULL)',
        'CREATE TABLE blobs (hash TEXT PRIMARY KEY, data BLOB NOT NULL)',
        """
        CREATE TABLE snapshots (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            snapshot_id TEXT NOT NULL UNIQUE,
            run_id TEXT NOT NULL,
            body TEXT NOT NULL
        )
        """,
        'CREATE INDEX snapshots_run ON snapshots (run_id, seq)',
    ],
    3: [
        "ALTER TABLE runs ADD COLUMN degraded TEXT NOT NULL DEFAULT '[]'",
        """
        CREATE TABLE records (
            namespace TEXT NOT NULL,
            key TEXT NOT NULL,
            scope TEXT NOT NULL,
            version INTEGER NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (namespace, key)
        )
        """,
        'CREATE INDEX records_scope ON records (namespace, scope)',
        """
        CREATE TABLE payload_references (
            manifest TEXT NOT NULL,
            namespace TEXT NOT NULL,
            workflow_id TEXT NOT NULL,
            stored_at TEXT NOT NULL,
            stored_at_us INTEGER NOT NULL,
            PRIMARY KEY (manifest, namespace, workflow_id)
        )
        """,
    ],
}
"""Version -> the statements that migrate the previous version to it, applied in one transaction."""

_RUN_COLUMNS = (
    'run_id',
    'workflow_id',
    'agent_name',
    'status',
    'started_at',
    'started_at_us',
    'updated_at',
    'ended_at',
    'task_queue',
    'conversation_id',
    'parent_run_id',
    'parent_tool_call_id',
    'temporal_run_ids',
    'usage',
    'error',
    'prompt_preview',
    'output_preview',
    'forked_from',
    'forked_from_run_id',
    'degraded',
)
_SELECT_RUN = f'SELECT {", ".join(_RUN_COLUMNS)} FROM runs'
_UPSERT_RUN = (
    f'INSERT INTO runs ({", ".join(_RUN_COLUMNS)}) VALUES ({", ".join("?" for _ in _RUN_COLUMNS)}) '
    f'ON CONFLICT (run_id) DO UPDATE SET {", ".join(f"{c} = excluded.{c}" for c in _RUN_COLUMNS[1:])}'
)
_INSERT_EVENT = 'INSERT OR IGNORE INTO events (event_key, run_id, body) VALUES (?, ?, ?)'
_INSERT_ACCEPTANCE = 'INSERT OR IGNORE INTO acceptances (acceptance_key, run_id, body) VALUES (?, ?, ?)'
_INSERT_MESSAGE = 'INSERT OR IGNORE INTO messages (hash, data) VALUES (?, ?)'
_INSERT_BLOB = 'INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)'
_INSERT_SNAPSHOT = 'INSERT OR IGNORE INTO snapshots (snapshot_id, run_id, body) VALUES (?, ?, ?)'
_UPSERT_PAYLOAD_REFERENCE = (
    'INSERT INTO payload_references (manifest, namespace, workflow_id, stored_at, stored_at_us) '
    'VALUES (?, ?, ?, ?, ?) ON CONFLICT (manifest, namespace, workflow_id) DO UPDATE SET '
    'stored_at = excluded.stored_at, stored_at_us = excluded.stored_at_us '
    'WHERE excluded.stored_at_us > payload_references.stored_at_us'
)
_SELECT_PAYLOAD_REFERENCES = 'SELECT manifest, namespace, workflow_id, stored_at FROM payload_references'

_IN_CHUNK = 500
"""Hashes per `IN (...)` query: below SQLite's bound-variable limit (999 before SQLite 3.32)."""

# Primary result codes of failures that say nothing about the data and may pass: another process
# holds the lock, the file or its directory is (momentarily) unreachable, the disk is full.
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_PERM,
    }
)
_CORRUPTION_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RUN_STATUSES = frozenset(get_args(RunStatus))
_SNAPSHOT_KINDS = frozenset(get_args(SnapshotKind))

_Write = Callable[[aiosqlite.Connection], Awaitable[None]]


@dataclass
class _Pending:
    write: _Write
    future: asyncio.Future[None]


class _WriteFailed(Exception):
    """A write of a batch failed by itself (as opposed to `BEGIN` or `COMMIT` failing for the batch)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class SqliteLedger(Ledger):
    """A ledger in a SQLite file (WAL mode): one writer connection behind a group-commit queue, one reader.

    Several worker processes on one host may share the file; each serialises its own writes on its
    writer task, and `BEGIN IMMEDIATE` serialises the processes.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retry: RetryPolicy | None = None,
        busy_timeout_s: float = 5.0,
    ) -> None:
        """Describe the ledger at `path`; nothing is opened until `open()`.

        `busy_timeout_s` is how long one attempt waits for another process's lock before the write
        fails with `LedgerUnavailableError` (and `retry` decides whether it is tried again).
        """
        self._path = os.fspath(path)
        self.url = f'sqlite:///{self._path}'
        if retry is not None:
            self.retry = retry
        self._busy_timeout_ms = max(0, round(busy_timeout_s * 1000))
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    async def _open(self) -> None:
        """Create the file (and its directory) if needed, migrate the schema and start the writer task.

        Raises `LedgerUnavailableError` when the file cannot be opened, `LedgerCorruptionError` when it
        is not a SQLite database, and `LedgerConfigError` when its schema is newer than this code.
        """
        if self._writer is not None:
            return
        try:
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LedgerUnavailableError(
                f'cannot create the directory of the SQLite ledger {self._path}: {error}'
            ) from error
        writer = await self._connect(self._path)
        try:
            await self._execute_pragmas(writer, 'PRAGMA journal_mode = WAL', 'PRAGMA synchronous = NORMAL')
            await self._migrate(writer)
            # The reader opens after the migration so that it finds the WAL files and the schema in place.
            reader = await self._connect(f'{Path(self._path).absolute().as_uri()}?mode=ro', uri=True)
        except BaseException:
            await writer.close()
            raise
        self._writer, self._reader = writer, reader
        self._queue = asyncio.Queue()
        self._writer_task = asyncio.create_task(self._drain(writer, self._queue), name=f'agentledger writer {self.url}')

    async def _close(self) -> None:
        """Commit every queued write, stop the writer task and close both connections. Safe to call twice."""
        task, writer, reader = self._writer_task, self._writer, self._reader
        self._writer_task = self._writer = self._reader = None
        try:
            if task is not None:
                self._queue.put_nowait(None)
                await task
        finally:
            for connection in (reader, writer):
                if connection is not None:
                    await connection.close()

    async def _connect(self, database: str, *, uri: bool = False) -> aiosqlite.Connection:
        try:
            # isolation_level=None: no implicit transactions; every transaction here is an explicit BEGIN.
            connection = await aiosqlite.connect(database, uri=uri, isolation_level=None)
        except sqlite3.Error as error:
            raise self._translate(error, 'opening') from error
        connection.row_factory = sqlite3.Row
        try:
            await self._execute_pragmas(connection, f'PRAGMA busy_timeout = {self._busy_timeout_ms}')
        except BaseException:
            await connection.close()
            raise
        return connection

    async def _execute_pragmas(self, connection: aiosqlite.Connection, *pragmas: str) -> None:
        try:
            for pragma in pragmas:
                await connection.execute(pragma)
        except sqlite3.Error as error:
            raise self._translate(error, 'opening') from error

    async def _migrate(self, connection: aiosqlite.Connection) -> None:
        try:
            await connection.execute('BEGIN IMMEDIATE')
            try:
                await connection.execute('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)')
                rows = list(await connection.execute_fetchall('SELECT MAX(version) FROM schema_version'))
                version: int = rows[0][0] or 0
                if version > SCHEMA_VERSION:
                    raise LedgerConfigError(
                        f'the SQLite ledger {self._path} has schema version {version}, but this version of '
                        f'agentledger knows versions up to {SCHEMA_VERSION}; upgrade agentledger to use it'
                    )
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[target]:
                        await connection.execute(statement)
                if version != SCHEMA_VERSION:
                    await connection.execute('DELETE FROM schema_version')
                    await connection.execute('INSERT INTO schema_version (version) VALUES (?)', (SCHEMA_VERSION,))
                await connection.execute('COMMIT')
            except BaseException:
                if connection.in_transaction:
                    await connection.execute('ROLLBACK')
                raise
        except sqlite3.Error as error:
            raise self._translate(error, 'migrating the schema of') from error

    # --- group commit ------------------------------------------------------------------------------

    async def _submit(self, write: _Write) -> None:
        """Queue `write` for the writer task and wait until its transaction committed (or failed)."""
        if self._writer_task is None or self._writer_task.done():
            raise LedgerError(f'the SQLite ledger {self._path} is not open')
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(write, future))
        await future

    async def _drain(self, connection: aiosqlite.Connection, queue: asyncio.Queue[_Pending | None]) -> None:
        """Commit everything queued, batch after batch, until `close()` queues the `None` sentinel."""
        batch: list[_Pending] = []
        stopping = False
        try:
            while not stopping:
                item = await queue.get()
                while True:
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                    if queue.empty():
                        break
                    item = queue.get_nowait()
                if batch:
                    await self._commit(connection, batch)
                batch = []
        finally:
            # Anything left here means the task was cancelled: fail those writes rather than leave
            # their callers waiting for a commit that will never come.
            while not queue.empty():
                leftover = queue.get_nowait()
                if leftover is not None:
                    batch.append(leftover)
            for pending in batch:
                self._fail(pending, LedgerUnavailableError(f'the writer of the SQLite ledger {self._path} stopped'))

    async def _commit(self, connection: aiosqlite.Connection, batch: list[_Pending]) -> None:
        try:
            await self._transaction(connection, [pending.write for pending in batch])
        except _WriteFailed as failed:
            if len(batch) == 1:
                self._fail(batch[0], failed.cause)
                return
            # One write of the batch failed by itself: commit the others one by one so it fails alone.
            for pending in batch:
                try:
                    await self._transaction(connection, [pending.write])
                except _WriteFailed as alone:
                    self._fail(pending, alone.cause)
                except Exception as error:
                    self._fail(pending, error)
                else:
                    _resolve(pending)
        except Exception as error:
            # BEGIN or COMMIT failed (a lock, the disk): the same would happen to each write alone, so
            # they all fail at once and the retry policy of each caller decides what happens next.
            for pending in batch:
                self._fail(pending, error)
        else:
            for pending in batch:
                _resolve(pending)

    @staticmethod
    async def _transaction(connection: aiosqlite.Connection, writes: Iterable[_Write]) -> None:
        # IMMEDIATE takes the write lock up front, so a read-modify-write cannot interleave with
        # another process's writes, and a busy database fails here, before any write ran.
        await connection.execute('BEGIN IMMEDIATE')
        try:
            for write in writes:
                try:
                    await write(connection)
                except Exception as error:
                    raise _WriteFailed(error) from error
            await connection.execute('COMMIT')
        except BaseException:
            if connection.in_transaction:
                await connection.execute('ROLLBACK')
            raise

    def _fail(self, pending: _Pending, error: Exception) -> None:
        if not pending.future.done():
            pending.future.set_exception(
                self._translate(error, 'writing to') if isinstance(error, sqlite3.Error) else error
            )

    def _translate(self, error: sqlite3.Error, doing: str) -> LedgerError:
        """Map a sqlite3 error to the ledger error that says whether trying again can help."""
        code = getattr(error, 'sqlite_errorcode', None)
        primary = code & 0xFF if code is not None else None
        name = getattr(error, 'sqlite_errorname', type(error).__name__)
        message = f'{doing} the SQLite ledger {self._path} failed ({name}): {error}'
        if primary in _UNAVAILABLE_CODES:
            return LedgerUnavailableError(message)
        if primary in _CORRUPTION_CODES:
            return LedgerCorruptionError(message)
        return LedgerError(message)

    # --- writes ------------------------------------------------------------------------------------

    async def _write_run_start(self, start: RunStart, event: StepEvent) -> None:
        async def write(connection: aiosqlite.Connection) -> None:
            updated = apply_run_start(await self._select_run(connection, start.run_id), start)
            if updated is not None:
                await connection.execute(_UPSERT_RUN, _run_row(updated))
            await connection.executemany(_INSERT_EVENT, _event_rows([event]))

        await self._submit(write)

    async def _write_events(self, events: Sequence[StepEvent]) -> None:
        rows = _event_rows(events)

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany(_INSERT_EVENT, rows)

        await self._submit(write)

    async def _write_acceptances(self, acceptances: Sequence[Acceptance]) -> None:
        rows = [(a.key, a.run_id, _dumps(a.to_json())) for a in acceptances]

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany(_INSERT_ACCEPTANCE, rows)

        await self._submit(write)

    async def _write_seal(self, seal: RunSeal, event: StepEvent) -> None:
        async def write(connection: aiosqlite.Connection) -> None:
            existing = await self._select_run(connection, seal.run_id)
            updated = apply_seal(existing, seal) if existing is not None else None
            if updated is not None:
                await connection.execute(_UPSERT_RUN, _run_row(updated))
            await connection.executemany(_INSERT_EVENT, _event_rows([event]))

        await self._submit(write)

    async def _rewrite_events(self, run_id: str, remove_seqs: Sequence[int], events: Sequence[StepEvent]) -> None:
        rows = _event_rows(events)
        removed = [(seq, run_id) for seq in remove_seqs]

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany('DELETE FROM events WHERE seq = ? AND run_id = ?', removed)
            await connection.executemany('DELETE FROM events WHERE event_key = ?', [(row[0],) for row in rows])
            await connection.executemany(
                'INSERT INTO events (seq, event_key, run_id, body) VALUES (?, ?, ?, ?)',
                [(event.seq or None, *row) for event, row in zip(events, rows, strict=True)],
            )

        await self._submit(write)

    async def _rewrite_acceptances(self, acceptances: Sequence[Acceptance]) -> None:
        rows = [(a.key, a.run_id, _dumps(a.to_json())) for a in acceptances]

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany(
                'INSERT INTO acceptances (acceptance_key, run_id, body) VALUES (?, ?, ?) '
                'ON CONFLICT (acceptance_key) DO UPDATE SET run_id = excluded.run_id, body = excluded.body',
                rows,
            )

        await self._submit(write)

    async def _update_run(self, run_id: str, fold: Callable[[RunRecord], RunRecord | None]) -> None:
        async def write(connection: aiosqlite.Connection) -> None:
            existing = await self._select_run(connection, run_id)
            updated = fold(existing) if existing is not None else None
            if updated is not None:
                await connection.execute(_UPSERT_RUN, _run_row(updated))

        await self._submit(write)

    async def _write_content(self, messages: Mapping[str, bytes], blobs: Mapping[str, bytes]) -> None:
        if not messages and not blobs:
            return
        message_rows = list(messages.items())
        blob_rows = list(blobs.items())

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany(_INSERT_MESSAGE, message_rows)
            await connection.executemany(_INSERT_BLOB, blob_rows)

        await self._submit(write)

    async def _write_snapshot(self, snapshot: SnapshotRecord) -> None:
        row = (snapshot.snapshot_id, snapshot.run_id, _dumps(snapshot.to_json()))

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.execute(_INSERT_SNAPSHOT, row)

        await self._submit(write)

    async def _put_record(self, record: KeyedRecord, expected_version: str | None) -> str | None:
        body = _dumps(record.value)
        outcome: list[str | None] = [None]

        async def write(connection: aiosqlite.Connection) -> None:
            rows = list(
                await connection.execute_fetchall(
                    'SELECT version FROM records WHERE namespace = ? AND key = ?', (record.namespace, record.key)
                )
            )
            stored = str(rows[0][0]) if rows else None
            if stored != expected_version:
                outcome[0] = None
                return
            if stored is None:
                await connection.execute(
                    'INSERT INTO records (namespace, key, scope, version, body) VALUES (?, ?, ?, 1, ?)',
                    (record.namespace, record.key, record.scope, body),
                )
                outcome[0] = '1'
            else:
                await connection.execute(
                    'UPDATE records SET version = version + 1, body = ? WHERE namespace = ? AND key = ?',
                    (body, record.namespace, record.key),
                )
                outcome[0] = str(int(stored) + 1)

        await self._submit(write)
        return outcome[0]

    async def _write_payload_references(self, references: Sequence[PayloadReference]) -> None:
        rows = [
            (r.manifest, r.namespace, r.workflow_id, r.stored_at.isoformat(), _epoch_us(r.stored_at))
            for r in references
        ]

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany(_UPSERT_PAYLOAD_REFERENCE, rows)

        await self._submit(write)

    async def _delete_payload_references(self, references: Sequence[PayloadReference]) -> None:
        rows = [(r.manifest, r.namespace, r.workflow_id) for r in references]

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany(
                'DELETE FROM payload_references WHERE manifest = ? AND namespace = ? AND workflow_id = ?', rows
            )

        await self._submit(write)

    async def _delete_blobs(self, hashes: Sequence[str]) -> None:
        rows = [(digest,) for digest in dict.fromkeys(hashes)]

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany('DELETE FROM blobs WHERE hash = ?', rows)

        await self._submit(write)

    async def _select_run(self, connection: aiosqlite.Connection, run_id: str) -> RunRecord | None:
        rows = list(await connection.execute_fetchall(f'{_SELECT_RUN} WHERE run_id = ?', (run_id,)))
        return self._decode_run(rows[0]) if rows else None

    # --- reads -------------------------------------------------------------------------------------

    async def _fetch(self, sql: str, parameters: Sequence[Any]) -> list[sqlite3.Row]:
        if self._reader is None:
            raise LedgerError(f'the SQLite ledger {self._path} is not open')
        try:
            return list(await self._reader.execute_fetchall(sql, parameters))
        except sqlite3.Error as error:
            raise self._translate(error, 'reading') from error

    async def _read_run(self, run_id: str) -> RunRecord | None:
        rows = await self._fetch(f'{_SELECT_RUN} WHERE run_id = ?', (run_id,))
        return self._decode_run(rows[0]) if rows else None

    async def _read_runs(self, filter: RunFilter, *, limit: int, before: RunRecord | None) -> list[RunRecord]:
        conditions: list[str] = []
        parameters: list[Any] = []
        for column, value in (
            ('agent_name', filter.agent),
            ('status', filter.status),
            ('conversation_id', filter.conversation_id),
            ('parent_run_id', filter.parent_run_id),
            ('workflow_id', filter.workflow_id),
            ('forked_from_run_id', filter.forked_from_run_id),
        ):
            if value is not None:
                conditions.append(f'{column} = ?')
                parameters.append(value)
        if before is not None:
            conditions.append('(started_at_us, run_id) < (?, ?)')
            parameters.extend((_epoch_us(before.started_at), before.run_id))
        where = f' WHERE {" AND ".join(conditions)}' if conditions else ''
        rows = await self._fetch(
            f'{_SELECT_RUN}{where} ORDER BY started_at_us DESC, run_id DESC LIMIT ?', (*parameters, limit)
        )
        return [self._decode_run(row) for row in rows]

    async def _read_events(self, run_id: str) -> list[StepEvent]:
        rows = await self._fetch('SELECT seq, event_key, body FROM events WHERE run_id = ? ORDER BY seq', (run_id,))
        events: list[StepEvent] = []
        for row in rows:
            try:
                events.append(StepEvent.from_json({**_loads_object(row['body']), 'seq': row['seq']}))
            except (ValueError, TypeError, KeyError) as error:
                raise self._corrupt('events', row['event_key'], error) from error
        return events

    async def _read_acceptances(self, run_id: str) -> list[Acceptance]:
        rows = await self._fetch(
            'SELECT acceptance_key, body FROM acceptances WHERE run_id = ? ORDER BY rowid', (run_id,)
        )
        acceptances: list[Acceptance] = []
        for row in rows:
            try:
                acceptances.append(Acceptance.from_json(_loads_object(row['body'])))
            except (ValueError, TypeError, KeyError) as error:
                raise self._corrupt('acceptances', row['acceptance_key'], error) from error
        return acceptances

    async def _read_snapshot(self, snapshot_id: str) -> SnapshotRecord | None:
        rows = await self._fetch(
            'SELECT snapshot_id, run_id, body FROM snapshots WHERE snapshot_id = ?', (snapshot_id,)
        )
        return self._decode_snapshot(rows[0]) if rows else None

    async def _read_snapshots(self, run_id: str) -> list[SnapshotRecord]:
        rows = await self._fetch(
            'SELECT snapshot_id, run_id, body FROM snapshots WHERE run_id = ? ORDER BY seq', (run_id,)
        )
        return [self._decode_snapshot(row) for row in rows]

    async def _read_messages(self, hashes: Sequence[str]) -> dict[str, bytes]:
        return await self._read_content('messages', hashes)

    async def _read_blobs(self, hashes: Sequence[str]) -> dict[str, bytes]:
        return await self._read_content('blobs', hashes)

    async def _read_payload_references(self, manifests: Sequence[str] | None) -> list[PayloadReference]:
        if manifests is None:
            rows = await self._fetch(f'{_SELECT_PAYLOAD_REFERENCES} ORDER BY manifest', ())
        else:
            rows = []
            for start in range(0, len(manifests), _IN_CHUNK):
                chunk = list(manifests[start : start + _IN_CHUNK])
                rows += await self._fetch(
                    f'{_SELECT_PAYLOAD_REFERENCES} WHERE manifest IN ({", ".join("?" for _ in chunk)})', chunk
                )
        try:
            return [
                PayloadReference(
                    row['manifest'], row['namespace'], row['workflow_id'], datetime.fromisoformat(row['stored_at'])
                )
                for row in rows
            ]
        except (ValueError, TypeError) as error:
            raise LedgerCorruptionError(
                f'a payload reference in the SQLite ledger {self._path} is malformed: {error}'
            ) from error

    async def _read_message_hashes(self) -> list[str]:
        return [row['hash'] for row in await self._fetch('SELECT hash FROM messages', ())]

    async def _read_content(self, table: str, hashes: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), _IN_CHUNK):
            chunk = unique[start : start + _IN_CHUNK]
            rows = await self._fetch(
                f'SELECT hash, data FROM {table} WHERE hash IN ({", ".join("?" for _ in chunk)})', chunk
            )
            for row in rows:
                data = row['data']
                # A row rewritten as TEXT by another program comes back as str; its bytes are still
                # what the hash check on read must see.
                found[row['hash']] = data.encode() if isinstance(data, str) else bytes(data)
        return found

    async def _read_record(self, namespace: str, key: str) -> KeyedRecord | None:
        rows = await self._fetch(
            'SELECT namespace, key, scope, version, body FROM records WHERE namespace = ? AND key = ?',
            (namespace, key),
        )
        return self._decode_record(rows[0]) if rows else None

    async def _list_records(self, namespace: str, scope: str | None) -> list[KeyedRecord]:
        if scope is None:
            rows = await self._fetch(
                'SELECT namespace, key, scope, version, body FROM records WHERE namespace = ?', (namespace,)
            )
        else:
            rows = await self._fetch(
                'SELECT namespace, key, scope, version, body FROM records WHERE namespace = ? AND scope = ?',
                (namespace, scope),
            )
        return [self._decode_record(row) for row in rows]

    # --- decoding ----------------------------------------------------------------------------------

    def _decode_record(self, row: sqlite3.Row) -> KeyedRecord:
        try:
            return KeyedRecord(
                row['namespace'], row['key'], row['scope'], _loads_object(row['body']), str(row['version'])
            )
        except (ValueError, TypeError) as error:
            raise self._corrupt('records', row['key'], error) from error

    def _decode_run(self, row: sqlite3.Row) -> RunRecord:
        try:
            status = row['status']
            if status not in _RUN_STATUSES:
                raise ValueError(f'unknown status {status!r}')
            temporal_run_ids = json.loads(row['temporal_run_ids'])
            if not (
                isinstance(temporal_run_ids, list)
                and temporal_run_ids
                and all(isinstance(i, str) for i in temporal_run_ids)
            ):
                raise ValueError(f'temporal_run_ids is not a non-empty list of strings: {temporal_run_ids!r}')
            return RunRecord(
                run_id=row['run_id'],
                workflow_id=row['workflow_id'],
                temporal_run_ids=tuple(temporal_run_ids),
                agent_name=row['agent_name'],
                status=status,
                started_at=datetime.fromisoformat(row['started_at']),
                updated_at=datetime.fromisoformat(row['updated_at']),
                task_queue=row['task_queue'],
                conversation_id=row['conversation_id'],
                parent_run_id=row['parent_run_id'],
                parent_tool_call_id=row['parent_tool_call_id'],
                ended_at=datetime.fromisoformat(row['ended_at']) if row['ended_at'] is not None else None,
                usage=Usage(**_loads_object(row['usage'])),
                error=ErrorInfo(**_loads_object(row['error'])) if row['error'] is not None else None,
                prompt_preview=row['prompt_preview'],
                output_preview=row['output_preview'],
                forked_from=(
                    ForkRef.from_json(_loads_object(row['forked_from'])) if row['forked_from'] is not None else None
                ),
                degraded=_degraded(row['degraded']),
            )
        except (ValueError, TypeError, KeyError) as error:
            raise self._corrupt('runs', row['run_id'], error) from error

    def _decode_snapshot(self, row: sqlite3.Row) -> SnapshotRecord:
        try:
            record = SnapshotRecord.from_json(_loads_object(row['body']))
            if (record.snapshot_id, record.run_id) != (row['snapshot_id'], row['run_id']):
                raise ValueError(f'its body belongs to snapshot {record.snapshot_id!r} of run {record.run_id!r}')
            if record.kind not in _SNAPSHOT_KINDS:
                raise ValueError(f'unknown snapshot kind {record.kind!r}')
            return record
        except (ValueError, TypeError, KeyError) as error:
            raise self._corrupt('snapshots', row['snapshot_id'], error) from error

    def _corrupt(self, table: str, key: str, error: Exception) -> LedgerCorruptionError:
        return LedgerCorruptionError(
            f'row {key!r} of table {table} in the SQLite ledger {self._path} does not decode: {error}'
        )


def _resolve(pending: _Pending) -> None:
    # The caller may have been cancelled while its write was committing; the write still counts.
    if not pending.future.done():
        pending.future.set_result(None)


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(',', ':'), ensure_ascii=False)


def _loads_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f'expected a JSON object, got {type(value).__name__}')
    return value


def _degraded(text: str) -> tuple[str, ...]:
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(line, str) for line in value):
        raise ValueError(f'degraded is not a list of strings: {value!r}')
    return tuple(value)


def _epoch_us(moment: datetime) -> int:
    # astimezone() reads a naive datetime as local time, the same reading datetime comparison gives it.
    return (moment.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)


def _run_row(run: RunRecord) -> tuple[Any, ...]:
    return (
        run.run_id,
        run.workflow_id,
        run.agent_name,
        run.status,
        run.started_at.isoformat(),
        _epoch_us(run.started_at),
        run.updated_at.isoformat(),
        run.ended_at.isoformat() if run.ended_at is not None else None,
        run.task_queue,
        run.conversation_id,
        run.parent_run_id,
        run.parent_tool_call_id,
        _dumps(list(run.temporal_run_ids)),
        _dumps(asdict(run.usage)),
        _dumps(asdict(run.error)) if run.error is not None else None,
        run.prompt_preview,
        run.output_preview,
        _dumps(asdict(run.forked_from)) if run.forked_from is not None else None,
        run.forked_from.run_id if run.forked_from is not None else None,
        _dumps(list(run.degraded)),
    )


def _event_rows(events: Sequence[StepEvent]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for event in events:
        body = event.to_json()
        del body['seq'], body['state']
        rows.append((event.key, event.run_id, _dumps(body)))
    return rows
