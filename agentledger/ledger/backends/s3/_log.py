"""Each run's log: numbered objects created in order, one per batch of entries; it gives events and snapshots a `seq`.

A log object is created with `If-None-Match: *` at the slot after the last one its writer knows of.
Creating it is the whole write: the number it lands at is the order, so an event costs one request
in steady state instead of a counter's compare-and-swap and then the event. A writer whose knowledge
is stale meets the slots written since (412) and moves past them; a slot is only tried once the one
before it is known to exist, so slots fill without gaps and a write that returned is always below
one that began after it. Writes of one run in one process go one slot at a time, and whatever waits
meanwhile (concurrent `record_events` calls, a snapshot's marker) shares the next slot.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from agentledger.errors import LedgerCorruptionError, LedgerUnavailableError
from agentledger.ledger.backends._encoding import decode
from agentledger.ledger.backends.s3._client import CACHE_SIZE, CAS_ATTEMPTS, Bucket, LogCursor, json_body
from agentledger.ledger.backends.s3._layout import CREATE, log_slot, slot_key

__all__ = ['SLOT_ENTRIES', 'RunLog']

SLOT_ENTRIES = 1024
"""Entries one log object holds at most; an entry's `seq` is `slot * SLOT_ENTRIES + position`."""
_MISSES_BEFORE_LISTING = 4
"""Slots found taken in a row before a writer lists the log to jump to its end."""

T = TypeVar('T')
Entry = dict[str, Any]


class RunLog(Bucket):
    """Appends entries to runs' logs and reads them back with their `seq`."""

    async def _append(self, run_id: str, entries: Sequence[Entry]) -> int:
        """Append `entries` in order; return the `seq` of the first (the rest follow it one by one)."""
        if len(entries) > SLOT_ENTRIES:
            first = await self._append(run_id, entries[:SLOT_ENTRIES])
            await self._append(run_id, entries[SLOT_ENTRIES:])
            return first
        cursor = self._logs.get(run_id)
        if cursor is None:
            cursor = self._logs[run_id] = LogCursor()
        self._logs.move_to_end(run_id)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        cursor.waiting.append((list(entries), future))
        if cursor.task is None:
            cursor.task = asyncio.create_task(self._serve_log(run_id, cursor), name=f'agentledger log {run_id}')
        first = await future
        self._forget_idle_logs()
        return first

    def _created_log(self, run_id: str) -> None:
        """Note that this process created the run: its log is empty, so the first append need not look for its end."""
        self._logs.setdefault(run_id, LogCursor(end=0))

    async def _serve_log(self, run_id: str, cursor: LogCursor) -> None:
        try:
            while cursor.waiting:
                batch: list[tuple[list[Entry], asyncio.Future[int]]] = []
                size = 0
                while cursor.waiting and size + len(cursor.waiting[0][0]) <= SLOT_ENTRIES:
                    entries, future = cursor.waiting.pop(0)
                    if not future.done():
                        batch.append((entries, future))
                        size += len(entries)
                if not batch:
                    continue
                body = [entry for entries, _ in batch for entry in entries]
                try:
                    slot = await self._write_slot(run_id, cursor, body)
                except Exception as error:
                    # Each waiter raises its own copy, with a traceback of its own.
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(copy.copy(error).with_traceback(None))
                    continue
                first = slot * SLOT_ENTRIES
                for entries, future in batch:
                    if not future.done():
                        future.set_result(first)
                    first += len(entries)
        finally:
            cursor.task = None

    async def _write_slot(self, run_id: str, cursor: LogCursor, entries: list[Entry]) -> int:
        """Create the next free slot of the run's log holding `entries`; return its number."""
        prefix = self._layout.run_prefix(run_id)
        body = json_body({'entries': entries})
        if cursor.end is None:
            cursor.end = await self._log_end(run_id, None)
        for attempt in range(1, CAS_ATTEMPTS + 1):
            slot = cursor.end + 1
            key = slot_key(prefix, slot)
            created = await self._run(self._put, key, body, CREATE)
            # Taken or not, the slot exists now: the next write goes past it.
            cursor.end = slot
            if created is not None:
                self._cache.put(key, body)
                return slot
            if attempt % _MISSES_BEFORE_LISTING == 0:
                cursor.end = await self._log_end(run_id, slot)
        raise LedgerUnavailableError(
            f'the log of run {run_id!r} in the S3 ledger {self.url} grew under {CAS_ATTEMPTS} writes in a row'
        )

    async def _log_end(self, run_id: str, after: int | None) -> int:
        """The highest slot of the run's log (listing past slot `after` when given); 0 for an empty log.

        A run written before the log existed numbered its events with a counter object: an empty
        log then starts past the counter, so its `seq`s stay above the ones already given.
        """
        prefix = self._layout.run_prefix(run_id)
        end = after or 0
        token: str | None = None
        start_after = slot_key(prefix, after) if after is not None else None
        while True:
            keys, token = await self._run(self._list_page, prefix + 'log/', start_after, token, 1000)
            end = max([end, *(slot for key in keys if (slot := log_slot(prefix, key)) is not None)])
            if token is None:
                break
        if end == 0 and after is None:
            counter = await self._run(self._get, prefix + 'seq')
            if counter is not None:
                text = counter[0].decode('ascii', errors='replace')
                if not text.isdigit():
                    key = prefix + 'seq'
                    raise LedgerCorruptionError(
                        f'sequence counter {key!r} in the S3 ledger {self.url} is not a number: {text[:40]!r}'
                    )
                end = int(text) // SLOT_ENTRIES
        return end

    def _decode_entry(self, key: str, build: Callable[[dict[str, Any]], T], value: dict[str, Any]) -> T:
        """Decode one entry of the log object `key`; one that does not decode raises `LedgerCorruptionError`."""
        return decode(f'an entry of object {key!r} in the S3 ledger {self.url}', lambda: build(value))

    def _forget_idle_logs(self) -> None:
        while len(self._logs) > CACHE_SIZE:
            run_id, cursor = next(iter(self._logs.items()))
            if cursor.task is not None or cursor.waiting:
                return
            del self._logs[run_id]

    async def _read_log(self, run_id: str) -> list[tuple[int, str, Entry]]:
        """Every entry of the run's log as `(seq, key of its object, entry)`, in `seq` order."""
        prefix = self._layout.run_prefix(run_id)
        keys = [key for key in await self._list(prefix + 'log/') if log_slot(prefix, key) is not None]
        objects = await self._get_many(keys, immutable=True)
        found: list[tuple[int, str, Entry]] = []
        for key, data in objects:
            slot = log_slot(prefix, key)
            if data is None or slot is None:
                continue
            for position, entry in _positions(self._decode(key, data, _entries_of)):
                found.append((slot * SLOT_ENTRIES + position, key, entry))
        return found


def _entries_of(value: dict[str, Any]) -> list[Entry | None]:
    entries = value['entries']
    if not isinstance(entries, list) or not all(entry is None or isinstance(entry, dict) for entry in entries):
        raise ValueError(f'entries is not a list of JSON objects: {str(entries)[:80]}')
    if len(entries) > SLOT_ENTRIES:
        raise ValueError(f'a log object holds {len(entries)} entries, more than {SLOT_ENTRIES}')
    return entries


def _positions(entries: list[Entry | None]) -> Iterator[tuple[int, Entry]]:
    for position, entry in enumerate(entries):
        if entry is not None:
            yield position, entry
