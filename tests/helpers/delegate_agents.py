"""Scripted orchestrators and delegates for the delegation tests: real pydantic-ai agents on `FunctionModel`s."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from pydantic_ai import Agent, RunContext
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
from temporalio import activity
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityConfig, ParentClosePolicy

import agentledger

model_calls: Counter[str] = Counter()
"""How many model requests each agent's scripted model answered (delegates that ran again would show here)."""
tool_runs: Counter[str] = Counter()
"""How many times each tool body ran, per tool name."""

_fast_retry: ActivityConfig = {
    'start_to_close_timeout': timedelta(seconds=20),
    'retry_policy': RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5),
}
_no_retry: ActivityConfig = {
    'start_to_close_timeout': timedelta(seconds=20),
    'retry_policy': RetryPolicy(maximum_attempts=1),
}


def _prompt(messages: list[ModelMessage]) -> str:
    """The latest user prompt of the history."""
    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ''


def _returns(message: ModelMessage) -> list[ToolReturnPart]:
    return [p for p in message.parts if isinstance(p, ToolReturnPart)] if isinstance(message, ModelRequest) else []


def _responses(messages: list[ModelMessage]) -> int:
    return sum(1 for m in messages if isinstance(m, ModelResponse))


# --- delegates -------------------------------------------------------------------------------------


def researcher_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Looks the topic up (a tool whose first attempt fails), then answers with what it found."""
    model_calls['researcher'] += 1
    if _responses(messages) == 0:
        return ModelResponse(parts=[ToolCallPart('lookup', {'topic': _prompt(messages)})])
    (found,) = _returns(messages[-1])
    return ModelResponse(parts=[TextPart(f'facts: {found.content}')])


researcher = Agent(
    FunctionModel(researcher_script),
    name='researcher',
    description='Finds facts about a topic.',
    capabilities=[TemporalDurability(activity_config=_fast_retry)],
)

_lookups_failed: set[str] = set()


@researcher.tool
def lookup(ctx: RunContext[None], topic: str) -> str:
    """Fails on the first attempt of each call (Temporal retries it inside the delegate), then answers."""
    assert ctx.tool_call_id is not None
    tool_runs['lookup'] += 1
    if activity.in_activity() and ctx.tool_call_id not in _lookups_failed:
        _lookups_failed.add(ctx.tool_call_id)
        raise RuntimeError('the archive timed out')
    return f'{topic} rise twice a day'


@dataclass
class Draft:
    """The writer's structured output: crosses Temporal as data and is typed again for the orchestrator."""

    title: str
    words: int


def writer_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Answers at once through its output tool."""
    model_calls['writer'] += 1
    prompt = _prompt(messages)
    tool = info.output_tools[0]
    return ModelResponse(parts=[ToolCallPart(tool.name, {'title': prompt.upper(), 'words': len(prompt.split())})])


writer = Agent(
    FunctionModel(writer_script),
    name='writer',
    output_type=Draft,
    capabilities=[TemporalDurability(activity_config=_fast_retry)],
)


def broken_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Calls a tool that always fails without retries, so the run fails."""
    model_calls['broken'] += 1
    return ModelResponse(parts=[ToolCallPart('explode', {})])


broken = Agent(
    FunctionModel(broken_script), name='broken', capabilities=[TemporalDurability(activity_config=_no_retry)]
)


@broken.tool_plain
def explode() -> str:
    """Always fails."""
    tool_runs['explode'] += 1
    raise RuntimeError('the warehouse is on fire')


def shaky_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Step 1 gathers, step 2 calls a tool that fails the first run of each workflow id, then answers."""
    model_calls['shaky'] += 1
    match _responses(messages):
        case 0:
            return ModelResponse(parts=[ToolCallPart('gather', {})])
        case 1:
            return ModelResponse(parts=[ToolCallPart('fragile', {})])
        case _:
            return ModelResponse(parts=[TextPart('shaky done')])


shaky = Agent(FunctionModel(shaky_script), name='shaky', capabilities=[TemporalDurability(activity_config=_no_retry)])

_fragile_failed: set[str] = set()


@shaky.tool_plain
def gather() -> str:
    """Always works; counted, so a resumed delegate that repeated it would show."""
    tool_runs['gather'] += 1
    return 'gathered'


@shaky.tool_plain
def fragile() -> str:
    """Fails (without activity retries) the first time a workflow id runs it; in-process it always works."""
    tool_runs['fragile'] += 1
    if activity.in_activity():
        workflow_id = activity.info().workflow_id
        if workflow_id not in _fragile_failed:
            _fragile_failed.add(workflow_id)
            raise RuntimeError('the printer jammed')
    return 'printed'


# --- orchestrators ---------------------------------------------------------------------------------


def boss_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """`brief X`: researcher and writer in parallel (one response), then a summary; anything else: a count."""
    model_calls['boss'] += 1
    returns = _returns(messages[-1])
    if returns:
        by_tool = {r.tool_name: r.content for r in returns}
        # In-process the writer's output arrives as a `Draft`; a model activity sees it as JSON data.
        draft = by_tool['writer']
        title, words = (draft.title, draft.words) if isinstance(draft, Draft) else (draft['title'], draft['words'])
        return ModelResponse(parts=[TextPart(f'{by_tool["researcher"]} | {title} ({words} words)')])
    prompt = _prompt(messages)
    if prompt.startswith('brief '):
        topic = prompt.removeprefix('brief ')
        return ModelResponse(
            parts=[ToolCallPart('researcher', {'task': topic}), ToolCallPart('writer', {'task': f'a poem on {topic}'})]
        )
    answered = sum(len(_returns(m)) for m in messages)
    return ModelResponse(parts=[TextPart(f'{answered} delegate answers so far')])


boss = Agent(
    FunctionModel(boss_script),
    name='boss',
    tools=[agentledger.delegate(researcher), agentledger.delegate(writer)],
    capabilities=[TemporalDurability(activity_config=_fast_retry)],
)


def chief_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Hands the whole job to the `boss` team (which delegates further), then signs its answer."""
    model_calls['chief'] += 1
    returns = _returns(messages[-1])
    if returns:
        return ModelResponse(parts=[TextPart(f'chief: {returns[0].content}')])
    return ModelResponse(parts=[ToolCallPart('team', {'task': f'brief {_prompt(messages)}'})])


chief = Agent(
    FunctionModel(chief_script),
    name='chief',
    tools=[agentledger.delegate(boss, name='team', description='A team that researches and writes.')],
    capabilities=[TemporalDurability(activity_config=_fast_retry)],
)


def triage_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Asks `broken`; a failed tool result is answered in words (the orchestrator reacts, it does not crash)."""
    model_calls['triage'] += 1
    returns = _returns(messages[-1])
    if not returns:
        return ModelResponse(parts=[ToolCallPart(info.function_tools[0].name, {'task': 'ship it'})])
    (answer,) = returns
    if answer.outcome == 'failed':
        return ModelResponse(parts=[TextPart(f'recovered from: {answer.content}')])
    return ModelResponse(parts=[TextPart(f'shipped: {answer.content}')])


triage = Agent(
    FunctionModel(triage_script),
    name='triage',
    tools=[agentledger.delegate(broken)],
    capabilities=[TemporalDurability(activity_config=_fast_retry)],
)

strict_triage = Agent(
    FunctionModel(triage_script),
    name='strict-triage',
    tools=[agentledger.delegate(broken, name='broken_strict', on_failure='raise')],
    capabilities=[TemporalDurability(activity_config=_fast_retry)],
)

persistent = Agent(
    FunctionModel(triage_script),
    name='persistent',
    tools=[
        agentledger.delegate(
            shaky, retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=3)
        )
    ],
    capabilities=[TemporalDurability(activity_config=_fast_retry)],
)


def sleeper_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """`nap N`: naps N seconds in a tool, then answers."""
    model_calls['sleeper'] += 1
    if _responses(messages) == 0:
        return ModelResponse(parts=[ToolCallPart('nap', {'seconds': float(_prompt(messages).split()[1])})])
    return ModelResponse(parts=[TextPart('rested')])


sleeper = Agent(
    FunctionModel(sleeper_script),
    name='sleeper',
    capabilities=[
        TemporalDurability(activity_config={**_fast_retry, 'heartbeat_timeout': timedelta(seconds=2)}),
    ],
)


@sleeper.tool_plain
async def nap(seconds: float) -> str:
    """Sleeps (heartbeating through pydantic-ai, so a cancellation reaches it)."""
    tool_runs['nap'] += 1
    await asyncio.sleep(seconds)
    return 'slept'


def napper_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Hands its prompt (`nap N`) to its only delegate, then reports."""
    model_calls['napper'] += 1
    returns = _returns(messages[-1])
    if returns:
        return ModelResponse(parts=[TextPart(f'woke: {returns[0].content}')])
    return ModelResponse(parts=[ToolCallPart(info.function_tools[0].name, {'task': _prompt(messages)})])


napper = Agent(
    FunctionModel(napper_script),
    name='napper',
    tools=[agentledger.delegate(sleeper)],
    capabilities=[TemporalDurability(activity_config=_fast_retry)],
)

night_owl = Agent(
    FunctionModel(napper_script),
    name='night-owl',
    tools=[agentledger.delegate(sleeper, name='sleeper_abandoned', parent_close_policy=ParentClosePolicy.ABANDON)],
    capabilities=[TemporalDurability(activity_config=_fast_retry)],
)
