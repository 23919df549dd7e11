"""Overhead of the ledger: the same N-step agent run with pydantic-ai's TemporalDurability alone vs agentledger.

agentledger runs it twice: as an `AgentRunWorkflow`, and inside a user's own workflow (the same
workflow class as the baseline, on a worker whose client has `LedgerPlugin` listing the agent).

Both run on one dev server in one process, alternating, several repetitions, both without the
workflow sandbox so the difference measured is the ledger's own cost. The agent is scripted
(`FunctionModel`): N model requests, each but the last calling one tool that returns ~4 KB.
Prints the median wall time per run for both, their ratio, and the ledger's events/s, and writes
`benchmarks/results/overhead.json` (the README's figures are generated from it).

    .venv/bin/python benchmarks/overhead.py --steps 50 --repetitions 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import AgentPlugin, PydanticAIPlugin, TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import agentledger
from agentledger import SqliteLedger
from agentledger.cli import start_dev_server

RESULTS = Path(__file__).parent / 'results' / 'overhead.json'
PAYLOAD = 'x' * 4096


def make_agent(name: str, steps: int) -> Agent[None, str]:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = sum(1 for m in messages if isinstance(m, ModelResponse))
        if done + 1 >= steps:
            return ModelResponse(parts=[TextPart('done')])
        return ModelResponse(parts=[ToolCallPart('fetch', {'i': done})])

    agent = Agent(FunctionModel(script), name=name, capabilities=[TemporalDurability()])

    @agent.tool_plain
    def fetch(i: int) -> str:
        return PAYLOAD

    return agent


# The baseline workflow is what pydantic-ai's docs have a user write: one class per agent.
_user_agents: dict[str, Agent[None, str]] = {}


@workflow.defn
class BaselineWorkflow:
    @workflow.run
    async def run(self, agent_name: str) -> str:
        result = await _user_agents[agent_name].run('go')
        return result.output


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument('--steps', type=int, default=50)
    parser.add_argument('--repetitions', type=int, default=5)
    args = parser.parse_args()

    baseline = make_agent('bench_baseline', args.steps)
    ledgered = make_agent('bench_ledger', args.steps)
    own = make_agent('bench_own', args.steps)
    _user_agents.update({baseline.name or '': baseline, own.name or '': own})

    env = await start_dev_server()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = SqliteLedger(Path(tmp) / 'bench.db')
        try:
            host = env.client.service_client.config.target_host
            base_client = await Client.connect(host, plugins=[PydanticAIPlugin()])
            ledger_client = await Client.connect(
                host, plugins=[agentledger.LedgerPlugin(ledger, agents=[ledgered, own])]
            )
            # Both unsandboxed, so the difference is the ledger's cost and not the sandbox's.
            base_worker = Worker(
                base_client,
                task_queue='bench-base',
                workflows=[BaselineWorkflow],
                plugins=[AgentPlugin(baseline)],
                workflow_runner=UnsandboxedWorkflowRunner(),
            )
            ledger_worker = Worker(
                ledger_client,
                task_queue='bench-ledger',
                workflows=[BaselineWorkflow],
                workflow_runner=UnsandboxedWorkflowRunner(),
            )
            times: dict[str, list[float]] = {'baseline': [], 'agentledger': [], 'own_workflow': []}
            events = 0
            async with base_worker, ledger_worker:
                # One warm-up run of each, not measured.
                for measured in [False] + [True] * args.repetitions:
                    started = time.perf_counter()
                    await base_client.execute_workflow(
                        BaselineWorkflow.run, baseline.name, id=f'base-{uuid.uuid4()}', task_queue='bench-base'
                    )
                    base_s = time.perf_counter() - started
                    started = time.perf_counter()
                    result = await agentledger.run(ledger_client, ledgered, 'go', task_queue='bench-ledger')
                    ledger_s = time.perf_counter() - started
                    started = time.perf_counter()
                    await ledger_client.execute_workflow(
                        BaselineWorkflow.run, own.name, id=f'own-{uuid.uuid4()}', task_queue='bench-ledger'
                    )
                    own_s = time.perf_counter() - started
                    if measured:
                        times['baseline'].append(base_s)
                        times['agentledger'].append(ledger_s)
                        times['own_workflow'].append(own_s)
                        events += len(await ledger.events(result.run_id))
        finally:
            await env.shutdown()

    base_median = statistics.median(times['baseline'])
    ledger_median = statistics.median(times['agentledger'])
    own_median = statistics.median(times['own_workflow'])
    report: dict[str, Any] = {
        'steps': args.steps,
        'repetitions': args.repetitions,
        'tool_output_bytes': len(PAYLOAD),
        'baseline_median_s': round(base_median, 4),
        'agentledger_median_s': round(ledger_median, 4),
        'ratio': round(ledger_median / base_median, 3),
        'own_workflow_median_s': round(own_median, 4),
        'own_workflow_ratio': round(own_median / base_median, 3),
        'ledger_events_per_s': round(events / sum(times['agentledger']), 1),
        'events_per_run': events // args.repetitions,
    }
    print(f'steps per run            {args.steps} (tool output {len(PAYLOAD)} B), {args.repetitions} repetitions')
    print(f'pydantic-ai alone        {base_median * 1000:8.1f} ms median per run')
    print(f'agentledger              {ledger_median * 1000:8.1f} ms median per run')
    print(f'ratio                    {report["ratio"]:8.3f}')
    print(f'agentledger, own workflow{own_median * 1000:8.1f} ms median per run')
    print(f'ratio                    {report["own_workflow_ratio"]:8.3f}')
    print(f'ledger events/s          {report["ledger_events_per_s"]:8.1f} ({report["events_per_run"]} events per run)')
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + '\n')
    print(f'wrote {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}')


if __name__ == '__main__':
    asyncio.run(main())
