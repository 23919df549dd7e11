"""`SqliteLedger`: a ledger in one SQLite file, shared by the worker processes of one host.

Schema (version 3, see `_schema.MIGRATIONS`)::

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

Read-only (`SqliteLedger(path, read_only=True)`, `sqlite:///runs.db?mode=ro`): one connection opened
with `mode=ro`, no migration (a file of another schema version is refused, naming it), no switch to
WAL, no writer; every write raises `LedgerReadOnlyError`. It needs read access to the file only, and
changes nothing: what the command line's reading commands and the codec server use. In a directory
it may not write, SQLite cannot create the WAL file's shared-memory index; when no `-wal` file exists
(no writer is connected, every commit is in the file) the file is then read as immutable, so a
writer that connects later is not seen by that reader.

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

import os

from agentledger.ledger._facade import Ledger, RetryPolicy
from agentledger.ledger.backends.sqlite._schema import SCHEMA_VERSION
from agentledger.ledger.backends.sqlite._store import SqliteStore

__all__ = ['SCHEMA_VERSION', 'SqliteLedger', 'SqliteStore']


class SqliteLedger(Ledger):
    """A ledger in a SQLite file (WAL mode): one writer connection behind a group-commit queue, one reader.

    Several worker processes on one host may share the file; each serialises its own writes on its
    writer task, and `BEGIN IMMEDIATE` serialises the processes. The file's path is `store.path`.
    Opened `read_only`, it writes nothing, not even to open (see the module docstring).
    """

    store: SqliteStore

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retry: RetryPolicy | None = None,
        busy_timeout_s: float = 5.0,
        read_only: bool = False,
    ) -> None:
        """Describe the ledger at `path`; nothing is opened until `open()`.

        `busy_timeout_s` is how long one attempt waits for another process's lock before the write
        fails with `LedgerUnavailableError` (and `retry` decides whether it is tried again).
        `read_only` opens the file for reading only, without creating, migrating or changing it, and
        refuses every write with `LedgerReadOnlyError`; the file must exist at this code's schema version.
        """
        super().__init__(
            SqliteStore(path, busy_timeout_s=busy_timeout_s, read_only=read_only), retry=retry, read_only=read_only
        )
