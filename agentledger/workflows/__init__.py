"""Workflow code only: deterministic, no I/O, no ledger backend imports."""

from ._agent_run import AgentRunWorkflow
from ._delegate import DelegateTool, delegate
from ._types import AbandonRequest, AgentRunInput, AgentRunOutput, ResumeRequest

__all__ = [
    'AbandonRequest',
    'AgentRunInput',
    'AgentRunOutput',
    'AgentRunWorkflow',
    'DelegateTool',
    'ResumeRequest',
    'delegate',
]
