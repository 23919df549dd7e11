"""Whether a message history is *provider-valid*: a provider accepts it as it stands, with no repair.

A snapshot is only worth seeding a continuation or a fork from if it is provider-valid by itself.
pydantic-ai repairs some invalid histories silently before every request (it drops orphan tool
returns and synthesizes returns for dangling calls) and leaves others as they are (an answer that
comes late or twice), and given a history that ends in unanswered tool calls and no new prompt it
executes those calls again. So a provider error neither reliably tells you a snapshot was bad nor
comes early enough, and a bad snapshot can repeat side effects. This module checks the rule itself,
without repairing anything.

The rule, for regular tool calls (`ToolCallPart`, which output tools, deferred tools and typed
subclasses such as `ToolSearchCallPart` all are):

- the history does not start with a `ModelResponse` (Anthropic rejects a conversation whose first
  message is the assistant's);
- every call in a `ModelResponse` is answered in the *next* message, which must be a `ModelRequest`,
  by exactly one `ToolReturnPart` (whatever its `outcome`, so a tool-bound retry, a denial or an
  interruption all answer) or tool-bound legacy `RetryPromptPart` (one with `tool_name` set) with
  the same `tool_call_id`. OpenAI Chat wants the `tool` messages right after the assistant message
  that called, and Anthropic wants the `tool_result` blocks in the very next user turn. Where the
  answers sit inside that request does not matter: `Model.prepare_messages`, which runs before every
  request an agent makes, puts a request's tool results ahead of its other parts;
- a `RetryFeedbackPart`, or a `RetryPromptPart` without a tool name, is feedback in the user's voice
  and answers nothing;
- an answer needs an open call: one answering no call at all (orphan), answering a call that is
  already answered (duplicate), arriving in a later request than the next one (out of order) or
  before its call is a problem, as is a call still unanswered when the history ends (there is no
  next request);
- call ids are non-empty and unique across the history: the mappers replace an empty id with a fresh
  random one for every part, so an empty-id call never meets its answer, and a reused id makes a
  later answer ambiguous (Anthropic rejects non-unique `tool_use` ids).

Native (builtin) tools (`NativeToolCallPart` / `NativeToolReturnPart`, e.g. web search) run on the
provider's side, so no `ToolReturnPart` answers them: the provider puts the call and its result in
the same response. The rule is the same pairing, inside one `ModelResponse`: each native call has
exactly one native return with the same id after it in that response, and each native return has
such a call before it. Anthropic rejects a `server_tool_use` block without its result anywhere but
at the very end of a paused turn; OpenAI Chat never receives native parts at all. pydantic-ai's
Anthropic mapper drops a native call it cannot pair, so the provider never sees the problem; the
rule still reports it, because a snapshot should never need that repair, and a paused turn left
unfinished is not a finished step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    NativeToolCallPart,
    NativeToolReturnPart,
    RetryPromptPart,
    ToolCallPart,
    ToolReturnPart,
)

__all__ = ['ValidityProblem', 'is_provider_valid', 'validity_problems']


@dataclass(frozen=True)
class ValidityProblem:
    """One reason a message history is not provider-valid."""

    index: int
    """Index of the message the problem is in (for an unanswered call, the response that made it)."""

    tool_call_id: str | None
    """The tool call id concerned, or `None` for a problem with the history's shape."""

    reason: str
    """A readable sentence saying what is wrong."""


def is_provider_valid(messages: Sequence[ModelMessage]) -> bool:
    """Whether a provider accepts `messages` as they stand; see `validity_problems` for the rule."""
    return not validity_problems(messages)


def validity_problems(messages: Sequence[ModelMessage]) -> list[ValidityProblem]:
    """Every reason `messages` is not provider-valid, in history order; empty when it is valid.

    Pure: reads the messages only, so workflow code can call it. The rule is described in this
    module's docstring. An empty history is valid.
    """
    problems: list[ValidityProblem] = []
    if messages and isinstance(messages[0], ModelResponse):
        problems.append(
            ValidityProblem(0, None, 'The history starts with a model response; the first message must be a request.')
        )
    pairing = _Pairing(first_call_at=_first_call_indices(messages), problems=problems)
    for index, message in enumerate(messages):
        if isinstance(message, ModelResponse):
            pairing.close_unanswered(index, 'the next message is another model response, not a request')
            pairing.open_calls(index, message)
            problems.extend(_native_problems(index, message))
        else:
            pairing.answer(index, message)
            pairing.close_unanswered(index, f'the next request (message {index}) does not answer it')
    pairing.close_unanswered(len(messages), 'the history ends before any request answers it')
    # An unanswered call is only known once the next message has been read; report it at its response.
    return sorted(problems, key=lambda problem: problem.index)


@dataclass
class _Pairing:
    """The walk over regular tool calls and their answers, message by message."""

    first_call_at: dict[str, int]
    """Index of the first response calling each id, to tell an answer that comes too early from an orphan."""

    problems: list[ValidityProblem]

    called_at: dict[str, int] = field(default_factory=dict[str, int])
    """Index of the response that made each call seen so far."""

    answered_at: dict[str, int] = field(default_factory=dict[str, int])
    """Index of the request that answered each call answered so far."""

    pending: dict[str, int] = field(default_factory=dict[str, int])
    """Calls of the message just before this one still waiting for their answer, by id."""

    def open_calls(self, index: int, response: ModelResponse) -> None:
        """Open the regular tool calls `response` makes; the next message has to answer them."""
        for part in response.parts:
            if not isinstance(part, ToolCallPart):
                continue
            call_id = part.tool_call_id
            if not call_id:
                self._problem(index, call_id, f'Tool call {part.tool_name!r} has an empty tool_call_id.')
            elif call_id in self.called_at:
                earlier = self.called_at[call_id]
                where = 'in this same response' if earlier == index else f'by the response at message {earlier}'
                self._problem(index, call_id, f'Tool call id {call_id!r} is already used {where}.')
            else:
                self.called_at[call_id] = index
                self.pending[call_id] = index

    def answer(self, index: int, request: ModelRequest) -> None:
        """Match each tool answer in `request` to a call of the response just before it."""
        for part in request.parts:
            call_id = _answered_call_id(part)
            if call_id is None:
                continue
            if not call_id:
                self._problem(index, call_id, 'A tool return has an empty tool_call_id.')
            elif call_id in self.pending:
                del self.pending[call_id]
                self.answered_at[call_id] = index
            elif call_id in self.answered_at:
                self._problem(
                    index,
                    call_id,
                    f'Duplicate answer: the call was already answered at message {self.answered_at[call_id]}.',
                )
            elif call_id in self.called_at:
                called = self.called_at[call_id]
                self._problem(
                    index,
                    call_id,
                    f'Out of order: this answers the call made at message {called}, '
                    f'which must be answered in the next message ({called + 1}).',
                )
            elif self.first_call_at.get(call_id, -1) > index:
                self._problem(
                    index, call_id, f'This answer comes before its call, made at message {self.first_call_at[call_id]}.'
                )
            else:
                self._problem(index, call_id, 'Orphan answer: no tool call with this id precedes it.')

    def close_unanswered(self, index: int, why: str) -> None:
        """Report every call still pending when the message at `index` cannot answer it any more."""
        for call_id, called in self.pending.items():
            self._problem(called, call_id, f'Tool call is never answered: {why}.')
        self.pending.clear()

    def _problem(self, index: int, call_id: str, reason: str) -> None:
        self.problems.append(ValidityProblem(index, call_id, reason))


def _answered_call_id(part: ModelRequestPart) -> str | None:
    """The id of the call `part` answers, or `None` when it is not a tool answer at all.

    A `ToolReturnPart` answers whatever its outcome. The deprecated `RetryPromptPart` only answers a
    call when it names a tool; without one, pydantic-ai sends it as user text (its 2.68 successor is
    `RetryFeedbackPart`, which has no tool fields at all).
    """
    if isinstance(part, ToolReturnPart):
        return part.tool_call_id
    if isinstance(part, RetryPromptPart) and part.tool_name is not None:
        return part.tool_call_id
    return None


def _first_call_indices(messages: Sequence[ModelMessage]) -> dict[str, int]:
    """Index of the first response making a regular tool call, by call id."""
    first: dict[str, int] = {}
    for index, message in enumerate(messages):
        if isinstance(message, ModelResponse):
            for part in message.parts:
                if isinstance(part, ToolCallPart):
                    first.setdefault(part.tool_call_id, index)
    return first


def _native_problems(index: int, response: ModelResponse) -> list[ValidityProblem]:
    """Pair the native tool calls and returns of one response, where the provider itself put them."""
    problems: list[ValidityProblem] = []
    unreturned: dict[str, str] = {}
    returned: set[str] = set()
    for part in response.parts:
        if isinstance(part, NativeToolCallPart):
            if not part.tool_call_id:
                problems.append(
                    ValidityProblem(index, part.tool_call_id, f'Native tool call {part.tool_name!r} has an empty id.')
                )
            elif part.tool_call_id in unreturned or part.tool_call_id in returned:
                problems.append(
                    ValidityProblem(index, part.tool_call_id, 'Native tool call id is used twice in this response.')
                )
            else:
                unreturned[part.tool_call_id] = part.tool_name
        elif isinstance(part, NativeToolReturnPart):
            if part.tool_call_id in unreturned:
                del unreturned[part.tool_call_id]
                returned.add(part.tool_call_id)
            elif part.tool_call_id in returned:
                problems.append(ValidityProblem(index, part.tool_call_id, 'Duplicate native tool return.'))
            else:
                problems.append(
                    ValidityProblem(
                        index,
                        part.tool_call_id,
                        'Native tool return without a native tool call before it in the same response.',
                    )
                )
    problems.extend(
        ValidityProblem(
            index, call_id, f'Native tool call {tool_name!r} has no native tool return in the same response.'
        )
        for call_id, tool_name in unreturned.items()
    )
    return problems
