"""Workflow code only: deterministic, no I/O, no ledger backend imports."""

from ._agent_run import AgentRunWorkflow
from ._delegate import DelegateTool, delegate
from ._types import AgentRunInput, AgentRunOutput

__all__ = ['AgentRunInput', 'AgentRunOutput', 'AgentRunWorkflow', 'DelegateTool', 'delegate']
