"""The chaos harness's verdict: ledger rows and target effects against Temporal's own history.

Written independently of agentledger's rules: it reads the workflow history (`fetch_history`) and
the rows each ledger presents as a step's result, and compares them. The definitions are in
`chaos.py`'s docstring; the functions here are pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

_CLOSED = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: 'completed',
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: 'failed',
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: 'failed',
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: 'failed',
}
_RUN_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: 'completed',
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: 'failed',
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: 'failed',
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: 'cancelled',
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: 'terminated',
}


def step_kind(activity_type: str) -> str | None:
    """`model_request`, `tool_call` or `None` (ledger activities), from pydantic-ai's activity-type suffixes."""
    if activity_type.endswith(('__model_request', '__model_request_stream')):
        return 'model_request'
    if activity_type.endswith('__call_tool'):
        return 'tool_call'
    return None


@dataclass(frozen=True)
class Step:
    """One agent activity as Temporal's history closed it: the attempt it used and how that attempt ended."""

    activity_id: str
    kind: str
    status: str
    attempt: int


@dataclass
class HistoryFacts:
    """What one workflow run's history says: its closed agent activities and how the run ended."""

    steps: dict[str, Step] = field(default_factory=dict)
    open_activities: set[str] = field(default_factory=set)
    run_status: str | None = None


def history_facts(events: Iterable[HistoryEvent]) -> HistoryFacts:
    """Read the closed agent activities (with the attempt Temporal used) and the run's end from history events."""
    scheduled: dict[int, tuple[str, str]] = {}
    attempts: dict[int, int] = {}
    facts = HistoryFacts()
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            kind = step_kind(attributes.activity_type.name)
            if kind is not None:
                scheduled[event.event_id] = (attributes.activity_id, kind)
                facts.open_activities.add(attributes.activity_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            attempts[started.scheduled_event_id] = started.attempt
        elif event.event_type in _CLOSED:
            scheduled_id = _scheduled_event_id(event)
            if scheduled_id in scheduled:
                activity_id, kind = scheduled[scheduled_id]
                facts.open_activities.discard(activity_id)
                facts.steps[activity_id] = Step(activity_id, kind, _CLOSED[event.event_type], attempts[scheduled_id])
        elif event.event_type in _RUN_CLOSED:
            facts.run_status = _RUN_CLOSED[event.event_type]
    return facts


def _scheduled_event_id(event: HistoryEvent) -> int:
    match event.event_type:
        case EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            return event.activity_task_completed_event_attributes.scheduled_event_id
        case EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            return event.activity_task_failed_event_attributes.scheduled_event_id
        case EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            return event.activity_task_timed_out_event_attributes.scheduled_event_id
        case _:
            return event.activity_task_canceled_event_attributes.scheduled_event_id


@dataclass(frozen=True)
class Row:
    """A row a ledger presents as the result of an activity: which attempt, and how it ended."""

    activity_id: str
    attempt: int
    status: str


@dataclass
class RowCounts:
    """Duplicate, divergent, lost and orphan rows (definitions in `chaos.py`)."""

    duplicate: int = 0
    divergent: int = 0
    lost: int = 0
    orphan: int = 0
    steps: int = 0

    def add(self, other: RowCounts) -> None:
        """Add `other`'s counts to these."""
        self.duplicate += other.duplicate
        self.divergent += other.divergent
        self.lost += other.lost
        self.orphan += other.orphan
        self.steps += other.steps

    @property
    def total(self) -> int:
        """All four counts together."""
        return self.duplicate + self.divergent + self.lost + self.orphan


def compare_rows(facts: HistoryFacts, rows: Sequence[Row], unclassified: int = 0) -> RowCounts:
    """Count one run's ledger rows against its history.

    `rows` are every row the ledger presents as an activity's result; `unclassified` counts rows the
    ledger still leaves undecided (neither used nor abandoned) after the run closed: orphans too.
    """
    counts = RowCounts(steps=len(facts.steps), orphan=unclassified)
    by_activity: dict[str, list[Row]] = {}
    for row in rows:
        by_activity.setdefault(row.activity_id, []).append(row)
    for activity_id, presented in by_activity.items():
        step = facts.steps.get(activity_id)
        if step is None:
            counts.orphan += len(presented)
            continue
        counts.duplicate += len(presented) - 1
        if any((row.attempt, row.status) != (step.attempt, step.status) for row in presented):
            counts.divergent += 1
    counts.lost += sum(1 for activity_id in facts.steps if activity_id not in by_activity)
    return counts


def compare_run_record(facts: HistoryFacts, ledger_status: str | None, terminal_events: int) -> RowCounts:
    """The run-level row of a ledger that keeps one (agentledger): its status against the run's end."""
    counts = RowCounts()
    if ledger_status is None:
        counts.lost += 1
    elif ledger_status != facts.run_status:
        counts.divergent += 1
    counts.duplicate += max(0, terminal_events - 1)
    return counts


def duplicate_effects(logical_ids: Iterable[str]) -> int:
    """Effects performed more than once: for each logical effect, every execution after the first."""
    return sum(count - 1 for count in Counter(logical_ids).values())


RECORDED_MARGIN_S = 1.0
"""How long before a call an answer must have been recorded for the call to count as paid again.

A worker looks the journal up just before it asks the provider; the margin keeps an attempt that
raced a slow earlier one (both asked before either answer was in) out of the count.
"""


@dataclass(frozen=True)
class BilledCall:
    """One call the fake provider billed: the model-request activity and when it was asked (epoch seconds)."""

    activity_id: str
    asked: float


def paid_again(billed: Iterable[BilledCall], recorded: Mapping[str, float]) -> int:
    """Calls billed although the ledger already held an answer to the same model request.

    `recorded` maps a model-request activity to when (epoch seconds) the ledger first recorded one
    of its attempts as completed. With a working model-call journal this is 0: a later attempt
    replays the recorded answer. The rest of the waste (billed minus accepted) is calls whose answer
    was never recorded: the worker died between the provider's answer and the ledger write, or an
    attempt asked while an earlier one was still waiting for its answer.
    """
    return sum(
        1
        for call in billed
        if call.activity_id in recorded and call.asked - RECORDED_MARGIN_S > recorded[call.activity_id]
    )
