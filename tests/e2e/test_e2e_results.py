"""End-to-end: an attempt is `completed` in the ledger only once Temporal can take its result.

Temporal encodes an activity's result after the activity returns. A tool whose result it cannot
encode (a string with a lone surrogate, a structure nested 1,000 deep) used to be recorded as
completed on every attempt while Temporal retried it forever. Now the attempt fails once, for good,
with an error that names the tool and the cause, and the ledger says the same as Temporal's history.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger import SqliteLedger
from agentledger.errors import UNENCODABLE_RESULT, LedgerUnavailableError

from ..conftest import serve
from ..helpers.checks import retried_failures


def _nested(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        node['a'] = {}
        node = node['a']
    return root


def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if len(messages) == 1:
        return ModelResponse(parts=[ToolCallPart('produce', {})])
    return ModelResponse(parts=[TextPart('done')])


def _agent(result: object) -> Agent[None, str]:
    agent = Agent(FunctionModel(script), name='producer', capabilities=[TemporalDurability()])

    @agent.tool_plain
    def produce() -> object:
        return result

    return agent


@pytest.mark.parametrize('result', ['lone \ud800 surrogate', _nested(1000)], ids=['lone-surrogate', 'nested-1000-deep'])
async def test_a_result_temporal_cannot_encode_fails_the_attempt_for_good(
    temporal_env: WorkflowEnvironment, tmp_path: Path, result: object
) -> None:
    agent = _agent(result)
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [agent]) as served:
        handle = await agentledger.start(served.client, agent, 'go', task_queue=served.task_queue)
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), 60)
        [run] = await ledger.runs()
        tools = [e for e in await ledger.events(run.run_id) if e.kind.startswith('tool_call')]
        assert [(e.kind, e.attempt) for e in tools] == [('tool_call_started', 1), ('tool_call_failed', 1)]
        [failed] = [e for e in tools if e.kind == 'tool_call_failed']
        assert failed.error is not None and failed.error.type == UNENCODABLE_RESULT and not failed.error.retryable
        assert 'produce' in failed.error.message and 'PydanticSerializationError' in failed.error.message
        # Temporal's history agrees: one attempt, failed with the same type, not retried.
        assert await retried_failures(handle.workflow_handle) == []
        history = await handle.workflow_handle.fetch_history()
        failed_in_history = [
            e.activity_task_failed_event_attributes.failure
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
        ]
        assert [f.application_failure_info.type for f in failed_in_history] == [UNENCODABLE_RESULT]
        assert run.status == 'failed'


async def test_a_result_the_ledger_cannot_store_fails_the_attempt_before_it_counts(
    temporal_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large result is stored in the ledger (external storage) before the attempt is recorded `completed`:
    a store that fails fails the attempt in the ledger and in Temporal alike, and the retry completes."""
    agent = _agent('x' * 20_000)
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [agent]) as served:
        store = ledger.store_chunked
        refused: list[int] = []

        async def refuse_once(data: bytes, **options: Any) -> str:
            if not refused and b'xxxx' in data:
                refused.append(len(data))
                raise LedgerUnavailableError('the payload store is away (injected)')
            return await store(data, **options)

        monkeypatch.setattr(ledger, 'store_chunked', refuse_once)
        result = await agentledger.run(served.client, agent, 'go', task_queue=served.task_queue)
        assert result.output == 'done' and refused
        tools = [e for e in await ledger.events(result.run_id) if e.kind.startswith('tool_call')]
        assert [(e.kind, e.attempt) for e in tools] == [
            ('tool_call_started', 1),
            ('tool_call_failed', 1),
            ('tool_call_started', 2),
            ('tool_call_completed', 2),
        ]
        assert tools[1].error is not None and tools[1].error.type == 'LedgerUnavailableError'
        [failure] = await retried_failures(served.client.get_workflow_handle(result.workflow_id))
        assert failure.application_failure_info.type == 'LedgerUnavailableError'
