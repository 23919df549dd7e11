"""A user's own workflow that calls durable agents, written as a pydantic-ai user on Temporal writes it.

`BriefingWorkflow` runs, in order: a plain activity of its own, an agent run (whose tools run one as a
child workflow and one as an activity, at once), a wait for a signal, two agent runs at once
(`asyncio.gather`), one more agent run, and another activity of its own. Nothing in it knows about
agentledger: `tests/histories/record_own.py` records its histories on a worker without the ledger plugin
(and across the switch to it), and the tests replay them with the plugin.

The workflow sandbox imports this module afresh for each workflow run, so the agents it runs there are
the sandbox's copies of the ones defined or imported here, as in a real user's workflow module.
Workflow, signal, query and activity names are fixed: the committed histories hold them.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from pydantic_ai import Agent
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
    from temporalio.common import RetryPolicy
    from temporalio.workflow import ActivityConfig

from tests.helpers.agents import calc_agent

__all__ = ['AGENTS', 'BriefingWorkflow', 'calc_agent', 'file_report', 'held', 'holding', 'prepare_brief', 'scout_agent']


def _prompt(messages: list[ModelMessage]) -> str:
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ''


def scout_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Files the prompt (a child workflow) and counts its words (an activity) at once, then reports both."""
    if not any(isinstance(m, ModelResponse) for m in messages):
        text = _prompt(messages)
        return ModelResponse(
            parts=[ToolCallPart('archive', {'text': text}), ToolCallPart('count_words', {'text': text})]
        )
    returned = {p.tool_name: p.content for p in messages[-1].parts if isinstance(p, ToolReturnPart)}
    return ModelResponse(parts=[TextPart(f'{returned["archive"]} ({returned["count_words"]} words)')])


_fast_retry: ActivityConfig = {
    'start_to_close_timeout': timedelta(seconds=20),
    'retry_policy': RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5),
}

scout_agent = Agent(
    FunctionModel(scout_script), name='scout', capabilities=[TemporalDurability(activity_config=_fast_retry)]
)


@scout_agent.tool_plain(metadata={'temporal': {'child_workflow': {'execution_timeout': timedelta(seconds=60)}}})
async def archive(text: str) -> str:
    """Runs as a child workflow of the agent's workflow (pydantic-ai's `child_workflow` tool metadata)."""
    return f'archived: {text}'


held: set[str] = set()
"""Workflow ids whose `count_words` calls wait until a test removes them (30 s at most): a run held mid-way."""
holding: set[str] = set()
"""Workflow ids whose `count_words` call has waited."""


@scout_agent.tool_plain
async def count_words(text: str) -> int:
    """Runs as an activity; waits while its workflow id is `held`."""
    workflow_id = activity.info().workflow_id
    deadline = time.monotonic() + 30
    while workflow_id in held and time.monotonic() < deadline:
        holding.add(workflow_id)
        await asyncio.sleep(0.05)
    return len(text.split())


AGENTS = [scout_agent, calc_agent]
"""The agents `BriefingWorkflow` runs: a worker (or replayer) of it serves these."""


@activity.defn(name='prepare_brief')
async def prepare_brief(topic: str) -> str:
    """A plain activity of the user's own, before any agent run."""
    return f'brief on {topic}'


@activity.defn(name='file_report')
async def file_report(outputs: list[str]) -> str:
    """A plain activity of the user's own, after the last agent run."""
    return f'filed {len(outputs)} outputs'


@workflow.defn(name='BriefingWorkflow')
class BriefingWorkflow:
    """An activity, an agent run, a signal, two agent runs at once, an agent run, an activity."""

    def __init__(self) -> None:
        self._note: str | None = None
        self._stage = 'starting'

    @workflow.signal(name='go')
    def go(self, note: str) -> None:
        """Let the rest of the workflow run."""
        self._note = note

    @workflow.query(name='stage')
    def stage(self) -> str:
        """`waiting` once the first agent run is done and the workflow waits for `go`."""
        return self._stage

    @workflow.run
    async def run(self, topic: str) -> list[str]:
        """Every agent run's output, then what the last activity returned."""
        brief = await workflow.execute_activity(prepare_brief, topic, start_to_close_timeout=timedelta(seconds=10))
        first = await scout_agent.run(brief)
        self._stage = 'waiting'
        await workflow.wait_condition(lambda: self._note is not None)
        self._stage = 'running'
        pair = await asyncio.gather(calc_agent.run(f'{topic} a'), calc_agent.run(f'{topic} b'))
        last = await scout_agent.run(f'{self._note}: {first.output}')
        outputs = [first.output, *(result.output for result in pair), last.output]
        filed = await workflow.execute_activity(file_report, outputs, start_to_close_timeout=timedelta(seconds=10))
        return [*outputs, filed]
