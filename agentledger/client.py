"""Client API: start an agent run as an `AgentRunWorkflow` and get its typed result."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeAlias, TypedDict, TypeVar, Unpack, cast

from pydantic import TypeAdapter
from pydantic_ai.agent.abstract import AbstractAgent
from pydantic_ai.messages import ModelMessage, UserContent
from pydantic_ai.usage import UsageLimits
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHandle

from agentledger._compat import caller_identity
from agentledger.ledger._facade import Ledger
from agentledger.ledger._lineage import resolve_seed
from agentledger.ledger._resolve import resolve_run_id
from agentledger.ledger._scopes import Scopes
from agentledger.model._approvals import ApprovalDecision, ApprovalTimeoutAction, DecisionKind, PendingApproval
from agentledger.model._ids import ledger_run_id
from agentledger.model._options import check_options
from agentledger.model._outputs import output_adapter
from agentledger.model._records import ForkReason, RunRecord, Usage
from agentledger.model._run_text import run_details, run_summary
from agentledger.workflows import AbandonRequest, AgentRunInput, AgentRunOutput, AgentRunWorkflow, ResumeRequest

__all__ = [
    'AgentRunHandle',
    'AgentRunResult',
    'ResetResult',
    'ResetTarget',
    'RunOptions',
    'abandon_parked',
    'continue_run',
    'decide_approval',
    'fork_run',
    'pending_approvals',
    'reset_run',
    'resume_parked',
    'run',
    'start',
]

OutputT = TypeVar('OutputT')


@dataclass(frozen=True)
class AgentRunResult(Generic[OutputT]):
    """A finished run: the agent's output (typed as the agent's `output_type`) and where the ledger keeps it."""

    output: OutputT
    run_id: str
    """The ledger run id (`agentledger show RUN_ID`)."""
    workflow_id: str
    usage: Usage


@dataclass(frozen=True)
class AgentRunHandle(Generic[OutputT]):
    """A started run: its workflow, its ledger run id, and `result()` to wait for it."""

    workflow_handle: WorkflowHandle[Any, AgentRunOutput]
    run_id: str
    """The ledger run id."""
    _adapter: TypeAdapter[Any] | None

    @property
    def workflow_id(self) -> str:
        """The Temporal workflow id."""
        return self.workflow_handle.id

    async def result(self) -> AgentRunResult[OutputT]:
        """Wait for the run to finish; raises `temporalio.client.WorkflowFailureError` when it failed."""
        output = await self.workflow_handle.result()
        value = self._adapter.validate_python(output.output) if self._adapter is not None else output.output
        return AgentRunResult(
            output=cast(OutputT, value), run_id=output.run_id, workflow_id=output.workflow_id, usage=output.usage
        )

    async def resume(self, prompt: str | None = None) -> None:
        """Resume the parked run (started with `park_on_failure=True`) from its latest valid snapshot.

        Returns once the run is running again; `prompt`, if given, is added to the history first.
        Raises `temporalio.client.WorkflowUpdateFailedError` (cause type `RunNotParked`) when it is not parked.
        """
        await resume_parked(self.workflow_handle, prompt)

    async def abandon(self, reason: str | None = None) -> None:
        """Give up on the parked run: it fails with the error it parked on (and `reason`)."""
        await abandon_parked(self.workflow_handle, reason)

    async def pending_approvals(self) -> list[PendingApproval]:
        """The tool calls the run waits on a decision for, each with the digest `approve` / `deny` must name."""
        return await pending_approvals(self.workflow_handle)

    async def approve(
        self, call: PendingApproval, *, override_args: dict[str, Any] | None = None, by: str | None = None
    ) -> str:
        """Approve a waiting call, as read from `pending_approvals()`: the decision names its digest.

        `override_args` runs the tool with other arguments. Raises `WorkflowUpdateFailedError` (cause type
        `ApprovalRejected`) when the call is not waiting, was decided already, or its arguments changed.
        """
        return await decide_approval(self.workflow_handle, call, 'approve', override_args=override_args, by=by)

    async def deny(self, call: PendingApproval, *, reason: str | None = None, by: str | None = None) -> str:
        """Deny a waiting call, as read from `pending_approvals()`: the model reads `reason` as its result."""
        return await decide_approval(self.workflow_handle, call, 'deny', reason=reason, by=by)


async def pending_approvals(handle: WorkflowHandle[Any, Any]) -> list[PendingApproval]:
    """The calls an `AgentRunWorkflow` waits on a decision for (see `AgentRunHandle.pending_approvals`)."""
    pending: list[PendingApproval] = await handle.query(
        'agentledger_pending_approvals', result_type=list[PendingApproval]
    )
    return pending


async def decide_approval(
    handle: WorkflowHandle[Any, Any],
    call: PendingApproval,
    kind: DecisionKind,
    *,
    override_args: dict[str, Any] | None = None,
    reason: str | None = None,
    by: str | None = None,
) -> str:
    """Send the `approve` or `deny` update for `call` (see `AgentRunHandle.approve`); `by`: the client's identity."""
    decision = ApprovalDecision(
        tool_call_id=call.tool_call_id,
        digest=call.digest,
        override_args=override_args,
        reason=reason,
        by=by or caller_identity(handle),
    )
    done: str = await handle.execute_update(kind, decision, result_type=str)
    return done


async def resume_parked(handle: WorkflowHandle[Any, Any], prompt: str | None = None) -> None:
    """Send the `resume` update to a parked `AgentRunWorkflow` (see `AgentRunHandle.resume`)."""
    await handle.execute_update('resume', ResumeRequest(prompt=prompt))


async def abandon_parked(handle: WorkflowHandle[Any, Any], reason: str | None = None) -> None:
    """Send the `abandon` update to a parked `AgentRunWorkflow` (see `AgentRunHandle.abandon`)."""
    await handle.execute_update('abandon', AbandonRequest(reason=reason))


class RunOptions(TypedDict, total=False):
    """What a run is started with, besides its agent and prompt: where it runs, its inputs, its limits.

    `start`, `run`, `continue_run` and `fork_run` take these as keyword arguments (besides the task
    queue, which `start` and `run` require); to start runs alike, build one
    (`RunOptions(conversation_id='c-1', ...)`, a dict) and pass it as `**options`. A name it does not
    declare is refused with `TypeError`, as an unknown keyword argument is.
    """

    workflow_id: str | None
    """The Temporal workflow id: `<agent name>-<random>` by default (`<agent name>-continue-<random>` or
    `-fork-` for a seeded run)."""
    deps: Any
    """The agent's deps; they cross as data and are validated against its `deps_type` in the workflow."""
    message_history: list[ModelMessage] | None
    """Messages the run starts after (not for a continued or forked run: its snapshot is its history)."""
    conversation_id: str | None
    """The conversation the run belongs to; a seeded run's is its source run's by default."""
    usage_limits: UsageLimits | None
    """pydantic-ai's usage limits of the run; its delegates' usage counts against them too."""
    metadata: dict[str, Any] | None
    """Free-form data recorded with the run (not sent to the model)."""
    fresh_start: bool
    """Start a workflow id whose last run failed afresh, instead of resuming that run from its latest
    valid snapshot (not for a continued or forked run: it starts from the snapshot it names)."""
    history_event_limit: int | None
    """Continue as new (one ledger run across the Temporal runs) before a model request once the
    history has this many events; Temporal's suggestion is always followed."""
    park_on_failure: bool
    """A failing agent parks instead of failing and waits for `AgentRunHandle.resume` or `abandon`
    (README, "Park on failure")."""
    wait_for_approval: bool
    """Wait in the run for decisions on tool calls that need approval (the default); `False` ends the run
    with the `DeferredToolRequests` output instead (README, "Approvals")."""
    approval_timeout_s: float | None
    """How long a call may wait for its decision (by default, for ever)."""
    approval_timeouts_s: dict[str, float]
    """Per tool name, in place of `approval_timeout_s`."""
    on_approval_timeout: ApprovalTimeoutAction
    """When a deadline passes: `deny` the call (the default), `park` the run, or `fail` it."""
    reexecute_tools: bool
    """Run the tool calls again that an earlier ledger run of the workflow id's execution chain completed
    (restarting a failed run), instead of replaying their journaled results; a later reset of this run
    replays what it ran (README, "Tool-call journal")."""


async def start(
    client: Client,
    agent: AbstractAgent[Any, OutputT] | str,
    prompt: str | Sequence[UserContent] | None = None,
    *,
    task_queue: str,
    **options: Unpack[RunOptions],
) -> AgentRunHandle[OutputT]:
    """Start one run of `agent` (an agent or its registered name) as an `AgentRunWorkflow`.

    The client needs `LedgerPlugin` (or pydantic-ai's plugin) for its payload converter; a worker
    serving the agent on `task_queue` does the work; `options` are the `RunOptions`. Starting a
    workflow id whose last run failed resumes that run from its latest valid snapshot unless
    `fresh_start=True`. With `park_on_failure=True` a failing agent parks instead of failing and
    waits for `AgentRunHandle.resume` or `abandon` (README, "Park on failure").
    """
    name = agent if isinstance(agent, str) else agent.name
    if not name:
        raise ValueError('the agent needs a name: Agent(..., name="...")')
    check_options('start', options, RunOptions)
    return await _start(client, agent, name, prompt, task_queue, options)


async def _start(
    client: Client,
    agent: AbstractAgent[Any, OutputT] | str,
    name: str,
    prompt: str | Sequence[UserContent] | None,
    task_queue: str,
    options: RunOptions,
    *,
    continue_from: str | None = None,
    snapshot_id: str | None = None,
    seed_reason: ForkReason | None = None,
) -> AgentRunHandle[OutputT]:
    """Start the workflow: the one place run options become its input and start arguments.

    Its static summary (the agent and the prompt) and details (the agent, conversation, the run it was
    seeded from, and the `agentledger show` command) are what the Temporal UI shows of it.
    """
    workflow_id = options.get('workflow_id') or f'{name}-{uuid.uuid4().hex[:12]}'
    conversation_id = options.get('conversation_id')
    input = AgentRunInput(
        agent=name,
        prompt=prompt if prompt is None or isinstance(prompt, str) else list(prompt),
        message_history=options.get('message_history'),
        deps=options.get('deps'),
        conversation_id=conversation_id,
        usage_limits=options.get('usage_limits'),
        metadata=options.get('metadata') or {},
        continue_from=continue_from,
        snapshot_id=snapshot_id,
        fresh_start=options.get('fresh_start', False),
        history_event_limit=options.get('history_event_limit'),
        park_on_failure=options.get('park_on_failure', False),
        wait_for_approval=options.get('wait_for_approval', True),
        approval_timeout_s=options.get('approval_timeout_s'),
        approval_timeouts_s=dict(options.get('approval_timeouts_s') or {}),
        on_approval_timeout=options.get('on_approval_timeout', 'deny'),
        reexecute_tools=options.get('reexecute_tools', False),
        # Stamped, so that a copy of this input started under another workflow id is known for one.
        started_as=workflow_id,
    )
    handle = await client.start_workflow(
        AgentRunWorkflow.run,
        input,
        id=workflow_id,
        task_queue=task_queue,
        static_summary=run_summary(name, input.prompt),
        static_details=run_details(
            name,
            workflow_id,
            conversation_id=conversation_id,
            seeded_from=(seed_reason, continue_from) if seed_reason is not None and continue_from is not None else None,
        ),
    )
    first_run_id = handle.first_execution_run_id or handle.result_run_id or ''
    return AgentRunHandle(
        workflow_handle=handle,
        run_id=ledger_run_id(handle.id, first_run_id),
        _adapter=output_adapter(agent),
    )


async def run(
    client: Client,
    agent: AbstractAgent[Any, OutputT] | str,
    prompt: str | Sequence[UserContent] | None = None,
    *,
    task_queue: str,
    **options: Unpack[RunOptions],
) -> AgentRunResult[OutputT]:
    """Run `agent` once as an `AgentRunWorkflow` and wait for its result (see `start`)."""
    check_options('run', options, RunOptions)
    handle: AgentRunHandle[OutputT] = await start(client, agent, prompt, task_queue=task_queue, **options)
    return await handle.result()


def _ledger_of(client: Client, ledger: Ledger | None) -> Ledger:
    if ledger is not None:
        return ledger
    from agentledger.plugin import LedgerPlugin

    for plugin in client.config().get('plugins', []):
        if isinstance(plugin, LedgerPlugin):
            return plugin.ledger
    raise ValueError('pass ledger=..., or connect the client with agentledger.LedgerPlugin(ledger)')


async def _seeded(
    client: Client,
    run_id: str,
    prompt: str | Sequence[UserContent] | None,
    task_queue: str | None,
    options: RunOptions,
    *,
    at_step: int | None,
    snapshot: str | None,
    agent: AbstractAgent[Any, OutputT] | None,
    ledger: Ledger | None,
) -> AgentRunHandle[OutputT]:
    refused = [name for name in ('message_history', 'fresh_start') if options.get(name)]
    if refused:
        raise ValueError(f'a continued or forked run starts from its snapshot: it takes no {refused[0]}')
    store = _ledger_of(client, ledger)
    async with store:
        # A workflow id or a Temporal run id names the ledger run it ran; the workflow gets the ledger run id.
        run_id = await resolve_run_id(store, run_id)
        # Checked here so a bad run id, snapshot id or step fails before any workflow starts.
        seed = await resolve_seed(store, continue_from=run_id, at_step=at_step, snapshot_id=snapshot)
        source = await store.run(run_id)
    name = source.agent_name
    options = {
        **options,
        'workflow_id': options.get('workflow_id') or f'{name}-{seed.reason}-{uuid.uuid4().hex[:12]}',
        'conversation_id': options.get('conversation_id') or source.conversation_id,
    }
    return await _start(
        client,
        agent if agent is not None else name,
        name,
        prompt,
        task_queue or source.task_queue,
        options,
        continue_from=run_id,
        # A fork pins the snapshot chosen here; a continuation takes the latest when the run starts.
        snapshot_id=seed.snapshot_id if seed.reason == 'fork' else None,
        seed_reason=seed.reason,
    )


async def continue_run(
    client: Client,
    run_id: str,
    prompt: str | Sequence[UserContent] | None = None,
    *,
    agent: AbstractAgent[Any, OutputT] | None = None,
    ledger: Ledger | None = None,
    task_queue: str | None = None,
    **options: Unpack[RunOptions],
) -> AgentRunHandle[OutputT]:
    """Start a new run seeded with `run_id`'s latest valid snapshot, optionally with a new prompt.

    `run_id` is a ledger run id, a workflow id (its latest execution's run) or a Temporal run id
    (see `agentledger.resolve_run_id`); `UnknownRunIdError` says when none names a run.

    The new ledger run records `forked_from`; stored messages are shared, not copied. Tool calls that
    completed before the snapshot are not run again; calls that were in flight are not in a valid
    snapshot (they show as in doubt in `ledger.tool_effects`). Raises `RunNotFoundError` /
    `SnapshotNotFoundError` before starting anything when the run has nothing to continue from.
    `agent` (optional) types the output; the task queue and the conversation default to the source
    run's; `options` are the other `RunOptions` but `message_history` and `fresh_start`. The ledger
    comes from the client's `LedgerPlugin` unless given.
    """
    check_options('continue_run', options, RunOptions)
    return await _seeded(
        client,
        run_id,
        prompt,
        task_queue,
        options,
        at_step=None,
        snapshot=None,
        agent=agent,
        ledger=ledger,
    )


async def fork_run(
    client: Client,
    run_id: str,
    *,
    at_step: int | None = None,
    snapshot: str | None = None,
    prompt: str | Sequence[UserContent] | None = None,
    agent: AbstractAgent[Any, OutputT] | None = None,
    ledger: Ledger | None = None,
    task_queue: str | None = None,
    **options: Unpack[RunOptions],
) -> AgentRunHandle[OutputT]:
    """Start a new run seeded with the valid snapshot at or before `at_step` (or exactly `snapshot`).

    Like `continue_run` (which takes the same kinds of `run_id`), but from an earlier point: a step
    that does not exist, an unknown or malformed snapshot id, or a snapshot of another run raises
    before any workflow starts.
    """
    if (at_step is None) == (snapshot is None):
        raise ValueError('fork_run needs exactly one of at_step= or snapshot=')
    check_options('fork_run', options, RunOptions)
    return await _seeded(
        client,
        run_id,
        prompt,
        task_queue,
        options,
        at_step=at_step,
        snapshot=snapshot,
        agent=agent,
        ledger=ledger,
    )


ResetTarget: TypeAlias = Literal['first-workflow-task', 'last-workflow-task']
"""Where `reset_run` resets a run's latest Temporal run to: its first or its last completed workflow task."""


@dataclass(frozen=True)
class ResetResult:
    """A reset: the ledger run, its workflow, the Temporal run the reset started, and the tool results voided."""

    run_id: str
    workflow_id: str
    temporal_run_id: str
    """The new Temporal run (it carries on the same ledger run)."""
    voided_tool_results: int
    """How many journaled tool results `reexecute_tools=True` voided: those calls run again."""


async def reset_run(
    client: Client,
    run_id: str,
    *,
    to: ResetTarget = 'first-workflow-task',
    reason: str | None = None,
    reexecute_tools: bool = False,
    ledger: Ledger | None = None,
) -> ResetResult:
    """Reset the current Temporal run of a ledger run (an `AgentRunWorkflow`) to a workflow task.

    `run_id` is any id the Temporal UI or the ledger shows (see `agentledger.resolve_run_id`).

    The new Temporal run replays model answers from the model-call journal and tool results from the
    tool-call journal, so it repeats no paid request and no tool call. `reexecute_tools=True` voids
    the run's journaled tool results first (the void, with `reason`, is kept in the ledger), so the
    tools the reset run calls run again; `agentledger.once` effects done stay done. The reason Temporal
    records (and the ledger's `run_reset` event with it) is `<client identity>: <reason>`. The ledger comes
    from the client's `LedgerPlugin` unless given; raises `UnknownRunIdError` for an unknown id and
    `ValueError` when the run's history has no completed workflow task to reset to.
    """
    store = _ledger_of(client, ledger)
    why = reason or 'agentledger reset'
    async with store:
        record = await store.run(await resolve_run_id(store, run_id))
        temporal_run_id = await _current_run(client, record)
        # Checked before anything is voided: a reset that cannot happen leaves the journal as it was.
        event_id = await _workflow_task(client, record.workflow_id, temporal_run_id, to)
        voided = 0
        if reexecute_tools:
            lineage = await Scopes(store).journal_run(record.run_id)
            voided = len(await store.void_tool_results(record.workflow_id, lineage, f'reset to re-execute: {why}'))
        response = await client.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=client.namespace,
                workflow_execution=WorkflowExecution(workflow_id=record.workflow_id, run_id=temporal_run_id),
                # Temporal's history keeps the reason but not the caller's identity (its reset event names the
                # server): like the Temporal CLI, the reason names who reset the run.
                reason=f'{client.identity}: {why}',
                workflow_task_finish_event_id=event_id,
                request_id=str(uuid.uuid4()),
                identity=client.identity,
            )
        )
    return ResetResult(
        run_id=record.run_id,
        workflow_id=record.workflow_id,
        temporal_run_id=response.run_id,
        voided_tool_results=voided,
    )


async def _current_run(client: Client, record: RunRecord) -> str:
    """The Temporal run of `record` to reset: its workflow's current execution when that belongs to the run.

    A reset the ledger has not recorded yet (no worker saw its new run) leaves the record's latest
    Temporal run behind the workflow's current one; resetting the recorded one would discard that
    reset. The current execution belongs to the run when the record lists it, or lists the first run
    of its chain (resets and continue-as-new keep it); else the workflow id was started again since,
    as another run, and the record's latest Temporal run is reset.
    """
    info = (await client.get_workflow_handle(record.workflow_id).describe()).raw_description.workflow_execution_info
    current = info.execution.run_id
    if current in record.temporal_run_ids or info.first_run_id in record.temporal_run_ids:
        return current
    return record.temporal_run_id


async def _workflow_task(client: Client, workflow_id: str, temporal_run_id: str, to: ResetTarget) -> int:
    """The event id of the first or last completed workflow task of Temporal run `temporal_run_id`."""
    if to not in ('first-workflow-task', 'last-workflow-task'):
        raise ValueError(f"reset point must be 'first-workflow-task' or 'last-workflow-task', not {to!r}")
    history = await client.get_workflow_handle(workflow_id, run_id=temporal_run_id).fetch_history()
    completed = [e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    if not completed:
        raise ValueError(
            f'Temporal run {temporal_run_id} of workflow {workflow_id} has no completed workflow task to reset to'
        )
    return completed[0] if to == 'first-workflow-task' else completed[-1]
