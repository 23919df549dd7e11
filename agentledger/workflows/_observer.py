"""A workflow-side capability that records what never reaches an activity.

pydantic-ai validates tool arguments in workflow code; a call whose arguments fail validation is
answered with a retry prompt and never becomes a tool activity. The ledger still owes it a
`tool_call_started` and a terminal event (CONFORMANCE C1, C3), so this capability notes it in the
workflow's `LedgerRunState`, from where it travels to the ledger as a header on the next activity.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import ModelRetry
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.tools import RunContext, ToolDefinition
from temporalio import workflow

from .._compat import mark_safe_at_runtime
from ..ledger._records import StepEvent
from ._state import LedgerRunState

__all__ = ['LedgerObserver']


@mark_safe_at_runtime
class LedgerObserver(AbstractCapability[Any]):
    """Notes tool calls rejected at argument validation as completed with outcome `validation_error`."""

    def __init__(self, state: LedgerRunState) -> None:
        self._state = state

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
        now = workflow.now()
        detail = str(error)[:500]
        common = dict(
            run_id=self._state.run_id,
            workflow_id=self._state.workflow_id,
            temporal_run_id=self._state.temporal_run_id,
            activity_id=f'validate:{call.tool_call_id}',
            attempt=0,
            timestamp=now,
            step=ctx.run_step,
            tool_call_id=call.tool_call_id,
            tool_name=call.tool_name,
        )
        self._state.workflow_events.append(StepEvent(kind='tool_call_started', **common))  # type: ignore[arg-type]
        self._state.workflow_events.append(
            StepEvent(kind='tool_call_completed', outcome='validation_error', detail=detail, duration_s=0.0, **common)  # type: ignore[arg-type]
        )
        self._state.accept(f'validate:{call.tool_call_id}', 'completed')
        raise error
