"""Run records, step events and acceptances as S3 objects: folds by compare-and-swap, events created once by key."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agentledger.errors import LedgerUnavailableError
from agentledger.ledger.backends._encoding import decode_event, decode_run
from agentledger.ledger.backends.s3._client import (
    CAS_ATTEMPTS,
    Counter,
    contention_pause,
    gather_all,
    json_body,
)
from agentledger.ledger.backends.s3._counters import Counters
from agentledger.ledger.backends.s3._layout import (
    CREATE,
    RUN_ID,
    digest,
)
from agentledger.model._records import (
    Acceptance,
    RunRecord,
    RunSeal,
    RunStart,
    StepEvent,
)
from agentledger.model._rules import apply_run_start, apply_seal

__all__ = ['RunObjects']


class RunObjects(Counters):
    """The `RunStore` capability of `S3Store`, except listing runs (see `_indexes`)."""

    async def write_run_start(self, start: RunStart, event: StepEvent) -> None:
        """Fold `start` into the run record (see `apply_run_start`) and store its event, atomically."""
        async with self._operation():
            key = self._layout.run_prefix(start.run_id) + 'run.json'
            # Index entries first: a run record that exists is always listed.
            await gather_all(
                self._run(self._put, index_key, b'', CREATE) for index_key in self._layout.index_keys(start)
            )
            if await self._fold_run(key, lambda existing: apply_run_start(existing, start)):
                # This start created the run, so its counter is not written yet: skip reading it.
                self._counters.setdefault(start.run_id, Counter(known=True))
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

            await self._fold_run(key, fold)
            await self._put_events([event])
            return found

    async def create_run(self, record: RunRecord) -> None:
        """Store `record` unless a run record with its id is stored; its index entries first, as a start writes them."""
        async with self._operation():
            await gather_all(
                self._run(self._put, index_key, b'', CREATE) for index_key in self._layout.index_keys(record)
            )
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
        # Repairs only: events are otherwise immutable objects, so the cache of what was read is dropped.
        async with self._operation():
            removed = set(remove_seqs)
            if removed:
                keys = await self._list(self._layout.run_prefix(run_id) + 'events/')
                for key, data in await self._get_many(keys, immutable=True):
                    if data is not None and self._decode(key, data, decode_event).seq in removed:
                        await self._run(self._delete, key)
                        self._cache.drop(key)
            for event in events:
                seq = event.seq or (await self._allocate(event.run_id, 1))[0]
                body = event.with_seq(seq).to_json()
                del body['state']
                key = f'{self._layout.run_prefix(event.run_id)}events/{digest(event.key)}.json'
                await self._run(self._put, key, json_body(body), None)
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

        Returns whether this call created the record.
        """
        for attempt in range(CAS_ATTEMPTS):
            stored = await self._run(self._get, key)
            existing = self._decode(key, stored[0], decode_run) if stored is not None else None
            updated = fold(existing)
            if updated is None:
                return False
            condition = stored[1] if stored is not None else CREATE
            if await self._run(self._put, key, json_body(updated.to_json()), condition) is not None:
                return stored is None
            await contention_pause(attempt)
        raise LedgerUnavailableError(
            f'the run record {key!r} in the S3 ledger {self.url} changed under {CAS_ATTEMPTS} updates in a row'
        )

    async def _put_events(self, events: Sequence[StepEvent]) -> None:
        by_run: dict[str, dict[str, StepEvent]] = {}
        for event in events:
            by_run.setdefault(event.run_id, {}).setdefault(event.key, event)
        if len(by_run) == 1:
            [(run_id, unique)] = by_run.items()
            await self._put_run_events(run_id, list(unique.values()))
        else:
            await gather_all(self._put_run_events(run_id, list(unique.values())) for run_id, unique in by_run.items())

    async def _put_run_events(self, run_id: str, events: list[StepEvent]) -> None:
        prefix = self._layout.run_prefix(run_id) + 'events/'
        seqs = await self._allocate(run_id, len(events))
        # In order, one after another: if one fails, none after it was written, so the retry (which
        # takes new numbers) cannot put a later event of the batch before an earlier one.
        for event, seq in zip(events, seqs, strict=True):
            body = event.with_seq(seq).to_json()
            del body['state']
            await self._run(self._put, f'{prefix}{digest(event.key)}.json', json_body(body), CREATE)

    async def read_run(self, run_id: str) -> RunRecord | None:
        """Return the run record, or `None`."""
        if not RUN_ID.fullmatch(run_id):
            return None
        async with self._operation():
            key = self._layout.run_prefix(run_id) + 'run.json'
            stored = await self._run(self._get, key)
            return self._decode(key, stored[0], decode_run, run_id=run_id) if stored is not None else None

    async def read_events(self, run_id: str) -> list[StepEvent]:
        """Return the run's stored events in `seq` order, with `state` left as stored (`provisional`)."""
        if not RUN_ID.fullmatch(run_id):
            return []
        async with self._operation():
            objects = await self._get_many(
                await self._list(self._layout.run_prefix(run_id) + 'events/'), immutable=True
            )
            events = [self._decode(key, data, decode_event) for key, data in objects if data is not None]
            return sorted(events, key=lambda event: event.seq)

    async def read_acceptances(self, run_id: str) -> list[Acceptance]:
        """Return the run's stored acceptances."""
        if not RUN_ID.fullmatch(run_id):
            return []
        async with self._operation():
            objects = await self._get_many(
                await self._list(self._layout.run_prefix(run_id) + 'acceptances/'), immutable=True
            )
            return [self._decode(key, data, Acceptance.from_json) for key, data in objects if data is not None]
