"""`MemoryStore`, the reference implementation of the store contract, and `MemoryLedger` over it.

An in-process ledger for unit tests and examples. Nothing survives the process.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping, Sequence

from agentledger.ledger._facade import Ledger
from agentledger.ledger._store import RunFilter, RunList
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

__all__ = ['MemoryLedger', 'MemoryStore']


class MemoryStore:
    """Every record in dictionaries of this process: the reference implementation of `LedgerStore`.

    Each write takes one lock, so folds and conditional writes are atomic as the contract asks.
    """

    def __init__(self) -> None:
        """An empty store."""
        self.url = 'memory://'
        self._runs: dict[str, RunRecord] = {}
        self._events: dict[str, list[StepEvent]] = {}
        self._event_keys: set[str] = set()
        self._acceptances: dict[str, dict[str, Acceptance]] = {}
        self._seq = 0
        self._lock = asyncio.Lock()
        self._messages: dict[str, bytes] = {}
        self._blobs: dict[str, bytes] = {}
        self._snapshots: dict[str, SnapshotRecord] = {}
        self._run_snapshots: dict[str, list[str]] = {}
        self._records: dict[tuple[str, str], KeyedRecord] = {}
        self._versions = 0
        self._payload_references: dict[str, PayloadReference] = {}

    async def open(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release; the contents stay readable."""

    def _append(self, events: Sequence[StepEvent]) -> None:
        for event in events:
            if event.key in self._event_keys:
                continue
            self._seq += 1
            self._event_keys.add(event.key)
            self._events.setdefault(event.run_id, []).append(event.with_seq(self._seq).with_state('provisional'))

    async def write_run_start(self, start: RunStart, event: StepEvent) -> None:
        """Fold `start` into the run record (see `apply_run_start`) and store its event, atomically."""
        async with self._lock:
            updated = apply_run_start(self._runs.get(start.run_id), start)
            if updated is not None:
                self._runs[start.run_id] = updated
            self._append([event])

    async def write_events(self, events: Sequence[StepEvent]) -> None:
        """Store events that are not stored yet (by key), assigning `seq` in arrival order."""
        async with self._lock:
            self._append(events)

    async def write_acceptances(self, acceptances: Sequence[Acceptance]) -> None:
        """Store acceptances that are not stored yet (by key)."""
        async with self._lock:
            for acceptance in acceptances:
                self._acceptances.setdefault(acceptance.run_id, {}).setdefault(acceptance.key, acceptance)

    async def write_seal(self, seal: RunSeal, event: StepEvent) -> bool:
        """Fold `seal` into the run record (see `apply_seal`) and store its event, atomically; whether a record was."""
        async with self._lock:
            existing = self._runs.get(seal.run_id)
            if existing is not None:
                updated = apply_seal(existing, seal)
                if updated is not None:
                    self._runs[seal.run_id] = updated
            self._append([event])
            return existing is not None

    async def create_run(self, record: RunRecord) -> None:
        """Store `record` unless a run record with its id is stored."""
        async with self._lock:
            self._runs.setdefault(record.run_id, record)

    async def rewrite_events(self, run_id: str, remove_seqs: Sequence[int], events: Sequence[StepEvent]) -> None:
        """Remove the run's events with these `seq`s, then store `events`, each in place of any row of its key."""
        async with self._lock:
            keys = {event.key for event in events}
            removed = set(remove_seqs)
            stored = self._events.get(run_id, [])
            self._event_keys.difference_update(e.key for e in stored if e.seq in removed or e.key in keys)
            self._events[run_id] = [e for e in stored if e.seq not in removed and e.key not in keys]
            for event in events:
                if event.seq == 0:
                    self._append([event])
                    continue
                self._event_keys.add(event.key)
                stored = self._events.setdefault(event.run_id, [])
                stored.append(event.with_state('provisional'))
                stored.sort(key=lambda e: e.seq)

    async def rewrite_acceptances(self, acceptances: Sequence[Acceptance]) -> None:
        """Store each acceptance in place of whatever is stored under its key."""
        async with self._lock:
            for acceptance in acceptances:
                self._acceptances.setdefault(acceptance.run_id, {})[acceptance.key] = acceptance

    async def update_run(self, run_id: str, fold: Callable[[RunRecord], RunRecord | None]) -> None:
        """Fold into the stored run record atomically; `None` from `fold` (or no record) changes nothing."""
        async with self._lock:
            existing = self._runs.get(run_id)
            updated = fold(existing) if existing is not None else None
            if updated is not None:
                self._runs[run_id] = updated

    async def read_run(self, run_id: str) -> RunRecord | None:
        """Return the run record, or `None`."""
        return self._runs.get(run_id)

    async def read_runs(self, filter: RunFilter, *, limit: int, before: RunRecord | None) -> RunList:
        """Return up to `limit` runs matching `filter`, newest first, strictly older than `before` when given.

        Records are held as objects, so none is ever corrupt.
        """
        ordered = sorted(self._runs.values(), key=lambda r: (r.started_at, r.run_id), reverse=True)
        if before is not None:
            ordered = [r for r in ordered if (r.started_at, r.run_id) < (before.started_at, before.run_id)]
        return RunList([r for r in ordered if filter.matches(r)][:limit])

    async def read_events(self, run_id: str) -> list[StepEvent]:
        """Return the run's stored events in `seq` order, with `state` left as stored (`provisional`)."""
        return list(self._events.get(run_id, []))

    async def read_acceptances(self, run_id: str) -> list[Acceptance]:
        """Return the run's stored acceptances."""
        return list(self._acceptances.get(run_id, {}).values())

    async def write_content(self, messages: Mapping[str, bytes], blobs: Mapping[str, bytes]) -> None:
        """Store messages and blobs under their hashes; content already stored is left as is."""
        for digest, data in messages.items():
            self._messages.setdefault(digest, data)
        for digest, data in blobs.items():
            self._blobs.setdefault(digest, data)

    async def write_snapshot(self, snapshot: SnapshotRecord) -> None:
        """Store a snapshot record unless one with its id is stored."""
        async with self._lock:
            if snapshot.snapshot_id not in self._snapshots:
                self._snapshots[snapshot.snapshot_id] = snapshot
                self._run_snapshots.setdefault(snapshot.run_id, []).append(snapshot.snapshot_id)

    async def read_snapshot(self, snapshot_id: str) -> SnapshotRecord | None:
        """One snapshot record, or `None`."""
        return self._snapshots.get(snapshot_id)

    async def read_snapshots(self, run_id: str) -> list[SnapshotRecord]:
        """The run's snapshot records in the order they were stored."""
        return [self._snapshots[i] for i in self._run_snapshots.get(run_id, [])]

    async def read_messages(self, hashes: Sequence[str]) -> dict[str, bytes]:
        """Stored message bytes by hash; hashes not stored are absent from the result."""
        return {digest: self._messages[digest] for digest in hashes if digest in self._messages}

    async def read_blobs(self, hashes: Sequence[str]) -> dict[str, bytes]:
        """Stored blob bytes by hash; hashes not stored are absent from the result."""
        return {digest: self._blobs[digest] for digest in hashes if digest in self._blobs}

    async def read_record(self, namespace: str, key: str) -> KeyedRecord | None:
        """The keyed record with its current version, or `None`."""
        return self._records.get((namespace, key))

    async def put_record(self, record: KeyedRecord, expected_version: str | None) -> str | None:
        """Store `record` atomically if the condition holds; return its new version, or `None` if it did not."""
        async with self._lock:
            stored = self._records.get((record.namespace, record.key))
            if (stored is None) != (expected_version is None):
                return None
            if stored is not None and stored.version != expected_version:
                return None
            self._versions += 1
            version = str(self._versions)
            scope = stored.scope if stored is not None else record.scope
            self._records[(record.namespace, record.key)] = KeyedRecord(
                record.namespace, record.key, scope, copy.deepcopy(record.value), version
            )
            return version

    async def list_records(self, namespace: str, scope: str | None) -> list[KeyedRecord]:
        """Every record of `namespace` (of `scope` only, when given), in no particular order."""
        return [r for (ns, _), r in self._records.items() if ns == namespace and (scope is None or r.scope == scope)]

    async def write_payload_references(self, references: Sequence[PayloadReference]) -> None:
        """Store references by `key`; one already stored keeps the later of the two `stored_at`."""
        for reference in references:
            stored = self._payload_references.get(reference.key)
            if stored is None or stored.stored_at < reference.stored_at:
                self._payload_references[reference.key] = reference

    async def read_payload_references(self, manifests: Sequence[str] | None) -> list[PayloadReference]:
        """The stored references to `manifests`, or all of them for `None`."""
        wanted = None if manifests is None else set(manifests)
        return [r for r in self._payload_references.values() if wanted is None or r.manifest in wanted]

    async def delete_payload_references(self, references: Sequence[PayloadReference]) -> None:
        """Delete these references (by `key`); absent ones are ignored."""
        for reference in references:
            self._payload_references.pop(reference.key, None)

    async def delete_blobs(self, hashes: Sequence[str]) -> None:
        """Delete blobs (chunks and manifests) by hash; absent ones are ignored."""
        for digest in hashes:
            self._blobs.pop(digest, None)

    async def read_message_hashes(self) -> list[str]:
        """The hash of every stored message."""
        return list(self._messages)


class MemoryLedger(Ledger):
    """A ledger held in memory, with the same semantics as the persistent backends.

    Useful for unit tests and for a worker whose ledger need not outlive it; never the only proof
    that something works with a real ledger.
    """

    store: MemoryStore

    def __init__(self, *, read_only: bool = False) -> None:
        """An empty ledger; `open()` connects to nothing. `read_only` refuses every write (for `memory://?mode=ro`)."""
        super().__init__(MemoryStore(), read_only=read_only)
