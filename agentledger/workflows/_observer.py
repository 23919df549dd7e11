"""A workflow-side capability that records what never reaches an activity.

pydantic-ai validates tool arguments in workflow code; a call whose arguments fail validation is
answered with a retry prompt and never becomes a tool activity. The ledger still owes it a
`tool_call_started` and a terminal event (CONFORMANCE C1, C3), so this capability notes it in the
workflow's `LedgerRunState`, from where it travels to the ledger as a header on the next activity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import ModelRetry
from pydantic_ai.messages import ModelMessage, ToolCallPart
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, RunContext, ToolDefinition
from temporalio import workflow

from agentledger._compat import mark_safe_at_runtime
from agentledger.model._records import ToolOutcome
from agentledger.workflows._state import LedgerRunState, current_state

__all__ = ['LedgerObserver']


@mark_safe_at_runtime
class LedgerObserver(AbstractCapability[Any]):
    """Records tool calls that end in workflow code, without a tool activity; offers continue-as-new.

    A call whose arguments fail validation is completed with outcome `validation_error`; a call to a
    tool that needs approval (`requires_approval=True`) or is executed externally is completed with
    outcome `approval_required` / `deferred` when pydantic-ai hands it back as a deferred request.
    """

    def __init__(
        self,
        state: LedgerRunState | None = None,
        *,
        continue_as_new: Callable[[RunContext[Any], list[ModelMessage]], None] | None = None,
    ) -> None:
        self._fixed_state = state
        self._continue_as_new = continue_as_new

    @property
    def _state(self) -> LedgerRunState | None:
        """The run's state: the one given, or that of the ledger run this code belongs to (`None`: not recorded)."""
        return self._fixed_state if self._fixed_state is not None else current_state()

    async def before_model_request(
        self, ctx: RunContext[Any], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        """Note (and show) the step; give the run the chance to continue as new with the history it is about to send."""
        state = self._state
        if state is not None:
            state.last_step = max(state.last_step, state.step_offset + ctx.run_step)
            state.display.stepped(state.last_step)
        if self._continue_as_new is not None:
            self._continue_as_new(ctx, request_context.messages)
        return request_context

    def _record(
        self, ctx: RunContext[Any], call: ToolCallPart, prefix: str, outcome: ToolOutcome, detail: str | None
    ) -> None:
        state = self._state
        if state is None:
            return
        activity_id = f'{prefix}:{call.tool_call_id}'
        now = workflow.now()
        call_fields: dict[str, Any] = dict(
            step=ctx.run_step + state.step_offset, tool_call_id=call.tool_call_id, tool_name=call.tool_name
        )
        state.note_event('tool_call_started', activity_id, now, **call_fields)
        state.note_event(
            'tool_call_completed', activity_id, now, outcome=outcome, detail=detail, duration_s=0.0, **call_fields
        )
        state.accept(activity_id, 'completed')

    async def handle_deferred_tool_calls(
        self, ctx: RunContext[Any], *, requests: DeferredToolRequests
    ) -> DeferredToolResults | None:
        """Wait for the decisions on calls that need approval, if the run does; record the deferred calls that end it.

        A run with an `ApprovalGate` waits for a person's decision on each call that needs approval and
        answers pydantic-ai with them, so the run goes on; a denied call is recorded with outcome
        `denied`, an approved one by the tool activity that runs it. External calls (and approvals, in a
        run without a gate) end the run with `DeferredToolRequests`, recorded `deferred` /
        `approval_required`.
        """
        state = self._state
        gate = state.approvals if state is not None else None
        if gate is not None and requests.approvals and not requests.calls:
            results = await gate.resolve(requests, ctx.run_step + gate.state.step_offset)
            for call, message in gate.denied(requests.approvals):
                self._record(ctx, call, 'deferred', 'denied', message)
            return results
        deferred: list[tuple[list[ToolCallPart], ToolOutcome]] = [
            (requests.approvals, 'approval_required'),
            (requests.calls, 'deferred'),
        ]
        for calls, outcome in deferred:
            for call in calls:
                # A call deferred by its own tool activity was recorded by that activity.
                state = self._state
                if state is not None and call.tool_call_id not in state.dispatched_tool_calls:
                    self._record(ctx, call, 'deferred', outcome, None)
        return None

    async def on_tool_validate_error(
        self,
        ctx: RunContext[Any],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: Any,
        error: ValidationError | ModelRetry,
    ) -> Any:
        """Record the rejected call, then let pydantic-ai send the retry prompt as usual."""
        self._record(ctx, call, 'validate', 'validation_error', str(error)[:500])
        raise error
