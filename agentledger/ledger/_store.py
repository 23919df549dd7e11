"""The store contract: what a backend stores and reads back, grouped by capability.

`Ledger` holds one store and derives everything else (retries, the reads' derived states, the
snapshot chain, chunked content) once for every backend. A store only stores: each method is one
idempotent write or one plain read, and a failure that may pass raises `LedgerUnavailableError`
so that the ledger retries it. `MemoryStore` is the reference implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from agentledger.errors import LedgerCorruptionError
from agentledger.model._keyed import KeyedRecord
from agentledger.model._records import (
    Acceptance,
    PayloadReference,
    RunRecord,
    RunSeal,
    RunStart,
    RunStatus,
    SnapshotRecord,
    StepEvent,
)

__all__ = [
    'ContentStore',
    'KeyedStore',
    'LedgerStore',
    'PayloadRefStore',
    'RunFilter',
    'RunList',
    'RunStore',
    'StoreLifecycle',
]


@dataclass(frozen=True)
class RunFilter:
    """Which runs `Ledger.runs` lists. `None` means any."""

    agent: str | None = None
    status: RunStatus | None = None
    conversation_id: str | None = None
    parent_run_id: str | None = None
    workflow_id: str | None = None
    forked_from_run_id: str | None = None
    temporal_run_id: str | None = None
    """Only the run whose `temporal_run_ids` name this Temporal run (several, in a user's own workflow)."""

    def matches(self, run: RunRecord) -> bool:
        """Whether `run` passes every filter that is set (for backends that filter records in memory)."""
        return (
            (self.agent is None or run.agent_name == self.agent)
            and (self.status is None or run.status == self.status)
            and (self.conversation_id is None or run.conversation_id == self.conversation_id)
            and (self.parent_run_id is None or run.parent_run_id == self.parent_run_id)
            and (self.workflow_id is None or run.workflow_id == self.workflow_id)
            and (
                self.forked_from_run_id is None
                or (run.forked_from is not None and run.forked_from.run_id == self.forked_from_run_id)
            )
            and (self.temporal_run_id is None or self.temporal_run_id in run.temporal_run_ids)
        )


class RunList(list[RunRecord]):
    """A page of runs, newest first, and the stored run records the listing skipped because they do not decode.

    One damaged record must not hide every other run, so a listing leaves it out and reports it in
    `corrupt` (each error names its run in `run_id`) instead of failing; reading that run directly
    (`Ledger.run`) still raises the `LedgerCorruptionError`. A plain list in every other respect.
    """

    corrupt: tuple[LedgerCorruptionError, ...]
    """The run records met while listing that do not decode, in the order they were met."""

    def __init__(self, runs: Iterable[RunRecord] = (), corrupt: Iterable[LedgerCorruptionError] = ()) -> None:
        """The runs `runs`, and the records skipped as `corrupt`."""
        super().__init__(runs)
        self.corrupt = tuple(corrupt)


class StoreLifecycle(Protocol):
    """Where a store lives, and its connections."""

    @property
    def url(self) -> str:
        """Where the store lives, as a URL `open_ledger` accepts (never with credentials)."""
        ...

    async def open(self) -> None:
        """Connect, create or migrate the schema. `Ledger.open` counts its users and calls this once."""
        ...

    async def close(self) -> None:
        """Flush pending writes and release connections."""
        ...


class RunStore(Protocol):
    """Run records, their step events and acceptances."""

    async def write_run_start(self, start: RunStart, event: StepEvent) -> None:
        """Fold `start` into the run record (see `apply_run_start`) and store its event, atomically."""
        ...

    async def write_events(self, events: Sequence[StepEvent]) -> None:
        """Store events that are not stored yet (by key), assigning `seq` in arrival order."""
        ...

    async def write_acceptances(self, acceptances: Sequence[Acceptance]) -> None:
        """Store acceptances that are not stored yet (by key)."""
        ...

    async def write_seal(self, seal: RunSeal, event: StepEvent) -> bool:
        """Fold `seal` into the run record (see `apply_seal`) and store its event, atomically.

        Return whether a run record was stored to fold into. Without one (the record was lost) the
        event is stored all the same, so the seal is kept for `reconcile` to rebuild the record from.
        """
        ...

    async def create_run(self, record: RunRecord) -> None:
        """Store `record` (and whatever lists it) unless a run record with its id is stored: a lost record rebuilt."""
        ...

    async def rewrite_events(self, run_id: str, remove_seqs: Sequence[int], events: Sequence[StepEvent]) -> None:
        """Remove the run's stored events with these `seq`s, then store `events`, each in place of any row of its key.

        An event with a non-zero `seq` keeps it (its place in the causal order); one with `seq` 0 gets a new one.
        """
        ...

    async def rewrite_acceptances(self, acceptances: Sequence[Acceptance]) -> None:
        """Store each acceptance in place of whatever is stored under its key."""
        ...

    async def update_run(self, run_id: str, fold: Callable[[RunRecord], RunRecord | None]) -> None:
        """Fold into the stored run record atomically; `None` from `fold` (or no record) changes nothing."""
        ...

    async def read_run(self, run_id: str) -> RunRecord | None:
        """Return the run record, or `None`."""
        ...

    async def read_runs(self, filter: RunFilter, *, limit: int, before: RunRecord | None) -> RunList:
        """Return up to `limit` runs matching `filter`, newest first, strictly older than `before` when given.

        A stored record that does not decode is not returned and does not count towards `limit`: it is
        reported in the result's `corrupt` (a record that cannot be read cannot be checked against
        `filter` either, so every one the listing meets is reported).
        """
        ...

    async def read_events(self, run_id: str) -> list[StepEvent]:
        """Return the run's stored events in `seq` order, with `state` left as stored (`provisional`)."""
        ...

    async def read_acceptances(self, run_id: str) -> list[Acceptance]:
        """Return the run's stored acceptances."""
        ...


class ContentStore(Protocol):
    """Content-addressed messages and blobs, and the snapshot records that name them."""

    async def write_content(self, messages: Mapping[str, bytes], blobs: Mapping[str, bytes]) -> None:
        """Store messages and blobs under their hashes; content already stored is left as is."""
        ...

    async def write_snapshot(self, snapshot: SnapshotRecord) -> None:
        """Store a snapshot record unless one with its id is stored."""
        ...

    async def read_snapshot(self, snapshot_id: str) -> SnapshotRecord | None:
        """One snapshot record, or `None`."""
        ...

    async def read_snapshots(self, run_id: str) -> list[SnapshotRecord]:
        """The run's snapshot records in the order they were stored."""
        ...

    async def read_messages(self, hashes: Sequence[str]) -> dict[str, bytes]:
        """Stored message bytes by hash; hashes not stored are absent from the result."""
        ...

    async def read_blobs(self, hashes: Sequence[str]) -> dict[str, bytes]:
        """Stored blob bytes by hash; hashes not stored are absent from the result."""
        ...

    async def read_message_hashes(self) -> list[str]:
        """The hash of every stored message."""
        ...

    async def delete_blobs(self, hashes: Sequence[str]) -> None:
        """Delete blobs (chunks and manifests) by hash; absent ones are ignored."""
        ...


class KeyedStore(Protocol):
    """Keyed records (model-call journal, once-only effects), created and replaced atomically."""

    async def read_record(self, namespace: str, key: str) -> KeyedRecord | None:
        """The keyed record with its current version, or `None`."""
        ...

    async def put_record(self, record: KeyedRecord, expected_version: str | None) -> str | None:
        """Store `record` atomically if the condition holds; return its new version, or `None` if it did not.

        `expected_version=None`: only if no record has its key (create). Otherwise: only if the stored
        record's version is `expected_version` (compare-and-swap). The stored scope never changes.
        """
        ...

    async def list_records(self, namespace: str, scope: str | None) -> list[KeyedRecord]:
        """Every record of `namespace` (of `scope` only, when given), in no particular order."""
        ...


class PayloadRefStore(Protocol):
    """Which workflows reference the payloads stored as chunks (what `agentledger gc` reads)."""

    async def write_payload_references(self, references: Sequence[PayloadReference]) -> None:
        """Store references by `key`; one already stored keeps the later of the two `stored_at`."""
        ...

    async def read_payload_references(self, manifests: Sequence[str] | None) -> list[PayloadReference]:
        """The stored references to `manifests`, or all of them for `None`."""
        ...

    async def delete_payload_references(self, references: Sequence[PayloadReference]) -> None:
        """Delete these references (by `key`); absent ones are ignored."""
        ...


class LedgerStore(StoreLifecycle, RunStore, ContentStore, KeyedStore, PayloadRefStore, Protocol):
    """Everything a `Ledger` needs of its backend: every capability above."""
