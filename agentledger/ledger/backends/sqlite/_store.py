"""`SqliteStore`: the store contract over the SQLite schema, every write one function of the group-committed writer."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import aiosqlite

from agentledger.errors import LedgerCorruptionError
from agentledger.ledger._store import RunFilter, RunList
from agentledger.ledger.backends._encoding import (
    decode,
    decode_event,
    decode_run,
    decode_snapshot,
    dumps,
    epoch_us,
    loads_object,
)
from agentledger.ledger.backends.sqlite._database import Database
from agentledger.ledger.backends.sqlite._schema import (
    IN_CHUNK,
    INSERT_ACCEPTANCE,
    INSERT_BLOB,
    INSERT_EVENT,
    INSERT_MESSAGE,
    INSERT_RUN,
    INSERT_SNAPSHOT,
    SELECT_PAYLOAD_REFERENCES,
    SELECT_RUN,
    UPSERT_PAYLOAD_REFERENCE,
    UPSERT_RUN,
    event_rows,
    run_row,
    run_value,
)
from agentledger.model._keyed import KeyedRecord
from agentledger.model._records import (
    Acceptance,
    PayloadReference,
    RunRecord,
    RunSeal,
    RunStart,
    SnapshotRecord,
    StepEvent,
)
from agentledger.model._rules import apply_run_start, apply_seal

__all__ = ['SqliteStore']


class SqliteStore(Database):
    """The ledger's records in a SQLite file (see `agentledger.ledger.backends.sqlite` for the schema).

    Several worker processes on one host may share the file; each serialises its own writes on its
    writer task, and `BEGIN IMMEDIATE` serialises the processes.
    """

    # --- writes ------------------------------------------------------------------------------------

    async def write_run_start(self, start: RunStart, event: StepEvent) -> None:
        """Fold `start` into the run record (see `apply_run_start`) and store its event, atomically."""

        async def write(connection: aiosqlite.Connection) -> None:
            updated = apply_run_start(await self._select_run(connection, start.run_id), start)
            if updated is not None:
                await connection.execute(UPSERT_RUN, run_row(updated))
            await connection.executemany(INSERT_EVENT, event_rows([event]))

        await self._submit(write)

    async def write_events(self, events: Sequence[StepEvent]) -> None:
        """Store events that are not stored yet (by key), assigning `seq` in arrival order."""
        rows = event_rows(events)

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany(INSERT_EVENT, rows)

        await self._submit(write)

    async def write_acceptances(self, acceptances: Sequence[Acceptance]) -> None:
        """Store acceptances that are not stored yet (by key)."""
        rows = [(a.key, a.run_id, dumps(a.to_json())) for a in acceptances]

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany(INSERT_ACCEPTANCE, rows)

        await self._submit(write)

    async def write_seal(self, seal: RunSeal, event: StepEvent) -> bool:
        """Fold `seal` into the run record (see `apply_seal`) and store its event, atomically; whether a record was."""
        found = [False]

        async def write(connection: aiosqlite.Connection) -> None:
            existing = await self._select_run(connection, seal.run_id)
            found[0] = existing is not None
            updated = apply_seal(existing, seal) if existing is not None else None
            if updated is not None:
                await connection.execute(UPSERT_RUN, run_row(updated))
            await connection.executemany(INSERT_EVENT, event_rows([event]))

        await self._submit(write)
        return found[0]

    async def create_run(self, record: RunRecord) -> None:
        """Store `record` unless a run record with its id is stored."""
        row = run_row(record)

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.execute(INSERT_RUN, row)

        await self._submit(write)

    async def rewrite_events(self, run_id: str, remove_seqs: Sequence[int], events: Sequence[StepEvent]) -> None:
        """Remove the run's events with these `seq`s, then store `events`, each in place of any row of its key."""
        rows = event_rows(events)
        removed = [(seq, run_id) for seq in remove_seqs]

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany('DELETE FROM events WHERE seq = ? AND run_id = ?', removed)
            await connection.executemany('DELETE FROM events WHERE event_key = ?', [(row[0],) for row in rows])
            await connection.executemany(
                'INSERT INTO events (seq, event_key, run_id, body) VALUES (?, ?, ?, ?)',
                [(event.seq or None, *row) for event, row in zip(events, rows, strict=True)],
            )

        await self._submit(write)

    async def rewrite_acceptances(self, acceptances: Sequence[Acceptance]) -> None:
        """Store each acceptance in place of whatever is stored under its key."""
        rows = [(a.key, a.run_id, dumps(a.to_json())) for a in acceptances]

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany(
                'INSERT INTO acceptances (acceptance_key, run_id, body) VALUES (?, ?, ?) '
                'ON CONFLICT (acceptance_key) DO UPDATE SET run_id = excluded.run_id, body = excluded.body',
                rows,
            )

        await self._submit(write)

    async def update_run(self, run_id: str, fold: Callable[[RunRecord], RunRecord | None]) -> None:
        """Fold into the stored run record atomically; `None` from `fold` (or no record) changes nothing."""

        async def write(connection: aiosqlite.Connection) -> None:
            existing = await self._select_run(connection, run_id)
            updated = fold(existing) if existing is not None else None
            if updated is not None:
                await connection.execute(UPSERT_RUN, run_row(updated))

        await self._submit(write)

    async def write_content(self, messages: Mapping[str, bytes], blobs: Mapping[str, bytes]) -> None:
        """Store messages and blobs under their hashes; content already stored is left as is."""
        if not messages and not blobs:
            return
        message_rows = list(messages.items())
        blob_rows = list(blobs.items())

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany(INSERT_MESSAGE, message_rows)
            await connection.executemany(INSERT_BLOB, blob_rows)

        await self._submit(write)

    async def write_snapshot(self, snapshot: SnapshotRecord) -> None:
        """Store a snapshot record unless one with its id is stored."""
        row = (snapshot.snapshot_id, snapshot.run_id, dumps(snapshot.to_json()))

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.execute(INSERT_SNAPSHOT, row)

        await self._submit(write)

    async def put_record(self, record: KeyedRecord, expected_version: str | None) -> str | None:
        """Store `record` atomically if the condition holds; return its new version, or `None` if it did not."""
        body = dumps(record.value)
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

    async def write_payload_references(self, references: Sequence[PayloadReference]) -> None:
        """Store references by `key`; one already stored keeps the later of the two `stored_at`."""
        rows = [
            (r.manifest, r.namespace, r.workflow_id, r.stored_at.isoformat(), epoch_us(r.stored_at)) for r in references
        ]

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany(UPSERT_PAYLOAD_REFERENCE, rows)

        await self._submit(write)

    async def delete_payload_references(self, references: Sequence[PayloadReference]) -> None:
        """Delete these references (by `key`); absent ones are ignored."""
        rows = [(r.manifest, r.namespace, r.workflow_id) for r in references]

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany(
                'DELETE FROM payload_references WHERE manifest = ? AND namespace = ? AND workflow_id = ?', rows
            )

        await self._submit(write)

    async def delete_blobs(self, hashes: Sequence[str]) -> None:
        """Delete blobs (chunks and manifests) by hash; absent ones are ignored."""
        rows = [(digest,) for digest in dict.fromkeys(hashes)]

        async def write(connection: aiosqlite.Connection) -> None:
            await connection.executemany('DELETE FROM blobs WHERE hash = ?', rows)

        await self._submit(write)

    async def _select_run(self, connection: aiosqlite.Connection, run_id: str) -> RunRecord | None:
        rows = list(await connection.execute_fetchall(f'{SELECT_RUN} WHERE run_id = ?', (run_id,)))
        return self._decode_run(rows[0]) if rows else None

    # --- reads -------------------------------------------------------------------------------------

    async def read_run(self, run_id: str) -> RunRecord | None:
        """Return the run record, or `None`."""
        rows = await self._fetch(f'{SELECT_RUN} WHERE run_id = ?', (run_id,))
        return self._decode_run(rows[0]) if rows else None

    async def read_runs(self, filter: RunFilter, *, limit: int, before: RunRecord | None) -> RunList:
        """Return up to `limit` runs matching `filter`, newest first, strictly older than `before` when given.

        A row that does not decode is reported in the result's `corrupt`, and the rows after it are read in its place.
        """
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
        if filter.temporal_run_id is not None:
            # A JSON array column: matched element by element, so an id is never matched as a substring.
            conditions.append('EXISTS (SELECT 1 FROM json_each(temporal_run_ids) WHERE json_each.value = ?)')
            parameters.append(filter.temporal_run_id)
        cursor: tuple[Any, ...] = (epoch_us(before.started_at), before.run_id) if before is not None else ()
        found: list[RunRecord] = []
        corrupt: list[LedgerCorruptionError] = []
        while True:
            where = ' AND '.join([*conditions, *(['(started_at_us, run_id) < (?, ?)'] if cursor else [])])
            wanted = limit - len(found)
            rows = await self._fetch(
                f'{SELECT_RUN}{" WHERE " if where else ""}{where} ORDER BY started_at_us DESC, run_id DESC LIMIT ?',
                (*parameters, *cursor, wanted),
            )
            for row in rows:
                try:
                    found.append(self._decode_run(row))
                except LedgerCorruptionError as error:
                    corrupt.append(error)
            if len(rows) < wanted or len(found) == limit:
                return RunList(found, corrupt)
            # The plain key columns still order a row whose record does not decode: go on after the last one.
            cursor = (rows[-1]['started_at_us'], rows[-1]['run_id'])

    async def read_events(self, run_id: str) -> list[StepEvent]:
        """Return the run's stored events in `seq` order, with `state` left as stored (`provisional`)."""
        rows = await self._fetch('SELECT seq, event_key, body FROM events WHERE run_id = ? ORDER BY seq', (run_id,))
        return [self._decode_event(row) for row in rows]

    async def read_acceptances(self, run_id: str) -> list[Acceptance]:
        """Return the run's stored acceptances."""
        rows = await self._fetch(
            'SELECT acceptance_key, body FROM acceptances WHERE run_id = ? ORDER BY rowid', (run_id,)
        )
        return [self._decode_acceptance(row) for row in rows]

    async def read_snapshot(self, snapshot_id: str) -> SnapshotRecord | None:
        """One snapshot record, or `None`."""
        rows = await self._fetch(
            'SELECT snapshot_id, run_id, body FROM snapshots WHERE snapshot_id = ?', (snapshot_id,)
        )
        return self._decode_snapshot(rows[0]) if rows else None

    async def read_snapshots(self, run_id: str) -> list[SnapshotRecord]:
        """The run's snapshot records in the order they were stored."""
        rows = await self._fetch(
            'SELECT snapshot_id, run_id, body FROM snapshots WHERE run_id = ? ORDER BY seq', (run_id,)
        )
        return [self._decode_snapshot(row) for row in rows]

    async def read_messages(self, hashes: Sequence[str]) -> dict[str, bytes]:
        """Stored message bytes by hash; hashes not stored are absent from the result."""
        return await self._read_content('messages', hashes)

    async def read_blobs(self, hashes: Sequence[str]) -> dict[str, bytes]:
        """Stored blob bytes by hash; hashes not stored are absent from the result."""
        return await self._read_content('blobs', hashes)

    async def read_payload_references(self, manifests: Sequence[str] | None) -> list[PayloadReference]:
        """The stored references to `manifests`, or all of them for `None`."""
        if manifests is None:
            rows = await self._fetch(f'{SELECT_PAYLOAD_REFERENCES} ORDER BY manifest', ())
        else:
            rows = []
            for start in range(0, len(manifests), IN_CHUNK):
                chunk = list(manifests[start : start + IN_CHUNK])
                rows += await self._fetch(
                    f'{SELECT_PAYLOAD_REFERENCES} WHERE manifest IN ({", ".join("?" for _ in chunk)})', chunk
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
                f'a payload reference in the SQLite ledger {self.path} is malformed: {error}'
            ) from error

    async def read_message_hashes(self) -> list[str]:
        """The hash of every stored message."""
        return [row['hash'] for row in await self._fetch('SELECT hash FROM messages', ())]

    async def _read_content(self, table: str, hashes: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), IN_CHUNK):
            chunk = unique[start : start + IN_CHUNK]
            rows = await self._fetch(
                f'SELECT hash, data FROM {table} WHERE hash IN ({", ".join("?" for _ in chunk)})', chunk
            )
            for row in rows:
                data = row['data']
                # A row rewritten as TEXT by another program comes back as str; its bytes are still
                # what the hash check on read must see.
                found[row['hash']] = data.encode() if isinstance(data, str) else bytes(data)
        return found

    async def read_record(self, namespace: str, key: str) -> KeyedRecord | None:
        """The keyed record with its current version, or `None`."""
        rows = await self._fetch(
            'SELECT namespace, key, scope, version, body FROM records WHERE namespace = ? AND key = ?',
            (namespace, key),
        )
        return self._decode_record(rows[0]) if rows else None

    async def list_records(self, namespace: str, scope: str | None) -> list[KeyedRecord]:
        """Every record of `namespace` (of `scope` only, when given), in no particular order."""
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
        return decode(
            self._where('records', row['key']),
            lambda: KeyedRecord(
                row['namespace'], row['key'], row['scope'], loads_object(row['body']), str(row['version'])
            ),
        )

    def _decode_event(self, row: sqlite3.Row) -> StepEvent:
        return decode(
            self._where('events', row['event_key']),
            lambda: decode_event({**loads_object(row['body']), 'seq': row['seq']}),
        )

    def _decode_acceptance(self, row: sqlite3.Row) -> Acceptance:
        return decode(
            self._where('acceptances', row['acceptance_key']), lambda: Acceptance.from_json(loads_object(row['body']))
        )

    def _decode_run(self, row: sqlite3.Row) -> RunRecord:
        return decode(self._where('runs', row['run_id']), lambda: decode_run(run_value(row)), run_id=row['run_id'])

    def _decode_snapshot(self, row: sqlite3.Row) -> SnapshotRecord:
        def build() -> SnapshotRecord:
            record = decode_snapshot(loads_object(row['body']))
            if (record.snapshot_id, record.run_id) != (row['snapshot_id'], row['run_id']):
                raise ValueError(f'its body belongs to snapshot {record.snapshot_id!r} of run {record.run_id!r}')
            return record

        return decode(self._where('snapshots', row['snapshot_id']), build)

    def _where(self, table: str, key: str) -> str:
        return f'row {key!r} of table {table} in the SQLite ledger {self.path}'
