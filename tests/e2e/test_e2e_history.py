"""End-to-end: model-request inputs carry a ledger reference plus only the new messages (bounded history)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger import SqliteLedger

from ..conftest import serve

STEPS = 25
seen: list[list[ModelMessage]] = []


def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    seen.append(list(messages))
    done = sum(1 for m in messages if isinstance(m, ModelResponse))
    if done + 1 >= STEPS:
        return ModelResponse(parts=[TextPart(f'{len(messages)} messages seen')])
    return ModelResponse(parts=[ToolCallPart('fetch', {'i': done})])


long_agent = Agent(FunctionModel(script), name='long', capabilities=[TemporalDurability()])


@long_agent.tool_plain
def fetch(i: int) -> str:
    return f'{i:05d}' * 1600  # ~8 KB of new content per step


async def model_request_inputs(client: Client, handle: WorkflowHandle[object, object]) -> list[tuple[int, bool]]:
    """Per model-request activity in history: how many messages its input carried, and whether it had a reference.

    The input is decoded with the client's converter: a large one is a payload reference in history.
    """
    history = await handle.fetch_history()
    found = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            continue
        attributes = event.activity_task_scheduled_event_attributes
        if not attributes.activity_type.name.endswith('__model_request'):
            continue
        (params,) = await client.data_converter.decode([attributes.input.payloads[0]], [dict])
        header = json.loads(attributes.header.fields['agentledger'].data)
        found.append((len(params['messages']), 'history' in header))
    return found


async def test_model_requests_carry_only_new_messages(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [long_agent]) as served:
        seen.clear()
        handle = await agentledger.start(served.client, long_agent, 'go', task_queue=served.task_queue)
        result = await handle.result()
        # The model saw the whole history every time: the worker put the referenced messages back.
        assert [len(history) for history in seen] == [1 + 2 * k for k in range(STEPS)]
        assert result.output == f'{1 + 2 * (STEPS - 1)} messages seen'

        inputs = await model_request_inputs(served.client, handle.workflow_handle)
        assert inputs[0] == (1, False)
        # Every later request carries its two new messages (the response and the tool return) and a reference.
        assert inputs[1:] == [(2, True)] * (STEPS - 1)

        # A continuation's first request references the seed snapshot instead of carrying it.
        seen.clear()
        follow = await agentledger.continue_run(served.client, result.run_id, 'again')
        await follow.result()
        assert len(seen[0]) == 1 + 2 * (STEPS - 1) + 2  # the final response and the new prompt
        assert (await model_request_inputs(served.client, follow.workflow_handle))[0] == (1, True)


async def test_long_run_continues_as_new_as_one_ledger_run(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """Part 3: a run continues as new (here every ~40 events); the ledger keeps it one run, steps numbered on."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [long_agent]) as served:
        seen.clear()
        handle = await agentledger.start(
            served.client, long_agent, 'go', task_queue=served.task_queue, history_event_limit=40
        )
        result = await handle.result()
        # Across the Temporal runs the model still saw the whole history, once per step.
        assert [len(history) for history in seen] == [1 + 2 * k for k in range(STEPS)]
        assert result.output == f'{1 + 2 * (STEPS - 1)} messages seen'

        record = await ledger.run(result.run_id)
        assert record.status == 'completed'
        temporal_runs = record.temporal_run_ids
        assert len(temporal_runs) >= 4
        assert record.usage.requests == STEPS
        steps = await ledger.steps(result.run_id)
        model_steps = [s.step for s in steps if s.kind == 'model_request']
        assert model_steps == list(range(1, STEPS + 1))
        assert all(s.status == 'completed' for s in steps)
        # Every Temporal run stayed near the limit, and a continued run's input is a small reference.
        for temporal_run_id in temporal_runs:
            history = await served.client.get_workflow_handle(
                handle.workflow_id, run_id=temporal_run_id
            ).fetch_history()
            assert len(history.events) < 40 + 12
            started = history.events[0].workflow_execution_started_event_attributes
            assert started.input.ByteSize() < 3000
        # The final snapshot holds the whole history, and a continuation sees all of it.
        seen.clear()
        follow = await agentledger.continue_run(served.client, result.run_id, 'again')
        await follow.result()
        assert len(seen[0]) == 1 + 2 * (STEPS - 1) + 2


async def test_payload_over_the_blob_limit_travels_as_a_reference(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Part 1: a tool result of 2.5 MB (over Temporal's 2 MB payload limit) completes; history holds references."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [huge_agent]) as served:
        handle = await agentledger.start(served.client, huge_agent, 'go', task_queue=served.task_queue)
        result = await handle.result()
        assert result.output == f'{HUGE} characters'
        history = await handle.workflow_handle.fetch_history()
        assert max(e.ByteSize() for e in history.events) < 10_000
        assert sum(e.ByteSize() for e in history.events) < 100_000


async def test_unresolvable_payload_reference_names_it(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """Part 2: a worker whose ledger lacks a referenced payload fails the workflow task naming the reference.

    Temporal retries the task, so the run waits (visibly) for a worker that can read the payload.
    """
    history = [ModelRequest(parts=[UserPromptPart(content='x' * 20_000)]), ModelResponse(parts=[TextPart('ok')])]
    async with SqliteLedger(tmp_path / 'client.db') as client_ledger, SqliteLedger(tmp_path / 'worker.db') as other:
        client = await Client.connect(
            temporal_env.client.service_client.config.target_host,
            plugins=[agentledger.LedgerPlugin(client_ledger)],
        )
        # The worker records into another ledger (another host's SQLite file): it cannot see the client's payload.
        async with serve(temporal_env, other, [long_agent]) as served:
            handle = await agentledger.start(
                client, long_agent, 'go', task_queue=served.task_queue, message_history=history
            )
            failure = await first_workflow_task_failure(handle.workflow_handle)
        await handle.workflow_handle.terminate('test over')
    assert 'payload reference' in failure and 'cannot be resolved' in failure
    key = json.loads(failure[failure.index('{') : failure.index('}') + 1].replace("'", '"'))['manifest']
    assert f'stored payload {key} is missing from the ledger' in failure


async def first_workflow_task_failure(handle: WorkflowHandle[object, object]) -> str:
    """The message of the workflow's first failed workflow task (polled: the worker retries it)."""
    for _ in range(100):
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                return event.workflow_task_failed_event_attributes.failure.message
        await asyncio.sleep(0.1)
    raise AssertionError('no workflow task failed')


HUGE = 2_500_000


def huge_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    returns = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
    if not returns:
        return ModelResponse(parts=[ToolCallPart('dump', {})])
    return ModelResponse(parts=[TextPart(f'{len(str(returns[0].content))} characters')])


huge_agent = Agent(FunctionModel(huge_script), name='huge', capabilities=[TemporalDurability()])


@huge_agent.tool_plain
def dump() -> str:
    blocks, block = [], hashlib.sha256(b'huge').hexdigest()
    while 64 * len(blocks) < HUGE:
        block = hashlib.sha256(block.encode()).hexdigest()
        blocks.append(block)
    return ''.join(blocks)[:HUGE]
