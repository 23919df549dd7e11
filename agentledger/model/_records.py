"""The records a ledger stores: runs, step events, acceptances and seals.

Every record is a frozen dataclass with a JSON-friendly shape (`to_json` / `from_json`), so the
same record crosses Temporal activity boundaries, is stored by every backend, and is printed by
`agentledger show --json` without a second schema.

This module is imported by workflow code (through the workflow-side headers), so it must stay
free of I/O and of backend libraries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal, TypeAlias, cast

from agentledger._redaction import redact

__all__ = [
    'AGENT_RUN_WORKFLOW_TYPE',
    'OPEN_STATUSES',
    'REPEAT_ACTIVITY_ID',
    'RUN_ACTIVITY_ID',
    'Acceptance',
    'AcceptanceOutcome',
    'ErrorInfo',
    'EventKind',
    'EventState',
    'ForkReason',
    'ForkRef',
    'PayloadReference',
    'RunRecord',
    'RunSeal',
    'RunStart',
    'RunStatus',
    'RunTree',
    'SnapshotKind',
    'SnapshotRecord',
    'StepEvent',
    'StepKind',
    'StepRecord',
    'StepStatus',
    'ToolEffect',
    'ToolEffectStatus',
    'ToolOutcome',
    'Usage',
]

RunStatus: TypeAlias = Literal[
    'running', 'completed', 'failed', 'cancelled', 'terminated', 'parked', 'awaiting_approval'
]
"""Where a ledger run stands. `running`, `parked` and `awaiting_approval` are open; the others are how it ended.

`parked`: the agent failed, and the run (started with `park_on_failure=True`) waits for an operator's
`resume` or `abandon` instead of failing.
`awaiting_approval`: the agent asked to run tools that need approval, and the run waits for a person
to approve or deny each call (`approve` / `deny`).
"""

OPEN_STATUSES: tuple[RunStatus, ...] = ('running', 'parked', 'awaiting_approval')
"""Statuses of a run that has not ended: its latest Temporal run can still record and accept steps."""

EventKind: TypeAlias = Literal[
    'run_started',
    'run_completed',
    'run_failed',
    'run_cancelled',
    'run_terminated',
    'run_parked',
    'run_resumed',
    'run_reset',
    'input_repeated',
    'ledger_repaired',
    'model_request_started',
    'model_request_completed',
    'model_request_failed',
    'tool_call_started',
    'tool_call_completed',
    'tool_call_failed',
    'approval_requested',
    'approval_granted',
    'approval_denied',
    'approval_rejected',
    'request_ignored',
]
"""What a `StepEvent` records. `*_started` opens an attempt; `*_completed` / `*_failed` end it.

`approval_requested` marks a tool call that waits for a person's decision; `approval_granted` /
`approval_denied` the decision (`detail`: the digest it named, who decided, the reason);
`approval_rejected` a decision sent by signal that named no pending call or another digest. Their
activity id is `approval:<tool_call_id>`; none starts or ends an attempt.

`run_parked` and `run_resumed` mark a parked run's wait (neither starts nor ends anything); their
activity ids are `park:N` and `resume:N`, N counting the run's parks. `request_ignored` records a
`resume` or `abandon` signal the run could not take (it was not parked, or already had a decision):
`detail` names the request, why it was ignored and its input; its activity id is `request:N`, N
counting the Temporal run's ignored requests.
`run_reset` marks a Temporal reset: the first time the ledger hears from the new Temporal run a reset
started, it records where (the history event the run was reset at), why (the reason given) and who
(the client identity), read from that run's history; its `detail` is the JSON of a
`agentledger.model._resets.ResetPoint`, its `temporal_run_id` the new run's, its activity id
`reset:<run_id>`. It starts and ends nothing.
`input_repeated` marks a run whose input is a copy of another workflow's (its `detail` names the run
whose input it repeats); its activity id is `REPEAT_ACTIVITY_ID`.
`ledger_repaired` is the audit record of one repair `reconcile` made: its `detail` is a JSON document
with the finding, the reason, and the row before and after.
"""

StepKind: TypeAlias = Literal['model_request', 'tool_call']
"""The kind of activity a step is."""

ToolOutcome: TypeAlias = Literal[
    'returned',
    'retry_requested',
    'validation_error',
    'denied',
    'deferred',
    'approval_required',
    'failed',
    'cancelled',
]
"""How a completed tool call ended. A tool that asked the model to retry is completed with `retry_requested`."""

EventState: TypeAlias = Literal['provisional', 'accepted', 'abandoned', 'superseded']
"""Whether the workflow used this attempt's result.

`provisional` until the workflow accepts the activity's result; then the accepted attempt's events
are `accepted` and every other attempt's are `abandoned` (kept for audit: they are the retry bill).
`superseded`: the attempt was accepted by a Temporal run that was then reset, and the new run ran and
accepted the same step again, so only the new run's acceptance counts (see `agentledger.model._resets`).
"""

AcceptanceOutcome: TypeAlias = Literal['completed', 'failed', 'cancelled']
"""How the workflow observed an activity end."""

StepStatus: TypeAlias = Literal['running', 'completed', 'failed', 'cancelled', 'abandoned', 'superseded']
"""The status of one step (one activity) as the workflow saw it.

`superseded`: a reset made the step's Temporal run stop counting, and the new run ran the step again.
"""

AGENT_RUN_WORKFLOW_TYPE = 'AgentRunWorkflow'
"""The Temporal workflow type of `AgentRunWorkflow`; any other `RunRecord.workflow_type` is a user's own workflow."""

REPEAT_ACTIVITY_ID = 'repeats'
"""The `activity_id` of a run's `input_repeated` event (one per Temporal run that started from a copied input)."""

RUN_ACTIVITY_ID = '-'
"""The `activity_id` of run-level events (`run_*`), which belong to no agent activity, in an `AgentRunWorkflow`.

Event keys hold the workflow id and the Temporal run id; the agent runs inside one run of a user's own
workflow share both, so their run-level events use `agent-<ordinal>.run` instead (`RunStart.event_id`).
"""


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


@dataclass(frozen=True)
class ErrorInfo:
    """An error as the ledger keeps it: the exception type, its message, and whether it may be retried.

    The message is redacted (`agentledger._redaction`): a URL's user information and secret-looking
    query values never reach a ledger row.
    """

    type: str
    message: str
    retryable: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, 'message', redact(self.message))

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ErrorInfo | None:
        """Rebuild from `to_json()` output (or `None`)."""
        return cls(**data) if data is not None else None


@dataclass(frozen=True)
class Usage:
    """What a run used and what the provider billed for it: one definition that every reader reports.

    - `requests`, `input_tokens`, `output_tokens`, `tool_calls`: what the run's conversation used, as
      pydantic-ai counts it: each model request whose response the run went on with, once, whoever
      answered it, and each tool call. An orchestrator's usage includes its delegates' runs.
    - `replayed_*`: of those requests, the ones the model-call journal answered instead of the provider
      (paid for earlier, not again); an orchestrator's include its delegates' replayed ones.
    - `extra_billed_*`: provider answers billed to this run that its conversation did not use as they
      came: an attempt lost after the provider answered (its retry asked again, or replayed the answer
      from the journal), or requests a reset made again; an orchestrator's include its delegates' and
      all a delegate billed whose result a reset then left behind.
    - `billed_requests` and `billed_tokens` (derived): every answer the provider billed to this run and,
      for an orchestrator, to its delegates (summed over the run and its delegates, as `requests` is).

    One ledger run has one usage, however many Temporal runs it took: parking and resuming, a reset and
    continue-as-new go on adding to it. A restart (a new run of a failed workflow id, `forked_from`
    reason `restart`) is a new ledger run with its own usage; the failed run keeps what it spent, and
    the answers the restart replays from the failed run's journal count as replayed, not billed again.
    The ledger settles `replayed_*` and `extra_billed_*` from the run's own model-request events and its
    delegates' settled usage (`settle_usage`) when the run parks and when it is sealed. So a delegate's
    billed answers are in its own run record and in its orchestrator's: add up the billed figures of
    runs without a parent (`parent_run_id`) to get what a whole tree of runs was billed.
    """

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0
    replayed_requests: int = 0
    """Of `requests`: answered from the model-call journal, not by the provider (not billed again)."""
    replayed_input_tokens: int = 0
    """Of `input_tokens`: those of replayed requests."""
    replayed_output_tokens: int = 0
    """Of `output_tokens`: those of replayed requests."""
    extra_billed_requests: int = 0
    """Provider answers billed to this run beyond its requests that were not replayed (see above)."""
    extra_billed_input_tokens: int = 0
    """The input tokens of those answers."""
    extra_billed_output_tokens: int = 0
    """The output tokens of those answers."""

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, name) + getattr(other, name) for name in _USAGE_FIELDS))

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    @property
    def billed_requests(self) -> int:
        """Answers the provider billed to this run: requests not replayed, plus the extra billed ones."""
        return self.requests - self.replayed_requests + self.extra_billed_requests

    @property
    def billed_input_tokens(self) -> int:
        """The input tokens of the billed answers."""
        return self.input_tokens - self.replayed_input_tokens + self.extra_billed_input_tokens

    @property
    def billed_output_tokens(self) -> int:
        """The output tokens of the billed answers."""
        return self.output_tokens - self.replayed_output_tokens + self.extra_billed_output_tokens

    @property
    def billed_tokens(self) -> int:
        """Input plus output tokens of the billed answers."""
        return self.billed_input_tokens + self.billed_output_tokens

    @property
    def replayed_tokens(self) -> int:
        """Input plus output tokens of replayed requests."""
        return self.replayed_input_tokens + self.replayed_output_tokens

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Usage | None:
        """Rebuild from `to_json()` output (or `None`)."""
        return cls(**data) if data is not None else None


_USAGE_FIELDS = tuple(field.name for field in fields(Usage))


@dataclass(frozen=True)
class StepEvent:
    """One transition of one attempt of one activity (or of the run itself).

    The idempotency key is `(workflow_id, temporal_run_id, activity_id, attempt, kind)`: Temporal
    delivers at least once and retries every attempt, and `activity_id` alone repeats across
    Temporal runs (resets, continue-as-new), so all five parts are needed.
    """

    run_id: str
    """The ledger run id: stable for one `Agent.run` across resets and continue-as-new."""
    workflow_id: str
    temporal_run_id: str
    activity_id: str
    """The Temporal activity id, or `RUN_ACTIVITY_ID` for run-level events."""
    attempt: int
    """The Temporal attempt number (1-based); 0 for run-level events and calls rejected at argument validation.

    A delegate call counts its child workflow runs as attempts: each retry of a failed delegate is one more.
    """
    kind: EventKind
    timestamp: datetime
    step: int | None = None
    """pydantic-ai's `run_step`: the number of the model request this event belongs to."""
    activity_type: str | None = None
    scheduled_at: datetime | None = None
    """The server-stamped schedule time of this attempt; with `attempt` it fences stale writes."""
    tool_call_id: str | None = None
    tool_name: str | None = None
    model_name: str | None = None
    duration_s: float | None = None
    error: ErrorInfo | None = None
    usage: Usage | None = None
    outcome: ToolOutcome | None = None
    detail: str | None = None
    """A short human-readable note (a retry prompt, the output preview, ...)."""
    child_run_id: str | None = None
    """For a delegate call (`agentledger.delegate`): the ledger run id of the child run it started."""
    replayed: bool = False
    """For `model_request_completed`: answered from the model-call journal instead of the provider (not billed);
    for `tool_call_started` and `tool_call_completed`: the attempt replayed the result from the tool-call journal
    (the tool did not run)."""
    seq: int = 0
    """The ledger's causal order, assigned when stored."""
    state: EventState = 'provisional'
    """Derived on read from the run's acceptances; never stored."""

    @property
    def key(self) -> str:
        """The idempotency key: at-least-once deliveries of the same write collapse onto it."""
        return f'{self.workflow_id}|{self.temporal_run_id}|{self.activity_id}|{self.attempt}|{self.kind}'

    @property
    def step_kind(self) -> StepKind | None:
        """`model_request` or `tool_call` for activity events, `None` for run-level events."""
        if self.kind.startswith('model_request_'):
            return 'model_request'
        if self.kind.startswith('tool_call_'):
            return 'tool_call'
        return None

    @property
    def is_terminal(self) -> bool:
        """Whether this event ends an attempt (or the run)."""
        return not self.kind.endswith(('_started', '_parked', '_resumed', '_reset')) and not self.kind.startswith(
            'approval_'
        )

    @property
    def fence(self) -> tuple[datetime, int]:
        """The order of attempts: a later schedule time wins, then a higher attempt number."""
        return (self.scheduled_at or self.timestamp, self.attempt)

    def with_state(self, state: EventState) -> StepEvent:
        """Return a copy with `state` set (states are derived, not stored)."""
        return replace(self, state=state)

    def with_seq(self, seq: int) -> StepEvent:
        """Return a copy with the stored sequence number."""
        return replace(self, seq=seq)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict; the stable shape of `agentledger show --json` events."""
        # Field by field: `asdict` deep-copies every value, and events are written far more often than read.
        data = {name: getattr(self, name) for name in _EVENT_FIELDS}
        data['error'] = asdict(self.error) if self.error is not None else None
        data['usage'] = asdict(self.usage) if self.usage is not None else None
        data['timestamp'] = self.timestamp.isoformat()
        data['scheduled_at'] = self.scheduled_at.isoformat() if self.scheduled_at else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepEvent:
        """Rebuild from `to_json()` output."""
        values = dict(data)
        values['timestamp'] = datetime.fromisoformat(values['timestamp'])
        values['scheduled_at'] = _dt(values.get('scheduled_at'))
        values['error'] = ErrorInfo.from_json(values.get('error'))
        values['usage'] = Usage.from_json(values.get('usage'))
        return cls(**values)


_EVENT_FIELDS = tuple(field.name for field in fields(StepEvent))


@dataclass(frozen=True)
class Acceptance:
    """The workflow observed an activity end and used its result (or its failure).

    Sent from workflow code deterministically (as headers on the next activity, and in the seal),
    so the ledger can tell the attempt Temporal accepted from provisional and zombie attempts.
    """

    run_id: str
    workflow_id: str
    temporal_run_id: str
    activity_id: str
    outcome: AcceptanceOutcome

    @property
    def key(self) -> str:
        """The idempotency key of this acceptance."""
        return f'{self.workflow_id}|{self.temporal_run_id}|{self.activity_id}'

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Acceptance:
        """Rebuild from `to_json()` output."""
        return cls(**data)


@dataclass(frozen=True)
class PayloadReference:
    """A workflow's Temporal history references a payload stored in the ledger (by its manifest hash).

    Recorded by the storage driver before the payload's content is written, so a stored payload
    always has a referrer; `agentledger gc` deletes a payload only when every referrer is past the
    namespace's retention. One record per (manifest, namespace, workflow id); `stored_at` is the
    latest time that workflow stored it.
    """

    manifest: str
    namespace: str
    workflow_id: str
    stored_at: datetime

    @property
    def key(self) -> str:
        """The record's identity: a later store by the same workflow replaces `stored_at` only."""
        return f'{self.manifest}|{self.namespace}|{self.workflow_id}'

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict."""
        return {**asdict(self), 'stored_at': self.stored_at.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PayloadReference:
        """Rebuild from `to_json()` output."""
        return cls(
            manifest=str(data['manifest']),
            namespace=str(data['namespace']),
            workflow_id=str(data['workflow_id']),
            stored_at=datetime.fromisoformat(data['stored_at']),
        )


ForkReason: TypeAlias = Literal['continue', 'fork', 'restart']
"""Why a run was seeded from another run's snapshot."""


@dataclass(frozen=True)
class ForkRef:
    """The snapshot a run was seeded from: lineage of continue, fork and restart."""

    run_id: str
    snapshot_id: str
    reason: ForkReason

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ForkRef | None:
        """Rebuild from `asdict()` output (or `None`)."""
        return cls(**data) if data is not None else None


@dataclass(frozen=True)
class RunStart:
    """What the workflow knows when a run starts; written by the `run_started` ledger activity."""

    run_id: str
    workflow_id: str
    temporal_run_id: str
    agent_name: str
    started_at: datetime
    task_queue: str
    conversation_id: str | None = None
    parent_run_id: str | None = None
    parent_tool_call_id: str | None = None
    prompt_preview: str | None = None
    forked_from: ForkRef | None = None
    workflow_type: str | None = None
    """The Temporal workflow type the agent ran in (`AgentRunWorkflow`, or the user's own workflow)."""
    event_id: str = RUN_ACTIVITY_ID
    """The activity id of the run's own events (its start and end), see `RUN_ACTIVITY_ID`."""


@dataclass(frozen=True)
class RunSeal:
    """How a run ended; written by the seal activity at the end of the run."""

    run_id: str
    workflow_id: str
    temporal_run_id: str
    status: RunStatus
    ended_at: datetime
    usage: Usage = field(default_factory=Usage)
    error: ErrorInfo | None = None
    output_preview: str | None = None
    event_id: str = RUN_ACTIVITY_ID
    """The activity id of the run's own events, as its `RunStart` has it."""


@dataclass(frozen=True)
class RunRecord:
    """One ledger run: one `Agent.run`, across every Temporal run it had (resets, continue-as-new)."""

    run_id: str
    workflow_id: str
    temporal_run_ids: tuple[str, ...]
    agent_name: str
    status: RunStatus
    started_at: datetime
    updated_at: datetime
    task_queue: str
    conversation_id: str | None = None
    parent_run_id: str | None = None
    parent_tool_call_id: str | None = None
    ended_at: datetime | None = None
    usage: Usage = field(default_factory=Usage)
    error: ErrorInfo | None = None
    prompt_preview: str | None = None
    output_preview: str | None = None
    forked_from: ForkRef | None = None
    degraded: tuple[str, ...] = ()
    """What the ledger missed during an outage under the `warn` policy (one line per missing step).

    The run went on without them; `reconcile` rebuilds them from Temporal's history and clears this.
    """
    workflow_type: str | None = None
    """The Temporal workflow type the agent ran in: `AgentRunWorkflow`, or a user's own workflow that called
    `Agent.run` (several ledger runs may share its workflow id). `None` for runs recorded before 0.3."""

    @property
    def temporal_run_id(self) -> str:
        """The latest Temporal run id of this ledger run."""
        return self.temporal_run_ids[-1]

    @property
    def in_own_workflow(self) -> bool:
        """Whether the run is an `Agent.run` inside a user's own workflow (not an `AgentRunWorkflow`).

        Such a run shares its workflow id and Temporal run with the workflow's other activities and agent
        runs, and ends when its seal activity ran, not when the workflow closes.
        """
        return self.workflow_type is not None and self.workflow_type != AGENT_RUN_WORKFLOW_TYPE

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end, when the run has ended."""
        return (self.ended_at - self.started_at).total_seconds() if self.ended_at else None

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict; the stable shape of `agentledger runs --json`."""
        data = asdict(self)
        data['temporal_run_ids'] = list(self.temporal_run_ids)
        data['degraded'] = list(self.degraded)
        for name in ('started_at', 'updated_at', 'ended_at'):
            value = cast(datetime | None, data[name])
            data[name] = value.isoformat() if value else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        """Rebuild from `to_json()` output."""
        values = dict(data)
        values['temporal_run_ids'] = tuple(values['temporal_run_ids'])
        values['degraded'] = tuple(values.get('degraded') or ())
        values['started_at'] = datetime.fromisoformat(values['started_at'])
        values['updated_at'] = datetime.fromisoformat(values['updated_at'])
        values['ended_at'] = _dt(values.get('ended_at'))
        values['usage'] = Usage.from_json(values.get('usage')) or Usage()
        values['error'] = ErrorInfo.from_json(values.get('error'))
        values['forked_from'] = ForkRef.from_json(values.get('forked_from'))
        return cls(**values)


@dataclass(frozen=True)
class StepRecord:
    """One step (one activity) of a run, summarised from its events: which attempt the run used."""

    run_id: str
    temporal_run_id: str
    activity_id: str
    kind: StepKind
    step: int | None
    attempts: int
    """How many attempts the ledger saw."""
    accepted_attempt: int | None
    """The attempt whose result the workflow used; `None` while running or when abandoned."""
    status: StepStatus
    tool_call_id: str | None = None
    tool_name: str | None = None
    outcome: ToolOutcome | None = None
    usage: Usage | None = None
    error: ErrorInfo | None = None
    duration_s: float | None = None
    child_run_id: str | None = None
    """For a delegate call: the ledger run id of the child run whose result the step used (its latest attempt)."""
    replayed: bool = False
    """For a model request: its result was answered from the model-call journal, not billed by the provider; for
    a tool call: its result was replayed from the tool-call journal, the tool did not run."""

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict."""
        return asdict(self)


@dataclass(frozen=True)
class RunTree:
    """A run and the delegate runs it started, recursively: who delegated what, what it cost, how it ended.

    `step` is the parent's delegate call that started this run (`None` for the root, and for a child
    whose parent has not yet recorded the call: a running parent records it at its next activity).
    A delegate retried after a failure appears once per attempt, each linked to the same call.
    """

    run: RunRecord
    step: StepRecord | None = None
    children: tuple[RunTree, ...] = ()

    def walk(self, depth: int = 0) -> Iterator[tuple[int, RunTree]]:
        """Every node, depth first, with its depth below this one (the root is depth 0)."""
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict: the run, the calling step and the children, recursively."""
        return {
            'run': self.run.to_json(),
            'step': self.step.to_json() if self.step is not None else None,
            'children': [child.to_json() for child in self.children],
        }


SnapshotKind: TypeAlias = Literal['model_request', 'final']
"""`model_request`: the history a model request was about to see; `final`: the run's last `all_messages()`."""


@dataclass(frozen=True)
class SnapshotRecord:
    """A provider-valid message history at a boundary, stored as a link in a chain.

    `new_hashes` are the content hashes of the messages this snapshot adds to its parent's; the
    parent may belong to another run (a continuation or fork shares the stored messages).
    """

    snapshot_id: str
    run_id: str
    temporal_run_id: str
    step: int
    """The model request (pydantic-ai `run_step`) the history was captured for; for `final`, the last one."""
    kind: SnapshotKind
    parent_id: str | None
    new_hashes: tuple[str, ...]
    message_count: int
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict."""
        data = asdict(self)
        data['new_hashes'] = list(self.new_hashes)
        data['created_at'] = self.created_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnapshotRecord:
        """Rebuild from `to_json()` output."""
        values = dict(data)
        values['new_hashes'] = tuple(values['new_hashes'])
        values['created_at'] = datetime.fromisoformat(values['created_at'])
        return cls(**values)


ToolEffectStatus: TypeAlias = Literal['started', 'completed', 'failed', 'unknown_after_crash']
"""Where a tool call's effect stands; `unknown_after_crash`: an attempt started and never ended."""


@dataclass(frozen=True)
class ToolEffect:
    """What the ledger knows about one tool call's side effect: per `(run, tool_call_id)`."""

    run_id: str
    tool_call_id: str
    tool_name: str | None
    status: ToolEffectStatus
    attempts: int
    idempotency_key: str
    """The key `agentledger.idempotency_key(ctx)` gives the tool body: stable across retries and crashes."""
    outcome: ToolOutcome | None = None
    in_doubt_attempts: tuple[int, ...] = ()
    """Attempts that started and never recorded an end: the tool may or may not have acted."""

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict."""
        data = asdict(self)
        data['in_doubt_attempts'] = list(self.in_doubt_attempts)
        return data
