"""The workflow outbound interceptor: gives activities deterministic ids and carries acceptances.

For every activity an `AgentRunWorkflow` starts, it (1) sets a deterministic activity id, (2)
attaches the `agentledger` header with the ledger run id and whatever the workflow observed since
the previous activity (acceptances, workflow-side tool events), (3) for a model request, replaces
the messages the ledger already holds by a reference (see `workflows/_history.py`; token counting and
compaction carry the history too and are bounded alike) and numbers it among its step's requests
(the model-call journal's ordinal), and (4) notes,
when the activity's handle resolves, that the workflow accepted its result. The callback runs on Temporal's
deterministic event loop, so replay produces the same acceptances in the same order.

Other workflows on the same worker pass through untouched.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError
from temporalio.worker import (
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from agentledger._compat import (
    carries_history,
    classify_activity,
    model_request_messages,
    read_activity_args,
    with_model_request_messages,
)
from agentledger.workflows._state import HEADER, LedgerRunState, current_state

__all__ = ['LedgerWorkflowInboundInterceptor', 'workflow_interceptor_class']


def _outcome(handle: workflow.ActivityHandle[Any]) -> str:
    if handle.cancelled():
        return 'cancelled'
    error = handle.exception()
    if error is None:
        return 'completed'
    if isinstance(error, ActivityError) and isinstance(error.cause, CancelledError):
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


class _LedgerWorkflowOutbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        state = current_state()
        if state is None:
            return super().start_activity(input)
        if input.activity_id is None:
            input.activity_id = state.next_activity_id()
        activity_id = input.activity_id
        values = state.take_header()
        kind = classify_activity(input.activity)
        if kind == 'tool_call':
            tool_call_id = read_activity_args('tool_call', input.args).tool_call_id
            if tool_call_id is not None:
                state.dispatched_tool_calls.add(tool_call_id)
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
        return handle


class LedgerWorkflowInboundInterceptor(WorkflowInboundInterceptor):
    """Installs the outbound interceptor on every workflow; it only acts on `AgentRunWorkflow`."""

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        """Wrap the outbound chain."""
        super().init(_LedgerWorkflowOutbound(outbound))


def workflow_interceptor_class(input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
    """The class `temporalio.worker.Interceptor.workflow_interceptor_class` returns."""
    return LedgerWorkflowInboundInterceptor
