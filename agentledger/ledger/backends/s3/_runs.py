"""Run records, step events and acceptances as S3 objects: records folded by compare-and-swap, events logged."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from agentledger.errors import LedgerUnavailableError
from agentledger.ledger.backends._encoding import decode_event, decode_run
from agentledger.ledger.backends.s3._client import (
    CACHE_SIZE,
    CAS_ATTEMPTS,
    contention_pause,
    gather_all,
    json_body,
)
from agentledger.ledger.backends.s3._layout import (
    CREATE,
    RUN_ID,
    digest,
    slot_key,
)
from agentledger.ledger.backends.s3._log import SLOT_ENTRIES, RunLog
from agentledger.model._records import (
    Acceptance,
    RunRecord,
    RunSeal,
    RunStart,
    StepEvent,
)
from agentledger.model._rules import apply_run_start, apply_seal

__all__ = ['RunObjects']


def _logged_event(entry: dict[str, Any], *, seq: int) -> StepEvent:
    """The event a log entry holds, at its place `seq`; raises `ValueError` for an entry that is not one."""
    body = entry['event']
    if not isinstance(body, dict):
        raise ValueError(f'the event is not a JSON object: {str(body)[:80]}')
    return decode_event({**body, 'seq': seq})


def _event_entry(event: StepEvent) -> dict[str, Any]:
    """A log entry holding `event`: its stored form without `seq` (its place in the log) and `state` (derived)."""
    body = event.to_json()
    del body['seq'], body['state']
    return {'event': body}


class RunObjects(RunLog):
    """The `RunStore` capability of `S3Store`, except listing runs (see `_indexes`)."""

    async def write_run_start(self, start: RunStart, event: StepEvent) -> None:
        """Fold `start` into the run record (see `apply_run_start`) and store its event, atomically."""
        async with self._operation():
            key = self._layout.run_prefix(start.run_id) + 'run.json'
            # Index entries first: a run record that exists is always listed.
            await self._put_index_entries(self._layout.index_keys(start))
            if await self._fold_run(key, lambda existing: apply_run_start(existing, start)):
                # This start created the run, so its log is empty: the event need not look for its end.
                self._created_log(start.run_id)
            await self._put_events([event])

    async def write_seal(self, seal: RunSeal, event: StepEvent) -> bool:
        """Fold `seal` into the run record (see `apply_seal`) and store its event, atomically; whether a record was."""
        async with self._operation():
            key = self._layout.run_prefix(seal.run_id) + 'run.json'
            found = False

            def fold(existing: RunRecord | None) -> RunRecord | None:
                nonlocal found
                found = existing is not None
                return apply_seal(existing, seal) if existing is not None else None

            # The event holds the whole seal, so it may land before the record's fold (or without it).
            await gather_all([self._fold_run(key, fold), self._put_events([event])])
            return found

    async def create_run(self, record: RunRecord) -> None:
        """Store `record` unless a run record with its id is stored; its index entries first, as a start writes them."""
        async with self._operation():
            await self._put_index_entries(self._layout.index_keys(record))
            key = self._layout.run_prefix(record.run_id) + 'run.json'
            await self._fold_run(key, lambda existing: record if existing is None else None)

    async def write_events(self, events: Sequence[StepEvent]) -> None:
        """Store events that are not stored yet (by key), assigning `seq` in arrival order."""
        async with self._operation():
            await self._put_events(events)

    async def write_acceptances(self, acceptances: Sequence[Acceptance]) -> None:
        """Store acceptances that are not stored yet (by key)."""
        async with self._operation():
            unique = {(a.run_id, a.key): a for a in reversed(acceptances)}
            await gather_all(
                self._run(
                    self._put,
                    f'{self._layout.run_prefix(run_id)}acceptances/{digest(key)}.json',
                    json_body(acceptance.to_json()),
                    CREATE,
                )
                for (run_id, key), acceptance in unique.items()
            )

    async def rewrite_events(self, run_id: str, remove_seqs: Sequence[int], events: Sequence[StepEvent]) -> None:
        """Remove the run's events with these `seq`s, then store `events`, each in place of any row of its key."""
        # Repairs only (of finished runs): log objects are otherwise never replaced once created.
        async with self._operation():
            removed, replaced = set(remove_seqs), {event.key for event in events}
            if self._began_with_layout_1:
                await self._remove_legacy_events(run_id, removed, replaced)
            prefix = self._layout.run_prefix(run_id)
            slots: dict[str, list[dict[str, Any] | None]] = {}
            changed: set[str] = set()
            for seq, key, entry in await self._read_log(run_id):
                entries = slots.get(key)
                if entries is None:
                    entries = slots[key] = [None] * SLOT_ENTRIES
                entries[seq % SLOT_ENTRIES] = entry
                if 'event' not in entry:
                    continue
                stored = self._decode_entry(key, partial(_logged_event, seq=seq), entry)
                if seq in removed or stored.key in replaced:
                    entries[seq % SLOT_ENTRIES] = None
                    changed.add(key)
            for event in events:
                if event.seq:
                    key = slot_key(prefix, event.seq // SLOT_ENTRIES)
                    entries = slots.setdefault(key, [None] * SLOT_ENTRIES)
                    entries[event.seq % SLOT_ENTRIES] = _event_entry(event)
                    changed.add(key)
            for key in sorted(changed):
                entries = slots[key]
                while entries and entries[-1] is None:
                    entries.pop()
                await self._run(self._put, key, json_body({'entries': entries}), None)
                self._cache.drop(key)
            new = [event for event in events if not event.seq]
            if new:
                await self._append(run_id, [_event_entry(event) for event in new])

    async def _remove_legacy_events(self, run_id: str, removed: set[int], replaced: set[str]) -> None:
        """Delete the run's one-object-per-event objects (layout version 1) with these `seq`s or keys."""
        keys = await self._list(self._layout.run_prefix(run_id) + 'events/')
        for key, data in await self._get_many(keys, immutable=True):
            if data is None:
                continue
            event = self._decode(key, data, decode_event)
            if event.seq in removed or event.key in replaced:
                await self._run(self._delete, key)
                self._cache.drop(key)

    async def rewrite_acceptances(self, acceptances: Sequence[Acceptance]) -> None:
        """Store each acceptance in place of whatever is stored under its key."""
        async with self._operation():
            for acceptance in acceptances:
                key = f'{self._layout.run_prefix(acceptance.run_id)}acceptances/{digest(acceptance.key)}.json'
                await self._run(self._put, key, json_body(acceptance.to_json()), None)
                self._cache.drop(key)

    async def update_run(self, run_id: str, fold: Callable[[RunRecord], RunRecord | None]) -> None:
        """Fold into the stored run record atomically; `None` from `fold` (or no record) changes nothing."""
        async with self._operation():
            key = self._layout.run_prefix(run_id) + 'run.json'
            await self._fold_run(key, lambda existing: fold(existing) if existing is not None else None)

    async def _fold_run(self, key: str, fold: Callable[[RunRecord | None], RunRecord | None]) -> bool:
        """Compare-and-swap `fold` into the run record at `key` until it lands or changes nothing.

        Returns whether this call created the record. A fold that creates is tried first without
        reading: a new run's record costs one request. The status index entries of the new record
        are written before it (a run is always listed under the status it has), and those of the
        status it left are removed once it landed.
        """
        created = fold(None)
        if created is not None:
            await self._put_index_entries(self._layout.status_index_keys(created))
            etag = await self._run(self._put, key, json_body(created.to_json()), CREATE)
            if etag is not None:
                self._remember_record(key, created, etag)
                return True
        # The record as this process last wrote it, if it did: a fold with it needs no GET unless
        # another process wrote since (then the If-Match fails and the record is read).
        known = self._records.pop(key, None)
        existing: RunRecord | None
        for attempt in range(CAS_ATTEMPTS):
            if known is not None:
                existing, condition = known
                known = None
            else:
                stored = await self._run(self._get, key)
                existing = self._decode(key, stored[0], decode_run) if stored is not None else None
                condition = stored[1] if stored is not None else CREATE
            updated = fold(existing)
            if updated is None:
                return False
            had = set(self._layout.status_index_keys(existing)) if existing is not None else set()
            entries = self._layout.status_index_keys(updated)
            left = had - set(entries)
            await self._put_index_entries([entry for entry in entries if entry not in had])
            etag = await self._run(self._put, key, json_body(updated.to_json()), condition)
            if etag is not None:
                self._remember_record(key, updated, etag)
                # A stale entry left behind (this process stopped first) is skipped by every listing.
                await gather_all(self._run(self._delete, entry) for entry in sorted(left))
                return existing is None
            await contention_pause(attempt)
        raise LedgerUnavailableError(
            f'the run record {key!r} in the S3 ledger {self.url} changed under {CAS_ATTEMPTS} updates in a row'
        )

    def _remember_record(self, key: str, record: RunRecord, etag: str) -> None:
        self._records[key] = (record, etag)
        self._records.move_to_end(key)
        while len(self._records) > CACHE_SIZE:
            self._records.popitem(last=False)

    async def _put_index_entries(self, keys: Sequence[str]) -> None:
        await gather_all(self._run(self._put, index_key, b'', CREATE) for index_key in keys)

    async def _put_events(self, events: Sequence[StepEvent]) -> None:
        by_run: dict[str, dict[str, StepEvent]] = {}
        for event in events:
            by_run.setdefault(event.run_id, {}).setdefault(event.key, event)
        await gather_all(
            self._append(run_id, [_event_entry(event) for event in unique.values()])
            for run_id, unique in by_run.items()
        )

    async def read_run(self, run_id: str) -> RunRecord | None:
        """Return the run record, or `None`."""
        if not RUN_ID.fullmatch(run_id):
            return None
        async with self._operation():
            key = self._layout.run_prefix(run_id) + 'run.json'
            stored = await self._run(self._get, key)
            return self._decode(key, stored[0], decode_run, run_id=run_id) if stored is not None else None

    async def read_events(self, run_id: str) -> list[StepEvent]:
        """Return the run's stored events in `seq` order, with `state` left as stored (`provisional`).

        An event stored twice (a write retried after an ambiguous failure lands in a later slot) is
        returned once, at its first place: the first write of a key wins, as on every backend.
        """
        if not RUN_ID.fullmatch(run_id):
            return []
        async with self._operation():
            events = [
                self._decode_entry(key, partial(_logged_event, seq=seq), entry)
                for seq, key, entry in await self._read_log(run_id)
                if 'event' in entry
            ]
            if self._began_with_layout_1:
                objects = await self._get_many(
                    await self._list(self._layout.run_prefix(run_id) + 'events/'), immutable=True
                )
                events += [self._decode(key, data, decode_event) for key, data in objects if data is not None]
            first: dict[str, StepEvent] = {}
            for event in sorted(events, key=lambda event: event.seq):
                first.setdefault(event.key, event)
            return list(first.values())

    async def read_acceptances(self, run_id: str) -> list[Acceptance]:
        """Return the run's stored acceptances."""
        if not RUN_ID.fullmatch(run_id):
            return []
        async with self._operation():
            objects = await self._get_many(
                await self._list(self._layout.run_prefix(run_id) + 'acceptances/'), immutable=True
            )
            return [self._decode(key, data, Acceptance.from_json) for key, data in objects if data is not None]
