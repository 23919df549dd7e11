"""Listing runs newest first from the index entries written at each run's start."""

from __future__ import annotations

from agentledger.errors import LedgerCorruptionError
from agentledger.ledger._store import RunFilter, RunList
from agentledger.ledger.backends._encoding import decode_run, epoch_us
from agentledger.ledger.backends.s3._client import (
    Bucket,
)
from agentledger.ledger.backends.s3._layout import (
    index_time,
    parse_index_entry,
)
from agentledger.model._records import (
    RunRecord,
)

__all__ = ['RunIndex']


class RunIndex(Bucket):
    """`read_runs`: pages through the narrowest index, reading only the run records a page needs."""

    async def read_runs(self, filter: RunFilter, *, limit: int, before: RunRecord | None) -> RunList:
        """Return up to `limit` runs matching `filter`, newest first, strictly older than `before` when given.

        A listed record that does not decode is reported in the result's `corrupt`, and the listing goes on past it.
        """
        async with self._operation():
            index = self._layout.index_for(filter, statuses_indexed=not self._began_with_layout_1)
            cursor = (epoch_us(before.started_at), before.run_id) if before is not None else None
            # Every key of the cursor's start time sorts after this one, so listing starts at its group.
            start_after = index + index_time(cursor[0]) if cursor is not None else None
            found: list[RunRecord] = []
            corrupt: list[LedgerCorruptionError] = []
            listed: list[tuple[int, str]] = []
            token: str | None = None
            # One key past the page tells its last start time is complete; the cursor's own key is listed too.
            page_size = min(1000, limit + 1 + (cursor is not None))
            while True:
                keys, token = await self._run(self._list_page, index, start_after, token, page_size)
                listed += [entry for key in keys if (entry := parse_index_entry(key[len(index) :])) is not None]
                page_size = min(1000, page_size * 2)
                # Ties on the start time are ordered by run id, newest-first like the rest: a listed
                # start time is complete only once the listing moved past it.
                if token is None:
                    ready, listed = listed, []
                else:
                    last = listed[-1][0] if listed else None
                    ready = [entry for entry in listed if entry[0] != last]
                    listed = [entry for entry in listed if entry[0] == last]
                ready.sort(reverse=True)
                if cursor is not None:
                    ready = [entry for entry in ready if entry < cursor]
                while ready:
                    size = max(limit - len(found), 8)
                    chunk, ready = ready[:size], ready[size:]
                    records = await self._get_many(
                        [self._layout.run_prefix(run_id) + 'run.json' for _, run_id in chunk]
                    )
                    for (started_us, run_id), (key, data) in zip(chunk, records, strict=True):
                        if data is None:
                            continue  # indexed before its record was written, which never happened
                        try:
                            record = self._decode(key, data, decode_run, run_id=run_id)
                        except LedgerCorruptionError as error:
                            corrupt.append(error)
                            continue
                        if epoch_us(record.started_at) == started_us and filter.matches(record):
                            found.append(record)
                            if len(found) == limit:
                                return RunList(found, corrupt)
                if token is None:
                    return RunList(found, corrupt)
