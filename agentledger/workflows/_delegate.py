"""`agentledger.delegate`: one agent as a tool of another, run as a durable child `AgentRunWorkflow`.

The tool runs in workflow code (`metadata={'temporal': False}`), so a delegation is not an agent
hidden inside one tool activity: it is a child workflow with its own activities and its own ledger
run, which Temporal shows under its parent. Outside Temporal the same tool runs the delegate
in-process with `agent.run`, so the orchestrator is testable without a server.

Workflow code only here: what the delegation observes is noted in the parent's `LedgerRunState`
and reaches the ledger as a header on the parent's next activity (or in its seal), like every
other workflow-side event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeAlias, TypedDict, Unpack

import anyio
from pydantic import TypeAdapter
from pydantic_ai.agent.abstract import AbstractAgent
from pydantic_ai.exceptions import ToolFailed, UsageLimitExceeded, UserError
from pydantic_ai.tools import RunContext, Tool
from pydantic_ai.toolsets import AbstractToolset, FunctionToolset
from pydantic_ai.usage import RunUsage, UsageLimits
from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    TerminatedError,
    TimeoutError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

from agentledger.errors import (
    AGENT_NOT_DURABLE,
    DELEGATE_RESULT_UNAVAILABLE,
    INVALID_DEPS,
    INVALID_SEED,
    UNKNOWN_AGENT,
    DelegateFailedError,
)
from agentledger.model._conversions import error_info, failure_cause, run_usage
from agentledger.model._ids import delegate_workflow_id, ledger_run_id
from agentledger.model._options import check_options
from agentledger.model._outputs import output_adapter, output_type
from agentledger.model._records import ErrorInfo, EventKind, ToolOutcome, Usage
from agentledger.model._run_text import run_details
from agentledger.workflows._agent_run import AgentRunWorkflow
from agentledger.workflows._ledger_calls import preview
from agentledger.workflows._state import LedgerRunState, current_state
from agentledger.workflows._types import DELEGATE_RESULT_ACTIVITY, AgentRunInput, AgentRunOutput, RunFailureDetails

__all__ = [
    'DelegateOptions',
    'DelegateTool',
    'DepsFunction',
    'OnFailure',
    'delegate',
    'delegated_agents',
    'remaining_limits',
]

OnFailure: TypeAlias = Literal['tool_error', 'raise']
"""What a delegate's failure does to the orchestrator.

`tool_error` (the default): the orchestrator's model gets a failed tool result naming the error
(pydantic-ai's `ToolFailed`) and can react: try another delegate, rephrase, or give up in words.
`raise`: the orchestrator's run fails too, with `DelegateFailedError`.
"""

DepsFunction: TypeAlias = Callable[[RunContext[Any]], Any]
"""Computes a delegate's deps from the orchestrator's run context (in workflow code: deterministic, no I/O)."""


class DelegateOptions(TypedDict, total=False):
    """How a delegate's calls run: its deps, its child workflow, its retries and what its failure does.

    `delegate` (and `DelegateTool`) take these as keyword arguments and document each; to make several
    delegates alike, build one (`DelegateOptions(task_queue='research')`, a dict) and pass it as
    `**options`.
    """

    deps: DepsFunction | None
    task_queue: str | None
    execution_timeout: timedelta | None
    retry_policy: RetryPolicy | None
    parent_close_policy: ParentClosePolicy
    on_failure: OnFailure


_NEVER_RETRIED = (
    UNKNOWN_AGENT,
    AGENT_NOT_DURABLE,
    INVALID_DEPS,
    INVALID_SEED,
    UsageLimitExceeded.__name__,
    CancelledError.__name__,
    TerminatedError.__name__,
    TimeoutError.__name__,
    DELEGATE_RESULT_UNAVAILABLE,
)
"""Delegate failures no retry can fix, or that someone chose (cancel, terminate, a timeout that was set)."""

_WAIT_FOR_EARLIER_CHILD = timedelta(days=7)
"""How long a replayed call may wait for a child started earlier that is still running (no execution timeout)."""

_RESULT_HEARTBEAT = timedelta(seconds=30)


class _DelegateFailed(Exception):
    """One attempt of a delegation failed: why, which child run, and what it spent before failing."""

    def __init__(self, error: ErrorInfo, child_run_id: str | None, usage: Usage) -> None:
        super().__init__(error.message)
        self.error = error
        self.child_run_id = child_run_id
        self.usage = usage

    @classmethod
    def of(cls, failure: FailureError, child_run_id: str | None) -> _DelegateFailed:
        cause = failure_cause(failure)
        details = RunFailureDetails.from_details(cause.details) if isinstance(cause, ApplicationError) else None
        if details is None:
            return cls(error_info(failure, retryable=False), child_run_id, Usage())
        return cls(error_info(failure, retryable=False), details.run_id, details.usage)


def remaining_limits(limits: UsageLimits | None, usage: RunUsage) -> UsageLimits | None:
    """The part of an orchestrator's usage limits its usage so far has not used: a delegate's budget.

    A delegate's spending is added to its orchestrator's usage when it ends, so limiting the delegate
    to what is left makes the limits hold for the whole tree, as they do in-process where the delegate
    adds to the orchestrator's usage object directly. Parallel delegates each get all that is left; the
    orchestrator's own check before its next request catches what they spend together.
    """
    if limits is None:
        return None

    def left(limit: int | None, used: int) -> int | None:
        return None if limit is None else max(limit - used, 0)

    cost_limit = limits.cost_limit
    if cost_limit is not None and usage.cost is not None:
        cost_limit = max(cost_limit - Decimal(str(usage.cost)), Decimal(0))
    return replace(
        limits,
        request_limit=left(limits.request_limit, usage.requests),
        tool_calls_limit=left(limits.tool_calls_limit, usage.tool_calls),
        input_tokens_limit=left(limits.input_tokens_limit, usage.input_tokens),
        output_tokens_limit=left(limits.output_tokens_limit, usage.output_tokens),
        total_tokens_limit=left(limits.total_tokens_limit, usage.total_tokens),
        cost_limit=cost_limit,
    )


async def _await_once_cancelled(handle: asyncio.Future[Any]) -> Any:
    # pydantic-ai runs tools under anyio cancel scopes, which re-deliver a cancellation on every loop
    # turn; a task awaiting a Temporal handle hands each one to the handle, which would issue a cancel
    # command per turn and never let the activation finish (pydantic-ai's `_activity_execution` module
    # explains it). So cancel the handle exactly once, then wait for its cancellation shielded.
    try:
        return await asyncio.shield(handle)
    except asyncio.CancelledError:
        if not handle.done():
            handle.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait([handle])
        raise


@dataclass
class _Recorder:
    """Notes a delegate call's events in the orchestrator's ledger state (no-op outside `AgentRunWorkflow`)."""

    state: LedgerRunState | None
    tool_call_id: str
    tool_name: str
    step: int
    started_at: datetime | None = None

    @property
    def activity_id(self) -> str:
        return f'delegate:{self.tool_call_id}'

    def _note(self, kind: EventKind, attempt: int, **fields: Any) -> None:
        if self.state is None:
            return
        now = workflow.now()
        if kind == 'tool_call_started':
            self.started_at = now
        elif self.started_at is not None:
            fields['duration_s'] = (now - self.started_at).total_seconds()
        self.state.note_event(
            kind,
            self.activity_id,
            now,
            attempt=attempt,
            step=self.step,
            tool_call_id=self.tool_call_id,
            tool_name=self.tool_name,
            **fields,
        )

    def started(self, attempt: int, child_run_id: str | None) -> None:
        self._note('tool_call_started', attempt, child_run_id=child_run_id)

    def returned(self, attempt: int, output: AgentRunOutput) -> None:
        self._note(
            'tool_call_completed',
            attempt,
            outcome='returned',
            usage=output.usage,
            child_run_id=output.run_id,
            detail=preview(output.output),
        )
        self._accept('completed')

    def failed(self, attempt: int, failure: _DelegateFailed, *, outcome: ToolOutcome | None) -> None:
        """An attempt that failed: retried or raised (`outcome=None`), or answered to the model as `outcome`."""
        kind: EventKind = 'tool_call_failed' if outcome is None else 'tool_call_completed'
        self._note(
            kind,
            attempt,
            outcome=outcome,
            error=failure.error,
            usage=failure.usage,
            child_run_id=failure.child_run_id,
            detail=failure.error.message[:500],
        )

    def cancelled(self, attempt: int, child_run_id: str | None) -> None:
        error = ErrorInfo(
            type=CancelledError.__name__,
            message='the orchestrator stopped waiting: it was cancelled, or another call of its step failed',
            retryable=False,
        )
        self._note('tool_call_failed', attempt, error=error, child_run_id=child_run_id)
        self.accept_cancelled()

    def accept_cancelled(self) -> None:
        """The call ended because the orchestrator stopped waiting for it."""
        self._accept('cancelled')

    def _accept(self, outcome: str) -> None:
        if self.state is not None:
            self.state.accept(self.activity_id, outcome)

    def accept_failure(self, *, answered: bool) -> None:
        """The workflow used the last attempt's failure: as a tool result (`answered`) or by failing."""
        self._accept('completed' if answered else 'failed')


class DelegateTool(Tool[Any]):
    """A tool that hands a task to another agent: a child `AgentRunWorkflow` in Temporal, `agent.run` outside.

    Create it with `agentledger.delegate(...)`; see there for the options. The child workflow id is
    `<orchestrator workflow id>/delegate/<tool_call_id>`, so replay, reset and restart of the
    orchestrator find the child that already ran; its ledger run records the orchestrator's run id and
    tool_call_id, and the orchestrator's tool events record the child's run id (`StepEvent.child_run_id`).
    """

    def __init__(
        self,
        agent: AbstractAgent[Any, Any],
        *,
        name: str | None = None,
        description: str | None = None,
        input_type: type[Any] = str,
        **options: Unpack[DelegateOptions],
    ) -> None:
        check_options('DelegateTool', options, DelegateOptions)
        on_failure = options.get('on_failure', 'tool_error')
        if agent.name is None:
            raise UserError('a delegate agent needs a name: Agent(..., name="...")')
        if on_failure not in ('tool_error', 'raise'):
            raise UserError(f"on_failure must be 'tool_error' or 'raise', not {on_failure!r}")
        self.agent = agent
        """The delegate agent; workers serving the orchestrator serve it too (`LedgerPlugin` finds it)."""
        self.agent_name = agent.name
        self.input_type = input_type
        self.deps = options.get('deps')
        """Builds the delegate's deps from the orchestrator's run context; none when `None`."""
        self.task_queue = options.get('task_queue')
        """The child workflow's task queue; the orchestrator's when `None`."""
        self.execution_timeout = options.get('execution_timeout')
        """The child workflow's execution timeout, if any."""
        self.retry_policy = options.get('retry_policy')
        """How a failed delegate is started again; not at all when `None`."""
        self.parent_close_policy = options.get('parent_close_policy', ParentClosePolicy.REQUEST_CANCEL)
        """What happens to a running delegate when its orchestrator closes."""
        self.on_failure: OnFailure = on_failure
        """`'tool_error'`: a failed delegate is a failed tool result; `'raise'`: the orchestrator fails too."""
        self._input = TypeAdapter(input_type)
        self._output = output_adapter(agent)
        tool_name = name or agent.name

        async def run_delegate(ctx: RunContext[Any], task: Any) -> Any:
            """Hand a task to the delegate agent and return its answer.

            Args:
                ctx: The orchestrator's run context.
                task: Everything the delegate needs to know: it sees nothing else of this conversation.

            """
            return await self._delegate(ctx, task)

        run_delegate.__annotations__ = {
            'ctx': RunContext[Any],
            'task': input_type,
            # A list of output specs (`[str, DeferredToolRequests]`) is their union, as the caller types it.
            'return': output_type(agent) if self._output is not None else Any,
        }
        super().__init__(
            run_delegate,
            takes_ctx=True,
            name=tool_name,
            description=description
            or getattr(agent, 'description', None)
            or f'Delegate a task to the {agent.name!r} agent and get its answer.',
            # Runs in workflow code: it starts a child workflow, which an activity could not.
            metadata={'temporal': False},
        )

    def _prompt(self, task: Any) -> str:
        return task if isinstance(task, str) else self._input.dump_json(task, indent=2).decode()

    def _typed(self, output: Any) -> Any:
        return self._output.validate_python(output) if self._output is not None else output

    async def _delegate(self, ctx: RunContext[Any], task: Any) -> Any:
        prompt = self._prompt(task)
        deps = self.deps(ctx) if self.deps is not None else None
        if workflow.in_workflow():
            return await self._as_child_workflow(ctx, prompt, deps)
        return await self._in_process(ctx, prompt, deps)

    def _retry(self, error: ErrorInfo, attempt: int) -> timedelta | None:
        """How long to wait before the next attempt, or `None` when this failure is final."""
        policy = self.retry_policy
        if policy is None or error.type in _NEVER_RETRIED or error.type in (policy.non_retryable_error_types or ()):
            return None
        if policy.maximum_attempts > 0 and attempt >= policy.maximum_attempts:
            return None
        delay = policy.initial_interval * (policy.backoff_coefficient ** (attempt - 1))
        return min(delay, policy.maximum_interval or policy.initial_interval * 100)

    def _final(self, failure: _DelegateFailed) -> Exception:
        """The exception that ends the call: a failed tool result for the model, or the orchestrator's failure."""
        if failure.error.type == UsageLimitExceeded.__name__:
            # The limits are the whole tree's: a delegate that ran out ran the orchestrator out too.
            return UsageLimitExceeded(failure.error.message)
        error = DelegateFailedError(self.name, failure.child_run_id, failure.error.type, failure.error.message)
        return error if self.on_failure == 'raise' else ToolFailed(str(error))

    async def _in_process(self, ctx: RunContext[Any], prompt: str, deps: Any) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                # Sharing the orchestrator's usage object adds the delegate's usage to it, and its limits
                # then count the delegate's requests and tokens: pydantic-ai's own delegation pattern.
                result = await self.agent.run(prompt, deps=deps, usage=ctx.usage, usage_limits=ctx.usage_limits)
            except UsageLimitExceeded:
                raise
            except Exception as error:
                failure = _DelegateFailed(error_info(error, retryable=True), None, Usage())
                delay = self._retry(failure.error, attempt)
                if delay is None:
                    raise self._final(failure) from error
                await asyncio.sleep(delay.total_seconds())
                continue
            return result.output

    async def _as_child_workflow(self, ctx: RunContext[Any], prompt: str, deps: Any) -> Any:
        if ctx.tool_call_id is None:
            raise UserError(f'delegate {self.name!r} is a tool: its run context has no tool_call_id')
        state = current_state()
        child_id = delegate_workflow_id(workflow.info().workflow_id, ctx.tool_call_id)
        record = _Recorder(state, ctx.tool_call_id, self.name, ctx.run_step + (state.step_offset if state else 0))
        attempt = 0
        while True:
            attempt += 1
            input = AgentRunInput(
                agent=self.agent_name,
                prompt=prompt,
                deps=deps,
                usage_limits=remaining_limits(ctx.usage_limits, ctx.usage),
                parent_run_id=state.run_id if state is not None else None,
                parent_tool_call_id=ctx.tool_call_id,
            )
            try:
                output = await self._child(child_id, input, record, attempt)
            except _DelegateFailed as failure:
                ctx.usage.incr(run_usage(failure.usage))
                delay = self._retry(failure.error, attempt)
                if delay is not None:
                    record.failed(attempt, failure, outcome=None)
                    try:
                        await workflow.sleep(delay)
                    except asyncio.CancelledError:
                        record.accept_cancelled()
                        raise
                    continue
                final = self._final(failure)
                answered = isinstance(final, ToolFailed)
                record.failed(attempt, failure, outcome='failed' if answered else None)
                record.accept_failure(answered=answered)
                raise final from failure
            ctx.usage.incr(run_usage(output.usage))
            record.returned(attempt, output)
            return self._typed(output.output)

    async def _child(self, child_id: str, input: AgentRunInput, record: _Recorder, attempt: int) -> AgentRunOutput:
        """One attempt: start the child (or find the one that already ran) and wait for its output."""
        try:
            handle = await workflow.start_child_workflow(
                AgentRunWorkflow.run,
                input,
                id=child_id,
                task_queue=self.task_queue,
                execution_timeout=self.execution_timeout,
                parent_close_policy=self.parent_close_policy,
                # A completed child is never run again; a failed one may be, and then resumes from its
                # latest valid snapshot (a restart of its workflow id).
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                static_summary=f'delegate {self.name}: {preview(input.prompt)}',
                static_details=run_details(self.agent_name, child_id, parent_run_id=input.parent_run_id),
            )
        except WorkflowAlreadyStartedError:
            record.started(attempt, None)
            return await self._earlier_child(child_id, record, attempt)
        child_run_id = ledger_run_id(child_id, handle.first_execution_run_id or '')
        record.started(attempt, child_run_id)
        try:
            output: AgentRunOutput = await _await_once_cancelled(handle)
        except asyncio.CancelledError:
            record.cancelled(attempt, child_run_id)
            raise
        except ChildWorkflowError as error:
            raise _DelegateFailed.of(error, child_run_id) from error
        return output

    async def _earlier_child(self, child_id: str, record: _Recorder, attempt: int) -> AgentRunOutput:
        """The output of the child this call started before (replay past a reset, a restart): never a second run."""
        handle = workflow.start_activity(
            DELEGATE_RESULT_ACTIVITY,
            child_id,
            result_type=AgentRunOutput,
            start_to_close_timeout=self.execution_timeout or _WAIT_FOR_EARLIER_CHILD,
            heartbeat_timeout=_RESULT_HEARTBEAT,
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
            summary=f'delegate {self.name}: result of {child_id}',
        )
        try:
            output: AgentRunOutput = await _await_once_cancelled(handle)
        except asyncio.CancelledError:
            record.cancelled(attempt, None)
            raise
        except ActivityError as error:
            raise _DelegateFailed.of(error, None) from error
        return output


def delegate(
    agent: AbstractAgent[Any, Any],
    *,
    name: str | None = None,
    description: str | None = None,
    input_type: type[Any] = str,
    **options: Unpack[DelegateOptions],
) -> DelegateTool:
    """Turn `agent` into a tool another agent (the orchestrator) delegates to.

    ```python
    researcher = Agent(model, name='researcher', capabilities=[TemporalDurability()])
    orchestrator = Agent(model, name='orchestrator', tools=[agentledger.delegate(researcher)],
                         capabilities=[TemporalDurability()])
    ```

    In an `AgentRunWorkflow` each call is a child `AgentRunWorkflow` of the delegate: its own
    activities, its own ledger run linked to the calling step, its usage added to the orchestrator's
    (and counted against its usage limits). Outside Temporal the delegate runs in-process with
    `agent.run`, sharing the orchestrator's usage, so the same agents are testable without a server.

    Args:
        agent: The delegate: a named agent with `TemporalDurability`, served by the orchestrator's
            workers (`LedgerPlugin` registers delegates of the agents it is given) or by those of `task_queue`.
        name: The tool name the orchestrator's model sees; the agent's name by default.
        description: The tool description; the agent's description, or a generic one, by default.
        input_type: What the model passes: `str` (the default) is the delegate's prompt; another type
            (a pydantic model, dataclass or TypedDict) makes the tool's arguments that type's fields,
            validated before anything starts, and the delegate's prompt is the value as JSON.
        deps: A function of the orchestrator's `RunContext` returning the delegate's deps (for example
            `lambda ctx: ctx.deps.account`); none by default. In Temporal they cross as data, validated
            against the delegate's `deps_type` in the child workflow.
        task_queue: The task queue of the child workflow; the orchestrator's by default.
        execution_timeout: The child workflow's execution timeout; none by default.
        retry_policy: Start a failed delegate again: each retry restarts the same child workflow id,
            which resumes from the failed run's latest valid snapshot, so steps it completed are not
            repeated. Default: no retries. Cancellations, terminations, timeouts, usage limits and
            rejected runs (unknown agent, invalid deps) are never retried.
        parent_close_policy: What happens to a running delegate when its orchestrator closes (fails,
            is terminated or times out): cancelled by default (its ledger run ends `cancelled`).
        on_failure: `'tool_error'` (default): a delegate that failed for good is a failed tool result
            the orchestrator's model sees and can react to. `'raise'`: the orchestrator fails too.
            A delegate that exceeded the usage limits always fails the orchestrator (`UsageLimitExceeded`).

    """
    check_options('delegate', options, DelegateOptions)
    return DelegateTool(agent, name=name, description=description, input_type=input_type, **options)


def delegated_agents(agent: AbstractAgent[Any, Any]) -> list[AbstractAgent[Any, Any]]:
    """The agents `agent` delegates to through `DelegateTool`s in its toolsets, in order, without repeats."""
    found: list[AbstractAgent[Any, Any]] = []

    def visit(toolset: AbstractToolset[Any]) -> None:
        if isinstance(toolset, FunctionToolset):
            for tool in toolset.tools.values():
                if isinstance(tool, DelegateTool) and all(tool.agent is not seen for seen in found):
                    found.append(tool.agent)

    for toolset in agent.toolsets:
        toolset.apply(visit)
    return found
