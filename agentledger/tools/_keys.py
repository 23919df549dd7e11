"""Helpers for tool bodies: the idempotency key of a side effect."""

from __future__ import annotations

from typing import Any

from pydantic_ai.tools import RunContext
from temporalio import activity, workflow

from agentledger.model._rules import idempotency_key_for

__all__ = ['idempotency_key']


def idempotency_key(ctx: RunContext[Any]) -> str:
    """A key for the side effect of the current tool call, stable across activity retries and worker crashes.

    Pass it to the system the tool acts on (an `Idempotency-Key` header, a unique column) so that a
    retried attempt, after a worker died mid-call, does not act twice. It is
    `<workflow id>/<tool_call_id>`, the key `ledger.tool_effects()` reports for the call. Outside
    Temporal (tests, plain `agent.run`) the pydantic-ai run id stands in for the workflow id.
    To have the ledger itself keep an effect to once (and replay its result), use `agentledger.once`.
    """
    if ctx.tool_call_id is None:
        raise ValueError('idempotency_key() is for tool bodies: this RunContext has no tool_call_id')
    if activity.in_activity():
        scope = activity.info().workflow_id or ctx.run_id or 'local'
    elif workflow.in_workflow():
        scope = workflow.info().workflow_id
    else:
        scope = ctx.run_id or 'local'
    return idempotency_key_for(scope, ctx.tool_call_id)
