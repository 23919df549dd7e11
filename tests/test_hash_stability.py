"""Hashes that are the same under every supported pydantic-ai release (run under both ends of the range).

`.ci/run` runs this file under the newest supported pydantic-ai and again under the oldest; the
expected hashes below are constants, so both runs agree only if one conversation has one content
address and one request hash whichever release dumped it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib.metadata import version

import pytest
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.usage import RequestUsage

from agentledger.errors import LedgerCorruptionError
from agentledger.model._canonical import HASH_FORMAT, canonical_message, canonical_parameters
from agentledger.model._content import canonical_json, content_hash, decode_message, encode_messages
from agentledger.model._journal import format_1_journal_key, journal_key, request_hash, request_hash_of_key

T = datetime(2026, 1, 1, tzinfo=UTC)

CONVERSATION: list[ModelMessage] = [
    ModelRequest(
        parts=[SystemPromptPart('be brief', timestamp=T), UserPromptPart('what is 2+3?', timestamp=T)], timestamp=T
    ),
    ModelResponse(
        parts=[TextPart('adding'), ToolCallPart('add', {'a': 2, 'b': 3, 'note': None}, tool_call_id='call-1')],
        usage=RequestUsage(input_tokens=12, output_tokens=5),
        model_name='test-model',
        timestamp=T,
        provider_name='test',
    ),
    ModelRequest(
        parts=[ToolReturnPart('add', {'sum': 5, 'carry': None}, tool_call_id='call-1', timestamp=T)], timestamp=T
    ),
    ModelResponse(
        parts=[TextPart('5')],
        usage=RequestUsage(input_tokens=20, output_tokens=1),
        model_name='test-model',
        timestamp=T,
    ),
]
PARAMETERS = ModelRequestParameters(
    function_tools=[
        ToolDefinition(
            name='add',
            parameters_json_schema={'type': 'object', 'properties': {'a': {'type': 'integer'}}},
            description='Add.',
        )
    ],
    allow_text_output=True,
)

ADDRESSES = [
    '9bee2a61052e2414f8ddd94702aac132805da3c98d45ae379fd5711efe42e3be',
    '2f3772a75ec0bc86670ca06939252876407ef12139cc1e7c66332369a5c2ac7c',
    'b039f89d21a377c462f41ad752f1183af71d259adc72e8729099e1f44005e8b9',
    'de1f2ddf0f0dec93a79929a9ca1d6ffce35aeb85b90709fd0b8581b685542208',
]
"""The content addresses of `CONVERSATION`, computed under pydantic-ai 2.68 and 2.78 alike."""

REQUEST_HASH = 'd9d72192cc3f9ddc2fd7e2f5e848d60dc70d086986375c5c8f3b608eebcc7b5e'
"""The request hash of the first three messages of `CONVERSATION` with `PARAMETERS`, under both."""

AS_2_78_STORES_IT = (
    '{"parts":[{"tool_name":"add","content":{"sum":5,"carry":null},"tool_call_id":"call-1","tool_kind":null,'
    '"ui_visibility":null,"metadata":null,"timestamp":"2026-01-01T00:00:00Z","outcome":"success","retry":null,'
    '"part_kind":"tool-return"}],"timestamp":"2026-01-01T00:00:00Z","instructions":null,"kind":"request",'
    '"run_id":null,"conversation_id":null,"metadata":null,"state":"complete"}'
)
"""The third message as a 2.78 worker stores it: with the fields 2.68 does not know, dumped empty."""


def test_the_same_conversation_has_the_same_addresses_under_every_supported_release() -> None:
    assert [m.hash for m in encode_messages(CONVERSATION)] == ADDRESSES


def test_the_same_request_has_the_same_hash_under_every_supported_release() -> None:
    assert request_hash(CONVERSATION[:3], model_id=None, settings={'temperature': 0.0}, parameters=PARAMETERS) == (
        REQUEST_HASH
    )


def test_a_message_stored_by_the_newest_release_reads_back_under_every_release() -> None:
    message = decode_message(ADDRESSES[2], AS_2_78_STORES_IT.encode(), {})
    assert message == CONVERSATION[2]


def test_empty_fields_are_left_out_only_at_the_top_of_messages_parts_and_tool_definitions() -> None:
    """A `null` inside a value (tool arguments, a tool's result) is the user's data: it stays hashed."""
    [dumped] = json.loads('[' + AS_2_78_STORES_IT + ']')
    canonical = canonical_message(dumped)
    assert 'instructions' not in canonical and 'ui_visibility' not in canonical['parts'][0]
    assert canonical['parts'][0]['content'] == {'sum': 5, 'carry': None}
    parameters = canonical_parameters({'function_tools': [{'name': 'add', 'strict': None, 'metadata': {}}], 'x': []})
    assert parameters == {'function_tools': [{'name': 'add'}]}
    other = ToolCallPart('add', {'a': 2, 'b': 3}, tool_call_id='call-1')
    changed = [
        CONVERSATION[0],
        ModelResponse(parts=[TextPart('adding'), other], **_response_fields()),
        *CONVERSATION[2:],
    ]
    assert encode_messages(changed)[1].hash != ADDRESSES[1]


def _response_fields() -> dict[str, object]:
    response = CONVERSATION[1]
    assert isinstance(response, ModelResponse)
    return {
        'usage': response.usage,
        'model_name': response.model_name,
        'timestamp': response.timestamp,
        'provider_name': response.provider_name,
    }


def test_a_message_stored_under_hash_format_1_still_verifies() -> None:
    [encoded] = encode_messages(CONVERSATION[:1])
    legacy = content_hash(canonical_json(json.loads(encoded.data)))
    assert legacy != encoded.hash
    assert decode_message(legacy, encoded.data, {}) == CONVERSATION[0]
    with pytest.raises(LedgerCorruptionError, match='does not match its hash'):
        decode_message(legacy, encoded.data.replace(b'be brief', b'be rude!'), {})


def test_the_journal_key_names_its_format_and_the_requests_ordinal() -> None:
    key = journal_key('wf', 'run-1', 'agent__model_request', REQUEST_HASH, 2)
    assert key == f'wf|run-1|agent__model_request|h{HASH_FORMAT}:{REQUEST_HASH}:2'
    assert key != journal_key('wf', 'run-1', 'agent__model_request', REQUEST_HASH)
    assert request_hash_of_key(key) == REQUEST_HASH
    assert request_hash_of_key(f'wf|run-1|agent__model_request|{REQUEST_HASH}') == REQUEST_HASH


FORMAT_1_REQUEST_HASHES = {
    '2.68.0': 'a74035ca6a536aadf58b7a0bbef32eaa49d10ba8b698505f674ebb35e83e25a0',
    '2.78.0': '9ad0037a8e0b588a74004bc6f6187a57fcb32538e662c2dc3d9443310eda61e1',
}
"""What agentledger 0.1.0 (hash format 1) computed for the same request: it differed between releases."""


def test_the_format_1_key_is_what_agentledger_0_1_computed() -> None:
    """Attempts of activities scheduled before an agentledger upgrade look their answers up under it."""
    key = format_1_journal_key(
        'wf',
        'run-1',
        'agent__model_request',
        CONVERSATION[:3],
        model_id=None,
        settings={'temperature': 0.0},
        parameters=PARAMETERS,
    )
    assert key == f'wf|run-1|agent__model_request|{FORMAT_1_REQUEST_HASHES[version("pydantic-ai-slim")]}'
