"""What a running ledger run has observed and not yet handed to the ledger.

A ledger run is an `AgentRunWorkflow` execution chain, or one `Agent.run` of a listed agent inside a
user's own workflow (see `workflows/_own.py`); the first keeps its state on the workflow instance, the
second in a context variable that pydantic-ai carries from the run's `wrap_run` into the run's tasks.

Workflow code cannot write the ledger (no I/O there), so it keeps observations here and the
workflow outbound interceptor attaches them, as a header, to the next activity it starts; the
worker-side activity interceptor writes them before that activity runs. The seal is an activity
too, so what the last activities' ends added reaches the ledger in the seal's header: nothing
depends on a next model request or tool call existing. Each observation is sent once, so neither
the headers nor the seal grow with the number of steps. All of this is deterministic workflow
state: replay rebuilds it identically.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from temporalio import workflow

from agentledger.model._records import RUN_ACTIVITY_ID, Acceptance, EventKind, StepEvent
from agentledger.workflows._display import RunDisplay
from agentledger.workflows._history import HistoryReferences

if TYPE_CHECKING:
    from agentledger.workflows._approvals import ApprovalGate

__all__ = ['CURRENT_RUN', 'HEADER', 'STATE_ATTRIBUTE', 'LedgerRunState', 'current_state', 'ledger_step']

HEADER = 'agentledger'
"""The activity header carrying the ledger run id, new acceptances and workflow-side events."""

STATE_ATTRIBUTE = '_agentledger_state'
"""The attribute of a workflow instance holding its `LedgerRunState` (absent on other workflows)."""


@dataclass
class LedgerRunState:
    """The ledger bookkeeping of one workflow run."""

    run_id: str
    workflow_id: str
    temporal_run_id: str
    acceptances: list[Acceptance] = field(default_factory=list)
    """Acceptances not yet sent in a header."""
    workflow_events: list[StepEvent] = field(default_factory=list)
    """Workflow-side events not yet sent in a header."""
    _next_activity: int = 0
    _requests_at_step: dict[int, int] = field(default_factory=dict)
    history: HistoryReferences = field(init=False)
    dispatched_tool_calls: set[str] = field(default_factory=set)
    """Tool calls sent to a tool activity (whose interceptor records them)."""
    step_offset: int = 0
    """Model requests made before the current `Agent.run` call: by the earlier Temporal runs of this ledger
    run (continue-as-new), or by this one before it parked and was resumed."""
    last_step: int = 0
    """The ledger step of the latest model request this ledger run made (a resumed run numbers on from it)."""
    activity_prefix: str = ''
    """Put before this run's activity ids: several agent runs of one user workflow must not share one."""
    approvals: ApprovalGate | None = None
    """Where the run waits for decisions on calls that need approval; `None`: such calls end the run."""
    display: RunDisplay = field(init=False)
    """What the Temporal UI shows of the run (its status search attribute, its current details)."""
    reexecute_tools: bool = False
    """Tell the worker to run tool calls again that earlier ledger runs of the execution chain completed (the
    input's `reexecute_tools`); results this ledger run recorded still replay."""

    def __post_init__(self) -> None:
        self.history = HistoryReferences(self.temporal_run_id)
        self.display = RunDisplay(self.run_id)

    @property
    def run_event_id(self) -> str:
        """The activity id of the run's own events: `-` in an `AgentRunWorkflow`, `agent-<ordinal>.run` in a user's."""
        return f'{self.activity_prefix}run' if self.activity_prefix else RUN_ACTIVITY_ID

    def next_activity_id(self) -> str:
        """A deterministic activity id, so acceptances can name the activity they accept."""
        self._next_activity += 1
        return f'{self.activity_prefix}{self._next_activity}'

    def request_ordinal(self, step: int) -> int:
        """Count a model request at ledger step `step`: 1 for the step's first, 2 when it is asked again.

        pydantic-ai asks again at the same step when a hook raises `RetryModelRequest` or
        `RetryOnModelErrors` retries; the model-call journal keys on this ordinal so such a request is a
        new call, not the rejected answer replayed.
        """
        self._requests_at_step[step] = self._requests_at_step.get(step, 0) + 1
        return self._requests_at_step[step]

    def accept(self, activity_id: str, outcome: str) -> None:
        """Note that the workflow observed `activity_id` end with `outcome`."""
        self.acceptances.append(
            Acceptance(
                run_id=self.run_id,
                workflow_id=self.workflow_id,
                temporal_run_id=self.temporal_run_id,
                activity_id=activity_id,
                outcome=outcome,  # type: ignore[arg-type]
            )
        )

    def note_event(
        self, kind: EventKind, activity_id: str, timestamp: datetime, *, attempt: int = 0, **fields: Any
    ) -> None:
        """Note an event the workflow observed itself (no activity records it) for the next activity's header."""
        if kind in ('tool_call_completed', 'tool_call_failed'):
            self.display.tool_ended(fields.get('tool_name'), fields.get('outcome') or 'failed')
        self.workflow_events.append(
            StepEvent(
                run_id=self.run_id,
                workflow_id=self.workflow_id,
                temporal_run_id=self.temporal_run_id,
                activity_id=activity_id,
                attempt=attempt,
                kind=kind,
                timestamp=timestamp,
                **fields,
            )
        )

    def note_run_event(self, kind: EventKind, activity_id: str, timestamp: datetime, **fields: Any) -> None:
        """Note a run-level event the workflow decided (a park, a resume) for the next activity's header."""
        self.note_event(kind, activity_id, timestamp, state='accepted', **fields)

    def take_header(self) -> dict[str, Any]:
        """The header value for the next activity: the run id plus what was observed since the last one."""
        header: dict[str, Any] = {
            'run_id': self.run_id,
            'accepted': [a.to_json() for a in self.acceptances],
            'events': [e.to_json() for e in self.workflow_events],
        }
        if self.step_offset:
            header['step_offset'] = self.step_offset
        if self.reexecute_tools:
            header['reexecute_tools'] = True
        self.acceptances.clear()
        self.workflow_events.clear()
        return header


def ledger_step(step: int | None, header: Mapping[str, Any] | None) -> int | None:
    """The ledger's step number of an activity whose pydantic-ai run step is `step`, given its header.

    After continue-as-new pydantic-ai counts steps from 1 again; the header's `step_offset` (the steps
    the earlier Temporal runs made) keeps the ledger run counting on.
    """
    offset = header.get('step_offset', 0) if header is not None else 0
    if step is None or not isinstance(offset, int):
        return step
    return step + offset


CURRENT_RUN: ContextVar[LedgerRunState | None] = ContextVar('agentledger_current_run', default=None)
"""The state of the agent run this code belongs to, inside a user's own workflow (set by its `wrap_run`)."""


def current_state() -> LedgerRunState | None:
    """The `LedgerRunState` of the ledger run this workflow code belongs to, or `None` outside any.

    Inside a user's own workflow, that of the listed agent's run this code runs in; in an
    `AgentRunWorkflow`, the workflow's own.
    """
    own = CURRENT_RUN.get()
    if own is not None:
        return own
    state = getattr(workflow.instance(), STATE_ATTRIBUTE, None)
    return state if isinstance(state, LedgerRunState) else None
