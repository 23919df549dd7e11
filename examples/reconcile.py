"""Reconcile and the `warn` outage policy: the ledger is checked against Temporal's own history.

Run it with `.venv/bin/python examples/reconcile.py`: it starts a local Temporal dev server itself.
A tool locks the SQLite ledger for two seconds; under `outage='warn'` the run goes on, the worker
writes what the ledger missed once the lock is gone and marks the run degraded, and `reconcile_run`
checks it against the history and clears the mark. Then a row is lost behind the ledger's back, and
reconcile puts it back, with an audit record.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import threading
from pathlib import Path

from pydantic_ai import Agent, RunContext
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.client import Client
from temporalio.worker import Worker

import agentledger
from agentledger.cli import start_dev_server


def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Calls the tool once, then answers."""
    if len(messages) == 1:
        return ModelResponse(parts=[ToolCallPart('lock_the_ledger', {})])
    return ModelResponse(parts=[TextPart('done despite the outage')])


agent = Agent(FunctionModel(scripted_model), name='steady', deps_type=str, capabilities=[TemporalDurability()])


@agent.tool
def lock_the_ledger(ctx: RunContext[str]) -> str:
    """Stands in for an outage: another program holds the ledger file's write lock for two seconds."""
    holder = sqlite3.connect(ctx.deps, check_same_thread=False)
    holder.execute('BEGIN EXCLUSIVE')
    threading.Timer(2.0, holder.close).start()
    return 'locked'


async def main() -> None:
    env = await start_dev_server()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'runs.db'
        retry = agentledger.RetryPolicy(attempts=2)
        ledger = agentledger.SqliteLedger(path, retry=retry, busy_timeout_s=0.1)
        plugin = agentledger.LedgerPlugin(ledger, agents=[agent], outage='warn')
        client = await Client.connect(env.client.service_client.config.target_host, plugins=[plugin])
        try:
            async with Worker(client, task_queue='agents'), ledger:
                result = await agentledger.run(client, agent, 'go', task_queue='agents', deps=str(path))
                print(result.output, '| ledger run', result.run_id)
                while (record := await ledger.run(result.run_id)).status == 'running':
                    await asyncio.sleep(0.1)  # the worker catches up once the lock is gone
                print('degraded:', *record.degraded, sep='\n  ')

                report = await agentledger.reconcile_run(client, ledger, result.run_id)
                print('reconcile:', report.counts, '| repaired:', report.repaired)
                print('degraded after reconcile:', (await ledger.run(result.run_id)).degraded)

                # A lost row (a bad disk, a hand edit): history proves it, reconcile restores it.
                lost = next(e for e in await ledger.events(result.run_id) if e.kind == 'tool_call_completed')
                with sqlite3.connect(path) as raw:
                    raw.execute('DELETE FROM events WHERE event_key = ?', (lost.key,))
                report = await agentledger.reconcile_run(client, ledger, result.run_id)
                for finding in report.findings:
                    print(f'{finding.category} {finding.row} {finding.key}: {finding.reason}')
                restored = any(e.key == lost.key for e in await ledger.events(result.run_id))
                print('restored:', restored, '| repaired:', report.repaired)
        finally:
            await env.shutdown()


if __name__ == '__main__':
    asyncio.run(main())
