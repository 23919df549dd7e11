"""Property-based tests (hypothesis) for two pure rules: provider validity and the canonical message encoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from agentledger.model._content import decode_message, encode_messages, message_address
from agentledger.model._validity import is_provider_valid, validity_problems

T0 = datetime(2026, 1, 1, tzinfo=UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
arguments = st.dictionaries(st.text(max_size=8), json_values, max_size=3)
words = st.text(alphabet=st.characters(blacklist_categories=('Cs',)), max_size=30)


@st.composite
def conversations(draw: st.DrawFn) -> list[ModelMessage]:
    """A well-formed history: a prompt, then rounds of tool calls each answered, in any order, by the next request."""
    messages: list[ModelMessage] = [ModelRequest(parts=[UserPromptPart(draw(words), timestamp=T0)])]
    next_id = 0
    for round_ in range(draw(st.integers(0, 4))):
        calls = []
        for _ in range(draw(st.integers(1, 3))):
            next_id += 1
            calls.append(ToolCallPart(f'tool{next_id % 3}', draw(arguments), tool_call_id=f'call-{next_id}'))
        messages.append(ModelResponse(parts=[TextPart(draw(words)), *calls], timestamp=T0))
        answers = [
            ToolReturnPart(call.tool_name, draw(json_values), tool_call_id=call.tool_call_id, timestamp=T0)
            for call in draw(st.permutations(calls))
        ]
        messages.append(ModelRequest(parts=answers, timestamp=T0 + timedelta(seconds=round_)))
    messages.append(ModelResponse(parts=[TextPart(draw(words))], timestamp=T0))
    return messages


@given(conversations())
def test_a_well_formed_conversation_is_provider_valid(messages: list[ModelMessage]) -> None:
    assert validity_problems(messages) == []
    assert is_provider_valid(messages)


@given(conversations(), st.data())
def test_removing_or_repeating_an_answer_makes_it_invalid(messages: list[ModelMessage], data: st.DataObject) -> None:
    answering = [i for i, m in enumerate(messages) if isinstance(m, ModelRequest) and i > 0]
    if not answering:
        return
    index = data.draw(st.sampled_from(answering))
    request = messages[index]
    assert isinstance(request, ModelRequest)
    position = data.draw(st.integers(0, len(request.parts) - 1))
    if data.draw(st.booleans()):
        parts = [p for i, p in enumerate(request.parts) if i != position]
    else:
        parts = [*request.parts, request.parts[position]]
    broken = [*messages[:index], ModelRequest(parts=parts, timestamp=request.timestamp), *messages[index + 1 :]]
    assert not is_provider_valid(broken)
    assert validity_problems(broken)


@given(conversations())
def test_a_history_that_starts_with_a_response_is_invalid(messages: list[ModelMessage]) -> None:
    assert not is_provider_valid([ModelResponse(parts=[TextPart('hi')], timestamp=T0), *messages])


@given(conversations())
def test_every_message_round_trips_through_its_stored_form_and_address(messages: list[ModelMessage]) -> None:
    for message, encoded in zip(messages, encode_messages(messages), strict=True):
        assert decode_message(encoded.hash, encoded.data, encoded.blobs) == message
        assert message_address(json.loads(encoded.data)) == encoded.hash


@given(conversations())
def test_an_empty_field_a_release_adds_does_not_move_an_address(messages: list[ModelMessage]) -> None:
    for encoded in encode_messages(messages):
        stored = json.loads(encoded.data)
        stored['field_of_a_later_release'] = None
        for part in stored['parts']:
            part['another_one'] = []
        assert message_address(stored) == encoded.hash


@given(json_values, json_values)
def test_messages_that_differ_in_a_tool_argument_have_different_addresses(one: object, other: object) -> None:
    if one == other:
        return
    first, second = (
        ModelResponse(parts=[ToolCallPart('t', {'value': value}, tool_call_id='c')], timestamp=T0)
        for value in (one, other)
    )
    [a], [b] = encode_messages([first]), encode_messages([second])
    assert a.hash != b.hash
