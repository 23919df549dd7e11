"""The SQLite ledger's schema: its migrations, and the statements and rows the store writes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from agentledger.ledger.backends._encoding import dumps, epoch_us
from agentledger.model._records import RunRecord, StepEvent

__all__ = [
    'ADDED_COLUMNS',
    'INSERT_ACCEPTANCE',
    'INSERT_BLOB',
    'INSERT_EVENT',
    'INSERT_MESSAGE',
    'INSERT_RUN',
    'INSERT_SNAPSHOT',
    'IN_CHUNK',
    'MIGRATIONS',
    'RUN_COLUMNS',
    'SCHEMA_VERSION',
    'SELECT_PAYLOAD_REFERENCES',
    'SELECT_RUN',
    'UPSERT_PAYLOAD_REFERENCE',
    'UPSERT_RUN',
    'event_rows',
    'run_row',
    'run_value',
]

SCHEMA_VERSION = 3
"""The schema version this code writes; `open()` migrates older files up to it."""

MIGRATIONS: dict[int, list[str]] = {
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

ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (('runs', 'workflow_type', 'TEXT'),)
"""(table, column, type) of the columns added within the current schema version, without a new version.

agentledger names its columns in every statement, so an older agentledger reads and writes a file
that has them (the rows it writes leave them NULL, its upserts keep them) and does not refuse it for a
version it does not know: a fleet can run both against one file while it upgrades. A read-write open
adds the missing ones; a read-only open asks for one.
"""

RUN_COLUMNS = (
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
    'workflow_type',
)
SELECT_RUN = f'SELECT {", ".join(RUN_COLUMNS)} FROM runs'
UPSERT_RUN = (
    f'INSERT INTO runs ({", ".join(RUN_COLUMNS)}) VALUES ({", ".join("?" for _ in RUN_COLUMNS)}) '
    f'ON CONFLICT (run_id) DO UPDATE SET {", ".join(f"{c} = excluded.{c}" for c in RUN_COLUMNS[1:])}'
)
INSERT_RUN = f'INSERT OR IGNORE INTO runs ({", ".join(RUN_COLUMNS)}) VALUES ({", ".join("?" for _ in RUN_COLUMNS)})'
INSERT_EVENT = 'INSERT OR IGNORE INTO events (event_key, run_id, body) VALUES (?, ?, ?)'
INSERT_ACCEPTANCE = 'INSERT OR IGNORE INTO acceptances (acceptance_key, run_id, body) VALUES (?, ?, ?)'
INSERT_MESSAGE = 'INSERT OR IGNORE INTO messages (hash, data) VALUES (?, ?)'
INSERT_BLOB = 'INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)'
INSERT_SNAPSHOT = 'INSERT OR IGNORE INTO snapshots (snapshot_id, run_id, body) VALUES (?, ?, ?)'
UPSERT_PAYLOAD_REFERENCE = (
    'INSERT INTO payload_references (manifest, namespace, workflow_id, stored_at, stored_at_us) '
    'VALUES (?, ?, ?, ?, ?) ON CONFLICT (manifest, namespace, workflow_id) DO UPDATE SET '
    'stored_at = excluded.stored_at, stored_at_us = excluded.stored_at_us '
    'WHERE excluded.stored_at_us > payload_references.stored_at_us'
)
SELECT_PAYLOAD_REFERENCES = 'SELECT manifest, namespace, workflow_id, stored_at FROM payload_references'

IN_CHUNK = 500
"""Hashes per `IN (...)` query: below SQLite's bound-variable limit (999 before SQLite 3.32)."""


def run_row(run: RunRecord) -> tuple[Any, ...]:
    """The `runs` row of `run`, in `RUN_COLUMNS` order."""
    return (
        run.run_id,
        run.workflow_id,
        run.agent_name,
        run.status,
        run.started_at.isoformat(),
        epoch_us(run.started_at),
        run.updated_at.isoformat(),
        run.ended_at.isoformat() if run.ended_at is not None else None,
        run.task_queue,
        run.conversation_id,
        run.parent_run_id,
        run.parent_tool_call_id,
        dumps(list(run.temporal_run_ids)),
        dumps(asdict(run.usage)),
        dumps(asdict(run.error)) if run.error is not None else None,
        run.prompt_preview,
        run.output_preview,
        dumps(asdict(run.forked_from)) if run.forked_from is not None else None,
        run.forked_from.run_id if run.forked_from is not None else None,
        dumps(list(run.degraded)),
        run.workflow_type,
    )


def event_rows(events: Sequence[StepEvent]) -> list[tuple[str, str, str]]:
    """`(event_key, run_id, body)` rows of `events`: the body without `seq` (the row's own) and `state` (derived)."""
    rows: list[tuple[str, str, str]] = []
    for event in events:
        body = event.to_json()
        del body['seq'], body['state']
        rows.append((event.key, event.run_id, dumps(body)))
    return rows


def run_value(row: sqlite3.Row) -> dict[str, Any]:
    """A `runs` row in `RunRecord.to_json()` form, its JSON columns parsed, for `decode_run`."""
    value: dict[str, Any] = {
        column: row[column] for column in RUN_COLUMNS if column not in ('started_at_us', 'forked_from_run_id')
    }
    for column in ('temporal_run_ids', 'usage', 'error', 'forked_from', 'degraded'):
        if value[column] is not None:
            value[column] = json.loads(value[column])
    return value
