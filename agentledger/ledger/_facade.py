"""`Ledger`: the public API over a backend store, with retries and the reads derived once for every backend."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from pydantic_ai.messages import ModelMessage

from agentledger.errors import (
    EffectNotFoundError,
    LedgerCorruptionError,
    LedgerReadOnlyError,
    LedgerUnavailableError,
    RunNotFoundError,
    SnapshotNotFoundError,
)
from agentledger.ledger._chunks import Manifest, split
from agentledger.ledger._store import LedgerStore, RunFilter, RunList
from agentledger.ledger._stored import PayloadDeletion, Snapshot, StoredContent, snapshot_content
from agentledger.model._content import blob_refs, content_hash, decode_message, encode_messages
from agentledger.model._effects import EffectRecord, EffectStatus, ResolveOutcome, resolved_effect
from agentledger.model._journal import JournalEntry
from agentledger.model._keyed import EFFECTS, JOURNAL, TOOL_JOURNAL, KeyedRecord, check_namespace
from agentledger.model._records import (
    OPEN_STATUSES,
    Acceptance,
    ErrorInfo,
    PayloadReference,
    RunRecord,
    RunSeal,
    RunStart,
    RunStatus,
    RunTree,
    SnapshotKind,
    SnapshotRecord,
    StepEvent,
    StepRecord,
    ToolEffect,
    Usage,
)
from agentledger.model._resets import ResetPoint, run_event_for_reset
from agentledger.model._rules import (
    apply_approval_wait,
    apply_park,
    apply_reset,
    apply_resume,
    derive_event_states,
    derive_steps,
    derive_tool_effects,
    run_event_for_seal,
    run_event_for_start,
    settle_usage,
)
from agentledger.model._snapshots import latest_snapshot, run_id_of, snapshot_at_step, snapshot_id
from agentledger.model._tool_journal import ToolJournalEntry
from agentledger.model._validity import is_provider_valid

__all__ = ['Ledger', 'PayloadDeletion', 'RetryPolicy', 'Snapshot']

logger = logging.getLogger('agentledger.ledger')

T = TypeVar('T')

# What `check_writable` stores and deletes: a reference to content that is never stored, so that a
# probe left behind (its delete failed) names a missing payload, which `agentledger gc` drops.
_PROBE_MANIFEST = content_hash(b'agentledger write probe')
_PROBE_NAMESPACE = 'agentledger-write-probe'
_PROBE = 'a probe record (the check that this process may write the ledger)'


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failed ledger write is retried before it is reported as `LedgerUnavailableError`."""

    attempts: int = 5
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0


class Ledger:
    """A store of runs, step events, acceptances, snapshots and keyed records (model-call journal, once-only effects).

    Writes are idempotent (at-least-once delivery collapses onto each record's key) and are retried
    with backoff; a write that still fails raises `LedgerUnavailableError` naming what was not
    written, never a silent drop. A write the storage refuses for good (`LedgerPermissionError`,
    `LedgerConfigError`, `LedgerCorruptionError`) is raised at once, and a ledger opened with
    `read_only=True` refuses every write with `LedgerReadOnlyError` before it reaches the store.
    Reads derive each event's state and each step's accepted attempt with the shared rules in
    `agentledger.model._rules`, so all backends answer alike.

    The backend is the `store` it holds (see `agentledger.ledger._store`); `MemoryLedger`,
    `SqliteLedger` and `S3Ledger` are this class over their own store. Use it as an async context
    manager, or call `open()` / `close()`; `open_lazily()` holds a ledger that is down for now and
    opens it on first use.
    """

    store: LedgerStore
    """The backend: what stores and reads the records; everything derived from them is done here."""

    retry: RetryPolicy
    """How failed writes (and opens) are retried."""

    read_only: bool
    """Whether every write is refused with `LedgerReadOnlyError` (see `__init__`)."""

    def __init__(self, store: LedgerStore, *, retry: RetryPolicy | None = None, read_only: bool = False) -> None:
        """A ledger over `store`; nothing is opened until `open()`.

        `read_only=True` refuses every write with `LedgerReadOnlyError` naming it. `SqliteLedger` and
        `S3Ledger` given it also open their storage without writing (no schema migration, no marker).
        """
        self.store = store
        self.retry = retry if retry is not None else RetryPolicy()
        self.read_only = read_only
        self._users = 0
        self._store_open = False
        # Failed attempts to open the store for users that hold it (see `open_lazily`), so that the
        # operations that queued behind one attempt share its failure instead of each trying again.
        self._open_failures = 0
        self._open_error: LedgerUnavailableError | None = None
        # Concurrent first users (a client storing several payloads at once) must open the store once.
        self._opening = asyncio.Lock()
        self._content = StoredContent(store, self._retrying)

    @property
    def url(self) -> str:
        """Where this ledger lives, as a URL `open_ledger` accepts (never with credentials)."""
        return self.store.url

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect and make sure the schema exists; raises a specific error when that is not possible.

        Opens are counted: a ledger shared by a worker (which `LedgerPlugin` opens while the worker
        runs) and by the application reading it stays open until the last user closes it. A ledger
        held while it is down (`open_lazily`) is opened by the next `open`, which raises if it still is.
        """
        async with self._opening:
            if not self._store_open:
                # Retried like a write: another process may hold the file's lock while it migrates or
                # switches journal mode, or an endpoint may be restarting.
                await self._retrying('the ledger', self.store.open, action='open')
                self._store_open = True
            self._users += 1

    async def open_lazily(self) -> LedgerUnavailableError | None:
        """Open like `open`, except that a ledger that is down now is opened later, by the first operation needing it.

        A ledger that cannot be reached or used for now (`LedgerUnavailableError`, after the retries
        of `open`) does not fail: this user is counted as with `open` (`close` releases it), and every
        operation first tries to open the store again, within its own retries, until one succeeds. So
        operations fail with `LedgerUnavailableError` while the ledger stays down, and work once it is
        back. Any other error (a misconfigured or read-only ledger, refused permissions, a file that is
        not a ledger) is raised, as by `open`. Returns the error that deferred the opening, or `None`
        when the ledger is open. `LedgerPlugin` opens a worker's ledger this way.
        """
        try:
            await self.open()
        except LedgerUnavailableError as error:
            async with self._opening:
                self._users += 1
            return error
        return None

    async def _ready(self) -> None:
        """Open the store of a ledger whose opening was deferred (`open_lazily`); raise while it is still down."""
        if self._store_open or self._users == 0:
            return
        failures = self._open_failures
        async with self._opening:
            if self._store_open or self._users == 0:
                return
            if self._open_failures != failures and self._open_error is not None:
                # An attempt made while this operation waited for the lock failed: share its answer.
                raise self._open_error
            try:
                await self.store.open()
            except LedgerUnavailableError as error:
                self._open_failures += 1
                self._open_error = error
                raise
            self._store_open = True
            self._open_error = None
            logger.warning('the ledger at %s is open: it was unavailable when it was first opened', self.url)

    async def close(self) -> None:
        """Release this user's hold; the last one closes the connections. Extra calls do nothing."""
        async with self._opening:
            if self._users == 0:
                return
            self._users -= 1
            if self._users == 0 and self._store_open:
                self._store_open = False
                await self.store.close()

    # --- writes --------------------------------------------------------------------------------------

    async def _retrying(self, what: str, operation: Callable[[], Awaitable[T]], *, action: str = 'write') -> T:
        if action == 'write':
            self._check_not_read_only(what)
        delay = self.retry.initial_backoff_s
        last: BaseException | None = None
        for attempt in range(1, self.retry.attempts + 1):
            try:
                if action != 'open':
                    # A ledger that was down when it was opened (`open_lazily`) is opened by each try.
                    await self._ready()
                return await operation()
            except LedgerUnavailableError as error:
                last = error
                logger.warning(
                    'ledger %s failed (%s), attempt %d/%d: %s', action, what, attempt, self.retry.attempts, error
                )
                if attempt < self.retry.attempts:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry.max_backoff_s)
        raise LedgerUnavailableError(
            f'could not write {what} to the ledger at {self.url} after {self.retry.attempts} attempts: {last}'
            if action == 'write'
            else f'could not {action} {what} at {self.url} after {self.retry.attempts} attempts: {last}'
        ) from last

    def _check_not_read_only(self, what: str) -> None:
        if self.read_only:
            raise LedgerReadOnlyError(f'cannot write {what}: the ledger at {self.url} is open read-only')

    async def check_writable(self) -> None:
        """Prove that this process may write the ledger: write the one probe record (a payload reference).

        `LedgerPlugin` calls it when a worker starts, so that a worker on a ledger it cannot write (a
        read-only file or directory, S3 credentials without `s3:PutObject`) refuses to start with that
        error (`LedgerPermissionError`, `LedgerReadOnlyError` for a ledger opened read-only) instead of
        serving and then failing every attempt. Every worker writes the same record again (no delete,
        so no delete permission is needed), and `payload_references` never lists it.
        """
        probe = PayloadReference(_PROBE_MANIFEST, _PROBE_NAMESPACE, _PROBE_NAMESPACE, datetime.now(UTC))
        await self._retrying(_PROBE, lambda: self.store.write_payload_references([probe]))

    async def start_run(self, start: RunStart) -> None:
        """Record that a Temporal run of ledger run `start.run_id` began (and its `run_started` event)."""
        await self._retrying(
            f'run start of {start.run_id}', lambda: self.store.write_run_start(start, run_event_for_start(start))
        )

    async def record_events(self, events: Sequence[StepEvent]) -> None:
        """Record step events; an event whose key is already stored is ignored."""
        if events:
            await self._retrying(
                f'{len(events)} event(s) of run {events[0].run_id}', lambda: self.store.write_events(events)
            )

    async def record_reset(self, run_id: str, workflow_id: str, reset: ResetPoint) -> None:
        """Record a Temporal reset of run `run_id`: its `run_reset` event, and its new Temporal run in the run record.

        The record lists the new Temporal run (and the run is `running` again, see `apply_reset`) before
        that run parks, awaits approval or seals, so its id names the run right away. The event comes
        first: a record that lists the run tells a worker the reset is recorded. Recording it again is a no-op.
        """
        await self.record_events([run_event_for_reset(run_id, workflow_id, reset)])
        await self.update_run(run_id, lambda record: apply_reset(record, reset))

    async def accept(self, acceptances: Sequence[Acceptance]) -> None:
        """Record that the workflow used these activities' results."""
        if acceptances:
            await self._retrying(
                f'{len(acceptances)} acceptance(s) of run {acceptances[0].run_id}',
                lambda: self.store.write_acceptances(acceptances),
            )

    async def seal_run(self, seal: RunSeal) -> Usage:
        """Record how a run ended (and its terminal run event); activities never accepted become abandoned.

        The seal's usage is what the run's conversation used; the ledger settles what the provider billed
        for it from the run's events (`settle_usage`), records that, and returns it, so the workflow's
        result reports the same usage as the ledger.

        A run whose record is missing (lost behind the ledger's back) still gets its terminal event, which
        holds the whole seal, and a warning says so: `reconcile` rebuilds the record from its events and
        Temporal's history. The seal is never dropped, and failing it would only retry what cannot succeed.
        """
        seal = replace(seal, usage=await self._settled(seal.run_id, seal.usage, sealing=True))
        event = run_event_for_seal(seal)
        found = await self._retrying(f'seal of run {seal.run_id}', lambda: self.store.write_seal(seal, event))
        if not found:
            logger.warning(
                'run %s has no run record in the ledger at %s: its seal (%s) is kept as its %s event; '
                '`agentledger reconcile %s` rebuilds the record',
                seal.run_id,
                self.url,
                seal.status,
                event.kind,
                seal.run_id,
            )
        return seal.usage

    async def _settled(self, run_id: str, used: Usage, *, sealing: bool) -> Usage:
        """`used` settled against the run's events; `sealing`: none of its Temporal runs accepts anything more."""
        await self._ready()
        events = await self.store.read_events(run_id)
        acceptances = await self.store.read_acceptances(run_id)
        sealed = {event.temporal_run_id for event in events} if sealing else set()
        return settle_usage(used, derive_event_states(events, acceptances, sealed_temporal_run_ids=sealed))

    # --- keyed records -------------------------------------------------------------------------------

    async def record(self, namespace: str, key: str) -> KeyedRecord | None:
        """The keyed record stored under `(namespace, key)`, or `None`."""
        check_namespace(namespace)
        await self._ready()
        return await self.store.read_record(namespace, key)

    async def create_record(self, namespace: str, key: str, value: dict[str, Any], *, scope: str) -> KeyedRecord | None:
        """Store a new keyed record unless one with this key exists: the stored record, or `None` if one existed.

        Atomic on every backend: of two writers creating the same key, exactly one gets the record.
        """
        check_namespace(namespace)
        if not key:
            raise ValueError('a keyed record needs a non-empty key')
        record = KeyedRecord(namespace=namespace, key=key, scope=scope, value=value)
        version = await self._retrying(f'{namespace} record {key!r}', lambda: self.store.put_record(record, None))
        return dataclasses.replace(record, version=version) if version is not None else None

    async def replace_record(self, record: KeyedRecord, value: dict[str, Any]) -> KeyedRecord | None:
        """Replace a record read earlier with `value`, unless it changed since: the stored record, or `None`."""
        check_namespace(record.namespace)
        if not record.version:
            raise ValueError(f'{record.namespace} record {record.key!r} was never stored: create it instead')
        updated = dataclasses.replace(record, value=value)
        version = await self._retrying(
            f'{record.namespace} record {record.key!r}', lambda: self.store.put_record(updated, record.version)
        )
        return dataclasses.replace(updated, version=version) if version is not None else None

    async def records(self, namespace: str, *, scope: str | None = None) -> list[KeyedRecord]:
        """The keyed records of `namespace` (of one scope when given), ordered by key."""
        check_namespace(namespace)
        await self._ready()
        return sorted(await self.store.list_records(namespace, scope), key=lambda record: record.key)

    # --- model-call journal ----------------------------------------------------------------------------

    async def journal_entry(self, key: str) -> JournalEntry | None:
        """The journal entry recorded under `key` (see `agentledger.model._journal.journal_key`), or `None`."""
        stored = await self.record(JOURNAL, key)
        return JournalEntry.from_record(stored) if stored is not None else None

    async def record_journal(self, entry: JournalEntry) -> JournalEntry:
        """Record a provider response unless one is recorded under its key; return the one that is recorded.

        The first response recorded wins, so every later attempt of the same request replays the same answer.
        """
        recorded = await self._first_recorded(JOURNAL, entry.key, entry.to_value(), entry.workflow_id, lambda _: False)
        return entry if recorded is None else JournalEntry.from_record(recorded)

    async def _first_recorded(
        self,
        namespace: str,
        key: str,
        value: dict[str, Any],
        scope: str,
        superseded: Callable[[KeyedRecord], bool],
    ) -> KeyedRecord | None:
        """Store a journal record unless one stands under its key: `None` if this one is stored, else the one that is.

        A stored record for which `superseded` holds (a voided tool result, one for other arguments) is replaced
        by this one, by compare-and-swap: of racing writers exactly one stores its record, and the others get it.
        """
        while True:
            if await self.create_record(namespace, key, value, scope=scope) is not None:
                return None
            existing = await self.record(namespace, key)
            if existing is None:
                raise LedgerCorruptionError(f'{namespace} record {key!r} exists and cannot be read')
            if not superseded(existing):
                return existing
            if await self.replace_record(existing, value) is not None:
                return None

    # --- tool-call journal -----------------------------------------------------------------------------

    async def tool_journal_entry(self, key: str) -> ToolJournalEntry | None:
        """The tool-call journal entry under `key` (see `model._tool_journal.tool_journal_key`), or `None`."""
        stored = await self.record(TOOL_JOURNAL, key)
        return ToolJournalEntry.from_record(stored) if stored is not None else None

    async def record_tool_result(
        self, entry: ToolJournalEntry, *, supersede_earlier_runs: bool = False
    ) -> ToolJournalEntry:
        """Record a tool call's result unless one stands under its key; return the one that is recorded.

        A voided entry is replaced, and so is an entry recorded for other arguments than `entry`'s (its
        `args_digest` differs: the tool_call_id was reused for another call). With `supersede_earlier_runs`,
        so is an entry an earlier ledger run of the execution chain recorded (the failed run this one
        restarts with its tools run again). Otherwise the first result recorded wins, so every later attempt
        of the call replays the same result.
        """

        def superseded(record: KeyedRecord) -> bool:
            stored = ToolJournalEntry.from_record(record)
            return (
                stored.voided is not None
                or (entry.args_digest is not None and not stored.recorded_for(entry.args_digest))
                or (supersede_earlier_runs and stored.run_id != entry.run_id)
            )

        recorded = await self._first_recorded(TOOL_JOURNAL, entry.key, entry.to_value(), entry.workflow_id, superseded)
        return entry if recorded is None else ToolJournalEntry.from_record(recorded)

    async def void_tool_results(self, workflow_id: str, lineage_run_id: str, reason: str) -> list[ToolJournalEntry]:
        """Void the tool results journaled for a workflow id's execution chain: its tools run again when called.

        `lineage_run_id` is the ledger run the chain began with (the journal's key names it). Returns the
        entries voided now; entries voided already are left as they are. Each stays in the ledger, with
        `reason`, until the call runs again and its new result takes its place.
        """
        voided: list[ToolJournalEntry] = []
        prefix = f'{workflow_id}|{lineage_run_id}|'
        for listed in await self.records(TOOL_JOURNAL, scope=workflow_id):
            record: KeyedRecord | None = listed
            while record is not None and record.key.startswith(prefix):
                entry = ToolJournalEntry.from_record(record)
                if entry.voided is not None:
                    break
                if await self.replace_record(record, entry.void(reason).to_value()) is not None:
                    voided.append(entry.void(reason))
                    break
                # Changed meanwhile (a racing attempt recorded it again): void what is stored now.
                record = await self.record(TOOL_JOURNAL, record.key)
        return voided

    # --- once-only effects -----------------------------------------------------------------------------

    async def effect(self, key: str) -> EffectRecord:
        """The once-only effect recorded under `key`; raises `EffectNotFoundError` for an unknown key."""
        stored = await self.record(EFFECTS, key)
        if stored is None:
            raise EffectNotFoundError(key)
        return EffectRecord.from_record(stored)

    async def effects(
        self, *, workflow_id: str | None = None, run_id: str | None = None, status: EffectStatus | None = None
    ) -> list[EffectRecord]:
        """Once-only effects, ordered by key: of one effect scope (workflow id), of one run, or with one status."""
        found = [EffectRecord.from_record(r) for r in await self.records(EFFECTS, scope=workflow_id)]
        return [
            effect
            for effect in found
            if (run_id is None or effect.run_id == run_id) and (status is None or effect.status == status)
        ]

    async def resolve_effect(self, key: str, outcome: ResolveOutcome, result: Any = None) -> EffectRecord:
        """An operator's answer for an effect in doubt: it happened (`done`, with its result) or it did not.

        `done` makes every later call return `result`; `not-done` lets the next attempt act. Raises
        `EffectNotFoundError` for an unknown key and `EffectStateError` for an effect that is already done.
        """
        while True:
            stored = await self.record(EFFECTS, key)
            if stored is None:
                raise EffectNotFoundError(key)
            updated = resolved_effect(EffectRecord.from_record(stored), outcome, result, datetime.now(UTC))
            written = await self.replace_record(stored, updated.to_value())
            if written is not None:
                return EffectRecord.from_record(written)

    # --- repairs (reconcile) --------------------------------------------------------------------------

    async def replace_events(self, run_id: str, remove_seqs: Sequence[int], events: Sequence[StepEvent]) -> None:
        """Replace stored events: the only write that changes a stored event, for `reconcile`'s audited repairs.

        Removes the run's rows with `remove_seqs` (a divergent row, the copies of a duplicated one) and stores
        `events` in place of any row with the same key; an event with a non-zero `seq` keeps that place
        in the causal order. Record the repair itself (a `ledger_repaired` event) alongside.
        """
        if remove_seqs or events:
            await self._retrying(
                f'a repair of stored events of run {run_id}',
                lambda: self.store.rewrite_events(run_id, remove_seqs, events),
            )

    async def replace_acceptances(self, acceptances: Sequence[Acceptance]) -> None:
        """Store acceptances in place of what is stored under their keys (`reconcile`'s audited repairs)."""
        if acceptances:
            await self._retrying('a repair of stored acceptances', lambda: self.store.rewrite_acceptances(acceptances))

    async def restore_run(self, record: RunRecord) -> None:
        """Store a run record where none is stored: `reconcile`'s audited rebuild of a lost record.

        A record stored meanwhile (a live start) is left as it is; fold the rest in with `update_run`.
        """
        await self._retrying(f'a rebuilt record of run {record.run_id}', lambda: self.store.create_run(record))

    async def update_run(self, run_id: str, fold: Callable[[RunRecord], RunRecord | None]) -> None:
        """Fold a change into the run record atomically (a transaction, or compare-and-swap on S3).

        `fold` gets the stored record and returns the new one, or `None` to change nothing; it may run
        more than once when another writer changes the record meanwhile.
        """
        await self._retrying(f'an update of run {run_id}', lambda: self.store.update_run(run_id, fold))

    async def park_run(self, run_id: str, error: ErrorInfo, at: datetime, usage: Usage | None = None) -> None:
        """Mark an open run `parked`, waiting on `error` (a run started with `park_on_failure=True`).

        `usage` is what the run's conversation used so far; the record keeps it settled against the run's
        events, as a seal would (`None`: the record's usage stays as it is). An ended run stays as it is.
        Raises `RunNotFoundError` for an unknown run.
        """
        await self.run(run_id)
        settled = await self._settled(run_id, usage, sealing=False) if usage is not None else None
        await self.update_run(run_id, lambda record: apply_park(record, error, at, settled))

    async def resume_run(self, run_id: str, at: datetime) -> None:
        """Mark a `parked` run `running` again; any other run stays as it is. Raises `RunNotFoundError`."""
        await self.run(run_id)
        await self.update_run(run_id, lambda record: apply_resume(record, at))

    async def approval_wait(self, run_id: str, awaiting: bool, at: datetime) -> None:
        """Mark a `running` run `awaiting_approval`, or (`awaiting=False`) such a run `running` again.

        A run in any other status stays as it is. Raises `RunNotFoundError` for an unknown run.
        """
        await self.run(run_id)
        await self.update_run(run_id, lambda record: apply_approval_wait(record, awaiting, at))

    # --- reads ---------------------------------------------------------------------------------------

    async def run(self, run_id: str) -> RunRecord:
        """Return the run record; raise `RunNotFoundError` for an unknown id."""
        await self._ready()
        record = await self.store.read_run(run_id)
        if record is None:
            raise RunNotFoundError(run_id)
        return record

    async def runs(
        self,
        *,
        agent: str | None = None,
        status: RunStatus | None = None,
        conversation_id: str | None = None,
        parent_run_id: str | None = None,
        workflow_id: str | None = None,
        forked_from_run_id: str | None = None,
        temporal_run_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> RunList:
        """List runs, newest first. Page with `before=<the last run id of the previous page>`.

        `temporal_run_id` lists the runs whose `temporal_run_ids` name that Temporal run: SQLite answers
        it with one query; S3 has no index of it and reads the run records newest first until found.

        A stored run record that does not decode does not fail the listing: it is left out, logged as a
        warning, and reported in the result's `corrupt` (see `RunList`); `run(id)` of it raises.
        """
        if limit < 1:
            raise ValueError(f'limit must be at least 1, got {limit}')
        await self._ready()
        cursor = await self.run(before) if before is not None else None
        found = await self.store.read_runs(
            RunFilter(
                agent=agent,
                status=status,
                conversation_id=conversation_id,
                parent_run_id=parent_run_id,
                workflow_id=workflow_id,
                forked_from_run_id=forked_from_run_id,
                temporal_run_id=temporal_run_id,
            ),
            limit=limit,
            before=cursor,
        )
        for error in found.corrupt:
            logger.warning('skipped a corrupt run record while listing runs: %s', error)
        return found

    async def run_tree(self, run_id: str, *, max_depth: int | None = None) -> RunTree:
        """The run and the delegate runs it started, recursively (oldest child first), `max_depth` levels deep.

        Each child is matched to the parent's delegate step by its `parent_tool_call_id`, so the tree
        says which step started which delegate, and each node's run record its status, usage and duration.
        """
        return await self._subtree(await self.run(run_id), None, max_depth)

    async def _subtree(self, record: RunRecord, step: StepRecord | None, depth: int | None) -> RunTree:
        if depth is not None and depth <= 0:
            return RunTree(run=record, step=step)
        children: list[RunRecord] = []
        while True:
            page = await self.runs(
                parent_run_id=record.run_id, limit=100, before=children[-1].run_id if children else None
            )
            children.extend(page)
            if len(page) < 100:
                break
        if not children:
            return RunTree(run=record, step=step)
        calls = {s.tool_call_id: s for s in await self.steps(record.run_id) if s.tool_call_id is not None}
        below = None if depth is None else depth - 1
        subtrees = [
            await self._subtree(child, calls.get(child.parent_tool_call_id or ''), below)
            for child in sorted(children, key=lambda run: (run.started_at, run.run_id))
        ]
        return RunTree(run=record, step=step, children=tuple(subtrees))

    async def events(self, run_id: str) -> list[StepEvent]:
        """Return the run's events in causal order, each with its derived `state`."""
        record = await self.run(run_id)
        events = await self.store.read_events(run_id)
        acceptances = await self.store.read_acceptances(run_id)
        return derive_event_states(events, acceptances, sealed_temporal_run_ids=_sealed(record, events))

    async def stored_rows(self, run_id: str) -> tuple[list[StepEvent], list[Acceptance]]:
        """The run's stored events (in causal order, states as stored) and acceptances, with or without its record.

        Unlike `events`, this needs no run record: what is left of a run whose record was lost is what
        `reconcile` rebuilds the record from. Raises `RunNotFoundError` when the run has no events either.
        """
        await self._ready()
        events = await self.store.read_events(run_id)
        if not events:
            raise RunNotFoundError(run_id)
        return events, await self.store.read_acceptances(run_id)

    async def acceptances(self, run_id: str) -> list[Acceptance]:
        """The activities whose results the run's workflow observed (what `reconcile` checks against history)."""
        await self.run(run_id)
        return await self.store.read_acceptances(run_id)

    async def steps(self, run_id: str) -> list[StepRecord]:
        """One record per activity: its attempts and which attempt's result the run used."""
        record = await self.run(run_id)
        events = await self.store.read_events(run_id)
        acceptances = await self.store.read_acceptances(run_id)
        states = derive_event_states(events, acceptances, sealed_temporal_run_ids=_sealed(record, events))
        return derive_steps(states, acceptances)

    async def tool_effects(self, run_id: str) -> list[ToolEffect]:
        """Per tool call of the run: started / completed / failed, attempts, and attempts in doubt after a crash."""
        record = await self.run(run_id)
        return derive_tool_effects(await self.events(run_id), sealed=record.status not in OPEN_STATUSES)

    # --- snapshots -----------------------------------------------------------------------------------

    async def write_snapshot(
        self,
        *,
        run_id: str,
        temporal_run_id: str,
        step: int,
        kind: SnapshotKind,
        messages: Sequence[ModelMessage],
        base: tuple[str, Sequence[str]] | None = None,
    ) -> SnapshotRecord | None:
        """Store `messages` as a snapshot of `run_id` if it is provider-valid; return it, or `None` if invalid.

        Only the messages the parent snapshot does not hold are added (the parent is the run's
        latest snapshot, or for a run's first snapshot the one it was seeded from), and message and
        blob content is stored once by hash, so a run's storage grows with its messages, not its steps.
        `base` (a stored snapshot's id and hashes, which `messages` starts with) makes that snapshot
        the parent and skips encoding the messages it holds, so the write costs only the new ones.
        """
        # Refused before anything is read: whether a snapshot would be stored must not decide whether this raises.
        self._check_not_read_only(f'a snapshot of run {run_id}')
        await self._ready()
        if not is_provider_valid(messages):
            logger.info('not snapshotting run %s at step %d: the history is not provider-valid', run_id, step)
            return None
        parent_id: str | None
        if base is not None:
            parent_id, parent_hashes = base[0], list(base[1])
            new = encode_messages(messages[len(parent_hashes) :])
            hashes = [*parent_hashes, *(m.hash for m in new)]
        else:
            encoded = encode_messages(messages)
            hashes = [m.hash for m in encoded]
            parent_id, parent_hashes = await self._content.chain_parent(run_id, hashes)
            new = encoded[len(parent_hashes) :]
        new_id = snapshot_id(run_id, step, kind, hashes)
        existing = await self.store.read_snapshot(new_id)
        if existing is not None:
            return existing
        record = SnapshotRecord(
            snapshot_id=new_id,
            run_id=run_id,
            temporal_run_id=temporal_run_id,
            step=step,
            kind=kind,
            parent_id=parent_id,
            new_hashes=tuple(m.hash for m in new),
            message_count=len(hashes),
            created_at=datetime.now(UTC),
        )
        rows, blobs = snapshot_content(new)
        await self._retrying(f'content of snapshot {record.snapshot_id}', lambda: self.store.write_content(rows, blobs))
        await self._retrying(f'snapshot {record.snapshot_id}', lambda: self.store.write_snapshot(record))
        self._content.remember(run_id, record.snapshot_id, hashes)
        return record

    async def snapshots(self, run_id: str) -> list[SnapshotRecord]:
        """The run's snapshots (id, step, message count), oldest first; raises `RunNotFoundError` for an unknown run."""
        await self.run(run_id)
        return await self.store.read_snapshots(run_id)

    async def snapshot(self, snapshot_id: str) -> Snapshot:
        """One snapshot with its messages rebuilt and verified against their hashes.

        Raises `SnapshotNotFoundError` for an unknown or malformed id and `LedgerCorruptionError` when
        stored content is missing or no longer matches its hash: corrupted messages are never returned.
        """
        run_id = run_id_of(snapshot_id)
        await self._ready()
        record = await self.store.read_snapshot(snapshot_id)
        if record is None or record.run_id != run_id:
            raise SnapshotNotFoundError(f'no snapshot with id {snapshot_id!r}')
        hashes = await self._content.chain_hashes(snapshot_id)
        stored = await self.store.read_messages(list(dict.fromkeys(hashes)))
        missing = [digest for digest in hashes if digest not in stored]
        if missing:
            raise LedgerCorruptionError(
                f'snapshot {snapshot_id!r} references {len(missing)} missing message(s): {missing[0]}'
            )
        stored = await self._content.expand_chunked(stored)
        refs = list(dict.fromkeys(ref for digest in set(hashes) for ref in blob_refs(stored[digest])))
        blobs = await self.store.read_blobs(refs) if refs else {}
        messages = [decode_message(digest, stored[digest], blobs) for digest in hashes]
        return Snapshot(record=record, messages=messages, hashes=hashes)

    # --- chunked payloads ----------------------------------------------------------------------------

    async def store_chunked(
        self, data: bytes, *, json_text: bool = False, referrers: Sequence[tuple[str, str]] = ()
    ) -> str:
        """Store `data` as deduplicated chunks plus a manifest; return the manifest's hash, its key.

        Chunks and manifests already stored (by this or any other content) are not stored again.
        `json_text` marks `data` as JSON, whose long string literals are then stored as pieces of
        their own (see `agentledger/ledger/_chunks.py`). `referrers` ((namespace, workflow id) pairs)
        are the workflows whose histories reference the payload; they are recorded before the content
        is written, so `agentledger gc` never finds stored content without them.
        """
        manifest, blobs = split(data, json_text=json_text)
        key = manifest.key
        now = datetime.now(UTC)
        await self.record_payload_references([PayloadReference(key, ns, wid, now) for ns, wid in referrers])
        await self._retrying(
            f'{len(blobs)} chunk(s) of a {len(data)}-byte payload',
            lambda: self.store.write_content({}, {**blobs, key: manifest.to_bytes()}),
        )
        return key

    async def load_chunked(self, key: str) -> bytes:
        """The content stored under manifest hash `key`, verified piece by piece.

        Raises `LedgerCorruptionError` naming the key when the manifest or a piece is missing or altered.
        """
        where = f'stored payload {key}'
        found = await self._retrying(where, lambda: self.store.read_blobs([key]), action='read')
        data = found.get(key)
        if data is None:
            raise LedgerCorruptionError(f'{where} is missing from the ledger')
        if content_hash(data) != key:
            raise LedgerCorruptionError(f'the manifest of {where} does not match its hash')
        return (await self._content.assemble({key: Manifest.parse(data, where)}, 'stored payload'))[key]

    async def record_payload_references(self, references: Sequence[PayloadReference]) -> None:
        """Record that workflows reference stored payloads (idempotent; the latest `stored_at` is kept)."""
        if references:
            await self._retrying(
                f'{len(references)} payload reference(s)', lambda: self.store.write_payload_references(references)
            )

    async def payload_references(self, manifests: Sequence[str] | None = None) -> list[PayloadReference]:
        """The recorded references to `manifests` (all of them when `None`)."""
        if manifests is not None and not manifests:
            return []
        wanted = None if manifests is None else list(dict.fromkeys(manifests))
        found = await self._retrying(
            'payload references', lambda: self.store.read_payload_references(wanted), action='read'
        )
        # The write probe (see `check_writable`) references no payload: it is nobody's to collect.
        return [reference for reference in found if reference.namespace != _PROBE_NAMESPACE]

    async def delete_payloads(self, manifests: Sequence[str], *, dry_run: bool = False) -> PayloadDeletion:
        """Delete stored payloads: their references, their manifests, and each chunk nothing else uses.

        A chunk is kept while a payload that still has a reference, or any stored message (a long
        message is stored as chunks; binary parts are blobs), uses it. The caller decides which
        payloads may go (see `agentledger.payloads.collect_garbage`); this only keeps shared content whole.
        `dry_run` reports what would be deleted and deletes nothing.
        """
        doomed = list(dict.fromkeys(manifests))
        if not doomed:
            return PayloadDeletion(manifests=(), chunks=0, bytes=0)
        gone = set(doomed)
        await self._ready()

        async def still_referenced() -> list[str]:
            return list(dict.fromkeys(r.manifest for r in await self.payload_references() if r.manifest not in gone))

        deletion, chunks = await self._content.unused_chunks(doomed, still_referenced)
        if dry_run:
            return deletion
        references = await self.payload_references(doomed)
        # Content first: if deleting the references then fails, the next collection finds them naming a
        # missing manifest and deletes them; the other order would leave content nothing names any more.
        await self._retrying(f'{len(doomed)} payload(s)', lambda: self.store.delete_blobs([*doomed, *chunks]))
        await self._retrying('payload references', lambda: self.store.delete_payload_references(references))
        return deletion

    async def latest_snapshot(self, run_id: str) -> SnapshotRecord:
        """The run's latest valid snapshot: what `continue_run` seeds from."""
        record = await self.run(run_id)
        return latest_snapshot(record, await self.store.read_snapshots(run_id))

    async def snapshot_at_step(self, run_id: str, step: int) -> SnapshotRecord:
        """The latest valid snapshot at or before `step`: what `fork_run(at_step=step)` seeds from."""
        record = await self.run(run_id)
        return snapshot_at_step(record, await self.store.read_snapshots(run_id), step)


def _sealed(record: RunRecord, events: Sequence[StepEvent]) -> tuple[str, ...]:
    """Temporal runs that can accept nothing more: all of them once the run ended, else all but the latest.

    Once the run ended that includes Temporal runs only its events name (an orphan row of a run
    Temporal never had): whatever they did, the run can no longer use it.
    """
    if record.status in OPEN_STATUSES:
        return record.temporal_run_ids[:-1]
    return tuple(dict.fromkeys([*record.temporal_run_ids, *(event.temporal_run_id for event in events)]))
