"""The input and output of `AgentRunWorkflow`: plain dataclasses that any Temporal client can send.

They are the workflow's public contract, so an operator can start a run from the Temporal UI or
`temporal workflow start --input '{"agent": "...", "prompt": "..."}'` without Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.messages import ModelMessage, UserContent
from pydantic_ai.usage import UsageLimits

from ..ledger._records import ForkRef, RunSeal, RunStart, Usage

__all__ = [
    'DELEGATE_RESULT_ACTIVITY',
    'RUN_STARTED_ACTIVITY',
    'SEAL_RUN_ACTIVITY',
    'AgentRunInput',
    'AgentRunOutput',
    'RunFailureDetails',
    'RunStartInput',
    'RunStartResult',
    'SealInput',
]


@dataclass
class AgentRunInput:
    """What one `Agent.run` needs: which agent, the prompt, and optional history, deps and limits."""

    agent: str
    """The `name` of an agent registered on the worker through `LedgerPlugin(agents=[...])`."""
    prompt: str | list[UserContent] | None = None
    """Text, or multi-modal content (images and files as `BinaryContent`), as `Agent.run` takes it."""
    message_history: list[ModelMessage] | None = None
    deps: Any = None
    """The run's deps as JSON-compatible data; validated against the agent's `deps_type` in the workflow."""
    conversation_id: str | None = None
    usage_limits: UsageLimits | None = None
    ledger_run_id: str | None = None
    """Set only to attach this workflow to an existing ledger run; by default it is derived from the workflow."""
    parent_run_id: str | None = None
    parent_tool_call_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    """Free-form data recorded with the run (not sent to the model)."""
    continue_from: str | None = None
    """A ledger run id: seed this run with that run's latest valid snapshot (or the one chosen below)."""
    at_step: int | None = None
    """With `continue_from`: fork from the latest valid snapshot at or before this step."""
    snapshot_id: str | None = None
    """With `continue_from`: fork from exactly this snapshot."""
    fresh_start: bool = False
    """Start over even when an earlier run of the same workflow id failed (by default it is resumed)."""


@dataclass
class AgentRunOutput:
    """What a finished run returns: the agent's output (as JSON-compatible data) and where to find it."""

    output: Any
    run_id: str
    """The ledger run id."""
    workflow_id: str
    usage: Usage


@dataclass
class RunFailureDetails:
    """The details of the `ApplicationError` a failed run ends with: which ledger run it was and what it spent.

    An orchestrator whose delegate failed reads them to link the failure to the child run and to add
    the child's usage to its own: tokens spent on a failed delegate are still spent.
    """

    run_id: str
    usage: Usage

    @classmethod
    def from_details(cls, details: Sequence[Any]) -> RunFailureDetails | None:
        """Read them back from a failure's decoded details (a dict once they crossed Temporal), if present."""
        if not details:
            return None
        value = details[0]
        if isinstance(value, RunFailureDetails):
            return value
        if not isinstance(value, dict) or not isinstance(value.get('run_id'), str):
            return None
        usage = value.get('usage')
        return cls(run_id=value['run_id'], usage=Usage(**usage) if isinstance(usage, dict) else Usage())


RUN_STARTED_ACTIVITY = 'agentledger__run_started'
"""The ledger activity that records a run's start."""

SEAL_RUN_ACTIVITY = 'agentledger__seal_run'
"""The ledger activity that records how a run ended, with every acceptance the run made."""

DELEGATE_RESULT_ACTIVITY = 'agentledger__delegate_result'
"""The activity that fetches the result of a delegate's child workflow that already ran (or still runs).

A delegate's child workflow id is fixed by its tool call, and a completed child is never started
again; a replayed, reset or restarted orchestrator that reaches the same call reads the result
through this activity instead of running the delegate a second time.
"""


@dataclass
class RunStartInput:
    """The `run_started` activity's input: the run's start, and what (if anything) to seed it from."""

    start: RunStart
    continue_from: str | None = None
    at_step: int | None = None
    snapshot_id: str | None = None
    fresh_start: bool = False


@dataclass
class RunStartResult:
    """The seed the `run_started` activity resolved: the lineage and the history to start from."""

    forked_from: ForkRef | None = None
    message_history: list[ModelMessage] | None = None
    seed_error: str | None = None
    """Why the requested seed could not be used (unknown run or snapshot, a step that does not exist)."""


@dataclass
class SealInput:
    """The seal activity's input: the outcome and the final history (idempotent to re-send)."""

    seal: RunSeal
    final_messages: list[ModelMessage] | None = None
    """The run's `all_messages()` when it completed (after the part `final_history` names), stored as its
    `final` snapshot."""
    final_history: dict[str, Any] | None = None
    """A history reference for the first messages of the final history, which the ledger already holds."""
    final_step: int = 0
