"""The activity that reads the result of a delegate's child workflow that already ran. Worker-side I/O.

A delegate call derives its child workflow id from the orchestrator's workflow id and the
tool_call_id, and never starts a completed child again (`ALLOW_DUPLICATE_FAILED_ONLY`). When a
reset or restarted orchestrator reaches a call whose child exists, starting it is refused, and
workflow code cannot read another workflow's result, so this activity does, through the worker's
Temporal client: the completed child's output, or its failure, or (if it still runs) the result
once it ends.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from agentledger.errors import DELEGATE_RESULT_UNAVAILABLE
from agentledger.model._conversions import error_type
from agentledger.workflows._types import DELEGATE_RESULT_ACTIVITY, AgentRunOutput

__all__ = ['delegate_result']

_HEARTBEAT_EVERY = timedelta(seconds=10)


def _failure(error: WorkflowFailureError, workflow_id: str) -> ApplicationError:
    """The child's own failure, re-raised with its type, message and details (non-retryable: it is final)."""
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return ApplicationError(cause.message, *cause.details, type=cause.type, non_retryable=True)
    return ApplicationError(
        f'the delegate workflow {workflow_id!r} did not complete: {cause}', type=error_type(cause), non_retryable=True
    )


@activity.defn(name=DELEGATE_RESULT_ACTIVITY)
async def delegate_result(workflow_id: str) -> AgentRunOutput:
    """The output of the delegate's child workflow `workflow_id`, waiting (and heartbeating) while it runs."""
    handle = activity.client().get_workflow_handle(workflow_id, result_type=AgentRunOutput)
    waiting: asyncio.Future[AgentRunOutput] = asyncio.ensure_future(handle.result())
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=_HEARTBEAT_EVERY.total_seconds())
            if done:
                return waiting.result()
            activity.heartbeat()
    except WorkflowFailureError as error:
        raise _failure(error, workflow_id) from error
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        raise ApplicationError(
            f'the delegate workflow {workflow_id!r} ran before but Temporal no longer has it '
            f'(past the namespace retention?): {error.message}',
            type=DELEGATE_RESULT_UNAVAILABLE,
            non_retryable=True,
        ) from error
    finally:
        waiting.cancel()
