"""How workflow code calls the ledger's own activities, shared by every kind of ledger run.

Workflow code only: it starts activities, which write the ledger on the worker.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar, overload

from pydantic_ai.messages import ModelMessage
from temporalio import workflow
from temporalio.common import RetryPolicy

from agentledger.errors import LedgerConfigError, LedgerCorruptionError
from agentledger.model._records import ErrorInfo, RunSeal, RunStatus, Usage
from agentledger.workflows._state import LedgerRunState
from agentledger.workflows._types import SEAL_RUN_ACTIVITY, SealInput

__all__ = ['LEDGER_ACTIVITY_RETRY', 'ledger_activity', 'preview', 'seal_input', 'seal_run']

LEDGER_ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[LedgerCorruptionError.__name__, LedgerConfigError.__name__],
)
"""Ledger activities retry with backoff: a ledger outage pauses the run rather than losing its records."""

_LEDGER_ACTIVITY_TIMEOUT = timedelta(seconds=30)
_LEDGER_OUTAGE_LIMIT = timedelta(minutes=10)
_PREVIEW = 200
_R = TypeVar('_R')


def preview(value: object) -> str | None:
    """A short text of a prompt or output for the ledger and the Temporal UI (at most 200 characters)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 1] + '…'


@overload
async def ledger_activity(name: str, arg: Any, summary: str) -> Any: ...


@overload
async def ledger_activity(name: str, arg: Any, summary: str, *, result_type: type[_R]) -> _R: ...


async def ledger_activity(name: str, arg: Any, summary: str, *, result_type: type[Any] | None = None) -> Any:
    """Run one of the ledger's own activities: retried with backoff through an outage of up to ten minutes."""
    return await workflow.execute_activity(
        name,
        arg,
        result_type=result_type,
        start_to_close_timeout=_LEDGER_ACTIVITY_TIMEOUT,
        schedule_to_close_timeout=_LEDGER_OUTAGE_LIMIT,
        retry_policy=LEDGER_ACTIVITY_RETRY,
        summary=f'ledger: {summary}',
    )


async def seal_run(
    state: LedgerRunState,
    status: RunStatus,
    *,
    usage: Usage | None = None,
    error: ErrorInfo | None = None,
    output_preview: str | None = None,
    final_messages: list[ModelMessage] | None = None,
    final_step: int = 0,
) -> Usage:
    """Seal the ledger run: how it ended, its final history, and what its last activities' ends added.

    Returns the run's usage as the ledger settled it (see `Usage`), so what the workflow reports is what
    the ledger records; `usage` itself when the ledger could not take the seal yet.
    """
    seal = RunSeal(
        run_id=state.run_id,
        workflow_id=state.workflow_id,
        temporal_run_id=state.temporal_run_id,
        status=status,
        ended_at=workflow.now(),
        usage=usage or Usage(),
        error=error,
        output_preview=output_preview,
        event_id=state.run_event_id,
    )
    # Read as JSON data: a seal recorded before the activity returned the usage has no result.
    settled = await ledger_activity(
        SEAL_RUN_ACTIVITY, seal_input(state, seal, final_messages, final_step), f'seal {state.run_id} ({status})'
    )
    state.display.ended(status)
    return Usage(**settled) if isinstance(settled, dict) else seal.usage


def seal_input(
    state: LedgerRunState, seal: RunSeal, final_messages: list[ModelMessage] | None, final_step: int
) -> SealInput:
    """The seal's input; the final history carries only what the ledger does not hold yet."""
    reference = None
    if final_messages is not None:
        found = state.history.reference(final_messages, final_step, model_request=False)
        if found is not None:
            reference, count = found
            final_messages = final_messages[count:]
    return SealInput(
        seal=seal,
        final_messages=final_messages,
        final_step=final_step,
        final_history=reference,
    )
