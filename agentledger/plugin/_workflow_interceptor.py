"""The workflow outbound interceptor: gives activities deterministic ids and carries acceptances.

For every activity an `AgentRunWorkflow` starts, it (1) sets a deterministic activity id, (2)
attaches the `agentledger` header with the ledger run id and whatever the workflow observed since
the previous activity (acceptances, workflow-side tool events), (3) for a model request, replaces
the messages the ledger already holds by a reference (see `workflows/_history.py`; token counting and
compaction carry the history too and are bounded alike) and numbers it among its step's requests
(the model-call journal's ordinal), and (4) notes,
when the activity's handle resolves, that the workflow accepted its result. The callback runs on Temporal's
deterministic event loop, so replay produces the same acceptances in the same order.

In a user's own workflow, the inbound interceptor adds an `OwnRunRecorder` to the runs of every agent
the worker serves, for as long as each of the workflow's handlers (its run method, signal and update
handlers) runs; each run of such an agent is then a ledger run (see `workflows/_own.py`), and its
activities are handled as above. Everything else in the workflow (its own activities, child workflows,
timers) passes through untouched, and so do workflows that run no served agent.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, cast

from pydantic_ai.agent.abstract import AbstractAgent
from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError, ChildWorkflowError
from temporalio.worker import (
    ExecuteWorkflowInput,
    HandleSignalInput,
    HandleUpdateInput,
    StartActivityInput,
    StartChildWorkflowInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from agentledger._compat import (
    carries_history,
    classify_activity,
    is_tool_child_workflow,
    model_request_messages,
    read_activity_args,
    tool_outcome,
    tool_result_detail,
    with_added_capability,
    with_model_request_messages,
)
from agentledger.model._conversions import error_info
from agentledger.model._records import ErrorInfo
from agentledger.workflows._own import OwnRunRecorder
from agentledger.workflows._registry import served_agents
from agentledger.workflows._state import HEADER, STATE_ATTRIBUTE, LedgerRunState, current_state

__all__ = ['LedgerWorkflowInboundInterceptor', 'workflow_interceptor_class']


def _outcome(handle: workflow.ActivityHandle[Any]) -> str:
    if handle.cancelled():
        return 'cancelled'
    error = handle.exception()
    if error is None:
        return 'completed'
    if isinstance(error, ActivityError | ChildWorkflowError) and isinstance(error.cause, CancelledError):
        return 'cancelled'
    return 'failed'


def _bound_history(
    state: LedgerRunState, input: StartActivityInput, step: int, *, model_request: bool
) -> dict[str, Any] | None:
    """Send an activity only the messages the ledger does not hold yet; the header names the rest."""
    messages = model_request_messages(input.args)
    if not messages:
        return None
    found = state.history.reference(messages, step, model_request=model_request)
    if found is None:
        return None
    reference, count = found
    input.args = with_model_request_messages(input.args, messages[count:])
    return reference


def _show_tool_end(state: LedgerRunState, tool_name: str | None, done: workflow.ActivityHandle[Any]) -> None:
    """Show how a tool activity ended among the run's current details (its events are the worker's to record)."""
    outcome = _outcome(done)
    state.display.tool_ended(tool_name, tool_outcome(done.result()) if outcome == 'completed' else outcome)


def _record_child_tool_call(state: LedgerRunState, input: StartChildWorkflowInput) -> Callable[[Any], None] | None:
    """Note the start of a tool call pydantic-ai runs as a child workflow; return what notes its end.

    No activity runs for such a call, so, as for a call whose arguments fail validation, the workflow
    notes its events (one attempt: the child's own retries are inside it) for the next header.
    """
    shape = read_activity_args('tool_call', input.args)
    if shape.tool_call_id is None:
        return None
    state.dispatched_tool_calls.add(shape.tool_call_id)
    activity_id = f'child:{shape.tool_call_id}'
    started = workflow.now()
    call_fields: dict[str, Any] = dict(
        attempt=1,
        activity_type=input.workflow,
        step=shape.step + state.step_offset if shape.step is not None else None,
        tool_call_id=shape.tool_call_id,
        tool_name=shape.tool_name,
    )
    state.note_event('tool_call_started', activity_id, started, **call_fields)

    def ended(done: Any) -> None:
        now = workflow.now()
        outcome = _outcome(done)
        duration = (now - started).total_seconds()
        if outcome == 'completed':
            result = done.result()
            state.note_event(
                'tool_call_completed',
                activity_id,
                now,
                duration_s=duration,
                outcome=tool_outcome(result),
                detail=tool_result_detail(result),
                **call_fields,
            )
        else:
            error = done.exception() if not done.cancelled() else None
            state.note_event(
                'tool_call_failed',
                activity_id,
                now,
                duration_s=duration,
                error=error_info(error, retryable=False)
                if error is not None
                else ErrorInfo(type='CancelledError', message='the child workflow was cancelled', retryable=False),
                **call_fields,
            )
        state.accept(activity_id, outcome)

    return ended


class _LedgerWorkflowOutbound(WorkflowOutboundInterceptor):
    async def start_child_workflow(self, input: StartChildWorkflowInput) -> workflow.ChildWorkflowHandle[Any, Any]:
        """Record a tool call that pydantic-ai runs as a child workflow, as the ledger run's tool call."""
        state = current_state()
        if state is None or not is_tool_child_workflow(input.workflow):
            return await super().start_child_workflow(input)
        ended = _record_child_tool_call(state, input)
        try:
            handle = await super().start_child_workflow(input)
        except BaseException as error:
            if ended is not None:
                failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                failed.set_exception(error)
                ended(failed)
            raise
        if ended is not None:
            handle.add_done_callback(ended)
        return handle

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        state = current_state()
        if state is None:
            return super().start_activity(input)
        if input.activity_id is None:
            input.activity_id = state.next_activity_id()
        activity_id = input.activity_id
        values = state.take_header()
        kind = classify_activity(input.activity)
        tool_name: str | None = None
        if kind == 'tool_call':
            shape = read_activity_args('tool_call', input.args)
            tool_name = shape.tool_name
            if shape.tool_call_id is not None:
                state.dispatched_tool_calls.add(shape.tool_call_id)
        step = read_activity_args('model_request', input.args).step if carries_history(input.activity) else None
        if step is not None:
            if kind == 'model_request':
                values['request'] = state.request_ordinal(step + state.step_offset)
            reference = _bound_history(state, input, step + state.step_offset, model_request=kind == 'model_request')
            if reference is not None:
                values['history'] = reference
        header = workflow.payload_converter().to_payload(values)
        input.headers = {**input.headers, HEADER: header}
        handle = super().start_activity(input)
        handle.add_done_callback(lambda done: state.accept(activity_id, _outcome(done)))
        if kind == 'tool_call':
            handle.add_done_callback(lambda done: _show_tool_end(state, tool_name, done))
        return handle


def _workflow_agents(instance: object, served: list[AbstractAgent[Any, Any]]) -> list[AbstractAgent[Any, Any]]:
    """The agent objects a user's workflow may run that are served agents: the served ones, and their copies.

    The workflow sandbox imports a workflow's module afresh for each run, so an agent defined or
    imported there (not passed through) is a copy with the served agent's name. The copies found are
    those in the workflow's module globals and in its class's `__pydantic_ai_agents__` (pydantic-ai's
    way of listing a workflow's agents).
    """
    names = {agent.name for agent in served}
    found = list(served)
    cls = type(instance)
    candidates: list[object] = list(getattr(cls, '__pydantic_ai_agents__', None) or ())
    module_globals = next((value.__globals__ for value in vars(cls).values() if inspect.isfunction(value)), {})
    candidates.extend(module_globals.values())
    for candidate in candidates:
        # `type()`, not `isinstance`: the sandbox's restricted proxies (of modules, of `datetime`...) fail the latter.
        if (
            issubclass(type(candidate), AbstractAgent)
            and cast(AbstractAgent[Any, Any], candidate).name in names
            and all(candidate is not seen for seen in found)
        ):
            found.append(cast(AbstractAgent[Any, Any], candidate))
    return found


class LedgerWorkflowInboundInterceptor(WorkflowInboundInterceptor):
    """Installs the outbound interceptor on every workflow, and records the served agents' runs in users' own."""

    _recorder: OwnRunRecorder | None = None
    _agents: list[AbstractAgent[Any, Any]] | None = None

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        """Wrap the outbound chain."""
        super().init(_LedgerWorkflowOutbound(outbound))

    def _recording(self) -> ExitStack:
        """The served agents' runs recorded for the duration of one handler of a user's own workflow."""
        stack = ExitStack()
        if hasattr(workflow.instance(), STATE_ATTRIBUTE):
            return stack  # an `AgentRunWorkflow` records its one run itself
        if self._agents is None:
            self._agents = _workflow_agents(workflow.instance(), served_agents(workflow.info().task_queue))
        if not self._agents:
            return stack
        if self._recorder is None:
            # One per workflow run: it numbers the workflow's agent runs.
            self._recorder = OwnRunRecorder()
        for agent in self._agents:
            stack.enter_context(with_added_capability(agent, self._recorder))
        return stack

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        """Run the workflow with the served agents' runs recorded."""
        with self._recording():
            return await super().execute_workflow(input)

    async def handle_signal(self, input: HandleSignalInput) -> None:
        """Run a signal handler with the served agents' runs recorded."""
        with self._recording():
            await super().handle_signal(input)

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        """Run an update handler with the served agents' runs recorded."""
        with self._recording():
            return await super().handle_update_handler(input)


def workflow_interceptor_class(input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
    """The class `temporalio.worker.Interceptor.workflow_interceptor_class` returns."""
    return LedgerWorkflowInboundInterceptor
