"""The input and output of `AgentRunWorkflow`: plain dataclasses that any Temporal client can send.

They are the workflow's public contract, so an operator can start a run from the Temporal UI or
`temporal workflow start --input '{"agent": "...", "prompt": "..."}'` without Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic_ai.messages import ModelMessage, UserContent
from pydantic_ai.usage import UsageLimits

from agentledger.model._approvals import ApprovalTimeoutAction
from agentledger.model._records import Acceptance, ErrorInfo, ForkRef, RunSeal, RunStart, StepEvent, Usage

__all__ = [
    'APPROVAL_WAIT_ACTIVITY',
    'DELEGATE_RESULT_ACTIVITY',
    'PARK_RUN_ACTIVITY',
    'RECORD_EVENTS_ACTIVITY',
    'RESUME_RUN_ACTIVITY',
    'RUN_STARTED_ACTIVITY',
    'SEAL_RUN_ACTIVITY',
    'AbandonRequest',
    'AgentRunInput',
    'AgentRunOutput',
    'ApprovalWaitInput',
    'ParkInput',
    'RecordEventsInput',
    'ResumeInput',
    'ResumePoint',
    'ResumeRequest',
    'ResumeSeed',
    'RunFailureDetails',
    'RunStartInput',
    'RunStartResult',
    'SealInput',
]


@dataclass
class ResumePoint:
    """Where a Temporal run started by continue-as-new takes over its ledger run.

    It carries the history by reference (the part the ledger holds, see `workflows/_history.py`)
    plus the few messages after it, so the new Temporal run's input stays small however long the
    run has been.
    """

    history: dict[str, Any] | None
    """A history reference to the first messages, or `None` when the ledger holds none of them."""
    new_messages: list[ModelMessage]
    """The messages after the referenced ones, up to the model request that was about to be made."""
    step_offset: int
    """Model requests the earlier Temporal runs made: this run's steps are numbered after them."""
    usage: Usage
    """What the earlier Temporal runs spent."""
    acceptances: list[Acceptance] = field(default_factory=list)
    """Observations of the earlier Temporal run not yet handed to the ledger."""
    workflow_events: list[StepEvent] = field(default_factory=list)


@dataclass
class AgentRunInput:
    """What one `Agent.run` needs: which agent, the prompt, and optional history, deps and limits."""

    agent: str
    """The `name` of an agent registered on the worker through `LedgerPlugin(agents=[...])`."""
    prompt: str | list[UserContent] | None = None
    """Text, or multi-modal content (images and files as `BinaryContent`), as `Agent.run` takes it."""
    message_history: list[ModelMessage] | None = None
    deps: Any = None
    """The run's deps as JSON-compatible data; validated against the agent's `deps_type` in the workflow."""
    conversation_id: str | None = None
    usage_limits: UsageLimits | None = None
    ledger_run_id: str | None = None
    """Set only to attach this workflow to an existing ledger run; by default it is derived from the workflow."""
    parent_run_id: str | None = None
    parent_tool_call_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    """Free-form data recorded with the run (not sent to the model)."""
    continue_from: str | None = None
    """A ledger run id: seed this run with that run's latest valid snapshot (or the one chosen below)."""
    at_step: int | None = None
    """With `continue_from`: fork from the latest valid snapshot at or before this step."""
    snapshot_id: str | None = None
    """With `continue_from`: fork from exactly this snapshot."""
    fresh_start: bool = False
    """Start over even when an earlier run of the same workflow id failed (by default it is resumed)."""
    history_event_limit: int | None = None
    """Continue as new before a model request once Temporal's history has this many events (it also does
    when Temporal suggests it), so a run can go past Temporal's event and size limits. Kept across runs."""
    park_on_failure: bool = False
    """When the agent fails, park instead of failing: the ledger run is `parked` and the workflow waits for
    a `resume` signal or update (from the latest valid snapshot, optionally with a new prompt) or `abandon`
    (then it fails as it would have). A run that cannot start (unknown agent, wrong deps) still fails."""
    wait_for_approval: bool = True
    """When the agent asks to run tools that need approval, wait in the run for each call's decision (the
    `approve` and `deny` updates or signals) and go on from there; `False` ends the run with the
    `DeferredToolRequests` output instead. A run whose deferred calls include external ones (`CallDeferred`)
    ends with them either way: only a caller can answer those."""
    approval_timeout_s: float | None = None
    """How long a call may wait for its decision (by default, for ever); see `on_approval_timeout`."""
    approval_timeouts_s: dict[str, float] = field(default_factory=dict)
    """Per tool name, in place of `approval_timeout_s`."""
    on_approval_timeout: ApprovalTimeoutAction = 'deny'
    """When a call's deadline passes: `deny` it (the model reads that it timed out), `park` the run (as a
    failure with `park_on_failure`), or `fail` the run. The ledger records which."""
    reexecute_tools: bool = False
    """Run again the tool calls an earlier ledger run of this run's execution chain completed (restarting a
    failed workflow id), instead of replaying their results from the tool-call journal. Results this run
    records replay as usual, so a later reset of it (which keeps this input) runs no tool again:
    `agentledger reset --reexecute-tools` is the way to run them again then. `agentledger.once` effects
    done stay done."""
    started_as: str | None = None
    """The workflow id the client started this input under (set by `agentledger.start`). Input started
    under another workflow id (a copy, e.g. the Temporal UI's "Start Workflow Like This One") is a fresh
    run: the ledger records which run's input it repeats."""
    resume: ResumePoint | None = None
    """Set by the workflow itself when it continues as new; not for callers."""


@dataclass
class AgentRunOutput:
    """What a finished run returns: the agent's output (as JSON-compatible data) and where to find it."""

    output: Any
    run_id: str
    """The ledger run id."""
    workflow_id: str
    usage: Usage


@dataclass
class RunFailureDetails:
    """The details of the `ApplicationError` a failed run ends with: which ledger run it was and what it spent.

    An orchestrator whose delegate failed reads them to link the failure to the child run and to add
    the child's usage to its own: tokens spent on a failed delegate are still spent.
    """

    run_id: str
    usage: Usage

    @classmethod
    def from_details(cls, details: Sequence[Any]) -> RunFailureDetails | None:
        """Read them back from a failure's decoded details (a dict once they crossed Temporal), if present."""
        if not details:
            return None
        value = details[0]
        if isinstance(value, RunFailureDetails):
            return value
        if not isinstance(value, dict) or not isinstance(value.get('run_id'), str):
            return None
        usage = value.get('usage')
        return cls(run_id=value['run_id'], usage=Usage(**usage) if isinstance(usage, dict) else Usage())


RUN_STARTED_ACTIVITY = 'agentledger__run_started'
"""The ledger activity that records a run's start."""

PARK_RUN_ACTIVITY = 'agentledger__park_run'
"""The ledger activity that marks a failed run `parked` (its `run_parked` event travels in the header)."""

RESUME_RUN_ACTIVITY = 'agentledger__resume_run'
"""The ledger activity that marks a parked run `running` again and loads its latest valid snapshot."""

APPROVAL_WAIT_ACTIVITY = 'agentledger__approval_wait'
"""The ledger activity that marks a run `awaiting_approval` or `running` again; the approval events travel
in its header, so the ledger shows a request or a decision as soon as the workflow takes it."""

RECORD_EVENTS_ACTIVITY = 'agentledger__record_events'
"""The ledger activity that only carries the workflow's noted events in its header: for an event (an ignored
request) that must reach the ledger now, not with whatever activity comes next, if any does."""

SEAL_RUN_ACTIVITY = 'agentledger__seal_run'
"""The ledger activity that records how a run ended, with every acceptance the run made.

It returns the run's usage as the ledger settled it (a `Usage` as JSON data), or nothing when the ledger
could not take the seal yet (kept under the `warn` outage policy)."""

DELEGATE_RESULT_ACTIVITY = 'agentledger__delegate_result'
"""The activity that fetches the result of a delegate's child workflow that already ran (or still runs).

A delegate's child workflow id is fixed by its tool call, and a completed child is never started
again; a replayed, reset or restarted orchestrator that reaches the same call reads the result
through this activity instead of running the delegate a second time.
"""


@dataclass
class ApprovalWaitInput:
    """The approval wait activity's input: whether the run now waits for approvals, and since when."""

    run_id: str
    awaiting: bool | None
    """`True`: the wait starts; `False`: it ended; `None`: it goes on (only the header's events are new)."""
    at: datetime


@dataclass
class RecordEventsInput:
    """The record-events activity's input: the run whose noted events its header carries."""

    run_id: str


@dataclass
class RunStartInput:
    """The `run_started` activity's input: the run's start, and what (if anything) to seed it from."""

    start: RunStart
    continue_from: str | None = None
    at_step: int | None = None
    snapshot_id: str | None = None
    fresh_start: bool = False
    resume: ResumePoint | None = None
    repeats_workflow_id: str | None = None
    """The workflow id whose input this run's input is a copy of (recorded as an `input_repeated` event)."""


@dataclass
class RunStartResult:
    """The seed the `run_started` activity resolved: the lineage and the history to start from."""

    forked_from: ForkRef | None = None
    message_history: list[ModelMessage] | None = None
    seed_error: str | None = None
    """Why the requested seed could not be used (unknown run or snapshot, a step that does not exist)."""
    resumed_snapshot_id: str | None = None
    """On continue-as-new: the stored snapshot the first messages of `message_history` come from."""
    resumed_count: int = 0
    """On continue-as-new: how many messages of `message_history` that snapshot holds."""
    search_attributes: list[str] = field(default_factory=list)
    """The agentledger search attributes the worker found registered in the namespace: the run sets only
    these (a result recorded before this field existed names none, so an old history replays unchanged)."""


@dataclass
class SealInput:
    """The seal activity's input: the outcome and the final history (idempotent to re-send)."""

    seal: RunSeal
    final_messages: list[ModelMessage] | None = None
    """The run's `all_messages()` when it completed (after the part `final_history` names), stored as its
    `final` snapshot."""
    final_history: dict[str, Any] | None = None
    """A history reference for the first messages of the final history, which the ledger already holds."""
    final_step: int = 0


@dataclass
class ResumeRequest:
    """What an operator sends to resume a parked run (`resume` signal or update; every field optional).

    The run goes on from its latest valid snapshot, so completed tool calls are not run again.
    """

    prompt: str | None = None
    """A new user prompt to add to the history (for instance, what to do differently); none by default."""


@dataclass
class AbandonRequest:
    """What an operator sends to give up on a parked run (`abandon` signal or update): it fails as it would have."""

    reason: str | None = None
    """Why, recorded with the run's failure."""


@dataclass
class ParkInput:
    """The park activity's input: the run and the error it waits on."""

    run_id: str
    error: ErrorInfo
    parked_at: datetime
    usage: Usage | None = None
    """What the run spent so far, recorded (settled against its events) with the park."""


@dataclass
class ResumeInput:
    """The resume activity's input."""

    run_id: str
    resumed_at: datetime


@dataclass
class ResumeSeed:
    """Where a resumed run goes on from: its latest valid snapshot, or nothing (start over from the input)."""

    snapshot_id: str | None = None
    message_history: list[ModelMessage] | None = None
