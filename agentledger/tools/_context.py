"""What a tool body running in a recorded tool-call activity can reach: the ledger and who is calling.

The worker's activity interceptor sets it around the body of every tool-call activity an
`AgentRunWorkflow` started; `agentledger.once` reads it. A context variable, because the body runs
in the interceptor's task (or tasks it spawns, which copy the context).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from agentledger.ledger._facade import Ledger
from agentledger.ledger._scopes import Scopes

__all__ = ['ToolContext', 'current_tool_context', 'tool_context']


@dataclass(frozen=True)
class ToolContext:
    """The ledger and the identity of the tool-call attempt whose body is running."""

    ledger: Ledger
    scopes: Scopes
    run_id: str
    workflow_id: str
    temporal_run_id: str
    activity_id: str
    attempt: int
    tool_name: str | None


tool_context: ContextVar[ToolContext | None] = ContextVar('agentledger_tool_context', default=None)
"""Set by the activity interceptor for the duration of a tool-call activity."""


def current_tool_context() -> ToolContext | None:
    """The running tool-call attempt's context, or `None` outside one."""
    return tool_context.get()
