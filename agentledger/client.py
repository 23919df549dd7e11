"""Client API: start an agent run as an `AgentRunWorkflow` and get its typed result."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from pydantic import TypeAdapter
from pydantic_ai.agent.abstract import AbstractAgent
from pydantic_ai.messages import ModelMessage, UserContent
from pydantic_ai.usage import UsageLimits
from temporalio.client import Client, WorkflowHandle

from agentledger.ledger._facade import Ledger
from agentledger.ledger._lineage import resolve_seed
from agentledger.model._ids import ledger_run_id
from agentledger.model._outputs import output_adapter
from agentledger.model._records import Usage
from agentledger.workflows import AbandonRequest, AgentRunInput, AgentRunOutput, AgentRunWorkflow, ResumeRequest

__all__ = [
    'AgentRunHandle',
    'AgentRunResult',
    'abandon_parked',
    'continue_run',
    'fork_run',
    'resume_parked',
    'run',
    'start',
]

OutputT = TypeVar('OutputT')


@dataclass(frozen=True)
class AgentRunResult(Generic[OutputT]):
    """A finished run: the agent's output (typed as the agent's `output_type`) and where the ledger keeps it."""

    output: OutputT
    run_id: str
    """The ledger run id (`agentledger show RUN_ID`)."""
    workflow_id: str
    usage: Usage


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

    async def resume(self, prompt: str | None = None) -> None:
        """Resume the parked run (started with `park_on_failure=True`) from its latest valid snapshot.

        Returns once the run is running again; `prompt`, if given, is added to the history first.
        Raises `temporalio.client.WorkflowUpdateFailedError` (cause type `RunNotParked`) when it is not parked.
        """
        await resume_parked(self.workflow_handle, prompt)

    async def abandon(self, reason: str | None = None) -> None:
        """Give up on the parked run: it fails with the error it parked on (and `reason`)."""
        await abandon_parked(self.workflow_handle, reason)


async def resume_parked(handle: WorkflowHandle[Any, Any], prompt: str | None = None) -> None:
    """Send the `resume` update to a parked `AgentRunWorkflow` (see `AgentRunHandle.resume`)."""
    await handle.execute_update('resume', ResumeRequest(prompt=prompt))


async def abandon_parked(handle: WorkflowHandle[Any, Any], reason: str | None = None) -> None:
    """Send the `abandon` update to a parked `AgentRunWorkflow` (see `AgentRunHandle.abandon`)."""
    await handle.execute_update('abandon', AbandonRequest(reason=reason))


async def start(
    client: Client,
    agent: AbstractAgent[Any, OutputT] | str,
    prompt: str | Sequence[UserContent] | None = None,
    *,
    task_queue: str,
    message_history: list[ModelMessage] | None = None,
    deps: Any = None,
    conversation_id: str | None = None,
    usage_limits: UsageLimits | None = None,
    workflow_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    fresh_start: bool = False,
    history_event_limit: int | None = None,
    park_on_failure: bool = False,
) -> AgentRunHandle[OutputT]:
    """Start one run of `agent` (an agent or its registered name) as an `AgentRunWorkflow`.

    The client needs `LedgerPlugin` (or pydantic-ai's plugin) for its payload converter; a worker
    serving the agent on `task_queue` does the work. `workflow_id` defaults to
    `<agent name>-<random>`. Starting a workflow id whose last run failed resumes that run from its
    latest valid snapshot unless `fresh_start=True`. The run continues as new (one ledger run across
    the Temporal runs) when Temporal suggests it, or before a model request once the history has
    `history_event_limit` events. With `park_on_failure=True` a failing agent parks instead of failing
    and waits for `AgentRunHandle.resume` or `abandon` (README, "Park on failure").
    """
    name = agent if isinstance(agent, str) else agent.name
    if not name:
        raise ValueError('the agent needs a name: Agent(..., name="...")')
    input = AgentRunInput(
        agent=name,
        prompt=_prompt(prompt),
        message_history=message_history,
        deps=deps,
        conversation_id=conversation_id,
        usage_limits=usage_limits,
        metadata=metadata or {},
        fresh_start=fresh_start,
        history_event_limit=history_event_limit,
        park_on_failure=park_on_failure,
    )
    return await _start(client, agent, input, task_queue=task_queue, workflow_id=workflow_id)


async def _start(
    client: Client,
    agent: AbstractAgent[Any, OutputT] | str,
    input: AgentRunInput,
    *,
    task_queue: str,
    workflow_id: str | None,
) -> AgentRunHandle[OutputT]:
    name = input.agent
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
        _adapter=output_adapter(agent),
    )


async def run(
    client: Client,
    agent: AbstractAgent[Any, OutputT] | str,
    prompt: str | Sequence[UserContent] | None = None,
    *,
    task_queue: str,
    message_history: list[ModelMessage] | None = None,
    deps: Any = None,
    conversation_id: str | None = None,
    usage_limits: UsageLimits | None = None,
    workflow_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    fresh_start: bool = False,
    history_event_limit: int | None = None,
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
        fresh_start=fresh_start,
        history_event_limit=history_event_limit,
    )
    return await handle.result()


def _prompt(prompt: str | Sequence[UserContent] | None) -> str | list[UserContent] | None:
    return prompt if prompt is None or isinstance(prompt, str) else list(prompt)


def _ledger_of(client: Client, ledger: Ledger | None) -> Ledger:
    if ledger is not None:
        return ledger
    from agentledger.plugin import LedgerPlugin

    for plugin in client.config().get('plugins', []):
        if isinstance(plugin, LedgerPlugin):
            return plugin.ledger
    raise ValueError('pass ledger=..., or connect the client with agentledger.LedgerPlugin(ledger)')


async def _seeded(
    client: Client,
    run_id: str,
    *,
    prompt: str | Sequence[UserContent] | None,
    at_step: int | None,
    snapshot: str | None,
    agent: AbstractAgent[Any, OutputT] | None,
    deps: Any,
    task_queue: str | None,
    workflow_id: str | None,
    ledger: Ledger | None,
) -> AgentRunHandle[OutputT]:
    store = _ledger_of(client, ledger)
    async with store:
        # Checked here so a bad run id, snapshot id or step fails before any workflow starts.
        seed = await resolve_seed(store, continue_from=run_id, at_step=at_step, snapshot_id=snapshot)
        source = await store.run(run_id)
    input = AgentRunInput(
        agent=source.agent_name,
        prompt=_prompt(prompt),
        deps=deps,
        conversation_id=source.conversation_id,
        continue_from=run_id,
        # A fork pins the snapshot chosen here; a continuation takes the latest when the run starts.
        snapshot_id=seed.snapshot_id if seed.reason == 'fork' else None,
    )
    return await _start(
        client,
        agent if agent is not None else source.agent_name,
        input,
        task_queue=task_queue or source.task_queue,
        workflow_id=workflow_id or f'{source.agent_name}-{seed.reason}-{uuid.uuid4().hex[:12]}',
    )


async def continue_run(
    client: Client,
    run_id: str,
    prompt: str | Sequence[UserContent] | None = None,
    *,
    agent: AbstractAgent[Any, OutputT] | None = None,
    deps: Any = None,
    task_queue: str | None = None,
    workflow_id: str | None = None,
    ledger: Ledger | None = None,
) -> AgentRunHandle[OutputT]:
    """Start a new run seeded with `run_id`'s latest valid snapshot, optionally with a new prompt.

    The new ledger run records `forked_from`; stored messages are shared, not copied. Tool calls that
    completed before the snapshot are not run again; calls that were in flight are not in a valid
    snapshot (they show as in doubt in `ledger.tool_effects`). Raises `RunNotFoundError` /
    `SnapshotNotFoundError` before starting anything when the run has nothing to continue from.
    `agent` (optional) types the output; `deps` are the new run's deps; the task queue defaults to the
    source run's. The ledger comes from the client's `LedgerPlugin` unless given.
    """
    return await _seeded(
        client,
        run_id,
        prompt=prompt,
        at_step=None,
        snapshot=None,
        agent=agent,
        deps=deps,
        task_queue=task_queue,
        workflow_id=workflow_id,
        ledger=ledger,
    )


async def fork_run(
    client: Client,
    run_id: str,
    *,
    at_step: int | None = None,
    snapshot: str | None = None,
    prompt: str | Sequence[UserContent] | None = None,
    agent: AbstractAgent[Any, OutputT] | None = None,
    deps: Any = None,
    task_queue: str | None = None,
    workflow_id: str | None = None,
    ledger: Ledger | None = None,
) -> AgentRunHandle[OutputT]:
    """Start a new run seeded with the valid snapshot at or before `at_step` (or exactly `snapshot`).

    Like `continue_run`, but from an earlier point: a step that does not exist, an unknown or
    malformed snapshot id, or a snapshot of another run raises before any workflow starts.
    """
    if (at_step is None) == (snapshot is None):
        raise ValueError('fork_run needs exactly one of at_step= or snapshot=')
    return await _seeded(
        client,
        run_id,
        prompt=prompt,
        at_step=at_step,
        snapshot=snapshot,
        agent=agent,
        deps=deps,
        task_queue=task_queue,
        workflow_id=workflow_id,
        ledger=ledger,
    )
