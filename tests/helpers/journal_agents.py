"""Agents and fault points for the model-call journal and once-only effect tests.

They work across processes (a worker subprocess that is killed, then a worker in the test), so
what must be counted lives in files named by environment variables:

- `AGENTLEDGER_TEST_MODEL_CALLS`: one line per call of the fake provider (a `FunctionModel`);
- `AGENTLEDGER_TEST_TARGET`: one JSON line per effect the fake payment system performed;
- `AGENTLEDGER_TEST_CRASH`: `<point>:<marker file>`: `os._exit(1)` once at `point` (the marker
  file records that it fired, so the restarted worker does not fire it again). Points:
  `after_model_request` (the model request returned, journal written, completion not reported),
  `after_final_model_request` (the same, for a request the model answered with text, not a tool call),
  `raise_after_model_request` (the same place, but the attempt raises instead of the worker dying)
  and `inside_effect` (the target performed the charge, `once` has not recorded it).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage
from temporalio import activity
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor
from temporalio.workflow import ActivityConfig

import agentledger

CALLS_ENV = 'AGENTLEDGER_TEST_MODEL_CALLS'
TARGET_ENV = 'AGENTLEDGER_TEST_TARGET'
CRASH_ENV = 'AGENTLEDGER_TEST_CRASH'
NO_JOURNAL_ENV = 'AGENTLEDGER_TEST_NO_JOURNAL'


def _fire(point: str, *, exit: bool = True) -> None:
    spec = os.environ.get(CRASH_ENV, '')
    if not spec.startswith(f'{point}:'):
        return
    marker = Path(spec.split(':', 1)[1])
    if marker.exists():
        return
    marker.touch()
    if not exit:
        raise RuntimeError(f'fault point {point} fired')
    os._exit(1)


class CrashPoints(Interceptor):
    """Installed on the worker subprocess, outside the ledger's interceptor: it sees what the ledger returned."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Wrap activities with the `after_model_request` fault point."""
        return _CrashAfterModelRequest(next)


class _CrashAfterModelRequest(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        if activity.info().activity_type.endswith('__model_request'):
            _fire('after_model_request')
            if not any(isinstance(part, ToolCallPart) for part in getattr(result, 'parts', [])):
                _fire('after_final_model_request')
            _fire('raise_after_model_request', exit=False)
        return result


def provider_calls() -> int:
    """How many times the fake provider was called (in every process)."""
    path = Path(os.environ[CALLS_ENV])
    return len(path.read_text().splitlines()) if path.exists() else 0


def performed() -> list[dict[str, Any]]:
    """The charges the fake payment system performed (in every process)."""
    path = Path(os.environ[TARGET_ENV])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


ZOMBIE_S = 5.0
"""How long the first charge of a `zombie` run takes: longer than the tool's 3 s timeout."""

_slowed: set[str] = set()


async def _outlive_the_timeout(key: str) -> None:
    """The first attempt of a key ignores its cancellation (a zombie) and charges after its timeout."""
    if key in _slowed:
        return
    _slowed.add(key)
    deadline = time.monotonic() + ZOMBIE_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            await asyncio.sleep(left)
        except asyncio.CancelledError:
            continue


async def _charge(key: str, amount: int, *, zombie: bool = False) -> dict[str, Any]:
    if zombie:
        await _outlive_the_timeout(key)
    with Path(os.environ[TARGET_ENV]).open('a') as target:
        target.write(json.dumps({'key': key, 'amount': amount}) + '\n')
    _fire('inside_effect')
    return {'charge_id': f'ch-{len(performed())}', 'amount': amount}


async def _lookup(key: str) -> dict[str, Any] | None:
    found = [c for c in performed() if c['key'] == key]
    return {'charge_id': 'ch-reconciled', 'amount': found[0]['amount']} if found else None


def payments_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Charge 5 (a tool call whose id the provider makes up, as real providers do), then say so."""
    with Path(os.environ[CALLS_ENV]).open('a') as calls:
        calls.write(f'{len(messages)}\n')
    if sum(isinstance(m, ModelResponse) for m in messages) == 0:
        return ModelResponse(parts=[ToolCallPart('charge', {'amount': 5})])
    return ModelResponse(parts=[TextPart('charged')])


@dataclass
class PaymentDeps:
    """Whether the `charge` tool gives `once` a reconcile callback, and fails for good after charging."""

    reconcile: bool = True
    fail_after_charge: bool = False
    zombie: bool = False
    """The first charge outlives its attempt's timeout (ignoring cancellation) and lands late."""


_quick: ActivityConfig = {
    'start_to_close_timeout': timedelta(seconds=3),
    'retry_policy': RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=1)),
}

payments_agent = Agent(
    FunctionModel(payments_script),
    name='payments',
    deps_type=PaymentDeps,
    capabilities=[TemporalDurability(activity_config=_quick)],
)


@payments_agent.tool(metadata={'temporal': _quick})
async def charge(ctx: RunContext[PaymentDeps], amount: int) -> str:
    """Charge `amount` once, whatever crashes, retries and resets happen."""
    result = await agentledger.once(
        ctx,
        'charge',
        lambda key: _charge(key, amount, zombie=ctx.deps.zombie),
        reconcile=_lookup if ctx.deps.reconcile else None,
    )
    if ctx.deps.fail_after_charge:
        raise ApplicationError('the receipt printer is on fire', type='ReceiptError', non_retryable=True)
    return str(result['charge_id'])


TOOLS_ENV = 'AGENTLEDGER_TEST_TOOL_RUNS'
STEPS = 10
"""How many tool-calling steps a `steps` run makes before its final answer."""


def tool_runs() -> list[str]:
    """The tool bodies the `steps` agent ran (in every process): `<tool> <step>` each."""
    path = Path(os.environ[TOOLS_ENV])
    return path.read_text().splitlines() if path.exists() else []


def _ran(tool: str, n: int) -> None:
    with Path(os.environ[TOOLS_ENV]).open('a') as runs:
        runs.write(f'{tool} {n}\n')


def steps_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """`STEPS` steps calling `work` (step 2 also calls `fragile` when the prompt says so), then the answer."""
    with Path(os.environ[CALLS_ENV]).open('a') as calls:
        calls.write(f'{len(messages)}\n')
    step = sum(isinstance(m, ModelResponse) for m in messages) + 1
    if step > STEPS:
        return ModelResponse(parts=[TextPart(f'{STEPS} steps done')])
    parts = [ToolCallPart('work', {'n': step})]
    fragile = any(getattr(part, 'content', None) == 'fragile' for m in messages for part in getattr(m, 'parts', []))
    if step == 2 and fragile:
        parts.append(ToolCallPart('fragile', {'n': step}))
    return ModelResponse(parts=parts)


@dataclass
class StepDeps:
    """Where `fragile` notes that it failed once (it fails for good the first time, then works)."""

    failed_marker: str = ''


steps_agent = Agent(
    FunctionModel(steps_script),
    name='steps',
    deps_type=StepDeps,
    capabilities=[TemporalDurability(activity_config=_quick)],
)


@steps_agent.tool(metadata={'temporal': _quick})
async def work(ctx: RunContext[StepDeps], n: int) -> str:
    """Do step `n`: perform its effect once (`agentledger.once`), and count the run."""

    async def act(key: str) -> dict[str, Any]:
        with Path(os.environ[TARGET_ENV]).open('a') as target:
            target.write(json.dumps({'key': key, 'amount': n}) + '\n')
        return {'done': n}

    effect = await agentledger.once(ctx, 'act', act)
    _ran('work', n)
    return f'step {effect["done"]} done'


@steps_agent.tool(metadata={'temporal': _quick})
async def fragile(ctx: RunContext[StepDeps], n: int) -> str:
    """Fail for good the first time (after `work` of the same step completed), then work."""
    while f'work {n}' not in tool_runs():
        await asyncio.sleep(0.05)
    # `work` wrote its line as its body returned: its attempt records its end (and journals its result) meanwhile.
    await asyncio.sleep(1)
    _ran('fragile', n)
    marker = Path(ctx.deps.failed_marker)
    if ctx.deps.failed_marker and not marker.exists():
        marker.touch()
        raise ApplicationError('the fragile tool broke', type='FragileError', non_retryable=True)
    return f'fragile {n} done'


REUSED_STEPS = 3
"""How many steps a `reused-ids` run calls `echo` before it answers with what the calls returned."""


def reused_ids_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Call `echo` with n = 1, 2, 3 at steps 1..3, every time as `call_0` (as some OpenAI-compatible servers
    number the calls of each response), then answer with the tool's returns, in order."""
    with Path(os.environ[CALLS_ENV]).open('a') as calls:
        calls.write(f'{len(messages)}\n')
    returns = [str(part.content) for m in messages for part in m.parts if isinstance(part, ToolReturnPart)]
    if len(returns) == REUSED_STEPS:
        return ModelResponse(parts=[TextPart(', '.join(returns))])
    return ModelResponse(parts=[ToolCallPart('echo', {'n': len(returns) + 1}, tool_call_id='call_0')])


reused_ids_agent = Agent(
    FunctionModel(reused_ids_script),
    name='reused-ids',
    capabilities=[TemporalDurability(activity_config=_quick)],
)


@reused_ids_agent.tool_plain(metadata={'temporal': _quick})
async def echo(n: int) -> str:
    """Answer `echo <n>`, and count the run."""
    _ran('echo', n)
    return f'echo {n}'


def metered_calls(agent: str | None = None) -> list[tuple[int, int]]:
    """The input and output tokens of each call of the metered provider (in every process), in order.

    `agent`: only the calls of that agent (each line ends with the name of the agent that called).
    """
    path = Path(os.environ[CALLS_ENV])
    lines = path.read_text().splitlines() if path.exists() else []
    calls = (line.split() for line in lines)
    return [(int(tokens[0]), int(tokens[1])) for tokens in calls if agent is None or tokens[2] == agent]


def _bill(usage: RequestUsage, agent: str) -> None:
    with Path(os.environ[CALLS_ENV]).open('a') as calls:
        calls.write(f'{usage.input_tokens} {usage.output_tokens} {agent}\n')


@dataclass
class MeteredDeps:
    """At which step the metered agent's tool fails once for good (the prompt says how many steps it takes).

    The tool fails the first time it runs at step `fail_once_at` and leaves `marker`, so a resumed or
    restarted run gets past it.
    """

    fail_once_at: int | None = None
    marker: str | None = None


def metered_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Call `work` at steps 1..N (the prompt is N), then answer; every call bills tokens that depend on what it
    was shown."""
    done = sum(isinstance(m, ModelResponse) for m in messages)
    steps = next(int(str(p.content)) for m in messages for p in m.parts if isinstance(p, UserPromptPart))
    usage = RequestUsage(input_tokens=10 + len(messages), output_tokens=3 + done)
    _bill(usage, 'metered')
    if done < steps:
        return ModelResponse(parts=[ToolCallPart('work', {'step': done + 1})], usage=usage)
    return ModelResponse(parts=[TextPart('worked')], usage=usage)


metered_agent = Agent(
    FunctionModel(metered_script),
    name='metered',
    deps_type=MeteredDeps,
    capabilities=[TemporalDurability(activity_config=_quick)],
)


@metered_agent.tool(name='work', metadata={'temporal': _quick})
def metered_work(ctx: RunContext[MeteredDeps], step: int) -> str:
    """Do step `step`; fails for good the first time it runs at `fail_once_at`."""
    marker = Path(ctx.deps.marker) if ctx.deps.marker else None
    if step == ctx.deps.fail_once_at and marker is not None and not marker.exists():
        marker.touch()
        raise ApplicationError(f'step {step} broke', type='StepBroke', non_retryable=True)
    return f'step {step} done'


def metered_boss_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Hand `2` steps of work to the metered agent, then answer; every call bills tokens as the metered agent's do."""
    done = sum(isinstance(m, ModelResponse) for m in messages)
    usage = RequestUsage(input_tokens=20 + len(messages), output_tokens=5 + done)
    _bill(usage, 'metered_boss')
    if done == 0:
        return ModelResponse(parts=[ToolCallPart('metered', {'task': '2'})], usage=usage)
    return ModelResponse(parts=[TextPart('delegated')], usage=usage)


metered_boss = Agent(
    FunctionModel(metered_boss_script),
    name='metered_boss',
    tools=[agentledger.delegate(metered_agent, deps=lambda ctx: MeteredDeps())],
    capabilities=[TemporalDurability(activity_config=_quick)],
)
