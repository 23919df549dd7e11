"""What one Temporal run's history proves, read with the client's data converter (the I/O edge of reconcile).

Temporal keeps, per activity, its `ActivityTaskScheduled` event (activity id, type, input and the
`agentledger` header the workflow attached), only the *last* attempt's `ActivityTaskStarted` (its
attempt number) and the close event; and for the workflow its start, its reset points and its close.
`RunFacts` holds exactly that, decoded to plain JSON values, so the comparison can stay a pure function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from agentledger.model._conversions import failure_info
from agentledger.model._records import ErrorInfo
from agentledger.workflows._state import HEADER

__all__ = ['ActivityClose', 'ActivityFact', 'RunFacts', 'WorkflowClose', 'fetch_run_facts', 'run_facts']

ActivityClose: TypeAlias = Literal['completed', 'failed', 'timed_out', 'cancelled']
"""How Temporal closed an activity."""

WorkflowClose: TypeAlias = Literal[
    'running', 'completed', 'failed', 'cancelled', 'terminated', 'timed_out', 'continued_as_new'
]
"""How a Temporal run ended (`running`: it has not)."""


@dataclass(frozen=True)
class ActivityFact:
    """One activity as its Temporal run's history records it."""

    temporal_run_id: str
    activity_id: str
    activity_type: str
    scheduled_at: datetime
    header: dict[str, Any] | None
    """The decoded `agentledger` header (ledger run id, acceptances, workflow-side events), if any."""
    args: tuple[Any, ...]
    """The decoded input, as plain JSON values."""
    last_attempt: int | None = None
    """The attempt of the last `ActivityTaskStarted`: the only attempt history keeps."""
    started_at: datetime | None = None
    close: ActivityClose | None = None
    closed_at: datetime | None = None
    result: Any = None
    """The decoded result of a completed activity."""
    failure: ErrorInfo | None = None
    inherited: bool = False
    """Closed before this run's reset point: it ran in the run this one was reset from."""


@dataclass(frozen=True)
class RunFacts:
    """What one Temporal run's history proves."""

    workflow_id: str
    temporal_run_id: str
    first_execution_run_id: str
    started_at: datetime
    input: Any
    """The decoded workflow input (`AgentRunInput` as JSON, or a user workflow's own input)."""
    activities: tuple[ActivityFact, ...]
    close: WorkflowClose
    closed_at: datetime | None = None
    failure: ErrorInfo | None = None
    reset_from: str | None = None
    """The Temporal run this one was reset from."""
    continued_as: str | None = None
    """The Temporal run this one continued as (continue-as-new)."""
    workflow_type: str | None = None
    """The workflow's type: `AgentRunWorkflow`, or a user's own workflow whose agent runs are ledger runs."""
    continued_from: str | None = None
    """The Temporal run this one continued (continue-as-new); a reset keeps the run's own."""


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


async def _values(converter: DataConverter, payloads: Sequence[Payload]) -> tuple[Any, ...]:
    return tuple(await converter.decode(payloads)) if payloads else ()


async def run_facts(
    converter: DataConverter, workflow_id: str, temporal_run_id: str, events: Sequence[HistoryEvent]
) -> RunFacts:
    """Read the facts of one Temporal run from its history events, decoding payloads with `converter`."""
    start = events[0].workflow_execution_started_event_attributes
    started_at = _time(events[0])
    workflow_input = await _values(converter, start.input.payloads)
    activities: dict[int, dict[str, Any]] = {}
    reset_at: int | None = None
    facts: dict[str, Any] = {'close': 'running'}
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            header = attributes.header.fields.get(HEADER)
            decoded = (await _values(converter, [header]))[0] if header is not None else None
            activities[event.event_id] = {
                'activity_id': attributes.activity_id,
                'activity_type': attributes.activity_type.name,
                'scheduled_at': _time(event),
                'header': decoded if isinstance(decoded, dict) else None,
                'args': await _values(converter, attributes.input.payloads),
            }
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            activities[started.scheduled_event_id] |= {'last_attempt': started.attempt, 'started_at': _time(event)}
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed = event.activity_task_completed_event_attributes
            result = await _values(converter, completed.result.payloads)
            activities[completed.scheduled_event_id] |= {
                'close': 'completed',
                'closed_at': _time(event),
                'close_event': event.event_id,
                'result': result[0] if result else None,
            }
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            failed = event.activity_task_failed_event_attributes
            activities[failed.scheduled_event_id] |= {
                'close': 'failed',
                'closed_at': _time(event),
                'close_event': event.event_id,
                'failure': failure_info(failed.failure, 'ActivityError'),
            }
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            timed_out = event.activity_task_timed_out_event_attributes
            activities[timed_out.scheduled_event_id] |= {
                'close': 'timed_out',
                'closed_at': _time(event),
                'close_event': event.event_id,
                'failure': failure_info(timed_out.failure, 'TimeoutError'),
            }
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
            cancelled = event.activity_task_canceled_event_attributes
            activities[cancelled.scheduled_event_id] |= {
                'close': 'cancelled',
                'closed_at': _time(event),
                'close_event': event.event_id,
            }
        elif (
            kind == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
            and event.workflow_task_failed_event_attributes.cause
            == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW
        ):
            reset_at, facts['reset_from'] = event.event_id, event.workflow_task_failed_event_attributes.base_run_id
        else:
            facts |= _workflow_close(event)
    return RunFacts(
        workflow_id=workflow_id,
        temporal_run_id=temporal_run_id,
        first_execution_run_id=start.first_execution_run_id,
        started_at=started_at,
        input=workflow_input[0] if workflow_input else None,
        workflow_type=start.workflow_type.name or None,
        continued_from=start.continued_execution_run_id or None,
        activities=tuple(
            ActivityFact(
                temporal_run_id=temporal_run_id,
                inherited=reset_at is not None and activity.get('close_event', reset_at) < reset_at,
                **{k: v for k, v in activity.items() if k != 'close_event'},
            )
            for activity in activities.values()
        ),
        **facts,
    )


def _workflow_close(event: HistoryEvent) -> dict[str, Any]:
    kind = event.event_type
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        return {'close': 'completed', 'closed_at': _time(event)}
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        failure = event.workflow_execution_failed_event_attributes.failure
        return {'close': 'failed', 'closed_at': _time(event), 'failure': failure_info(failure, 'WorkflowFailed')}
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
        return {'close': 'cancelled', 'closed_at': _time(event)}
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        reason = event.workflow_execution_terminated_event_attributes.reason or 'terminated'
        error = ErrorInfo(type='WorkflowTerminated', message=reason, retryable=False)
        return {'close': 'terminated', 'closed_at': _time(event), 'failure': error}
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        error = ErrorInfo(type='TimeoutError', message='the workflow execution timed out', retryable=False)
        return {'close': 'timed_out', 'closed_at': _time(event), 'failure': error}
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        new_run = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
        return {'close': 'continued_as_new', 'closed_at': _time(event), 'continued_as': new_run}
    return {}


async def fetch_run_facts(client: Client, workflow_id: str, temporal_run_id: str) -> RunFacts | None:
    """The facts of one Temporal run, or `None` when Temporal has no such run (never existed, or past retention)."""
    handle = client.get_workflow_handle(workflow_id, run_id=temporal_run_id)
    try:
        history = await handle.fetch_history()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if not history.events:
        return None
    return await run_facts(client.data_converter, workflow_id, temporal_run_id, history.events)
