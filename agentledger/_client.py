"""Client API: start an agent run as an `AgentRunWorkflow` and get its typed result."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from pydantic import TypeAdapter
from pydantic_ai.agent.abstract import AbstractAgent
from pydantic_ai.messages import ModelMessage
from pydantic_ai.usage import UsageLimits
from temporalio.client import Client, WorkflowHandle

from ._ids import ledger_run_id
from .ledger._records import Usage
from .workflows import AgentRunInput, AgentRunOutput, AgentRunWorkflow

__all__ = ['AgentRunHandle', 'AgentRunResult', 'run', 'start']

OutputT = TypeVar('OutputT')


@dataclass(frozen=True)
class AgentRunResult(Generic[OutputT]):
    """A finished run: the agent's output (typed as the agent's `output_type`) and where the ledger keeps it."""

    output: OutputT
    run_id: str
    """The ledger run id (`agentledger show RUN_ID`)."""
    workflow_id: str
    usage: Usage


def _output_adapter(agent: AbstractAgent[Any, Any] | str) -> TypeAdapter[Any] | None:
    if isinstance(agent, str):
        return None
    output_type: Any = getattr(agent, 'output_type', str)
    # Output specs (ToolOutput, NativeOutput, ...) wrap the type; a plain type or union validates directly.
    inner: Any = getattr(output_type, 'output_type', output_type)
    try:
        return TypeAdapter(inner)
    except Exception:
        return None


@dataclass(frozen=True)
class AgentRunHandle(Generic[OutputT]):
    """A started run: its workflow, its ledger run id, and `result()` to wait for it."""

    workflow_handle: WorkflowHandle[Any, AgentRunOutput]
    run_id: str
    """The ledger run id."""
    _adapter: TypeAdapter[Any] | None

    @property
    def workflow_id(self) -> str:
        """The Temporal workflow id."""
        return self.workflow_handle.id

    async def result(self) -> AgentRunResult[OutputT]:
        """Wait for the run to finish; raises `temporalio.client.WorkflowFailureError` when it failed."""
        output = await self.workflow_handle.result()
        value = self._adapter.validate_python(output.output) if self._adapter is not None else output.output
        return AgentRunResult(
            output=cast(OutputT, value), run_id=output.run_id, workflow_id=output.workflow_id, usage=output.usage
        )


async def start(
    client: Client,
    agent: AbstractAgent[Any, OutputT] | str,
    prompt: str | None = None,
    *,
    task_queue: str,
    message_history: list[ModelMessage] | None = None,
    deps: Any = None,
    conversation_id: str | None = None,
    usage_limits: UsageLimits | None = None,
    workflow_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> AgentRunHandle[OutputT]:
    """Start one run of `agent` (an agent or its registered name) as an `AgentRunWorkflow`.

    The client needs `LedgerPlugin` (or pydantic-ai's plugin) for its payload converter; a worker
    serving the agent on `task_queue` does the work. `workflow_id` defaults to
    `<agent name>-<random>`.
    """
    name = agent if isinstance(agent, str) else agent.name
    if not name:
        raise ValueError('the agent needs a name: Agent(..., name="...")')
    input = AgentRunInput(
        agent=name,
        prompt=prompt,
        message_history=message_history,
        deps=deps,
        conversation_id=conversation_id,
        usage_limits=usage_limits,
        metadata=metadata or {},
    )
    handle = await client.start_workflow(
        AgentRunWorkflow.run,
        input,
        id=workflow_id or f'{name}-{uuid.uuid4().hex[:12]}',
        task_queue=task_queue,
    )
    first_run_id = handle.first_execution_run_id or handle.result_run_id or ''
    return AgentRunHandle(
        workflow_handle=handle,
        run_id=ledger_run_id(handle.id, first_run_id),
        _adapter=_output_adapter(agent),
    )


async def run(
    client: Client,
    agent: AbstractAgent[Any, OutputT] | str,
    prompt: str | None = None,
    *,
    task_queue: str,
    message_history: list[ModelMessage] | None = None,
    deps: Any = None,
    conversation_id: str | None = None,
    usage_limits: UsageLimits | None = None,
    workflow_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> AgentRunResult[OutputT]:
    """Run `agent` once as an `AgentRunWorkflow` and wait for its result (see `start`)."""
    handle = await start(
        client,
        agent,
        prompt,
        task_queue=task_queue,
        message_history=message_history,
        deps=deps,
        conversation_id=conversation_id,
        usage_limits=usage_limits,
        workflow_id=workflow_id,
        metadata=metadata,
    )
    return await handle.result()
