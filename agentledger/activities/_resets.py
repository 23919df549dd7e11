"""Record Temporal resets in the ledger: one `run_reset` event per reset, read from the new run's history. Worker I/O.

A reset starts a new Temporal run of the same ledger run. Whether it runs again from its first
workflow task (and so records its start again) or from a later one (and replays everything before),
the first attempt of any of its activities passes through the worker's activity interceptor, which
calls `ResetRecorder.observe`. Only a Temporal run the ledger run does not list yet is looked up in
Temporal (its history, until the `WorkflowTaskFailed` event with cause `RESET_WORKFLOW` that Temporal
writes at the reset point), and each (ledger run, Temporal run) is looked at once per worker, so the
attempts of known runs cost a set lookup.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from datetime import UTC

from temporalio import activity
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client
from temporalio.service import RPCError

from agentledger.errors import LedgerError, RunNotFoundError
from agentledger.ledger._facade import Ledger
from agentledger.model._resets import ResetPoint, run_event_for_reset

__all__ = ['ResetRecorder', 'reset_point']

logger = logging.getLogger('agentledger.worker')

_REMEMBERED = 4096
"""How many (ledger run, Temporal run) pairs a worker remembers as looked at: far more than it runs at once."""


async def reset_point(client: Client, workflow_id: str, temporal_run_id: str) -> ResetPoint | None:
    """The reset that started Temporal run `temporal_run_id`, from its history; `None` when a reset did not start it.

    Temporal writes a `WorkflowTaskFailed` event with cause `RESET_WORKFLOW` at the reset point of the
    new run, carrying the base run, the reason and the identity of whoever reset it. The history is
    read until that event: it follows the events copied from the base run, so only a run that was not
    reset (a continue-as-new) is read to its end, and such a run is new and short. The copied events
    may hold the marker of an earlier reset (a reset of a run a reset started): only the marker naming
    this run as the new one is this run's.
    """
    handle = client.get_workflow_handle(workflow_id, run_id=temporal_run_id)
    async for event in handle.fetch_history_events():
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            continue
        failed = event.workflow_task_failed_event_attributes
        if failed.cause != WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW:
            continue
        if failed.new_run_id != temporal_run_id:
            continue
        return ResetPoint(
            temporal_run_id=temporal_run_id,
            base_run_id=failed.base_run_id,
            event_id=event.event_id,
            reason=failed.failure.message,
            identity=failed.identity,
            at=event.event_time.ToDatetime(tzinfo=UTC),
        )
    return None


class ResetRecorder:
    """Records a `run_reset` event the first time a worker sees an attempt of a Temporal run a reset started.

    One per worker, shared by every attempt. The Temporal client is the activity's own
    (`temporalio.activity.client()`): the one the worker polls with, so the history is read from the
    same namespace the run lives in.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._looked_at: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._looking: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def observe(self, run_id: str, workflow_id: str, temporal_run_id: str) -> None:
        """Record the reset that started `temporal_run_id` for ledger run `run_id`, once; a no-op for a known run.

        A lookup that fails (the ledger or Temporal unreachable) is logged and tried again at the next
        attempt; it never fails the attempt, whose own ledger writes follow their outage policy.
        """
        key = (run_id, temporal_run_id)
        if key in self._looked_at:
            return
        # Parallel attempts of the same new run (tool calls) share one lookup.
        looking = self._looking.get(key)
        if looking is None:
            looking = asyncio.ensure_future(self._look(run_id, workflow_id, temporal_run_id))
            self._looking[key] = looking
            looking.add_done_callback(lambda _: self._looking.pop(key, None))
        try:
            await asyncio.shield(looking)
        except (LedgerError, RPCError, _NoClient) as error:
            logger.warning(
                'agentledger: could not check whether Temporal run %s of run %s was started by a reset (%s); '
                'the next attempt checks again',
                temporal_run_id,
                run_id,
                error,
            )
            return
        self._looked_at[key] = None
        if len(self._looked_at) > _REMEMBERED:
            self._looked_at.popitem(last=False)

    async def _look(self, run_id: str, workflow_id: str, temporal_run_id: str) -> None:
        try:
            record = await self._ledger.run(run_id)
        except RunNotFoundError:
            return  # the run's first Temporal run, about to record its start: nothing was reset
        if temporal_run_id in record.temporal_run_ids:
            return  # its start is recorded: the run's first Temporal run, a continue-as-new, or a reset seen already
        reset = await reset_point(_activity_client(), workflow_id, temporal_run_id)
        if reset is not None:
            await self._ledger.record_events([run_event_for_reset(run_id, workflow_id, reset)])


class _NoClient(Exception):
    """The attempt runs without a Temporal client to read history with."""


def _activity_client() -> Client:
    """The client of the worker running this attempt; `_NoClient` where there is none (a synchronous activity)."""
    try:
        return activity.client()
    except RuntimeError as error:
        raise _NoClient(str(error)) from error
