"""The SQLite file's connections: one reader, one writer behind a group-commit queue, and sqlite3 errors translated."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from agentledger.errors import (
    LedgerConfigError,
    LedgerCorruptionError,
    LedgerError,
    LedgerPermissionError,
    LedgerReadOnlyError,
    LedgerUnavailableError,
)
from agentledger.ledger.backends.sqlite._schema import ADDED_COLUMNS, MIGRATIONS, SCHEMA_VERSION

__all__ = ['Database']

# Primary result codes of failures that say nothing about the data and may pass: another process
# holds the lock, an I/O error, the disk is full.
_UNAVAILABLE_CODES = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_PROTOCOL}
)
# The file or its directory may not be opened or written by this process: waiting does not change that.
_PERMISSION_CODES = frozenset({sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM})
# The same refusals as sqlite3 words them, for an error that carries no result code.
_PERMISSION_MESSAGES = ('attempt to write a readonly database', 'unable to open database file')
_CORRUPTION_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
# A read-only connection to a WAL file could not create the file's shared-memory index (`-shm`) beside it.
_NO_SHARED_MEMORY = frozenset(
    {sqlite3.SQLITE_READONLY_DIRECTORY, sqlite3.SQLITE_READONLY_CANTINIT, sqlite3.SQLITE_CANTOPEN}
)

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


class Database:
    """A SQLite file in WAL mode: a read connection, and a writer task that commits queued writes in batches.

    The store's writes are `_submit`ted as functions of the writer connection, each run inside the
    batch's `BEGIN IMMEDIATE` transaction; its reads `_fetch` on the reader. Opened `read_only`, it
    has the reader only and writes nothing, not even to open.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 5.0, read_only: bool = False) -> None:
        """Describe the database at `path`; nothing is opened until `open()`.

        `busy_timeout_s` is how long one attempt waits for another process's lock before the write
        fails with `LedgerUnavailableError`. `read_only` opens the file for reading only (see `open`).
        """
        self.path = os.fspath(path)
        self.url = f'sqlite:///{self.path}'
        self.read_only = read_only
        self._busy_timeout_ms = max(0, round(busy_timeout_s * 1000))
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file (and its directory) if needed, migrate the schema and start the writer task.

        Read-only, it only connects for reading (see `_open_read_only`). Raises `LedgerPermissionError`
        when the file or its directory may not be opened or written, `LedgerCorruptionError` when it is
        not a SQLite database, and `LedgerConfigError` when its schema is newer than this code (or,
        read-only, is missing or older).
        """
        if self._reader is not None:
            return
        if self.read_only:
            self._reader = await self._open_read_only()
            return
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            where = f'cannot create the directory of the SQLite ledger {self.path}: {error}'
            if isinstance(error, PermissionError) or error.errno == errno.EROFS:
                raise LedgerPermissionError(where) from error
            raise LedgerUnavailableError(where) from error
        writer = await self._connect(self.path)
        try:
            await self._execute_pragmas(writer, 'PRAGMA journal_mode = WAL', 'PRAGMA synchronous = NORMAL')
            await self._migrate(writer)
            # The reader opens after the migration so that it finds the WAL files and the schema in place.
            reader = await self._connect(f'{Path(self.path).absolute().as_uri()}?mode=ro', uri=True)
        except BaseException:
            await writer.close()
            raise
        self._writer, self._reader = writer, reader
        self._queue = asyncio.Queue()
        self._writer_task = asyncio.create_task(self._drain(writer, self._queue), name=f'agentledger writer {self.url}')

    async def close(self) -> None:
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

    async def _open_read_only(self) -> aiosqlite.Connection:
        """Connect for reading without writing a byte: `mode=ro`, no journal-mode switch, no migration.

        The schema must be the one this code reads: a read-only open cannot migrate an older file.
        A WAL file is read through a shared-memory index (`-shm`) that SQLite creates beside it; in a
        directory this process may not write, and with no `-wal` file (so the main file holds every
        committed transaction and no writer is connected), the file is read as immutable instead.
        """
        if not Path(self.path).is_file():
            raise LedgerConfigError(f'no SQLite ledger at {self.path}: the file does not exist')
        uri = Path(self.path).absolute().as_uri()
        reader = await self._connect(f'{uri}?mode=ro', uri=True)
        try:
            try:
                version = await self._schema_version(reader)
            except sqlite3.Error as error:
                code = getattr(error, 'sqlite_errorcode', None)
                if code not in _NO_SHARED_MEMORY or Path(f'{self.path}-wal').exists():
                    raise self._translate(error, 'opening') from error
                await reader.close()
                reader = await self._connect(f'{uri}?mode=ro&immutable=1', uri=True)
                version = await self._schema_version(reader)
        except sqlite3.Error as error:
            await reader.close()
            raise self._translate(error, 'opening') from error
        except BaseException:
            await reader.close()
            raise
        if version != SCHEMA_VERSION:
            await reader.close()
            raise self._schema_mismatch(version)
        try:
            missing = await self._missing_columns(reader)
        except sqlite3.Error as error:
            await reader.close()
            raise self._translate(error, 'opening') from error
        if missing:
            await reader.close()
            names = ', '.join(f'{table}.{column}' for table, column, _ in missing)
            raise LedgerConfigError(
                f'the SQLite ledger {self.path} was written by an older agentledger and lacks {names}; '
                'a read-only open does not add columns: open it once read-write (a worker, or SqliteLedger '
                'without read_only) to add them'
            )
        return reader

    @staticmethod
    async def _missing_columns(connection: aiosqlite.Connection) -> list[tuple[str, str, str]]:
        """The `ADDED_COLUMNS` the file does not have yet."""
        missing: list[tuple[str, str, str]] = []
        for table, column, kind in ADDED_COLUMNS:
            present = {row[1] for row in await connection.execute_fetchall(f'PRAGMA table_info({table})')}
            if column not in present:
                missing.append((table, column, kind))
        return missing

    @staticmethod
    async def _schema_version(connection: aiosqlite.Connection) -> int | None:
        """The file's schema version, or `None` when it has no `schema_version` table (not a ledger)."""
        tables = list(
            await connection.execute_fetchall(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            )
        )
        if not tables:
            return None
        rows = list(await connection.execute_fetchall('SELECT MAX(version) FROM schema_version'))
        version: int = rows[0][0] or 0
        return version

    def _schema_mismatch(self, version: int | None) -> LedgerConfigError:
        if version is None:
            return LedgerConfigError(f'{self.path} is not an agentledger SQLite ledger: it has no schema version')
        if version > SCHEMA_VERSION:
            return LedgerConfigError(
                f'the SQLite ledger {self.path} has schema version {version}, but this version of '
                f'agentledger knows versions up to {SCHEMA_VERSION}; upgrade agentledger to use it'
            )
        return LedgerConfigError(
            f'the SQLite ledger {self.path} has schema version {version}, but this version of agentledger '
            f'reads version {SCHEMA_VERSION} and a read-only open does not migrate: open it once read-write '
            '(a worker, or SqliteLedger without read_only) to migrate it'
        )

    async def _connect(self, database: str, *, uri: bool = False) -> aiosqlite.Connection:
        # isolation_level=None: no implicit transactions; every transaction here is an explicit BEGIN.
        connecting = aiosqlite.connect(database, uri=uri, isolation_level=None)
        try:
            connection = await connecting
        except sqlite3.Error as error:
            await _thread_ended(connecting)
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
                    raise self._schema_mismatch(version)
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[target]:
                        await connection.execute(statement)
                if version != SCHEMA_VERSION:
                    await connection.execute('DELETE FROM schema_version')
                    await connection.execute('INSERT INTO schema_version (version) VALUES (?)', (SCHEMA_VERSION,))
                for table, column, kind in await self._missing_columns(connection):
                    await connection.execute(f'ALTER TABLE {table} ADD COLUMN {column} {kind}')
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
        if self.read_only:
            raise LedgerReadOnlyError(f'cannot write to the SQLite ledger {self.path}: it is open read-only')
        if self._writer_task is None or self._writer_task.done():
            raise LedgerError(f'the SQLite ledger {self.path} is not open')
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
                self._fail(pending, LedgerUnavailableError(f'the writer of the SQLite ledger {self.path} stopped'))

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
        message = f'{doing} the SQLite ledger {self.path} failed ({name}): {error}'
        if primary in _PERMISSION_CODES or (primary is None and str(error) in _PERMISSION_MESSAGES):
            needs = (
                'read access to the file'
                if self.read_only
                else 'read and write access to the file and its directory (SQLite keeps its -wal and -shm files '
                'beside it); to only read it, open it read-only (read_only=True, or ?mode=ro in its URL)'
            )
            return LedgerPermissionError(
                f'{doing} the SQLite ledger {self.path} was refused ({name}): {error}; this process needs {needs}'
            )
        if primary in _UNAVAILABLE_CODES:
            return LedgerUnavailableError(message)
        if primary in _CORRUPTION_CODES:
            return LedgerCorruptionError(message)
        return LedgerError(message)

    async def _fetch(self, sql: str, parameters: Sequence[Any]) -> list[sqlite3.Row]:
        if self._reader is None:
            raise LedgerError(f'the SQLite ledger {self.path} is not open')
        try:
            return list(await self._reader.execute_fetchall(sql, parameters))
        except sqlite3.Error as error:
            raise self._translate(error, 'reading') from error


async def _thread_ended(connecting: aiosqlite.Connection) -> None:
    """Wait for the thread of a connection whose connect failed.

    aiosqlite stops that thread without waiting for it, and the thread then reports to the event
    loop: once `asyncio.run` has closed the loop (a command that could not open its ledger ends at
    once) that prints an "Event loop is closed" traceback after the command's own error.
    """
    # aiosqlite 0.22 runs the connection on `_thread`; 0.21's connection is itself the thread.
    thread = connecting if isinstance(connecting, threading.Thread) else getattr(connecting, '_thread', None)
    if isinstance(thread, threading.Thread) and thread.is_alive():
        await asyncio.to_thread(thread.join)


def _resolve(pending: _Pending) -> None:
    # The caller may have been cancelled while its write was committing; the write still counts.
    if not pending.future.done():
        pending.future.set_result(None)
