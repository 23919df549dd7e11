"""Per-run sequence counters: the `seq` of events and snapshots, advanced by compare-and-swap."""

from __future__ import annotations

import asyncio
import copy

from agentledger.errors import LedgerCorruptionError, LedgerUnavailableError
from agentledger.ledger.backends.s3._client import (
    CACHE_SIZE,
    CAS_ATTEMPTS,
    Bucket,
    Counter,
    contention_pause,
)
from agentledger.ledger.backends.s3._layout import (
    CREATE,
)

__all__ = ['Counters']


class Counters(Bucket):
    """Hands out each run's sequence numbers from its counter object, one compare-and-swap per batch of waiters."""

    async def _allocate(self, run_id: str, count: int) -> range:
        """Take `count` consecutive sequence numbers of the run.

        Allocations of one run that arrive while a compare-and-swap is in flight wait and are served
        together by the next one, so concurrent writers in one process cost one round trip, not one each.
        """
        counter = self._counters.get(run_id)
        if counter is None:
            counter = self._counters[run_id] = Counter()
        self._counters.move_to_end(run_id)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        counter.waiting.append((count, future))
        if counter.task is None:
            counter.task = asyncio.create_task(self._serve_counter(run_id, counter), name=f'agentledger seq {run_id}')
        first = await future
        self._forget_idle_counters()
        return range(first, first + count)

    async def _serve_counter(self, run_id: str, counter: Counter) -> None:
        try:
            while counter.waiting:
                batch = [(count, future) for count, future in counter.waiting if not future.done()]
                counter.waiting = []
                if not batch:
                    continue
                try:
                    first = await self._advance(run_id, counter, sum(count for count, _ in batch))
                except Exception as error:
                    # Each waiter raises its own copy, with a traceback of its own (short, and not
                    # growing with every waiter it is raised in).
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(copy.copy(error).with_traceback(None))
                    continue
                for count, future in batch:
                    if not future.done():
                        future.set_result(first)
                    first += count
        finally:
            counter.task = None

    async def _advance(self, run_id: str, counter: Counter, count: int) -> int:
        """Advance the run's counter by `count` with compare-and-swap; return the first number taken."""
        key = self._layout.run_prefix(run_id) + 'seq'
        for attempt in range(CAS_ATTEMPTS):
            if not counter.known:
                stored = await self._run(self._get, key)
                counter.value = self._decode_counter(key, stored[0]) if stored is not None else 0
                counter.etag = stored[1] if stored is not None else None
                counter.known = True
            condition = counter.etag if counter.etag is not None else CREATE
            etag = await self._run(self._put, key, str(counter.value + count).encode(), condition)
            if etag is not None:
                first = counter.value + 1
                counter.value, counter.etag = counter.value + count, etag
                return first
            counter.known = False
            await contention_pause(attempt)
        raise LedgerUnavailableError(
            f'the sequence counter {key!r} in the S3 ledger {self.url} changed under {CAS_ATTEMPTS} updates in a row'
        )

    def _forget_idle_counters(self) -> None:
        while len(self._counters) > CACHE_SIZE:
            run_id, counter = next(iter(self._counters.items()))
            if counter.task is not None or counter.waiting:
                return
            del self._counters[run_id]

    def _decode_counter(self, key: str, data: bytes) -> int:
        text = data.decode('ascii', errors='replace')
        if not text.isdigit():
            raise LedgerCorruptionError(
                f'sequence counter {key!r} in the S3 ledger {self.url} is not a number: {text[:40]!r}'
            )
        return int(text)
