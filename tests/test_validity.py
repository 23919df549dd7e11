"""The provider-valid rule (`agentledger.model._validity`), and proof that "valid" means "accepted".

The first half tests the pure rule on hand-built histories. The second half sends every history in a
table through pydantic-ai's real OpenAI Chat and Anthropic models, with the official `openai` and
`anthropic` clients, to a loopback server that checks tool-call pairing as strictly as those APIs do,
and asserts that `is_provider_valid` is true exactly when both accept the request.

The models are called directly (`Model.prepare_messages`, then `Model.request`), never through
`Agent.run`: right before every request an agent runs `_clean_message_history`, which silently drops
orphan tool returns and synthesizes returns for dangling calls, so an agent's provider call can't tell
you a snapshot was bad (`test_agent_repair_hides_some_invalid_snapshots` shows which ones it hides and
which still earn a 400). `prepare_messages` is not that repair: it is the model's own rendering step (it
turns `RetryFeedbackPart`s into user text, which `Model.request` refuses to do, and puts each request's
tool results ahead of its other parts), every agent request runs it, and
`test_prepare_messages_repairs_no_pairing` checks that it changes no verdict on pairing.

Where a mapper itself turns an invalid history into an accepted request (the Anthropic mapper drops a
native tool call it can't pair, OpenAI Chat drops native parts altogether), the rule stays strict and
the difference is asserted in tests of its own. The strict server keeps every request body it receives,
and a failing case prints what each provider would have received and why it refused it.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from anthropic import AsyncAnthropic
from pydantic_ai import PydanticAIDeprecationWarning
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    ModelResponsePart,
    NativeToolCallPart,
    NativeToolReturnPart,
    RetryFeedbackPart,
    RetryInfo,
    RetryPromptPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
    repair_messages,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.tools import ToolDefinition

from agentledger.model._validity import ValidityProblem, is_provider_valid, validity_problems

# --- building histories ---------------------------------------------------------------------------

# Not 'claude-sonnet-4-5': the anthropic SDK warns that it is deprecated on every request.
ANTHROPIC_MODEL = 'claude-sonnet-4-6'


def request(*parts: ModelRequestPart) -> ModelRequest:
    return ModelRequest(parts=list(parts))


def response(*parts: ModelResponsePart, **fields: Any) -> ModelResponse:
    """A response as a model returns it: with a model name, so pydantic-ai never merges it with another."""
    return ModelResponse(parts=list(parts), **{'model_name': 'gpt-4o', **fields})


def prompt(text: str = 'What is the weather in Paris?') -> UserPromptPart:
    return UserPromptPart(text)


def call(tool_call_id: str, tool_name: str = 'get_weather') -> ToolCallPart:
    return ToolCallPart(tool_name=tool_name, args={'city': 'Paris'}, tool_call_id=tool_call_id)


def ret(tool_call_id: str, tool_name: str = 'get_weather', content: str = 'sunny', **fields: Any) -> ToolReturnPart:
    return ToolReturnPart(tool_name=tool_name, content=content, tool_call_id=tool_call_id, **fields)


def retried(tool_call_id: str) -> ToolReturnPart:
    """A tool-bound retry, as pydantic-ai 2.68 records it: the call's own return with outcome 'retried'."""
    return ret(tool_call_id, outcome='retried', content='city must be a capital')


def feedback() -> RetryFeedbackPart:
    """A retry that answers no call (2.68's successor of a `RetryPromptPart` without a tool name)."""
    return RetryFeedbackPart(content='Answer in one word.', retry=RetryInfo(cause='model_retry'))


def legacy_retry(tool_call_id: str, tool_name: str | None) -> RetryPromptPart:
    """A deprecated `RetryPromptPart`, as code built before 2.68 may still hold in memory."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', PydanticAIDeprecationWarning)
        return RetryPromptPart(content='city must be a capital', tool_name=tool_name, tool_call_id=tool_call_id)


def native_call(tool_call_id: str) -> NativeToolCallPart:
    return NativeToolCallPart(
        tool_name='web_search', args={'query': 'weather Paris'}, tool_call_id=tool_call_id, provider_name='anthropic'
    )


def native_return(tool_call_id: str) -> NativeToolReturnPart:
    result = {'type': 'web_search_result', 'url': 'https://example.com', 'title': 'Weather', 'encrypted_content': 'x'}
    return NativeToolReturnPart(
        tool_name='web_search', content=[result], tool_call_id=tool_call_id, provider_name='anthropic'
    )


def anthropic_response(*parts: ModelResponsePart, **fields: Any) -> ModelResponse:
    """A response Anthropic made, so its native tool parts are replayed to Anthropic."""
    return response(*parts, provider_name='anthropic', model_name=ANTHROPIC_MODEL, **fields)


def reply(text: str = 'It is sunny.') -> ModelResponse:
    return response(TextPart(text))


# --- (a) the pure rule ----------------------------------------------------------------------------


def reasons(messages: Sequence[ModelMessage]) -> list[tuple[int, str | None, str]]:
    return [(p.index, p.tool_call_id, p.reason) for p in validity_problems(messages)]


def only_problem(messages: Sequence[ModelMessage]) -> ValidityProblem:
    problems = validity_problems(messages)
    assert len(problems) == 1, problems
    return problems[0]


def test_empty_history_is_valid() -> None:
    assert is_provider_valid([])
    assert validity_problems([]) == []


def test_valid_multi_step_history() -> None:
    history = [
        request(prompt()),
        response(call('a')),
        request(ret('a')),
        response(TextPart('Checking the time too.'), call('b', 'get_time')),
        request(ret('b', 'get_time')),
        reply(),
        request(prompt('Thanks!')),
        reply('You are welcome.'),
    ]
    assert validity_problems(history) == []


def test_several_calls_in_one_response_answered_in_any_order() -> None:
    history = [request(prompt()), response(call('a'), call('b'), call('c')), request(ret('c'), ret('a'), ret('b'))]
    assert is_provider_valid(history)


def test_answers_need_not_lead_the_request() -> None:
    # `Model.prepare_messages` puts tool results first, so user text ahead of them is sent after them.
    assert is_provider_valid([request(prompt()), response(call('a')), request(prompt('Also: hurry.'), ret('a'))])


def test_dangling_call_at_the_end() -> None:
    problem = only_problem([request(prompt()), response(TextPart('Let me look.'), call('a'))])
    assert (problem.index, problem.tool_call_id) == (1, 'a')
    assert 'history ends' in problem.reason


def test_dangling_call_followed_by_a_user_prompt() -> None:
    problem = only_problem([request(prompt()), response(call('a')), request(prompt('Never mind.'))])
    assert (problem.index, problem.tool_call_id) == (1, 'a')
    assert 'next request (message 2) does not answer it' in problem.reason


def test_one_of_two_calls_unanswered() -> None:
    problem = only_problem([request(prompt()), response(call('a'), call('b')), request(ret('a'))])
    assert problem.tool_call_id == 'b'


def test_call_followed_by_another_response() -> None:
    history = [request(prompt()), response(call('a')), reply(), request(ret('a'))]
    assert reasons(history) == [
        (1, 'a', 'Tool call is never answered: the next message is another model response, not a request.'),
        (
            3,
            'a',
            'Out of order: this answers the call made at message 1, which must be answered in the next message (2).',
        ),
    ]


def test_orphan_return() -> None:
    problem = only_problem([request(prompt()), reply(), request(ret('z'))])
    assert (problem.index, problem.tool_call_id) == (2, 'z')
    assert problem.reason.startswith('Orphan answer')


def test_duplicate_return_in_the_same_request() -> None:
    problem = only_problem([request(prompt()), response(call('a')), request(ret('a'), ret('a'))])
    assert (problem.index, problem.tool_call_id) == (2, 'a')
    assert problem.reason.startswith('Duplicate answer')


def test_duplicate_return_in_a_later_request() -> None:
    history = [request(prompt()), response(call('a')), request(ret('a')), reply(), request(ret('a'))]
    problem = only_problem(history)
    assert (problem.index, problem.reason) == (4, 'Duplicate answer: the call was already answered at message 2.')


def test_out_of_order_return_two_requests_later() -> None:
    history = [
        request(prompt()),
        response(call('a')),
        request(prompt('Hurry up.')),
        reply('Working on it.'),
        request(ret('a')),
    ]
    assert [(index, call_id) for index, call_id, _ in reasons(history)] == [(1, 'a'), (4, 'a')]
    assert validity_problems(history)[1].reason.startswith('Out of order')


def test_return_before_its_call() -> None:
    history = [request(prompt()), reply(), request(ret('a')), response(call('a')), request(ret('a'))]
    problem = only_problem(history)
    assert (problem.index, problem.reason) == (2, 'This answer comes before its call, made at message 3.')


def test_tool_bound_retry_answers_its_call() -> None:
    history = [request(prompt()), response(call('a')), request(retried('a')), response(call('a2')), request(ret('a2'))]
    assert is_provider_valid(history)


def test_output_and_deferred_tool_calls_are_answered_like_any_other() -> None:
    history = [
        request(prompt()),
        response(call('d', 'delete_file')),
        request(ret('d', 'delete_file', content='The user denied this call.', outcome='denied')),
        response(call('f', 'final_result')),
        request(ret('f', 'final_result', content='Final result processed.')),
    ]
    assert is_provider_valid(history)


def test_legacy_tool_bound_retry_prompt_answers_its_call() -> None:
    assert is_provider_valid([request(prompt()), response(call('a')), request(legacy_retry('a', 'get_weather'))])


def test_retry_feedback_answers_nothing() -> None:
    problem = only_problem([request(prompt()), response(call('a')), request(feedback())])
    assert (problem.index, problem.tool_call_id) == (1, 'a')


def test_legacy_retry_prompt_without_tool_name_answers_nothing() -> None:
    # Its `tool_call_id` matches the call, but without a tool name it is user text.
    problem = only_problem([request(prompt()), response(call('a')), request(legacy_retry('a', None))])
    assert (problem.index, problem.tool_call_id) == (1, 'a')


def test_retry_feedback_beside_the_answers_is_fine() -> None:
    assert is_provider_valid([request(prompt()), response(call('a')), request(ret('a'), feedback())])


def test_interleaved_text_and_thinking_parts() -> None:
    history = [
        request(prompt()),
        response(
            ThinkingPart('Two tools.'), TextPart('Looking.'), call('a'), ThinkingPart('And'), call('b', 'get_time')
        ),
        request(ret('a'), ret('b', 'get_time')),
        response(ThinkingPart('Done.'), TextPart('Sunny.')),
    ]
    assert is_provider_valid(history)


def test_history_must_not_start_with_a_response() -> None:
    problem = only_problem([reply('Hello!'), request(prompt())])
    assert (problem.index, problem.tool_call_id) == (0, None)


def test_empty_and_reused_call_ids() -> None:
    empty = [request(prompt()), response(call('')), request(ret(''))]
    assert [(i, c) for i, c, _ in reasons(empty)] == [(1, ''), (2, '')]
    reused = [request(prompt()), response(call('a')), request(ret('a')), response(call('a')), request(ret('a'))]
    assert [(i, c) for i, c, _ in reasons(reused)] == [(3, 'a'), (4, 'a')]
    same_response = [request(prompt()), response(call('a'), call('a')), request(ret('a'), ret('a'))]
    assert not is_provider_valid(same_response)


def test_native_call_and_return_in_one_response() -> None:
    history = [request(prompt()), anthropic_response(native_call('s1'), native_return('s1'), TextPart('Sunny.'))]
    assert is_provider_valid(history)


def test_native_call_needs_its_return_in_the_same_response() -> None:
    without = [request(prompt()), anthropic_response(native_call('s1'), TextPart('Searching.')), request(prompt())]
    assert (
        only_problem(without).reason == "Native tool call 'web_search' has no native tool return in the same response."
    )
    in_a_later_response = [
        request(prompt()),
        anthropic_response(native_call('s1')),
        request(prompt()),
        anthropic_response(native_return('s1')),
    ]
    assert [(i, c) for i, c, _ in reasons(in_a_later_response)] == [(1, 's1'), (3, 's1')]


def test_native_return_without_or_before_its_call() -> None:
    orphan = [request(prompt()), anthropic_response(native_return('s1'), TextPart('Sunny.'))]
    assert only_problem(orphan).reason.startswith('Native tool return without a native tool call')
    before = [request(prompt()), anthropic_response(native_return('s1'), native_call('s1'), native_return('s1'))]
    assert not is_provider_valid(before)


def test_native_calls_need_no_tool_return_part() -> None:
    # A `ToolReturnPart` with a native call's id answers nothing: it is an orphan.
    history = [request(prompt()), anthropic_response(native_call('s1'), native_return('s1')), request(ret('s1'))]
    assert only_problem(history).reason.startswith('Orphan answer')


# --- (b) strict loopback providers ----------------------------------------------------------------


def openai_errors(body: dict[str, Any]) -> list[str]:
    """What OpenAI Chat Completions rejects about tool-call pairing in `body`.

    An assistant message with `tool_calls` must be followed, before any other message, by one `tool`
    message per call id; a `tool` message must answer a call of that assistant message. The real API
    also rejects those; a second answer to the same call is rejected here for strictness.
    """
    errors: list[str] = []
    pending: list[str] | None = None  # call ids of the assistant message the `tool` messages follow
    answered: set[str] = set()

    def close() -> None:
        if pending is not None and (missing := [i for i in pending if i not in answered]):
            errors.append(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(missing)}"
            )

    for index, message in enumerate(body['messages']):
        if message['role'] == 'tool':
            call_id = message['tool_call_id']
            if pending is None or call_id not in pending:
                errors.append(
                    f"messages[{index}]: Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'."
                )
            elif call_id in answered:
                errors.append(f'messages[{index}]: tool_call_id {call_id} was already answered.')
            answered.add(call_id)
            continue
        close()
        pending, answered = None, set()
        if message['role'] == 'assistant' and message.get('tool_calls'):
            pending = [tool_call['id'] for tool_call in message['tool_calls']]
            if len(set(pending)) != len(pending):
                errors.append(f'messages[{index}]: duplicate tool_call ids in one assistant message.')
    close()
    return errors


def _is_native_call(block: dict[str, Any]) -> bool:
    return block['type'] in ('server_tool_use', 'mcp_tool_use')


def _is_native_result(block: dict[str, Any]) -> bool:
    return block['type'] != 'tool_result' and block['type'].endswith('_tool_result')


def anthropic_errors(body: dict[str, Any]) -> list[str]:
    """What the Anthropic Messages API rejects about turn order and tool pairing in `body`.

    The conversation starts with a user turn; `tool_use` ids are unique; every `tool_use` is answered by
    a `tool_result` in the very next (user) turn, the results leading it; every `tool_result` answers a
    `tool_use` of the turn before; a request holding tool blocks declares tools; a `server_tool_use` has
    its result after it in the same turn, except at the end of a paused turn (only tool results follow).
    Mid-conversation `system` entries sit outside the user/assistant alternation.
    """
    errors: list[str] = []
    turns = [(index, m) for index, m in enumerate(body['messages']) if m['role'] != 'system']
    if turns and turns[0][1]['role'] != 'user':
        errors.append('messages: first message must use the "user" role')
    blocks = [(i, b) for i, m in turns if isinstance(m['content'], list) for b in m['content']]
    if any(b['type'] in ('tool_use', 'tool_result') for _, b in blocks) and not body.get('tools'):
        errors.append('Requests which include `tool_use` or `tool_result` blocks must define tools.')
    tool_use_ids = [b['id'] for _, b in blocks if b['type'] == 'tool_use']
    if len(set(tool_use_ids)) != len(tool_use_ids):
        errors.append('`tool_use` ids must be unique')
    for position, (index, message) in enumerate(turns):
        content = message['content'] if isinstance(message['content'], list) else []
        following = [m for _, m in turns[position + 1 :]]
        if message['role'] == 'assistant':
            errors.extend(_anthropic_assistant_turn_errors(index, content, following))
        else:
            previous = turns[position - 1][1] if position else None
            errors.extend(_anthropic_user_turn_errors(index, content, previous))
    return errors


def _anthropic_assistant_turn_errors(
    index: int, content: list[dict[str, Any]], following: list[dict[str, Any]]
) -> list[str]:
    errors: list[str] = []
    next_turn = following[0] if following else None
    results = (
        {b['tool_use_id'] for b in next_turn['content'] if b['type'] == 'tool_result'}
        if next_turn is not None and next_turn['role'] == 'user' and isinstance(next_turn['content'], list)
        else set()
    )
    if missing := [b['id'] for b in content if b['type'] == 'tool_use' and b['id'] not in results]:
        errors.append(
            f'messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: '
            f'{", ".join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block '
            'in the next message.'
        )
    paused_tail = all(
        m['role'] == 'user' and isinstance(m['content'], list) and all(b['type'] == 'tool_result' for b in m['content'])
        for m in following
    )
    open_native: set[str] = set()
    for block in content:
        if _is_native_call(block):
            open_native.add(block['id'])
        elif _is_native_result(block):
            if block['tool_use_id'] not in open_native:
                errors.append(f'messages.{index}: `{block["type"]}` block without a preceding server tool use.')
            open_native.discard(block['tool_use_id'])
    if open_native and not paused_tail:
        errors.append(f'messages.{index}: server tool use without its result: {", ".join(sorted(open_native))}.')
    return errors


def _anthropic_user_turn_errors(
    index: int, content: list[dict[str, Any]], previous: dict[str, Any] | None
) -> list[str]:
    errors: list[str] = []
    called = (
        {b['id'] for b in previous['content'] if b['type'] == 'tool_use'}
        if previous is not None and previous['role'] == 'assistant'
        else set()
    )
    seen_other = False
    answered: set[str] = set()
    for position, block in enumerate(content):
        if block['type'] != 'tool_result':
            seen_other = True
            continue
        tool_use_id = block['tool_use_id']
        if tool_use_id not in called:
            errors.append(
                f'messages.{index}.content.{position}: unexpected `tool_use_id` found in `tool_result` blocks: '
                f'{tool_use_id}. Each `tool_result` block must have a corresponding `tool_use` block '
                'in the previous message.'
            )
        elif tool_use_id in answered:
            errors.append(f'messages.{index}.content.{position}: duplicate `tool_result` for {tool_use_id}.')
        elif seen_other:
            errors.append(f'messages.{index}: `tool_result` blocks must come first in the user message.')
        answered.add(tool_use_id)
    return errors


OPENAI_COMPLETION = {
    'id': 'chatcmpl-strict',
    'object': 'chat.completion',
    'created': 0,
    'model': 'gpt-4o',
    'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': 'ok'}, 'finish_reason': 'stop'}],
    'usage': {'prompt_tokens': 1, 'completion_tokens': 1, 'total_tokens': 2},
}

# pydantic-ai's Anthropic model always streams, so the reply is a minimal server-sent event stream.
ANTHROPIC_STREAM = [
    {
        'type': 'message_start',
        'message': {
            'id': 'msg_strict',
            'type': 'message',
            'role': 'assistant',
            'model': ANTHROPIC_MODEL,
            'content': [],
            'stop_reason': None,
            'stop_sequence': None,
            'usage': {'input_tokens': 1, 'output_tokens': 0},
        },
    },
    {'type': 'content_block_start', 'index': 0, 'content_block': {'type': 'text', 'text': ''}},
    {'type': 'content_block_delta', 'index': 0, 'delta': {'type': 'text_delta', 'text': 'ok'}},
    {'type': 'content_block_stop', 'index': 0},
    {
        'type': 'message_delta',
        'delta': {'stop_reason': 'end_turn', 'stop_sequence': None},
        'usage': {'output_tokens': 1},
    },
    {'type': 'message_stop'},
]


@dataclass
class Received:
    """One request the strict server received, and what it rejected about it."""

    provider: str
    body: dict[str, Any]
    errors: list[str]


@dataclass
class StrictProviders:
    """A loopback server playing OpenAI Chat Completions and the Anthropic Messages API, strictly."""

    port: int
    received: list[Received] = field(default_factory=list[Received])


def _handler(providers: StrictProviders) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
            path = self.path.split('?', 1)[0]
            if path == '/v1/chat/completions':
                errors = openai_errors(body)
                error_body: dict[str, Any] = {
                    'error': {'message': '; '.join(errors), 'type': 'invalid_request_error', 'param': 'messages'}
                }
                providers.received.append(Received('openai', body, errors))
                self._reply(400 if errors else 200, error_body if errors else OPENAI_COMPLETION)
            elif path == '/v1/messages':
                errors = anthropic_errors(body)
                error_body = {'type': 'error', 'error': {'type': 'invalid_request_error', 'message': '; '.join(errors)}}
                providers.received.append(Received('anthropic', body, errors))
                if errors:
                    self._reply(400, error_body)
                else:
                    self._stream(ANTHROPIC_STREAM)
            else:
                self._reply(404, {'error': {'message': f'no route {path}'}})

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, events: list[dict[str, Any]]) -> None:
            data = ''.join(f'event: {event["type"]}\ndata: {json.dumps(event)}\n\n' for event in events).encode()
            self.send_response(200)
            self.send_header('Content-Type', 'text/event-stream')
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest output to the failures

    return Handler


@pytest.fixture(scope='module')
def providers() -> Iterator[StrictProviders]:
    strict = StrictProviders(port=0)
    server = ThreadingHTTPServer(('127.0.0.1', 0), _handler(strict))
    strict.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield strict
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def models(port: int) -> dict[str, Model]:
    return {
        'openai': OpenAIChatModel(
            'gpt-4o', provider=OpenAIProvider(base_url=f'http://127.0.0.1:{port}/v1', api_key='test')
        ),
        'anthropic': AnthropicModel(
            ANTHROPIC_MODEL,
            provider=AnthropicProvider(
                anthropic_client=AsyncAnthropic(base_url=f'http://127.0.0.1:{port}', api_key='test', max_retries=0)
            ),
        ),
    }


TOOLS = [
    ToolDefinition(
        name='get_weather',
        parameters_json_schema={'type': 'object', 'properties': {'city': {'type': 'string'}}},
        description='Weather in a city.',
    ),
    ToolDefinition(
        name='get_time',
        parameters_json_schema={'type': 'object', 'properties': {'city': {'type': 'string'}}},
        description='Local time in a city.',
    ),
]


@dataclass
class Verdict:
    """Whether one provider accepted the request its official client built from a history."""

    accepted: bool
    received: Received


async def send(model: Model, history: Sequence[ModelMessage], providers: StrictProviders) -> Verdict:
    """Send `history` the way an agent's model request does, minus the history repair."""
    params = ModelRequestParameters(function_tools=TOOLS)
    before = len(providers.received)
    try:
        await model.request(model.prepare_messages(list(history), params), None, params)
        accepted = True
    except ModelHTTPError as error:
        assert error.status_code == 400, error
        accepted = False
    (received,) = providers.received[before:]
    return Verdict(accepted, received)


async def verdicts(history: Sequence[ModelMessage], providers: StrictProviders) -> dict[str, Verdict]:
    return {name: await send(model, history, providers) for name, model in models(providers.port).items()}


def explain(history: Sequence[ModelMessage], results: dict[str, Verdict]) -> str:
    """What each provider received and said, for a failing assertion."""
    lines = [f'validity problems: {validity_problems(history)}']
    for name, verdict in results.items():
        lines.append(f'--- {name}: {"accepted" if verdict.accepted else "rejected"} {verdict.received.errors}')
        lines.append(json.dumps(verdict.received.body['messages'], indent=1, default=str))
    return '\n'.join(lines)


@dataclass
class Case:
    """A history and whether it is provider-valid."""

    name: str
    history: list[ModelMessage]
    valid: bool


CASES = [
    Case('plain_chat', [request(prompt()), reply(), request(prompt('And tomorrow?'))], True),
    Case(
        'multi_step',
        [
            request(prompt()),
            response(call('a')),
            request(ret('a')),
            response(TextPart('Now the time.'), call('b', 'get_time')),
            request(ret('b', 'get_time')),
        ],
        True,
    ),
    Case(
        'several_calls_answered_in_another_order',
        [request(prompt()), response(call('a'), call('b'), call('c')), request(ret('c'), ret('a'), ret('b'))],
        True,
    ),
    Case(
        'interleaved_text_and_thinking',
        [
            request(prompt()),
            response(
                ThinkingPart('Two tools.'), TextPart('Looking.'), call('a'), TextPart('And'), call('b', 'get_time')
            ),
            request(ret('a'), ret('b', 'get_time')),
        ],
        True,
    ),
    Case(
        'user_text_before_the_answer',
        [request(prompt()), response(call('a')), request(prompt('Hurry.'), ret('a'))],
        True,
    ),
    Case(
        'tool_bound_retry',
        [request(prompt()), response(call('a')), request(retried('a')), response(call('a2')), request(ret('a2'))],
        True,
    ),
    Case(
        'legacy_tool_bound_retry_prompt',
        [request(prompt()), response(call('a')), request(legacy_retry('a', 'get_weather'))],
        True,
    ),
    Case(
        'retry_feedback_beside_the_answer',
        [request(prompt()), response(call('a')), request(ret('a'), feedback())],
        True,
    ),
    Case('retry_feedback_instead_of_an_answer', [request(prompt()), response(call('a')), request(feedback())], False),
    Case(
        'legacy_plain_retry_prompt_instead_of_an_answer',
        [request(prompt()), response(call('a')), request(legacy_retry('a', None))],
        False,
    ),
    Case('dangling_call_at_the_end', [request(prompt()), response(call('a'))], False),
    Case(
        'dangling_call_then_user_prompt',
        [request(prompt()), response(call('a')), request(prompt('Never mind.'))],
        False,
    ),
    Case('one_of_two_calls_unanswered', [request(prompt()), response(call('a'), call('b')), request(ret('a'))], False),
    Case('orphan_return', [request(prompt()), reply(), request(ret('z'))], False),
    Case('duplicate_return', [request(prompt()), response(call('a')), request(ret('a'), ret('a'))], False),
    Case(
        'duplicate_return_in_a_later_request',
        [request(prompt()), response(call('a')), request(ret('a')), reply(), request(ret('a'))],
        False,
    ),
    Case(
        'out_of_order_return',
        [request(prompt()), response(call('a')), request(prompt('Hurry.')), reply('Working.'), request(ret('a'))],
        False,
    ),
    Case('answer_after_another_response', [request(prompt()), response(call('a')), reply(), request(ret('a'))], False),
    Case(
        'return_before_its_call',
        [request(prompt()), reply(), request(ret('a')), response(call('a')), request(ret('a'))],
        False,
    ),
    Case('empty_call_id', [request(prompt()), response(call('')), request(ret(''))], False),
    Case(
        'reused_call_id',
        [request(prompt()), response(call('a')), request(ret('a')), response(call('a')), request(ret('a'))],
        False,
    ),
    Case('starts_with_a_response', [reply('Hello!'), request(prompt())], False),
    Case(
        'native_call_and_return',
        [
            request(prompt()),
            anthropic_response(native_call('s1'), native_return('s1'), TextPart('Sunny.')),
            request(prompt('Thanks.')),
        ],
        True,
    ),
    Case(
        'native_call_and_return_beside_a_tool_call',
        [
            request(prompt()),
            anthropic_response(native_call('s1'), native_return('s1'), call('a')),
            request(ret('a')),
        ],
        True,
    ),
    Case(
        'native_return_without_its_call',
        [request(prompt()), anthropic_response(native_return('s1'), TextPart('Sunny.')), request(prompt('Thanks.'))],
        False,
    ),
]


@pytest.mark.parametrize('case', CASES, ids=[case.name for case in CASES])
async def test_valid_exactly_when_both_strict_providers_accept(case: Case, providers: StrictProviders) -> None:
    """C5: "provider-valid", the rule every stored snapshot passes, is exactly what both providers accept."""
    assert is_provider_valid(case.history) is case.valid, validity_problems(case.history)
    results = await verdicts(case.history, providers)
    accepted = all(verdict.accepted for verdict in results.values())
    assert accepted is case.valid, explain(case.history, results)


async def test_the_strict_server_sees_what_the_clients_built(providers: StrictProviders) -> None:
    # Guards the harness itself: the pairing it checks is really on the wire.
    (multi_step,) = [case for case in CASES if case.name == 'multi_step']
    results = await verdicts(multi_step.history, providers)
    openai_roles = [m['role'] for m in results['openai'].received.body['messages']]
    assert openai_roles == ['user', 'assistant', 'tool', 'assistant', 'tool']
    anthropic_turns = results['anthropic'].received.body['messages']
    assert [b['type'] for b in anthropic_turns[1]['content']] == ['tool_use']
    assert [b['type'] for b in anthropic_turns[2]['content']] == ['tool_result']


# --- where a mapper repairs what the rule rejects ---------------------------------------------------


async def test_anthropic_mapper_drops_a_native_call_without_its_return(providers: StrictProviders) -> None:
    """An unpaired native call mid-history is invalid, yet accepted: the mapper repairs it away.

    Anthropic rejects a `server_tool_use` without its result (except at the end of a paused turn), so
    pydantic-ai's Anthropic mapper (`drop_unpaired_native_tool_calls`) leaves the call out of the request,
    and OpenAI Chat never receives native parts at all. The snapshot is still not provider-valid: what
    the provider sees is not what the ledger recorded.
    """
    history = [
        request(prompt()),
        anthropic_response(native_call('s1'), TextPart('Searching.')),
        request(prompt('Thanks.')),
    ]
    assert not is_provider_valid(history)
    results = await verdicts(history, providers)
    assert all(verdict.accepted for verdict in results.values()), explain(history, results)
    assistant = results['anthropic'].received.body['messages'][1]
    assert [b['type'] for b in assistant['content']] == ['text']


async def test_paused_native_call_at_the_end_is_accepted_but_not_a_finished_step(providers: StrictProviders) -> None:
    """A suspended response (Anthropic `pause_turn`) ends in a native call with no result yet.

    Anthropic accepts that at the very end (the request continues the paused turn), and the mapper
    sends it as is. The rule still rejects it, as it rejects a history ending in unanswered regular
    calls: the step is unfinished, and once anything follows it, Anthropic rejects it.
    """
    history = [request(prompt()), anthropic_response(native_call('s1'), state='suspended')]
    assert not is_provider_valid(history)
    results = await verdicts(history, providers)
    assert all(verdict.accepted for verdict in results.values()), explain(history, results)
    assistant = results['anthropic'].received.body['messages'][-1]
    assert [b['type'] for b in assistant['content']] == ['server_tool_use']


async def test_prepare_messages_is_needed_for_answers_after_user_text(providers: StrictProviders) -> None:
    """Why the rule ignores where answers sit inside a request: `prepare_messages` puts them first.

    Sent without it (a bare `Model.request`), user text ahead of the tool return reaches both APIs
    before the result and both reject it; every agent request runs it, so the snapshot is valid.
    """
    history = [request(prompt()), response(call('a')), request(prompt('Hurry.'), ret('a'))]
    assert is_provider_valid(history)
    params = ModelRequestParameters(function_tools=TOOLS)
    for name, model in models(providers.port).items():
        with pytest.raises(ModelHTTPError) as raised:
            await model.request(list(history), None, params)
        assert raised.value.status_code == 400, name


def _direct_param(case: Case) -> Any:
    feedback_parts = any(isinstance(p, RetryFeedbackPart) for m in case.history for p in m.parts)
    if feedback_parts:
        reason = 'skipped: Model.request cannot render a RetryFeedbackPart without prepare_messages'
        return pytest.param(case, id=f'{case.name}-{reason}', marks=pytest.mark.skip(reason=reason))
    return pytest.param(case, id=case.name)


@pytest.mark.parametrize('case', [_direct_param(case) for case in CASES if case.name != 'user_text_before_the_answer'])
async def test_prepare_messages_repairs_no_pairing(case: Case, providers: StrictProviders) -> None:
    """A bare `Model.request` gets the same verdicts: `prepare_messages` fixes no call/answer pairing.

    The one thing it does change, where answers sit inside a request, has a test of its own.
    """
    params = ModelRequestParameters(function_tools=TOOLS)
    for name, model in models(providers.port).items():
        try:
            await model.request(list(case.history), None, params)
            accepted = True
        except ModelHTTPError as error:
            assert error.status_code == 400, error
            accepted = False
        bare = providers.received[-1]
        prepared = await send(model, case.history, providers)
        assert accepted is prepared.accepted, (name, bare, prepared.received)


REPAIRED_BY_PYDANTIC_AI = {
    'retry_feedback_instead_of_an_answer',
    'legacy_plain_retry_prompt_instead_of_an_answer',
    'dangling_call_at_the_end',
    'dangling_call_then_user_prompt',
    'one_of_two_calls_unanswered',
    'orphan_return',
    'return_before_its_call',
}
"""The invalid cases an agent's history repair turns into an accepted request; the rest still earn a 400."""


@pytest.mark.parametrize('case', [case for case in CASES if not case.valid], ids=lambda case: case.name)
async def test_agent_repair_hides_some_invalid_snapshots(case: Case, providers: StrictProviders) -> None:
    """Why snapshots are checked without repair, and why repair is no substitute for the check.

    `repair_messages` is the pass an agent runs right before every request (`_clean_message_history`
    with `repair_last_response=True`). It synthesizes answers for dangling calls and drops orphans, so
    those snapshots never earn a provider error. It matches an answer to the oldest open call with its
    id in *any* later message, so it leaves an answer that comes late (after another request or
    response) or twice alone, as it does reused or empty ids, a leading response and native parts, and
    those requests are rejected. Either way the rule still agrees with the providers on the repaired
    history.
    """
    repaired = repair_messages(case.history)
    results = await verdicts(repaired, providers)
    accepted = all(verdict.accepted for verdict in results.values())
    assert is_provider_valid(repaired) is accepted, explain(repaired, results)
    assert accepted is (case.name in REPAIRED_BY_PYDANTIC_AI), explain(repaired, results)
