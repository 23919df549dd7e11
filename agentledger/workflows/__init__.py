"""Workflow code only: deterministic, no I/O, no ledger backend imports."""

from agentledger.workflows._agent_run import AgentRunWorkflow
from agentledger.workflows._delegate import DelegateOptions, DelegateTool, delegate
from agentledger.workflows._types import AbandonRequest, AgentRunInput, AgentRunOutput, ResumeRequest

__all__ = [
    'AbandonRequest',
    'AgentRunInput',
    'AgentRunOutput',
    'AgentRunWorkflow',
    'DelegateOptions',
    'DelegateTool',
    'ResumeRequest',
    'delegate',
]
