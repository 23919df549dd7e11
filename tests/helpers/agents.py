"""Scripted agents for the end-to-end tests: real pydantic-ai agents on a `FunctionModel`."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from pydantic_ai import Agent, CallDeferred, DeferredToolRequests, ModelRetry, RunContext
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio import activity
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityConfig

_failed_once: set[str] = set()
_zombied: set[str] = set()


def _responses(messages: list[ModelMessage]) -> int:
    return sum(1 for m in messages if isinstance(m, ModelResponse))


def calc_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Five model requests: two parallel tools (one fails once), a validation error, a ModelRetry, then text."""
    match _responses(messages):
        case 0:
            return ModelResponse(parts=[ToolCallPart('add', {'a': 1, 'b': 2}), ToolCallPart('flaky', {'x': 5})])
        case 1:
            return ModelResponse(parts=[ToolCallPart('add', {'a': 'not a number', 'b': 2})])
        case 2:
            return ModelResponse(parts=[ToolCallPart('shout', {'word': 'hello'})])
        case 3:
            return ModelResponse(parts=[ToolCallPart('shout', {'word': 'HELLO'})])
        case _:
            return ModelResponse(parts=[TextPart('done')])


_fast_retry: ActivityConfig = {
    'start_to_close_timeout': timedelta(seconds=20),
    'retry_policy': RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5),
}

calc_agent = Agent(
    FunctionModel(calc_script),
    name='calc',
    capabilities=[TemporalDurability(activity_config=_fast_retry)],
)


@calc_agent.tool_plain
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@calc_agent.tool
def flaky(ctx: RunContext[None], x: int) -> int:
    """Fails on its first attempt for each call, then returns x."""
    assert ctx.tool_call_id is not None
    if ctx.tool_call_id not in _failed_once:
        _failed_once.add(ctx.tool_call_id)
        raise RuntimeError('transient failure')
    return x


@calc_agent.tool_plain
def shout(word: str) -> str:
    """Only accepts upper-case words."""
    if word != word.upper():
        raise ModelRetry('say it in upper case')
    return word + '!'


def zombie_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """One tool call whose first attempt outlives its timeout, then text."""
    if _responses(messages) == 0:
        return ModelResponse(parts=[ToolCallPart('slow', {})])
    return ModelResponse(parts=[TextPart('finished')])


zombie_agent = Agent(FunctionModel(zombie_script), name='zombie', capabilities=[TemporalDurability()])

ZOMBIE_DELAY_S = 4.0


@zombie_agent.tool(
    metadata={
        'temporal': ActivityConfig(
            start_to_close_timeout=timedelta(seconds=1),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=3),
        )
    }
)
async def slow(ctx: RunContext[None]) -> str:
    """The first attempt ignores cancellation and returns long after its timeout (a zombie)."""
    assert ctx.tool_call_id is not None
    if ctx.tool_call_id in _zombied:
        return 'fresh'
    _zombied.add(ctx.tool_call_id)
    deadline = time.monotonic() + ZOMBIE_DELAY_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            await asyncio.sleep(left)
        except asyncio.CancelledError:
            continue
    return 'late'


@dataclass
class Account:
    """Deps of the `typed` agent."""

    user_id: int


@dataclass
class Verdict:
    """Structured output of the `typed` agent."""

    user_id: int
    approved: bool


def typed_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Answers straight away through the output tool."""
    tool = info.output_tools[0]
    return ModelResponse(parts=[ToolCallPart(tool.name, {'user_id': 7, 'approved': True})])


typed_agent = Agent(
    FunctionModel(typed_script),
    name='typed',
    deps_type=Account,
    output_type=Verdict,
    capabilities=[TemporalDurability()],
)

plain_agent = Agent(FunctionModel(typed_script), name='not-durable')
"""An agent without TemporalDurability, for the error tests."""


@dataclass
class LockTarget:
    """Deps of the `outage` agent: the SQLite ledger file to lock, and for how long."""

    path: str
    hold_s: float


_locked: set[str] = set()


def outage_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """One tool call that makes the ledger unwritable for a while, then text."""
    if _responses(messages) == 0:
        return ModelResponse(parts=[ToolCallPart('lock_ledger', {})])
    return ModelResponse(parts=[TextPart('survived')])


outage_agent = Agent(
    FunctionModel(outage_script),
    name='outage',
    deps_type=LockTarget,
    capabilities=[TemporalDurability(activity_config=_fast_retry)],
)


@outage_agent.tool
def lock_ledger(ctx: RunContext[LockTarget]) -> str:
    """Take an exclusive lock on the ledger file (once) and release it after `hold_s` seconds."""
    if ctx.deps.path not in _locked:
        _locked.add(ctx.deps.path)
        connection = sqlite3.connect(ctx.deps.path, check_same_thread=False)
        connection.execute('BEGIN EXCLUSIVE')

        def release() -> None:
            connection.rollback()
            connection.close()

        threading.Timer(ctx.deps.hold_s, release).start()
    return 'locked'


seen_histories: list[list[ModelMessage]] = []
"""Every history the `notes` agent's model was asked about, in order."""
saved_notes: list[str] = []
"""The side effects of `save_note`: one entry per execution of its body."""


def notes_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Saves a note when the latest user prompt asks for it, otherwise answers in text."""
    seen_histories.append(list(messages))
    last = messages[-1]
    prompts = [p.content for p in last.parts if isinstance(p, UserPromptPart) and isinstance(p.content, str)]
    if prompts and prompts[-1].startswith('save '):
        return ModelResponse(parts=[ToolCallPart('save_note', {'text': prompts[-1].removeprefix('save ')})])
    return ModelResponse(parts=[TextPart(f'{len(saved_notes)} notes')])


notes_agent = Agent(FunctionModel(notes_script), name='notes', capabilities=[TemporalDurability()])


@notes_agent.tool_plain
def save_note(text: str) -> str:
    """A side effect the ledger must never repeat once completed."""
    saved_notes.append(text)
    return f'saved {text}'


_broken_once: set[str] = set()


def relay_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Step 1 calls `first`, step 2 calls `second`, then text."""
    match _responses(messages):
        case 0:
            return ModelResponse(parts=[ToolCallPart('first', {})])
        case 1:
            return ModelResponse(parts=[ToolCallPart('second', {})])
        case _:
            return ModelResponse(parts=[TextPart('relayed')])


relay_agent = Agent(FunctionModel(relay_script), name='relay', capabilities=[TemporalDurability()])
relay_calls: list[str] = []


@relay_agent.tool_plain
def first() -> str:
    """Always works; counts its executions."""
    relay_calls.append('first')
    return 'one'


@relay_agent.tool(
    metadata={
        'temporal': ActivityConfig(
            start_to_close_timeout=timedelta(seconds=10), retry_policy=RetryPolicy(maximum_attempts=1)
        )
    }
)
def second(ctx: RunContext[None]) -> str:
    """Fails (without retries, so the run fails) the first time the workflow runs it, then works."""
    relay_calls.append('second')
    workflow_id = activity.info().workflow_id
    if workflow_id not in _broken_once:
        _broken_once.add(workflow_id)
        raise RuntimeError('the downstream system is down')
    return 'two'


def crashy_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Step 1 calls `long_task`, then text."""
    if _responses(messages) == 0:
        return ModelResponse(parts=[ToolCallPart('long_task', {})])
    return ModelResponse(parts=[TextPart('recovered')])


crashy_agent = Agent(FunctionModel(crashy_script), name='crashy', capabilities=[TemporalDurability()])


@crashy_agent.tool(
    metadata={
        'temporal': ActivityConfig(
            start_to_close_timeout=timedelta(seconds=3),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)),
        )
    }
)
async def long_task(ctx: RunContext[None]) -> str:
    """The first attempt hangs (the test kills its worker with SIGKILL meanwhile); later attempts finish."""
    if activity.info().attempt == 1:
        await asyncio.sleep(60)
    return 'finished'


def defer_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Calls a tool that needs approval and one that defers itself, in one response."""
    return ModelResponse(parts=[ToolCallPart('wire_money', {'amount': 5}), ToolCallPart('ask_human', {})])


defer_agent = Agent(
    FunctionModel(defer_script),
    name='defer',
    output_type=[str, DeferredToolRequests],
    capabilities=[TemporalDurability()],
)


@defer_agent.tool_plain(requires_approval=True)
def wire_money(amount: int) -> str:
    """Needs a person's approval: pydantic-ai defers it in workflow code, without an activity."""
    return f'sent {amount}'


@defer_agent.tool_plain
def ask_human() -> str:
    """Defers itself from inside its tool activity."""
    raise CallDeferred()


def bulky_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Asks for `<n>` bulky reads (the prompt), then reports how many characters came back."""
    done = _responses(messages)
    wanted = int(str(messages[0].parts[0].content))  # type: ignore[union-attr]
    if done < wanted:
        return ModelResponse(parts=[ToolCallPart('read_bulk', {'part': done, 'size': 6000})])
    returned = sum(len(str(part.content)) for m in messages for part in m.parts if isinstance(part, ToolReturnPart))
    return ModelResponse(parts=[TextPart(f'{returned} characters read')])


bulky_agent = Agent(FunctionModel(bulky_script), name='bulky', capabilities=[TemporalDurability()])
"""Tools return more than the payload threshold: its payloads are ledger references in Temporal's history."""


@bulky_agent.tool_plain
def read_bulk(part: int, size: int) -> str:
    """`size` characters that differ per part (no repetition for the chunker to fold)."""
    text, block = '', hashlib.sha256(str(part).encode()).hexdigest()
    while len(text) < size:
        block = hashlib.sha256(block.encode()).hexdigest()
        text += block
    return text[:size]


released: set[str] = set()
"""Workflow ids whose `hold` tool may return."""


def holder_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Step 1 adds two numbers, step 2 holds until released, then text."""
    match _responses(messages):
        case 0:
            return ModelResponse(parts=[ToolCallPart('add_up', {'a': 2, 'b': 3})])
        case 1:
            return ModelResponse(parts=[ToolCallPart('hold', {})])
        case _:
            return ModelResponse(parts=[TextPart('released')])


holder_agent = Agent(FunctionModel(holder_script), name='holder', capabilities=[TemporalDurability()])


@holder_agent.tool_plain
def add_up(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@holder_agent.tool(
    metadata={
        'temporal': ActivityConfig(
            start_to_close_timeout=timedelta(seconds=60), retry_policy=RetryPolicy(maximum_attempts=1)
        )
    }
)
async def hold(ctx: RunContext[None]) -> str:
    """Keeps the run open until the test releases its workflow id (or 30 seconds pass)."""
    workflow_id = activity.info().workflow_id
    deadline = time.monotonic() + 30
    while workflow_id not in released and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return 'let go'


REFUNDS: list[tuple[int, int]] = []
"""`(order, amount)` of every refund the approval agent's tool really made, in this process."""
APPROVAL_MODEL_CALLS: Counter[str] = Counter()
"""How many requests the approval agent's scripted model answered, per prompt (a replayed one is not counted)."""


def approval_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Asks for the refunds the prompt names (`refund 1:5 2:7`, one call each), then reports the tools' answers."""
    returns = [
        part for message in messages for part in getattr(message, 'parts', []) if isinstance(part, ToolReturnPart)
    ]
    prompt = next(
        part.content
        for message in messages
        for part in getattr(message, 'parts', [])
        if isinstance(part, UserPromptPart)
    )
    APPROVAL_MODEL_CALLS[str(prompt)] += 1
    if returns:
        return ModelResponse(parts=[TextPart(' | '.join(str(part.content) for part in returns))])
    calls = [
        ToolCallPart('refund', {'order': int(order), 'amount': int(amount)}, tool_call_id=f'call-{order}')
        for order, amount in (item.split(':') for item in str(prompt).split()[1:])
    ]
    return ModelResponse(parts=calls)


approval_agent = Agent(
    FunctionModel(approval_script),
    name='approval',
    output_type=[str, DeferredToolRequests],
    capabilities=[TemporalDurability()],
)


@approval_agent.tool_plain(requires_approval=True)
def refund(order: int, amount: int) -> str:
    """Pays money back: needs a person's approval; records each refund it really makes."""
    REFUNDS.append((order, amount))
    return f'refunded {amount} on order {order}'
