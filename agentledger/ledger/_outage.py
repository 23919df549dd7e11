"""The `warn` ledger outage policy: keep what could not be written, write it when the ledger is back.

Under `fail` (the default) a ledger write that still fails after the ledger's own retries fails the
activity attempt with a retryable `LedgerUnavailableError`: the run pauses until the ledger is back.
Under `warn` the run goes on: what could not be written (events, acceptances, snapshots, the seal)
is kept in the worker's memory, in order per run, and written as soon as the ledger takes writes
again (a background task retries; every later write of the same run waits behind it, so the causal
order holds). Before those writes land, the run is marked *degraded* with one line per write that
missed the outage, so an operator sees that its rows were written late; `reconcile` checks them
against Temporal's history, repairs what is still missing and clears the mark.

What is kept lives only in the worker's memory: a worker that dies during the outage loses it. Its
runs are not marked degraded then, but Temporal's history still holds what the ledger missed, and
`agentledger reconcile` rebuilds it.

Under `fail` the same buffer, built with `mark_degraded=False`, holds only the ends of attempts that
the outage failed: the attempt's start is in the ledger, the attempt failed in Temporal because its
end could not be written, and that end is still owed. It is written as soon as the ledger is back,
before any later write of the run on this worker, so every recorded start gets its end.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, TypeAlias

from agentledger.errors import LedgerError, LedgerUnavailableError
from agentledger.ledger._facade import Ledger
from agentledger.model._records import Acceptance, RunRecord, RunSeal, StepEvent

__all__ = ['OutageBuffer', 'OutagePolicy']

logger = logging.getLogger('agentledger.outage')

OutagePolicy: TypeAlias = Literal['fail', 'warn']
"""What a worker does when the ledger cannot be written: pause the run (`fail`) or go on and catch up (`warn`)."""

_Write = Callable[[Ledger], Awaitable[object]]


@dataclass
class _Kept:
    """One write that missed the outage: how to do it, how to say what it was, and whether the run says so yet."""

    write: _Write
    what: str
    marked: bool = False


@dataclass
class _Run:
    kept: list[_Kept] = field(default_factory=list)
    error: LedgerError | None = None
    """Why the ledger refused the oldest kept write, the last time it was tried."""


class OutageBuffer:
    """What a worker under the `warn` policy could not write yet, per run, in the order it happened."""

    def __init__(self, ledger: Ledger, *, interval_s: float = 0.5, mark_degraded: bool = True) -> None:
        self._ledger = ledger
        self._interval_s = interval_s
        self._mark = mark_degraded
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def pending(self, run_id: str | None = None) -> int:
        """How many writes are kept (for one run, or for all)."""
        if run_id is not None:
            run = self._runs.get(run_id)
            return len(run.kept) if run is not None else 0
        return sum(len(run.kept) for run in self._runs.values())

    def keep(self, run_id: str, what: str, write: _Write, error: BaseException | None = None) -> None:
        """Keep a write for later; `error` is why it failed now (`None`: it waits behind earlier ones)."""
        if error is not None and self._mark:
            logger.warning(
                'ledger unavailable (outage policy warn): run %s continues without %s for now: %s', run_id, what, error
            )
        elif error is not None:
            logger.warning('ledger unavailable: %s of run %s is kept until the ledger is back: %s', what, run_id, error)
        self._runs.setdefault(run_id, _Run()).kept.append(_Kept(write, what))
        self._start()

    async def write(self, run_id: str, what: str, write: _Write) -> None:
        """Write now, or keep it when the ledger is unavailable (or when earlier writes of the run are still kept).

        Other ledger errors (corruption, configuration) are raised: waiting would not fix them.
        """
        if self.pending(run_id):
            self.keep(run_id, what, write)
            return
        try:
            await write(self._ledger)
        except LedgerUnavailableError as error:
            self.keep(run_id, what, write, error)

    async def write_owed(self, run_id: str) -> None:
        """Write what is kept for `run_id` before a later write of the run; raise while the ledger still refuses it."""
        if not self.pending(run_id):
            return
        await self.flush()
        run = self._runs.get(run_id)
        if run is not None:
            raise LedgerUnavailableError(
                f'could not write {run.kept[0].what} of run {run_id}, kept since the ledger refused it '
                f'({len(run.kept)} write(s) waiting): {run.error}'
            )

    def events(self, events: Sequence[StepEvent]) -> _Write:
        """The write of `events`."""
        batch = list(events)
        return lambda ledger: ledger.record_events(batch)

    def acceptances(self, acceptances: Sequence[Acceptance]) -> _Write:
        """The write of `acceptances`."""
        batch = list(acceptances)
        return lambda ledger: ledger.accept(batch)

    def seal(self, seal: RunSeal) -> _Write:
        """The write of a seal."""
        return lambda ledger: ledger.seal_run(seal)

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._catch_up(), name='agentledger outage catch-up')

    async def _catch_up(self) -> None:
        while self._runs:
            await self.flush()
            if self._runs:
                await asyncio.sleep(self._interval_s)

    async def flush(self) -> bool:
        """Mark each run degraded with what it missed, then write what is kept, oldest first; whether all landed.

        The mark goes first, so a run the ledger shows as sealed already says that it was written late.
        """
        async with self._lock:
            for run_id in list(self._runs):
                run = self._runs[run_id]
                unmarked = [kept for kept in run.kept if not kept.marked]
                if unmarked and self._mark:
                    try:
                        await self._mark_degraded(run_id, [kept.what for kept in unmarked])
                    except LedgerError as error:
                        logger.info('ledger still refuses the degraded mark of run %s: %s', run_id, error)
                        continue
                    for kept in unmarked:
                        kept.marked = True
                written = 0
                while run.kept:
                    kept = run.kept[0]
                    try:
                        await kept.write(self._ledger)
                    except LedgerError as error:
                        logger.info('ledger still refuses %s of run %s: %s', kept.what, run_id, error)
                        run.error = error
                        break
                    written += 1
                    run.kept.pop(0)
                if written:
                    logger.warning(
                        'ledger back: wrote %d delayed write(s) of run %s%s',
                        written,
                        run_id,
                        ' (marked degraded)' if self._mark else '',
                    )
                if not run.kept:
                    del self._runs[run_id]
            return not self._runs

    async def _mark_degraded(self, run_id: str, missed: list[str]) -> None:
        lines = tuple(f'{what}: missed a ledger outage' for what in missed)

        def mark(run: RunRecord) -> RunRecord:
            return replace(run, degraded=(*run.degraded, *(line for line in lines if line not in run.degraded)))

        await self._ledger.update_run(run_id, mark)

    async def close(self) -> None:
        """Stop retrying in the background after one last flush; say loudly what is still not written."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._runs and not await self.flush():
            for run_id, run in self._runs.items():
                logger.error(
                    'worker stopping with %d write(s) of run %s not in the ledger (%s); '
                    '`agentledger reconcile %s` rebuilds them from Temporal history',
                    len(run.kept),
                    run_id,
                    '; '.join(kept.what for kept in run.kept),
                    run_id,
                )
