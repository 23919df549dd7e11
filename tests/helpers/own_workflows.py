"""Users' own workflows that call durable agents, written as a team on Temporal writes them.

The workflow sandbox imports this module afresh for each workflow run, so the agents below are the
sandbox's copies of the ones `tests.helpers.agents` defines: as in a real user's workflow module.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic_ai import Agent
    from pydantic_ai.durable_exec.temporal import TemporalDurability
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

from tests.helpers.agents import approval_agent, calc_agent, holder_agent
from tests.helpers.delegate_agents import boss, broken
from tests.helpers.journal_agents import PaymentDeps, payments_agent


def _echo(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[TextPart('echo')])


unlisted_agent = Agent(FunctionModel(_echo), name='unlisted', capabilities=[TemporalDurability()])
"""A durable agent the ledger plugin does not list: its runs are not recorded."""


@activity.defn
async def prepare(topic: str) -> str:
    """A plain activity of the user's own."""
    return f'{topic}!'


@workflow.defn
class ReviewWorkflow:
    """A plain activity, an agent run, a signal, another agent run (through `iter`)."""

    def __init__(self) -> None:
        self._note: str | None = None

    @workflow.signal
    def approve(self, note: str) -> None:
        """Let the second agent run go."""
        self._note = note

    @workflow.run
    async def run(self, topic: str) -> list[str]:
        """Return both runs' outputs."""
        prepared = await workflow.execute_activity(prepare, topic, start_to_close_timeout=timedelta(seconds=10))
        first = await calc_agent.run(f'compute {prepared}')
        await workflow.wait_condition(lambda: self._note is not None)
        async with calc_agent.iter(f'compute again: {self._note}') as second:
            async for _ in second:
                pass
        assert second.result is not None
        return [first.output, second.result.output]


@workflow.defn
class FanOutWorkflow:
    """Two agent runs at once, and a run of an agent the plugin does not list."""

    @workflow.run
    async def run(self, topic: str) -> list[str]:
        """Return the three outputs."""
        results = await asyncio.gather(calc_agent.run(f'{topic} a'), calc_agent.run(f'{topic} b'))
        other = await unlisted_agent.run(topic)
        return [*(r.output for r in results), other.output]


@workflow.defn
class PaymentsWorkflow:
    """A user's workflow around one run of the `payments` agent (its `charge` tool uses `agentledger.once`)."""

    @workflow.run
    async def run(self, deps: PaymentDeps) -> str:
        """Pay, and return the agent's output."""
        result = await payments_agent.run('pay', deps=deps)
        return result.output


LONG_STEPS = 6


def _long_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = sum(1 for m in messages if isinstance(m, ModelResponse))
    if done + 1 >= LONG_STEPS:
        return ModelResponse(parts=[TextPart(f'{len(messages)} messages seen')])
    return ModelResponse(parts=[ToolCallPart('fetch', {'i': done})])


long_agent = Agent(FunctionModel(_long_script), name='long-own', capabilities=[TemporalDurability()])


@long_agent.tool_plain
def fetch(i: int) -> str:
    """About 8 KB of new content per step."""
    return f'{i:05d}' * 1600


@workflow.defn
class ResearchWorkflow:
    """A long agent run, then an orchestrator whose delegates run as child `AgentRunWorkflow`s."""

    @workflow.run
    async def run(self, topic: str) -> list[str]:
        """Return both outputs."""
        long = await long_agent.run(f'read {topic}')
        brief = await boss.run(f'brief {topic}')
        return [long.output, brief.output]


@workflow.defn
class BatchWorkflow:
    """Runs the agent once per Temporal run and continues as new until `rounds` runs are done."""

    @workflow.run
    async def run(self, rounds: int) -> int:
        """Return how many rounds ran."""
        await calc_agent.run(f'round {rounds}')
        if rounds > 1:
            workflow.continue_as_new(rounds - 1)
        return rounds


@workflow.defn
class FallbackWorkflow:
    """An agent run that fails, caught by the workflow, then one that works."""

    @workflow.run
    async def run(self, topic: str) -> str:
        """Return the working run's output, after the broken one failed."""
        try:
            await broken.run(f'{topic} first')
        except Exception as error:
            workflow.logger.info('the broken agent failed as expected: %s', error)
        return (await calc_agent.run(f'{topic} instead')).output


@workflow.defn
class AnswerWorkflow:
    """One agent run between two of the user's own activities: a run to continue and fork from."""

    @workflow.run
    async def run(self, topic: str) -> str:
        """Return the agent's output, passed through the user's activity."""
        prepared = await workflow.execute_activity(prepare, topic, start_to_close_timeout=timedelta(seconds=10))
        result = await calc_agent.run(f'compute {prepared}')
        return await workflow.execute_activity(prepare, result.output, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn
class GatedWorkflow:
    """An agent run, then a wait for a verdict: the workflow goes on, and may fail, after the agent run ended."""

    def __init__(self) -> None:
        self._verdict: str | None = None

    @workflow.signal
    def finish(self, verdict: str) -> None:
        """`ok` completes the workflow; anything else fails it."""
        self._verdict = verdict

    @workflow.run
    async def run(self, topic: str) -> str:
        """Return the agent's output once the verdict is `ok`."""
        result = await calc_agent.run(f'compute {topic}')
        await workflow.wait_condition(lambda: self._verdict is not None)
        if self._verdict != 'ok':
            raise ApplicationError(f'rejected: {self._verdict}', non_retryable=True)
        return result.output


@workflow.defn
class HoldingWorkflow:
    """One run of the `holder` agent, whose `hold` tool waits until the test releases the workflow id."""

    @workflow.run
    async def run(self, prompt: str) -> str:
        """Return the agent's output."""
        return (await holder_agent.run(prompt)).output


@workflow.defn
class RefundDeskWorkflow:
    """Two refund requests handled by agent runs at once; each waits for a person's decision."""

    @workflow.run
    async def run(self, requests: list[str]) -> list[object]:
        """Return each run's output (text, or the deferred requests when approvals do not wait)."""
        results = await asyncio.gather(*(approval_agent.run(request) for request in requests))
        return [result.output for result in results]
