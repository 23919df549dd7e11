"""The model-call journal's request hash: what a replay may ignore, and what makes a request a different one."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.tools import ToolDefinition

from agentledger.errors import LedgerCorruptionError
from agentledger.model import KeyedRecord
from agentledger.model._journal import JournalEntry, request_hash

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TOOL = ToolDefinition(name='charge', parameters_json_schema={'type': 'object', 'properties': {'amount': {}}})


def history(
    *, at: datetime = T0, run_id: str = 'run-a', prompt: str = 'pay 5', returned: str = 'ok'
) -> list[ModelMessage]:
    later = at + timedelta(seconds=3)
    return [
        ModelRequest(
            parts=[UserPromptPart(prompt, timestamp=at)],
            timestamp=at,
            instructions='Be brief.',
            run_id=run_id,
            conversation_id=f'conv-{run_id}',
        ),
        ModelResponse(
            parts=[ToolCallPart('charge', {'amount': 5}, tool_call_id='call-1')], timestamp=at, run_id=run_id
        ),
        ModelRequest(
            parts=[ToolReturnPart('charge', returned, tool_call_id='call-1', timestamp=later)],
            timestamp=later,
            run_id=run_id,
        ),
    ]


def digest(messages: list[ModelMessage], **changes: Any) -> str:
    inputs: dict[str, Any] = {
        'model_id': None,
        'settings': {'temperature': 0.0},
        'parameters': ModelRequestParameters(function_tools=[TOOL]),
    }
    inputs.update(changes)
    return request_hash(messages, **inputs)


def test_hash_ignores_what_changes_between_executions_of_one_request() -> None:
    """Timestamps come from workflow time and run ids are per execution: a reset or restart changes them."""
    assert digest(history()) == digest(history(at=T0 + timedelta(days=1), run_id='run-b'))


@pytest.mark.parametrize(
    ('messages', 'changes'),
    [
        (history(prompt='pay 6'), {}),
        (history(returned='declined'), {}),
        (history()[:1], {}),
        ([dataclasses.replace(history()[0], instructions='Be verbose.'), *history()[1:]], {}),
        (history(), {'model_id': 'openai:gpt-4o'}),
        (history(), {'settings': {'temperature': 0.5}}),
        (history(), {'settings': None}),
        (history(), {'parameters': ModelRequestParameters()}),
        (history(), {'parameters': ModelRequestParameters(function_tools=[dataclasses.replace(TOOL, name='refund')])}),
        (history(), {'parameters': ModelRequestParameters(function_tools=[TOOL], allow_text_output=False)}),
    ],
    ids=[
        'prompt',
        'tool-result',
        'fewer-messages',
        'instructions',
        'model',
        'settings',
        'no-settings',
        'no-tools',
        'tool-schema',
        'output-mode',
    ],
)
def test_a_different_request_has_a_different_hash(messages: list[ModelMessage], changes: dict[str, Any]) -> None:
    """Anything the provider would see differently never replays another request's response."""
    assert digest(messages, **changes) != digest(history())


def test_entry_round_trips_and_rejects_what_is_not_a_response() -> None:
    response = ModelResponse(parts=[TextPart('charged')], model_name='m', timestamp=T0)
    entry = JournalEntry.of(
        response,
        key='wf|run|agent__model_request|h',
        workflow_id='wf',
        run_id='run',
        activity_type='agent__model_request',
        request_hash='h',
        recorded_at=T0,
        temporal_run_id='t1',
        activity_id='2',
        attempt=1,
    )
    stored = KeyedRecord('journal', entry.key, 'wf', entry.to_value(), '1')
    assert JournalEntry.from_record(stored) == entry
    assert entry.model_response() == response
    [request] = ModelMessagesTypeAdapter.dump_python([ModelRequest(parts=[UserPromptPart('hi')])], mode='json')
    with pytest.raises(LedgerCorruptionError, match='holds a request, not a model response'):
        dataclasses.replace(entry, response=request).model_response()
    with pytest.raises(LedgerCorruptionError, match='does not decode'):
        dataclasses.replace(entry, response={**entry.response, 'kind': 'request'}).model_response()
    with pytest.raises(LedgerCorruptionError, match='does not decode'):
        JournalEntry.from_record(KeyedRecord('journal', 'k', 'wf', {'response': {}}, '1'))
