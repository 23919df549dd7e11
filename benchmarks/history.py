"""Temporal history size: pydantic-ai's TemporalDurability alone vs agentledger's bounded history.

The same scripted agent (each model request but the last calls one tool returning ~8 KB of new
content) runs with N model requests, side by side on one dev server: the baseline is the workflow
pydantic-ai's docs have a user write; agentledger is `AgentRunWorkflow`, whose model requests
carry a ledger reference plus only their new messages. For each run it reports the history bytes
and event count from `fetch_history`, the largest payload, and the wall time; a run that Temporal
terminates (history over its limit) is reported as such, with the size it reached.

Writes `benchmarks/results/history.json`.

    .venv/bin/python benchmarks/history.py --requests 10 50 200 --long 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import AgentPlugin, PydanticAIPlugin, TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import UsageLimits
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import agentledger
from agentledger import SqliteLedger
from agentledger._devserver import start_dev_server

RESULTS = Path(__file__).parent / 'results' / 'history.json'
_agents: dict[str, Agent[None, str]] = {}


def make_agent(name: str) -> Agent[None, str]:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = sum(1 for m in messages if isinstance(m, ModelResponse))
        requests = int(str(messages[0].parts[0].content))  # type: ignore[union-attr]
        if done + 1 >= requests:
            return ModelResponse(parts=[TextPart('done')])
        return ModelResponse(parts=[ToolCallPart('fetch', {'i': done})])

    agent = Agent(FunctionModel(script), name=name, capabilities=[TemporalDurability()])

    @agent.tool_plain
    def fetch(i: int) -> str:
        return f'{i:08d}' * 1000  # ~8 KB of new content per step

    return agent


@workflow.defn
class BaselineWorkflow:
    @workflow.run
    async def run(self, requests: int) -> str:
        result = await _agents['history_baseline'].run(str(requests), usage_limits=UsageLimits(request_limit=None))
        return result.output


async def measure(handle: WorkflowHandle[Any, Any], started: float, outcome: str) -> dict[str, Any]:
    wall = time.perf_counter() - started
    history = await handle.fetch_history()
    payloads = [
        p.ByteSize()
        for e in history.events
        if e.HasField('activity_task_scheduled_event_attributes')
        for p in e.activity_task_scheduled_event_attributes.input.payloads
    ]
    return {
        'outcome': outcome,
        'history_bytes': sum(e.ByteSize() for e in history.events),
        'events': len(history.events),
        'largest_payload_bytes': max(payloads, default=0),
        'wall_s': round(wall, 2),
    }


async def run_baseline(client: Client, requests: int) -> dict[str, Any]:
    started = time.perf_counter()
    handle = await client.start_workflow(
        BaselineWorkflow.run, requests, id=f'base-{uuid.uuid4()}', task_queue='history-base'
    )
    try:
        await handle.result()
        outcome = 'completed'
    except WorkflowFailureError as error:
        outcome = f'failed: {error.cause}'
    return await measure(handle, started, outcome)


async def run_ledgered(client: Client, agent: Agent[None, str], requests: int) -> dict[str, Any]:
    started = time.perf_counter()
    handle = await agentledger.start(
        client, agent, str(requests), task_queue='history-ledger', usage_limits=UsageLimits(request_limit=None)
    )
    try:
        await handle.result()
        outcome = 'completed'
    except WorkflowFailureError as error:
        outcome = f'failed: {error.cause}'
    return await measure(handle.workflow_handle, started, outcome)


def _line(label: str, requests: int, row: dict[str, Any]) -> str:
    return (
        f'{label:12} {requests:5} requests  {row["history_bytes"] / 1e6:8.2f} MB  {row["events"]:6} events  '
        f'largest payload {row["largest_payload_bytes"] / 1e3:8.1f} KB  {row["wall_s"]:7.1f} s  {row["outcome"][:60]}'
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description='Temporal history size: baseline vs agentledger')
    parser.add_argument('--requests', type=int, nargs='+', default=[10, 50, 200])
    parser.add_argument('--long', type=int, default=0, help='also one agentledger run this long (e.g. 1000)')
    args = parser.parse_args()

    baseline = _agents['history_baseline'] = make_agent('history_baseline')
    ledgered = make_agent('history_ledger')
    env = await start_dev_server()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        ledger = SqliteLedger(Path(tmp) / 'history.db')
        try:
            host = env.client.service_client.config.target_host
            base_client = await Client.connect(host, plugins=[PydanticAIPlugin()])
            ledger_client = await Client.connect(host, plugins=[agentledger.LedgerPlugin(ledger, agents=[ledgered])])
            runner = UnsandboxedWorkflowRunner()
            async with (
                Worker(
                    base_client,
                    task_queue='history-base',
                    workflows=[BaselineWorkflow],
                    plugins=[AgentPlugin(baseline)],
                    workflow_runner=runner,
                ),
                Worker(ledger_client, task_queue='history-ledger', workflow_runner=runner),
            ):
                for requests in args.requests:
                    base = await run_baseline(base_client, requests)
                    print(_line('pydantic-ai', requests, base), flush=True)
                    ours = await run_ledgered(ledger_client, ledgered, requests)
                    print(_line('agentledger', requests, ours), flush=True)
                    rows.append({'requests': requests, 'baseline': base, 'agentledger': ours})
                if args.long:
                    ours = await run_ledgered(ledger_client, ledgered, args.long)
                    print(_line('agentledger', args.long, ours), flush=True)
                    rows.append({'requests': args.long, 'baseline': None, 'agentledger': ours})
        finally:
            await env.shutdown()
    for row in rows:
        if row['baseline'] and row['baseline']['outcome'] == 'completed':
            ratio = row['baseline']['history_bytes'] / row['agentledger']['history_bytes']
            row['bytes_ratio'] = round(ratio, 1)
            print(f'{row["requests"]:5} requests: history {ratio:.1f}x smaller with agentledger')
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({'tool_output_bytes': 8000, 'runs': rows}, indent=2) + '\n')
    print(f'wrote {RESULTS}')


if __name__ == '__main__':
    asyncio.run(main())
