"""The ledger's own activities: record a run's start (resolving its seed), park and resume it, seal it. Worker I/O."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

from temporalio import activity

from agentledger.activities._failures import ledger_failure
from agentledger.activities._history import HistoryResolver
from agentledger.errors import (
    LedgerConfigError,
    LedgerCorruptionError,
    LedgerError,
    LedgerUnavailableError,
    RunNotFoundError,
    SnapshotNotFoundError,
)
from agentledger.ledger._facade import Ledger
from agentledger.ledger._lineage import resolve_seed
from agentledger.ledger._outage import OutageBuffer
from agentledger.model._records import REPEAT_ACTIVITY_ID, ForkRef, RunStart, StepEvent, Usage
from agentledger.workflows._types import (
    APPROVAL_WAIT_ACTIVITY,
    PARK_RUN_ACTIVITY,
    RECORD_EVENTS_ACTIVITY,
    RESUME_RUN_ACTIVITY,
    RUN_STARTED_ACTIVITY,
    SEAL_RUN_ACTIVITY,
    ApprovalWaitInput,
    ParkInput,
    RecordEventsInput,
    ResumeInput,
    ResumePoint,
    ResumeSeed,
    RunStartInput,
    RunStartResult,
    SealInput,
)

__all__ = ['LedgerActivities']

logger = logging.getLogger('agentledger.ledger')

_RESTARTABLE = ('failed', 'running')
"""Statuses of an earlier run of the same workflow id that a new start resumes.

`running` there means the earlier execution closed without sealing (terminated, timed out, or its
worker died for good): Temporal allows one open execution per workflow id, so it cannot be live.
"""


class LedgerActivities:
    """The ledger's own activities (run_started, park_run, resume_run, approval_wait, record_events, seal_run)."""

    def __init__(
        self,
        ledger: Ledger,
        histories: HistoryResolver | None = None,
        outage: OutageBuffer | None = None,
        *,
        owed: OutageBuffer | None = None,
        search_attributes: Callable[[str], Collection[str]] | None = None,
    ) -> None:
        self._ledger = ledger
        self._histories = histories or HistoryResolver(ledger)
        self._outage = outage
        self._owed = owed
        # Namespace -> the agentledger search attributes it has; none are set without it.
        self._search_attributes = search_attributes

    @property
    def activities(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [
            self.run_started,
            self.park_run,
            self.resume_run,
            self.approval_wait,
            self.record_events,
            self.seal_run,
        ]

    async def _restart_seed(self, input: RunStartInput) -> ForkRef | None:
        start = input.start
        earlier = [
            run
            for run in await self._ledger.runs(workflow_id=start.workflow_id, limit=10)
            if run.run_id != start.run_id
        ]
        if not earlier or earlier[0].status not in _RESTARTABLE:
            return None
        try:
            latest = await self._ledger.latest_snapshot(earlier[0].run_id)
        except SnapshotNotFoundError:
            return None
        return ForkRef(run_id=earlier[0].run_id, snapshot_id=latest.snapshot_id, reason='restart')

    @activity.defn(name=RUN_STARTED_ACTIVITY)
    async def run_started(self, input: RunStartInput) -> RunStartResult:
        """Resolve the run's seed (continue, fork, or restart of a failed run), record the start, load the seed.

        The result also names the search attributes the worker found in the namespace: the run sets those.
        """
        result = await self._started(input)
        if self._search_attributes is not None:
            result.search_attributes = sorted(self._search_attributes(activity.info().namespace))
        return result

    async def _started(self, input: RunStartInput) -> RunStartResult:
        with _retryable_outage():
            if input.resume is not None:
                return await self._resume(input.start, input.resume)
            seed: ForkRef | None = None
            seed_error: str | None = None
            if input.continue_from is not None:
                try:
                    seed = await resolve_seed(
                        self._ledger,
                        continue_from=input.continue_from,
                        at_step=input.at_step,
                        snapshot_id=input.snapshot_id,
                    )
                except (RunNotFoundError, SnapshotNotFoundError, ValueError) as error:
                    seed_error = str(error)
            elif not input.fresh_start:
                seed = await self._restart_seed(input)
            await self._ledger.start_run(dataclasses.replace(input.start, forked_from=seed))
            if input.repeats_workflow_id is not None:
                await self._record_repeat(input.start, input.repeats_workflow_id)
            if seed is None:
                return RunStartResult(seed_error=seed_error)
            snapshot = await self._ledger.snapshot(seed.snapshot_id)
            return RunStartResult(forked_from=seed, message_history=snapshot.messages)

    async def _record_repeat(self, start: RunStart, workflow_id: str) -> None:
        """Record that the run's input is a copy of the input of workflow `workflow_id`'s latest ledger run."""
        found = await self._ledger.runs(workflow_id=workflow_id, limit=1)
        repeated = (
            f'repeats the input of run {found[0].run_id} (workflow {workflow_id})'
            if found
            else f'repeats the input of workflow {workflow_id} (the ledger has no run of it)'
        )
        event = StepEvent(
            run_id=start.run_id,
            workflow_id=start.workflow_id,
            temporal_run_id=start.temporal_run_id,
            activity_id=REPEAT_ACTIVITY_ID,
            attempt=0,
            kind='input_repeated',
            timestamp=start.started_at,
            detail=repeated,
            state='accepted',
        )
        await self._ledger.record_events([event])

    async def _resume(self, start: RunStart, resume: ResumePoint) -> RunStartResult:
        """A Temporal run continued as new: record it under the same ledger run, rebuild the history it carries.

        The run's record exists unless it was lost behind the ledger's back: then this start recreates
        it (kept, not dropped) and says so, since the record now lacks the earlier Temporal runs.
        """
        try:
            await self._ledger.run(start.run_id)
        except RunNotFoundError:
            logger.warning(
                'agentledger: run %s had no run record when Temporal run %s continued it; recreated from this '
                'start, without its earlier Temporal runs until `agentledger reconcile %s` rebuilds them',
                start.run_id,
                start.temporal_run_id,
                start.run_id,
            )
        await self._ledger.start_run(start)
        if resume.history is None:
            return RunStartResult(message_history=list(resume.new_messages))
        snapshot_id, held, _ = await self._histories.resolve(start.run_id, resume.history)
        return RunStartResult(
            message_history=[*held, *resume.new_messages], resumed_snapshot_id=snapshot_id, resumed_count=len(held)
        )

    @activity.defn(name=PARK_RUN_ACTIVITY)
    async def park_run(self, input: ParkInput) -> None:
        """Mark the run `parked` on its error; the `run_parked` event arrives in this activity's header."""
        with _retryable_outage():
            await self._ledger.park_run(input.run_id, input.error, input.parked_at, input.usage)

    @activity.defn(name=RESUME_RUN_ACTIVITY)
    async def resume_run(self, input: ResumeInput) -> ResumeSeed:
        """Mark the parked run `running` again and load the latest valid snapshot it goes on from."""
        with _retryable_outage():
            await self._ledger.resume_run(input.run_id, input.resumed_at)
            try:
                latest = await self._ledger.latest_snapshot(input.run_id)
            except SnapshotNotFoundError:
                return ResumeSeed()
            snapshot = await self._ledger.snapshot(latest.snapshot_id)
            return ResumeSeed(snapshot_id=latest.snapshot_id, message_history=snapshot.messages)

    @activity.defn(name=APPROVAL_WAIT_ACTIVITY)
    async def approval_wait(self, input: ApprovalWaitInput) -> None:
        """Mark the run `awaiting_approval` (or `running` again); its approval events arrive in the header."""
        if input.awaiting is None:
            return
        with _retryable_outage():
            await self._ledger.approval_wait(input.run_id, input.awaiting, input.at)

    @activity.defn(name=RECORD_EVENTS_ACTIVITY)
    async def record_events(self, input: RecordEventsInput) -> None:
        """Nothing of its own: the activity interceptor writes the events in this activity's header before it runs."""

    @activity.defn(name=SEAL_RUN_ACTIVITY)
    async def seal_run(self, input: SealInput) -> Usage | None:
        """Record the final snapshot, then the run's outcome; return the run's usage as the ledger settled it.

        The workflow's last acceptances and workflow-side events arrive in this activity's header,
        which the activity interceptor writes before this runs. Under the `warn` outage policy a
        seal the ledger cannot take now is kept and written once it can (the run completes
        meanwhile, and this returns `None`: the workflow reports the usage it counted); under `fail` the
        attempt fails and Temporal retries it.
        """
        seal = input.seal
        if self._outage is not None and self._outage.pending(seal.run_id):
            self._outage.keep(seal.run_id, f'seal ({seal.status})', lambda ledger: self._seal(ledger, input))
            return None
        try:
            if self._owed is not None:
                await self._owed.write_owed(seal.run_id)
            return await self._seal(self._ledger, input)
        except (LedgerCorruptionError, LedgerConfigError):
            raise
        except LedgerError as error:
            if self._outage is None or not isinstance(error, LedgerUnavailableError):
                raise ledger_failure(error) from error
            self._outage.keep(seal.run_id, f'seal ({seal.status})', lambda ledger: self._seal(ledger, input), error)
            return None

    async def _seal(self, ledger: Ledger, input: SealInput) -> Usage:
        seal = input.seal
        if input.final_messages is not None:
            messages, base = input.final_messages, None
            if input.final_history is not None:
                base_id, held, hashes = await self._histories.lookup(seal.run_id, input.final_history)
                messages, base = [*held, *messages], (base_id, hashes)
            await ledger.write_snapshot(
                run_id=seal.run_id,
                temporal_run_id=seal.temporal_run_id,
                step=input.final_step,
                kind='final',
                messages=messages,
                base=base,
            )
        return await ledger.seal_run(seal)


@contextmanager
def _retryable_outage() -> Iterator[None]:
    """A ledger error fails the attempt retryably (Temporal retries it); corruption and bad config do not retry."""
    try:
        yield
    except (LedgerCorruptionError, LedgerConfigError):
        raise
    except LedgerError as error:
        raise ledger_failure(error) from error
