"""Scripted agents for the end-to-end tests: real pydantic-ai agents on a `FunctionModel`."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from pydantic_ai import Agent, ModelRetry, RunContext
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
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
