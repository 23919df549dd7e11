"""Temporal history size: pydantic-ai's TemporalDurability alone vs agentledger's bounded history.

The same scripted agent (each model request but the last calls one tool returning new content of a
given size, distinct at every step) runs with N model requests, side by side on one dev server:
the baseline is the workflow pydantic-ai's docs have a user write; agentledger is
`AgentRunWorkflow`, whose model requests carry a ledger reference plus only their new messages and
whose large payloads are ledger references. For each run it reports, from `fetch_history`, the
history bytes and event count (summed over the Temporal runs of a run that continued as new, and
the largest single Temporal run), the largest payload anywhere in history, and the wall time; a
run that Temporal terminates (history over its limit) is reported as such, with the size it
reached. For agentledger it also reports what the ledger stored for the run (message and chunk
bytes) against the raw new tool content.

It then runs the two shapes `stepledger` (LangGraph on Temporal with a dedup storage driver)
reports, 40 steps x 60 KiB and 80 steps x 100 KiB, and prints ours beside its figures.

Writes `benchmarks/results/history.json`.

    .venv/bin/python benchmarks/history.py --requests 10 50 200 --long 1000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sqlite3
import tempfile
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

from google.protobuf.message import Message
from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import AgentPlugin, PydanticAIPlugin, TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import UsageLimits
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import agentledger
from agentledger import SqliteLedger
from agentledger.cli import start_dev_server

RESULTS = Path(__file__).parent / 'results' / 'history.json'
_agents: dict[str, Agent[None, str]] = {}


STEPLEDGER = {
    '40x60KiB': {'history_bytes': int(2.5 * 2**20), 'largest_payload_bytes': 62 * 2**10},
    '80x100KiB': {'stored_bytes': 12_150_000, 'stored_ratio': 1.48},
}
"""The figures PyPI `stepledger` publishes for these shapes, to print ours beside."""


def new_content(seed: str, size: int) -> str:
    """`size` bytes of text that differ from every other step's (hex of a SHA-256 stream): no free dedup."""
    out: list[str] = []
    block = hashlib.sha256(seed.encode()).digest()
    while 64 * len(out) < size:
        block = hashlib.sha256(block).digest()
        out.append(block.hex() + block.hex()[::-1])
    return ''.join(out)[:size]


def make_agent(name: str) -> Agent[None, str]:
    """Prompt `"<requests> <bytes> <seed>"`: that many model requests, each tool result that many new bytes."""

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = sum(1 for m in messages if isinstance(m, ModelResponse))
        requests, size, seed = str(messages[0].parts[0].content).split()  # type: ignore[union-attr]
        if done + 1 >= int(requests):
            return ModelResponse(parts=[TextPart('done')])
        return ModelResponse(parts=[ToolCallPart('fetch', {'key': f'{seed}-{done}', 'size': int(size)})])

    agent = Agent(FunctionModel(script), name=name, capabilities=[TemporalDurability()])

    @agent.tool_plain
    def fetch(key: str, size: int) -> str:
        return new_content(key, size)

    return agent


@workflow.defn
class BaselineWorkflow:
    @workflow.run
    async def run(self, prompt: str) -> str:
        result = await _agents['history_baseline'].run(prompt, usage_limits=UsageLimits(request_limit=None))
        return result.output


def payload_sizes(message: Message) -> list[int]:
    """The size of every `Payload` anywhere in a protobuf message (inputs, results, headers, failures)."""
    if isinstance(message, Payload):
        return [message.ByteSize()]
    sizes: list[int] = []
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            items = [v for v in value.values() if isinstance(v, Message)]
        else:
            items = [value] if isinstance(value, Message) else list(value)
        for item in items:
            sizes.extend(payload_sizes(item))
    return sizes


async def measure(client: Client, workflow_id: str, started: float, outcome: str) -> dict[str, Any]:
    """History figures of every Temporal run of `workflow_id` (oldest first: continue-as-new chains)."""
    wall = time.perf_counter() - started
    per_run: list[tuple[int, int]] = []
    largest = 0
    async for execution in client.list_workflows(f'WorkflowId = "{workflow_id}"'):
        history = await client.get_workflow_handle(workflow_id, run_id=execution.run_id).fetch_history()
        per_run.append((sum(e.ByteSize() for e in history.events), len(history.events)))
        largest = max([largest, *(size for e in history.events for size in payload_sizes(e))])
    return {
        'outcome': outcome,
        'history_bytes': sum(size for size, _ in per_run),
        'events': sum(events for _, events in per_run),
        'temporal_runs': len(per_run),
        'largest_temporal_run_bytes': max(size for size, _ in per_run),
        'largest_payload_bytes': largest,
        'wall_s': round(wall, 2),
    }


def stored_bytes(path: Path) -> int:
    """Message and chunk bytes a SQLite ledger holds."""
    with closing(sqlite3.connect(path)) as db:
        total = 0
        for table in ('messages', 'blobs'):
            (size,) = db.execute(f'SELECT COALESCE(SUM(LENGTH(data)), 0) FROM {table}').fetchone()
            total += int(size)
        return total


async def run_baseline(client: Client, requests: int, size: int) -> dict[str, Any]:
    started = time.perf_counter()
    workflow_id = f'base-{uuid.uuid4()}'
    handle = await client.start_workflow(
        BaselineWorkflow.run, f'{requests} {size} {workflow_id}', id=workflow_id, task_queue='history-base'
    )
    try:
        await handle.result()
        outcome = 'completed'
    except WorkflowFailureError as error:
        outcome = f'failed: {error.cause}'
    return await measure(client, workflow_id, started, outcome)


async def run_ledgered(
    client: Client, agent: Agent[None, str], requests: int, size: int, ledger_path: Path
) -> dict[str, Any]:
    stored_before = stored_bytes(ledger_path)
    started = time.perf_counter()
    workflow_id = f'ledger-{uuid.uuid4()}'
    handle = await agentledger.start(
        client,
        agent,
        f'{requests} {size} {workflow_id}',
        task_queue='history-ledger',
        usage_limits=UsageLimits(request_limit=None),
        workflow_id=workflow_id,
    )
    try:
        await handle.result()
        outcome = 'completed'
    except WorkflowFailureError as error:
        outcome = f'failed: {error.cause}'
    row = await measure(client, workflow_id, started, outcome)
    row['stored_bytes'] = stored_bytes(ledger_path) - stored_before
    row['raw_new_bytes'] = (requests - 1) * size
    row['stored_ratio'] = round(row['stored_bytes'] / row['raw_new_bytes'], 3)
    return row


def _line(label: str, requests: int, row: dict[str, Any]) -> str:
    line = (
        f'{label:12} {requests:5} requests  {row["history_bytes"] / 1e6:8.2f} MB  {row["events"]:6} events  '
        f'{row["temporal_runs"]} Temporal run(s), largest {row["largest_temporal_run_bytes"] / 1e6:.2f} MB  '
        f'largest payload {row["largest_payload_bytes"] / 1e3:8.1f} KB  {row["wall_s"]:7.1f} s  {row["outcome"][:60]}'
    )
    if 'stored_bytes' in row:
        line += f'  stored {row["stored_bytes"] / 1e6:.2f} MB ({row["stored_ratio"]}x the raw new content)'
    return line


async def main() -> None:
    parser = argparse.ArgumentParser(description='Temporal history size: baseline vs agentledger')
    parser.add_argument('--requests', type=int, nargs='+', default=[10, 50, 200])
    parser.add_argument('--long', type=int, default=0, help='also one agentledger run this long (e.g. 1000)')
    parser.add_argument('--output-bytes', type=int, default=8000, help='new tool output per step')
    parser.add_argument('--no-shapes', action='store_true', help="skip stepledger's two shapes")
    args = parser.parse_args()

    baseline = _agents['history_baseline'] = make_agent('history_baseline')
    ledgered = make_agent('history_ledger')
    env = await start_dev_server()
    rows: list[dict[str, Any]] = []
    shapes: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'history.db'
        ledger = SqliteLedger(path)
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
                size = args.output_bytes
                for requests in args.requests:
                    base = await run_baseline(base_client, requests, size)
                    print(_line('pydantic-ai', requests, base), flush=True)
                    ours = await run_ledgered(ledger_client, ledgered, requests, size, path)
                    print(_line('agentledger', requests, ours), flush=True)
                    rows.append({'requests': requests, 'baseline': base, 'agentledger': ours})
                if args.long:
                    ours = await run_ledgered(ledger_client, ledgered, args.long, size, path)
                    print(_line('agentledger', args.long, ours), flush=True)
                    rows.append({'requests': args.long, 'baseline': None, 'agentledger': ours})
                if not args.no_shapes:
                    for name, steps, kib in (('40x60KiB', 40, 60), ('80x100KiB', 80, 100)):
                        # `steps` tool results of `kib` KiB each: steps + 1 model requests.
                        ours = await run_ledgered(ledger_client, ledgered, steps + 1, kib * 1024, path)
                        print(_line(f'shape {name}', steps + 1, ours), flush=True)
                        shapes.append({'shape': name, 'agentledger': ours, 'stepledger': STEPLEDGER[name]})
        finally:
            await env.shutdown()
    for row in rows:
        if row['baseline'] and row['baseline']['outcome'] == 'completed':
            ratio = row['baseline']['history_bytes'] / row['agentledger']['history_bytes']
            row['bytes_ratio'] = round(ratio, 1)
            print(f'{row["requests"]:5} requests: history {ratio:.1f}x smaller with agentledger')
        ours = row['agentledger']
        per_request = ours['history_bytes'] / row['requests'] / 1e3
        print(f'{row["requests"]:5} requests: {per_request:.1f} KB of history per request')
    for shape in shapes:
        ours, theirs = shape['agentledger'], shape['stepledger']
        print(
            f'{shape["shape"]}: history {ours["history_bytes"] / 2**20:.2f} MiB, largest payload '
            f'{ours["largest_payload_bytes"] / 2**10:.1f} KiB, stored {ours["stored_ratio"]}x the raw new content; '
            f'stepledger: {theirs}'
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({'tool_output_bytes': args.output_bytes, 'runs': rows, 'shapes': shapes}, indent=2) + '\n'
    )
    print(f'wrote {RESULTS}')


if __name__ == '__main__':
    asyncio.run(main())
