"""Conversions into and out of the ledger's records: errors to `ErrorInfo`, usages to and from `Usage`.

Each is built once here, so the workflow, the worker's interceptor and reconcile record the same
error or usage the same way. Pure: Temporal's exception and failure types and pydantic-ai's usage
types are data here, nothing does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic_ai.usage import RequestUsage, RunUsage
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError, CancelledError, FailureError, TimeoutError

from agentledger.model._records import ErrorInfo, Usage

__all__ = ['error_info', 'error_type', 'failure_cause', 'failure_info', 'ledger_usage', 'request_usage', 'run_usage']


def failure_cause(error: BaseException) -> BaseException:
    """The error under Temporal's failure wrappers (`ActivityError`, `ChildWorkflowError`, ...).

    The first `ApplicationError` in the chain of causes, or the innermost cause: that is what failed,
    the wrappers only say where.
    """
    cause = error
    while isinstance(cause, FailureError) and not isinstance(cause, ApplicationError) and cause.cause is not None:
        cause = cause.cause
    return cause


def error_type(error: BaseException) -> str:
    """The error type Temporal shows for `error`: an `ApplicationError`'s own type, otherwise its class name."""
    if isinstance(error, ApplicationError) and error.type:
        return error.type
    return type(error).__name__


def error_info(error: BaseException, *, retryable: bool) -> ErrorInfo:
    """The type, message and retryability of an error, looking through Temporal's failure wrappers.

    An `ApplicationError` says itself whether it is retryable. Any other error is as retryable as
    `retryable` says: the caller knows what it ends, a retried activity attempt (`True`) or a run
    that nothing retries (`False`).
    """
    cause = failure_cause(error)
    if isinstance(cause, ApplicationError):
        return ErrorInfo(type=error_type(cause), message=cause.message, retryable=not cause.non_retryable)
    return ErrorInfo(type=error_type(cause), message=str(cause), retryable=retryable)


def failure_info(failure: Failure, default_type: str) -> ErrorInfo:
    """The `ErrorInfo` of a failure as Temporal's history stores it; `default_type` names one of no known kind.

    A timeout is retryable (the retry policy decides), a cancellation never is.
    """
    if failure.HasField('application_failure_info'):
        info = failure.application_failure_info
        return ErrorInfo(
            type=info.type or ApplicationError.__name__, message=failure.message, retryable=not info.non_retryable
        )
    if failure.HasField('timeout_failure_info'):
        return ErrorInfo(type=TimeoutError.__name__, message=failure.message or 'timed out', retryable=True)
    if failure.HasField('canceled_failure_info'):
        return ErrorInfo(type=CancelledError.__name__, message=failure.message or 'cancelled', retryable=False)
    return ErrorInfo(type=default_type, message=failure.message, retryable=False)


def ledger_usage(usage: RunUsage) -> Usage:
    """The ledger's record of a pydantic-ai run usage."""
    return Usage(
        requests=usage.requests,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        tool_calls=usage.tool_calls,
    )


def run_usage(usage: Usage) -> RunUsage:
    """pydantic-ai's run usage from the ledger's record of it (replayed counts have no place there)."""
    return RunUsage(
        requests=usage.requests,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        tool_calls=usage.tool_calls,
    )


def request_usage(usage: RequestUsage | Mapping[str, Any] | None, *, replayed: bool) -> Usage | None:
    """The ledger's usage of one model request, from its response's usage (the object, or its JSON form).

    `replayed` says the model-call journal answered the request, not the provider: its tokens then
    also count as replayed (not billed again). The worker knows it; Temporal's history does not (a
    replayed response looks like any other there), so what reconcile rebuilds from history passes `False`.
    """
    if usage is None:
        return None
    read = usage.get if isinstance(usage, Mapping) else lambda name: getattr(usage, name, 0)
    input_tokens, output_tokens = int(read('input_tokens') or 0), int(read('output_tokens') or 0)
    return Usage(
        requests=1,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        replayed_requests=1 if replayed else 0,
        replayed_input_tokens=input_tokens if replayed else 0,
        replayed_output_tokens=output_tokens if replayed else 0,
    )
