"""`AgentRunWorkflow`: one generic workflow that runs any registered agent; one `Agent.run` per execution.

Workflow code only: deterministic, no I/O. The ledger is written by activities (`run_started`,
`seal_run`) and by the worker-side activity interceptor; this module only decides what to record.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_ai.agent.abstract import AbstractAgent
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, UserContent
from pydantic_ai.run import AgentRunResult
from pydantic_ai.tools import RunContext
from pydantic_ai.usage import RunUsage
from temporalio import workflow
from temporalio.exceptions import ApplicationError

from agentledger.errors import (
    AGENT_NOT_DURABLE,
    INVALID_DEPS,
    INVALID_SEED,
    RUN_NOT_PARKED,
    UNKNOWN_AGENT,
)
from agentledger.model._approvals import ApprovalDecision, PendingApproval
from agentledger.model._conversions import error_info, ledger_usage, run_usage
from agentledger.model._ids import ledger_run_id
from agentledger.model._records import AGENT_RUN_WORKFLOW_TYPE, ErrorInfo, RunStart, Usage
from agentledger.workflows._approvals import ApprovalGate, ApprovalTimedOut
from agentledger.workflows._display import RunDisplay
from agentledger.workflows._ignored import IGNORED_REQUESTS_PATCH, IgnoredRequests
from agentledger.workflows._ledger_calls import ledger_activity, preview, seal_run
from agentledger.workflows._observer import LedgerObserver
from agentledger.workflows._registry import agent_names, lookup_agent
from agentledger.workflows._state import LedgerRunState, current_state
from agentledger.workflows._types import (
    PARK_RUN_ACTIVITY,
    RESUME_RUN_ACTIVITY,
    RUN_STARTED_ACTIVITY,
    AbandonRequest,
    AgentRunInput,
    AgentRunOutput,
    ParkInput,
    ResumeInput,
    ResumePoint,
    ResumeRequest,
    ResumeSeed,
    RunFailureDetails,
    RunStartInput,
    RunStartResult,
)

__all__ = ['AgentRunWorkflow']

RESTARTED_INPUT_PATCH = 'agentledger.restarted-input'
"""The `workflow.patched` id behind starting a copied continue-as-new input afresh: a run recorded before
went on with the ledger run the input names, and replays so."""


class _RunRejected(Exception):
    """A run that cannot start: unknown agent, agent without durability, wrong deps."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@workflow.defn(name=AGENT_RUN_WORKFLOW_TYPE)
class AgentRunWorkflow:
    """Runs the named agent once, with every model request and tool call as a ledger-recorded activity.

    The agent must be registered on the worker (`LedgerPlugin(agents=[...])`) and carry a
    `TemporalDurability` capability. The ledger run id is derived from the workflow id and the first
    execution's run id, so it is stable across resets and continue-as-new. A failed run ends with a
    non-retryable `ApplicationError` of the agent's error type whose details are `RunFailureDetails`
    (its ledger run id and the usage it spent), which an orchestrator reads when a delegate fails.
    """

    @workflow.init
    def __init__(self, input: AgentRunInput) -> None:
        info = workflow.info()
        input = _own_input(input, info.workflow_id)
        self._agentledger_state = LedgerRunState(
            run_id=input.ledger_run_id or ledger_run_id(info.workflow_id, info.first_execution_run_id),
            workflow_id=info.workflow_id,
            temporal_run_id=info.run_id,
        )
        self._agentledger_state.display = RunDisplay(self._agentledger_state.run_id, progress=True)
        if input.resume is not None:
            # What the previous Temporal run observed last reaches the ledger with this run's first activity.
            self._agentledger_state.acceptances.extend(input.resume.acceptances)
            self._agentledger_state.workflow_events.extend(input.resume.workflow_events)
            self._agentledger_state.step_offset = input.resume.step_offset
            self._agentledger_state.last_step = input.resume.step_offset
        self._agentledger_state.reexecute_tools = input.reexecute_tools
        self._parked: ErrorInfo | None = None
        self._decision: ResumeRequest | AbandonRequest | None = None
        self._parks = 0
        self._approvals = ApprovalGate(
            self._agentledger_state,
            timeout_s=input.approval_timeout_s,
            timeouts_s=dict(input.approval_timeouts_s),
            on_timeout=input.on_approval_timeout,
        )
        if input.wait_for_approval:
            self._agentledger_state.approvals = self._approvals
        self._ignored = IgnoredRequests(self._agentledger_state)

    @workflow.query(name='agentledger_run_id')
    def ledger_run_id(self) -> str:
        """The ledger run id of this execution."""
        return self._agentledger_state.run_id

    @workflow.run
    async def run(self, input: AgentRunInput) -> AgentRunOutput:
        """Record the start, run the agent, seal the ledger run with the outcome, return the output."""
        state = self._agentledger_state
        input = _own_input(input, workflow.info().workflow_id)
        # Passed to the run (which adds to it in place), so a failed or cancelled run still knows what it
        # spent: its seal records it, and an orchestrator that delegated to it adds it to its own usage.
        spent = RunUsage()
        seed = await self._record_start(input)
        restart = seed.forked_from if seed.forked_from is not None and seed.forked_from.reason == 'restart' else None
        state.display.identify(
            seed.search_attributes,
            agent=input.agent,
            conversation_id=input.conversation_id,
            parent_run_id=input.parent_run_id,
            restart_of=restart.run_id if restart is not None else None,
        )
        prompt = input.prompt
        history = input.message_history
        if input.resume is not None:
            # Continued as new: the same ledger run goes on from the model request that was about to be made.
            spent = run_usage(input.resume.usage)
            prompt = None
            history = seed.message_history
            if history and seed.resumed_snapshot_id is not None:
                state.history.seed(seed.resumed_snapshot_id, history[: seed.resumed_count])
        elif seed.forked_from is not None:
            history = seed.message_history
            if history:
                state.history.seed(seed.forked_from.snapshot_id, history)
            # A restart resumes exactly where the failed run stopped; its prompt is already in the history.
            if restart is not None:
                prompt = None
        try:
            if seed.seed_error is not None:
                raise _RunRejected(INVALID_SEED, seed.seed_error)
            agent = _resolve_agent(input.agent)
            deps = _validate_deps(agent, input.deps)
        except _RunRejected as rejected:
            info = ErrorInfo(type=rejected.error_type, message=str(rejected), retryable=False)
            await seal_run(self._agentledger_state, 'failed', error=info)
            raise ApplicationError(
                str(rejected), self._failure_details(Usage()), type=rejected.error_type, non_retryable=True
            ) from None
        first = (history, prompt)
        while True:
            try:
                result: AgentRunResult[Any] = await agent.run(
                    prompt,
                    message_history=history,
                    deps=deps,
                    usage_limits=input.usage_limits,
                    conversation_id=input.conversation_id,
                    usage=spent,
                    capabilities=[
                        LedgerObserver(
                            state, continue_as_new=lambda ctx, messages: _continue_as_new(input, ctx, messages)
                        )
                    ],
                )
                break
            except asyncio.CancelledError:
                await asyncio.shield(seal_run(self._agentledger_state, 'cancelled', usage=ledger_usage(spent)))
                raise
            except workflow.NondeterminismError:
                raise
            except Exception as error:
                info = error_info(error, retryable=False)
                usage = ledger_usage(spent)
                park = input.park_on_failure or (isinstance(error, ApprovalTimedOut) and error.park)
                try:
                    decision = await self._park(info, usage) if park else None
                    if isinstance(decision, ResumeRequest):
                        history, prompt = await self._resume(decision, first)
                        continue
                except asyncio.CancelledError:
                    # Cancelled while parked: the run ends cancelled, not parked.
                    await asyncio.shield(seal_run(self._agentledger_state, 'cancelled', usage=usage))
                    raise
                if decision is not None:
                    reason = f': {decision.reason}' if decision.reason else ''
                    info = dataclasses.replace(info, message=f'{info.message} (abandoned while parked{reason})')
                usage = await seal_run(self._agentledger_state, 'failed', error=info, usage=usage)
                await _handlers_finished()
                raise ApplicationError(
                    info.message, self._failure_details(usage), type=info.type, non_retryable=True
                ) from error
        # The result reports the usage as the ledger settled it (what the provider billed, what was replayed).
        usage = await seal_run(
            self._agentledger_state,
            'completed',
            usage=ledger_usage(result.usage),
            output_preview=preview(result.output),
            final_messages=result.all_messages(),
            # This run's own last step: usage also counts its delegates' requests.
            final_step=state.step_offset + sum(isinstance(m, ModelResponse) for m in result.new_messages()),
        )
        await _handlers_finished()
        return AgentRunOutput(output=result.output, run_id=state.run_id, workflow_id=state.workflow_id, usage=usage)

    @workflow.update(name='resume')
    async def resume_update(self, request: ResumeRequest | None = None) -> str:
        """Resume the parked run from its latest valid snapshot; returns the ledger run id once it runs again."""
        self._decision = request or ResumeRequest()
        await workflow.wait_condition(lambda: self._decision is None and self._parked is None)
        return self._agentledger_state.run_id

    @resume_update.validator
    def _validate_resume(self, request: ResumeRequest | None = None) -> None:
        self._require_parked('resume')

    @workflow.update(name='abandon')
    async def abandon_update(self, request: AbandonRequest | None = None) -> str:
        """Give up on the parked run: it fails with the error it parked on; returns the ledger run id."""
        self._decision = request or AbandonRequest()
        return self._agentledger_state.run_id

    @abandon_update.validator
    def _validate_abandon(self, request: AbandonRequest | None = None) -> None:
        self._require_parked('abandon')

    @workflow.query(name='agentledger_pending_approvals')
    def pending_approvals(self) -> list[PendingApproval]:
        """The tool calls waiting for a decision, each with the digest a decision must name."""
        return self._approvals.waiting

    @workflow.update(name='approve')
    async def approve_update(self, decision: ApprovalDecision) -> str:
        """Approve a waiting tool call (optionally with `override_args`); the run goes on once every call is decided."""
        return await self._approvals.decide(decision, 'approve', refuse=True)

    @approve_update.validator
    def _validate_approve(self, decision: ApprovalDecision) -> None:
        self._approvals.validate(decision, 'approve')

    @workflow.update(name='deny')
    async def deny_update(self, decision: ApprovalDecision) -> str:
        """Deny a waiting tool call: the model reads `reason` as the call's result."""
        return await self._approvals.decide(decision, 'deny', refuse=True)

    @deny_update.validator
    def _validate_deny(self, decision: ApprovalDecision) -> None:
        self._approvals.validate(decision, 'deny')

    @workflow.signal(name='approve')
    async def approve_signal(self, decision: ApprovalDecision) -> None:
        """Approve a waiting tool call (the signal form of the `approve` update; a rejected one is recorded)."""
        await self._approvals.decide(decision, 'approve', refuse=False)

    @workflow.signal(name='deny')
    async def deny_signal(self, decision: ApprovalDecision) -> None:
        """Deny a waiting tool call (the signal form of the `deny` update; a rejected one is recorded)."""
        await self._approvals.decide(decision, 'deny', refuse=False)

    @workflow.signal(name='resume')
    async def resume_signal(self, request: ResumeRequest | None = None) -> None:
        """Resume the parked run (the signal form of the `resume` update, e.g. from the Temporal UI).

        A run that is not parked, or already has a decision, records the signal as ignored.
        """
        await self._signalled('resume', request or ResumeRequest())

    @workflow.signal(name='abandon')
    async def abandon_signal(self, request: AbandonRequest | None = None) -> None:
        """Give up on the parked run (the signal form of the `abandon` update); one the run cannot take is recorded."""
        await self._signalled('abandon', request or AbandonRequest())

    def _not_parked(self) -> str | None:
        """Why the run cannot take a `resume` or `abandon` now (`is not parked`, ...), or `None` when it can."""
        if self._decision is not None:
            return 'already has a decision'
        return 'is not parked' if self._parked is None else None

    def _require_parked(self, action: str) -> None:
        why = self._not_parked()
        if why is not None:
            raise ApplicationError(
                f'cannot {action} run {self._agentledger_state.run_id}: it {why}; {action} applies to a parked run '
                '(one that failed with park_on_failure and waits)',
                type=RUN_NOT_PARKED,
            )

    async def _signalled(self, action: str, decision: ResumeRequest | AbandonRequest) -> None:
        # A signal cannot be refused: one the run cannot take is recorded as ignored, in the ledger and the UI.
        why = self._not_parked()
        if why is not None:
            await self._ignored.record(action, decision, why)
            return
        self._decision = decision

    async def _park(self, error: ErrorInfo, usage: Usage) -> ResumeRequest | AbandonRequest:
        """Record the run `parked` on `error`, show why in the Temporal UI, and wait for `resume` or `abandon`."""
        state = self._agentledger_state
        self._parks += 1
        now = workflow.now()
        state.note_run_event('run_parked', f'park:{self._parks}', now, error=error, usage=usage)
        self._parked = error
        await ledger_activity(
            PARK_RUN_ACTIVITY,
            ParkInput(run_id=state.run_id, error=error, parked_at=now, usage=usage),
            f'park {state.run_id}',
        )
        state.display.parked(error)
        await workflow.wait_condition(lambda: self._decision is not None)
        decision = self._decision
        assert decision is not None
        if isinstance(decision, AbandonRequest):
            self._decision = None
            self._parked = None
        return decision

    async def _resume(
        self, decision: ResumeRequest, first: tuple[list[ModelMessage] | None, str | list[UserContent] | None]
    ) -> tuple[list[ModelMessage] | None, str | list[UserContent] | None]:
        """Mark the run running again; return the history and prompt the agent goes on with.

        The history is the run's latest valid snapshot (completed tool calls are in it, so they are not
        run again), or, when the run holds none, what the run first started with (`first`: history and
        prompt; the new prompt, if any, in place of the first). Steps are numbered on.
        """
        state = self._agentledger_state
        now = workflow.now()
        state.note_run_event('run_resumed', f'resume:{self._parks}', now, detail=preview(decision.prompt))
        seed = await ledger_activity(
            RESUME_RUN_ACTIVITY,
            ResumeInput(run_id=state.run_id, resumed_at=now),
            f'resume {state.run_id}',
            result_type=ResumeSeed,
        )
        state.step_offset = state.last_step
        self._decision = None
        self._parked = None
        state.display.running()
        if seed.snapshot_id is None or not seed.message_history:
            history, prompt = first
            return history, decision.prompt if decision.prompt is not None else prompt
        state.history.seed(seed.snapshot_id, seed.message_history)
        return seed.message_history, decision.prompt

    def _failure_details(self, usage: Usage) -> RunFailureDetails:
        return RunFailureDetails(run_id=self._agentledger_state.run_id, usage=usage)

    async def _record_start(self, input: AgentRunInput) -> RunStartResult:
        state = self._agentledger_state
        info = workflow.info()
        start = RunStart(
            run_id=state.run_id,
            workflow_id=state.workflow_id,
            temporal_run_id=state.temporal_run_id,
            agent_name=input.agent,
            started_at=workflow.now(),
            task_queue=info.task_queue,
            conversation_id=input.conversation_id,
            parent_run_id=input.parent_run_id,
            parent_tool_call_id=input.parent_tool_call_id,
            prompt_preview=preview(input.prompt),
            workflow_type=info.workflow_type,
        )
        return await ledger_activity(
            RUN_STARTED_ACTIVITY,
            RunStartInput(
                start=start,
                continue_from=input.continue_from,
                at_step=input.at_step,
                snapshot_id=input.snapshot_id,
                fresh_start=input.fresh_start,
                resume=input.resume,
                repeats_workflow_id=(input.started_as if input.started_as not in (None, state.workflow_id) else None),
            ),
            f'start {state.run_id}',
            result_type=RunStartResult,
        )


async def _handlers_finished() -> None:
    """Let signal handlers still recording (an ignored signal's ledger activity) finish before the run ends.

    An activity scheduled by a handler is never run once its workflow closed, and its record would be lost.
    Behind the ignored-requests patch: a run recorded before it closed without waiting, and replays so.
    """
    if workflow.patched(IGNORED_REQUESTS_PATCH):
        await workflow.wait_condition(workflow.all_handlers_finished)


def _own_input(input: AgentRunInput, workflow_id: str) -> AgentRunInput:
    """The input as this workflow runs it: a copy of another workflow's input does not take over that one's run.

    A continued Temporal run's input names its ledger run and the point to go on from. Started under
    another workflow id (the Temporal UI's "Start Workflow Like This One" copies the input) those would
    attach the copy to the original's ledger run, so a copy is a fresh run of its own instead. Started
    again under the same workflow id without being continued as new (a restart from a copied input),
    they would reopen the ledger run that ended: it is a restart, seeded by the ledger like any other.
    A reset keeps the execution's start event, so a reset continued run still goes on with its own.
    """
    copied = input.started_as is not None and input.started_as != workflow_id
    continued = input.ledger_run_id is not None or input.resume is not None
    restarted = continued and workflow.info().continued_run_id is None and workflow.patched(RESTARTED_INPUT_PATCH)
    if not (copied or restarted):
        return input
    return dataclasses.replace(input, ledger_run_id=None, resume=None)


def _continue_as_new(input: AgentRunInput, ctx: RunContext[Any], messages: list[ModelMessage]) -> None:
    """Before a model request: continue as new if Temporal suggests it or the history reached the set limit.

    The new Temporal run's input names the history the ledger holds by reference and carries only
    the messages after it, so it stays small. Never before a Temporal run's first request, so each
    run makes progress.
    """
    info = workflow.info()
    limit = input.history_event_limit
    due = info.is_continue_as_new_suggested() or (limit is not None and info.get_current_history_length() >= limit)
    state = current_state()
    if not due or state is None or ctx.run_step <= 1:
        return
    found = state.history.reference(messages, ctx.run_step, model_request=False)
    reference, count = found if found is not None else (None, 0)
    resume = ResumePoint(
        history=reference,
        new_messages=messages[count:],
        step_offset=state.step_offset + ctx.run_step - 1,
        usage=ledger_usage(ctx.usage),
        acceptances=list(state.acceptances),
        workflow_events=list(state.workflow_events),
    )
    workflow.continue_as_new(
        dataclasses.replace(
            input,
            prompt=None,
            message_history=None,
            continue_from=None,
            at_step=None,
            snapshot_id=None,
            ledger_run_id=state.run_id,
            resume=resume,
        )
    )


def _resolve_agent(name: str) -> AbstractAgent[Any, Any]:
    task_queue = workflow.info().task_queue
    agent = lookup_agent(task_queue, name)
    if agent is None:
        known = ', '.join(agent_names(task_queue)) or 'none'
        raise _RunRejected(
            UNKNOWN_AGENT,
            f'no agent named {name!r} is registered on task queue {task_queue!r} (registered: {known}); '
            'pass it to LedgerPlugin(agents=[...]) on the worker',
        )
    if TemporalDurability.from_agent(agent) is None:
        raise _RunRejected(
            AGENT_NOT_DURABLE,
            f'agent {name!r} has no TemporalDurability capability; create it with '
            'Agent(..., capabilities=[TemporalDurability()])',
        )
    return agent


def _validate_deps(agent: AbstractAgent[Any, Any], deps: Any) -> Any:
    deps_type: Any = agent.deps_type
    if deps_type is type(None):
        if deps is not None:
            raise _RunRejected(
                INVALID_DEPS, f'agent {agent.name!r} takes no deps, but deps were given: {preview(deps)}'
            )
        return None
    try:
        return TypeAdapter(deps_type).validate_python(deps)
    except ValidationError as error:
        raise _RunRejected(
            INVALID_DEPS,
            f'deps for agent {agent.name!r} do not match its deps_type {getattr(deps_type, "__name__", deps_type)}: '
            f'{error}',
        ) from None
