"""End-to-end: a request asked again on purpose is a new model call, never the rejected answer replayed.

pydantic-ai asks again at the same step when a hook raises `RetryModelRequest` (both ends of the
supported range) or when `RetryOnModelErrors` retries a failed request (2.78 and later). Each is a
new model-request activity with the same messages; the model-call journal keys on the request's
ordinal at its step, so the second request reaches the provider. Token counting ahead of a request
and compaction (2.78 and later) carry the history too, bounded like a model request's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic_ai.durable_exec
import pytest
from pydantic_ai import Agent, RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.exceptions import RetryModelRequest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models import ModelRequestContext, ModelRequestParameters
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RequestUsage, UsageLimits
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger import SqliteLedger
from agentledger.model._keyed import JOURNAL

from ..conftest import serve

answers: list[str] = []
counted: list[int] = []


def two_answers(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """`draft` the first time, `final` after: the same messages get a different answer when asked again."""
    answers.append('draft' if not answers else 'final')
    return ModelResponse(parts=[TextPart(answers[-1])])


@dataclass
class RejectDrafts(AbstractCapability[Any]):
    """Rejects a `draft` answer: pydantic-ai asks again at the same step, with the same messages."""

    rejected: list[str] = field(default_factory=list)

    async def after_model_request(
        self, ctx: RunContext[Any], *, request_context: ModelRequestContext, response: ModelResponse
    ) -> ModelResponse:
        if any(isinstance(p, TextPart) and p.content == 'draft' for p in response.parts):
            raise RetryModelRequest()
        return response


rejecting_agent = Agent(
    FunctionModel(two_answers), name='rejecting', capabilities=[TemporalDurability(), RejectDrafts()]
)


async def test_a_request_retried_by_a_hook_is_a_new_model_call(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    answers.clear()
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [rejecting_agent]) as served:
        result = await agentledger.run(served.client, rejecting_agent, 'write', task_queue=served.task_queue)
        assert result.output == 'final'
        assert answers == ['draft', 'final']
        [run] = await ledger.runs()
        ends = [e for e in await ledger.events(run.run_id) if e.kind == 'model_request_completed']
        assert [(e.step, e.replayed) for e in ends] == [(1, False), (1, False)]
        assert len({e.activity_id for e in ends}) == 2
        assert len(await ledger.records(JOURNAL, scope=run.workflow_id)) == 2


failures: list[str] = []


def fails_once(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """A provider that is overloaded the first time it is asked."""
    if not failures:
        failures.append('503')
        from pydantic_ai.exceptions import ModelUnavailableError  # type: ignore[attr-defined, unused-ignore]

        raise ModelUnavailableError('flaky', 'the model is unavailable')
    answers.append('recovered')
    return ModelResponse(parts=[TextPart('recovered')])


def _retrying_agent() -> Agent[None, str]:
    from pydantic_ai.capabilities import RetryOnModelErrors  # type: ignore[attr-defined, unused-ignore]

    return Agent(
        FunctionModel(fails_once),
        name='retrying',
        capabilities=[TemporalDurability(), RetryOnModelErrors(max_attempts=3, initial_delay=0.01)],
    )


async def test_a_request_retried_on_a_model_error_is_recorded_as_a_new_request_of_the_step(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    pytest.importorskip('pydantic_ai.capabilities.retry_on_model_errors', reason='RetryOnModelErrors is 2.78 and later')
    retrying_agent = _retrying_agent()
    answers.clear()
    failures.clear()
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [retrying_agent]) as served:
        result = await agentledger.run(served.client, retrying_agent, 'go', task_queue=served.task_queue)
        assert result.output == 'recovered'
        [run] = await ledger.runs()
        requests = [
            (e.step, e.kind, e.replayed) for e in await ledger.events(run.run_id) if e.kind.startswith('model_request')
        ]
        assert [(step, kind) for step, kind, _ in requests if kind != 'model_request_started'] == [
            (1, 'model_request_failed'),
            (1, 'model_request_completed'),
        ]
        assert not any(replayed for *_, replayed in requests)


async def _carried(client: Client, handle: WorkflowHandle[Any, Any], suffix: str) -> list[tuple[int, bool]]:
    """Per scheduled activity of type `*suffix`: how many messages its input carried, and whether it had a reference."""
    carried = []
    for event in (await handle.fetch_history()).events:
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            continue
        attributes = event.activity_task_scheduled_event_attributes
        if attributes.activity_type.name.endswith(suffix):
            (params,) = await client.data_converter.decode([attributes.input.payloads[0]], [dict])
            header = json.loads(attributes.header.fields['agentledger'].data)
            carried.append((len(params['messages']), 'history' in header))
    return carried


class CountingModel(FunctionModel):
    """A `FunctionModel` that counts tokens ahead of each request (one per message)."""

    async def count_tokens(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> RequestUsage:
        counted.append(len(messages))
        return RequestUsage(input_tokens=len(messages))


def lookups(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = sum(isinstance(m, ModelResponse) for m in messages)
    if done < 3:
        return ModelResponse(parts=[ToolCallPart('lookup', {'i': done})])
    return ModelResponse(parts=[TextPart('done')])


counting_agent = Agent(CountingModel(lookups), name='counting', capabilities=[TemporalDurability()])


@counting_agent.tool_plain
def lookup(i: int) -> str:
    return f'value {i}'


async def test_token_counting_carries_a_bounded_history_and_is_not_a_step(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """2.78 counts in an activity of its own (history bounded, no step); 2.68 counted inside the model request."""
    counted.clear()
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [counting_agent]) as served:
        handle = await agentledger.start(
            served.client,
            counting_agent,
            'go',
            task_queue=served.task_queue,
            usage_limits=UsageLimits(input_tokens_limit=1000, count_tokens_before_request=True),
        )
        assert (await handle.result()).output == 'done'
        # The model counted the whole history each time: the worker put the referenced messages back.
        assert counted == [1, 3, 5, 7]
        carried = await _carried(served.client, handle.workflow_handle, '__model_count_tokens')
        own_activity = hasattr(pydantic_ai.durable_exec, 'ModelCountTokensId')
        assert carried == ([(1, False), (2, True), (2, True), (2, True)] if own_activity else [])
        [run] = await ledger.runs()
        steps = {e.activity_type for e in await ledger.events(run.run_id) if e.activity_type}
        assert not any(t.endswith('__model_count_tokens') for t in steps)


compactions: list[int] = []


class CompactingModel(FunctionModel):
    """A `FunctionModel` with on-demand compaction: it summarises what it is given into one part."""

    async def compact_messages(self, request_context: Any, *, instructions: str | None = None) -> ModelResponse:
        from pydantic_ai.messages import CompactionPart

        compactions.append(len(request_context.messages))
        return ModelResponse(parts=[CompactionPart(content=f'{len(request_context.messages)} messages summarised')])


def compacting_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = sum(isinstance(m, ModelResponse) for m in messages)
    if done < 3:
        return ModelResponse(parts=[ToolCallPart('note', {'i': done})])
    return ModelResponse(parts=[TextPart(f'done after seeing {len(messages)} messages')])


def _compacting_agent() -> Agent[None, str]:
    from pydantic_ai.capabilities import NativeCompaction  # type: ignore[attr-defined, unused-ignore]
    from pydantic_ai.profiles import ModelProfile

    model = CompactingModel(compacting_script, profile=ModelProfile(supports_compaction_on_demand=True))  # type: ignore[call-arg, unused-ignore]
    agent = Agent(
        model, name='compacting', capabilities=[TemporalDurability(), NativeCompaction(), CompactBeforeStep3()]
    )

    @agent.tool_plain
    def note(i: int) -> str:
        return f'noted {i}'

    return agent


@dataclass
class CompactBeforeStep3(AbstractCapability[Any]):
    """Asks for compaction before the third model request (from workflow code, as pydantic-ai requires)."""

    async def before_model_request(
        self, ctx: RunContext[Any], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        if ctx.run_step == 3:
            ctx.request_compaction()  # type: ignore[attr-defined, unused-ignore]
        return request_context


async def test_compaction_carries_a_bounded_history_and_is_not_a_step(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    pytest.importorskip('pydantic_ai.capabilities.native_compaction', reason='NativeCompaction is 2.78 and later')
    agent = _compacting_agent()
    compactions.clear()
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [agent]) as served:
        handle = await agentledger.start(served.client, agent, 'go', task_queue=served.task_queue)
        result = await handle.result()
        assert compactions == [3], compactions
        carried = await _carried(served.client, handle.workflow_handle, '__model_compact_messages')
        assert carried == [(0, True)], carried
        [run] = await ledger.runs()
        assert run.status == 'completed' and result.output.startswith('done')
        events = await ledger.events(run.run_id)
        assert not any((e.activity_type or '').endswith('__model_compact_messages') for e in events)
