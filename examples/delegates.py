"""Delegates: an orchestrator hands work to two delegate agents, each a durable child workflow.

Run it with `.venv/bin/python examples/delegates.py`: it starts a local Temporal dev server, a
worker with a SQLite ledger in a temporary directory, runs the orchestrator, and prints the run
tree from the ledger. Scripted models stand in for real ones (e.g. 'openai:gpt-4o'):

- the `editor` asks `researcher` and `fact_checker` in one model response (two child workflows
  in parallel), then writes its answer from both results;
- `fact_checker`'s source API fails its first run; the delegate's `retry_policy` starts the same
  child workflow again, which resumes from its latest valid snapshot: the sources it already
  listed are not listed again.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from datetime import timedelta
from pathlib import Path

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
from temporalio import activity
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

import agentledger
import agentledger.model
from agentledger.cli import start_dev_server

TASK_QUEUE = 'agents'


def _returns(messages: list[ModelMessage]) -> dict[str, object]:
    last = messages[-1]
    parts = last.parts if isinstance(last, ModelRequest) else []
    return {p.tool_name: p.content for p in parts if isinstance(p, ToolReturnPart)}


def _prompt(messages: list[ModelMessage]) -> str:
    first = messages[0]
    parts = first.parts if isinstance(first, ModelRequest) else []
    return next((p.content for p in parts if isinstance(p, UserPromptPart) and isinstance(p.content, str)), '')


# --- the delegates ---------------------------------------------------------------------------------


def researcher_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Searches once, then answers with what it found."""
    found = _returns(messages)
    if not found:
        return ModelResponse(parts=[ToolCallPart('search', {'query': _prompt(messages)})])
    return ModelResponse(parts=[TextPart(f'Found: {found["search"]}')])


researcher = Agent(
    FunctionModel(researcher_model),
    name='researcher',
    description='Researches a question and reports what it found.',
    capabilities=[TemporalDurability()],
)


@researcher.tool_plain
def search(query: str) -> str:
    """Search the archive."""
    return 'the Moon raises two tides a day, as the Earth turns under its pull'


def fact_checker_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Lists sources, checks them, then gives a verdict."""
    found = _returns(messages)
    if not found:
        return ModelResponse(parts=[ToolCallPart('list_sources', {'claim': _prompt(messages)})])
    if 'list_sources' in found:
        return ModelResponse(parts=[ToolCallPart('check_sources', {'sources': found['list_sources']})])
    return ModelResponse(parts=[TextPart(f'Verdict: {found["check_sources"]}')])


fact_checker = Agent(
    FunctionModel(fact_checker_model),
    name='fact_checker',
    description='Checks a claim against its sources.',
    # One attempt per tool call: a failing source API fails the run, and the delegate's retry takes over.
    capabilities=[
        TemporalDurability(
            activity_config={
                'start_to_close_timeout': timedelta(seconds=30),
                'retry_policy': RetryPolicy(maximum_attempts=1),
            }
        )
    ],
)

listed: list[str] = []
_outages: set[str] = set()


@fact_checker.tool_plain
def list_sources(claim: str) -> list[str]:
    """List the sources for a claim (a side effect the retry must not repeat)."""
    listed.append(claim)
    return ['NOAA tides primer', 'Encyclopaedia Britannica: tide']


@fact_checker.tool_plain
def check_sources(sources: list[str]) -> str:
    """Check the sources; the source API is down the first time each child workflow asks."""
    workflow_id = activity.info().workflow_id
    if workflow_id not in _outages:
        _outages.add(workflow_id)
        raise RuntimeError('source API: 503 Service Unavailable')
    return f'confirmed by {len(sources)} sources'


# --- the orchestrator ------------------------------------------------------------------------------


def editor_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Asks both delegates at once, then writes the answer from their results."""
    results = _returns(messages)
    if not results:
        question = _prompt(messages)
        return ModelResponse(
            parts=[
                ToolCallPart('researcher', {'task': question}),
                ToolCallPart('fact_checker', {'task': 'The Moon causes two tides a day.'}),
            ]
        )
    return ModelResponse(parts=[TextPart(f'{results["researcher"]}. {results["fact_checker"]}.')])


editor = Agent(
    FunctionModel(editor_model),
    name='editor',
    tools=[
        agentledger.delegate(researcher),
        agentledger.delegate(
            fact_checker,
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=3),
        ),
    ],
    capabilities=[TemporalDurability()],
)


def _tree_lines(tree: agentledger.model.RunTree) -> list[str]:
    lines: list[str] = []
    for depth, node in tree.walk():
        run = node.run
        call = f' <- {node.step.tool_name} (step {node.step.step})' if node.step is not None else ''
        usage = f'{run.usage.requests} requests, {run.usage.total_tokens} tokens'
        duration = f'{run.duration_s:.1f}s' if run.duration_s is not None else 'running'
        lines.append(f'{"    " * depth}{run.agent_name} {run.run_id} {run.status}, {usage}, {duration}{call}')
        if run.forked_from is not None:
            lines.append(f'{"    " * depth}  resumed from {run.forked_from.run_id} ({run.forked_from.reason})')
    return lines


async def main() -> None:
    # The fact checker fails once on purpose; Temporal's warning with a traceback would look like a crash.
    logging.getLogger('temporalio.activity').setLevel(logging.ERROR)
    env = await start_dev_server()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = agentledger.SqliteLedger(Path(tmp) / 'runs.db')
        # The delegates are served too: LedgerPlugin finds the agents the editor delegates to.
        plugin = agentledger.LedgerPlugin(ledger, agents=[editor])
        client = await Client.connect(env.client.service_client.config.target_host, plugins=[plugin])
        try:
            async with Worker(client, task_queue=TASK_QUEUE):
                result = await agentledger.run(client, editor, 'Why are there two tides a day?', task_queue=TASK_QUEUE)
                print(result.output)
                print(f'usage (editor and delegates): {result.usage}')
                print(f'sources listed {len(listed)} time(s)')
                print()
                async with ledger:
                    print('\n'.join(_tree_lines(await ledger.run_tree(result.run_id))))
                    print()
                    children = await ledger.runs(parent_run_id=result.run_id)
                    print(f'agentledger runs --parent {result.run_id}: {len(children)} runs')
        finally:
            await env.shutdown()


if __name__ == '__main__':
    asyncio.run(main())
