"""Snapshot storage: a long run whose tool returns ~4 KB per step, stored in a SQLite ledger.

Reports, in one run on one dev server:
- ledger bytes (message + blob content, and the SQLite file) against the raw bytes of the final
  history (target <= 1.5x: storage grows with the messages, not with steps squared);
- the time of each snapshot write at steps 10, 100 and 200 (target: flat);
- the latency of `continue_run` from the 200-step run against starting a fresh run (target <= 2x).

With `--harness`, the same shape also runs through `pydantic_ai_harness.step_persistence` 0.62.0
(in process, its SQLite and file stores) in a separate environment, `benchmarks/.harness-venv`,
created on first use, and both are printed side by side.

Writes `benchmarks/results/snapshots.json`.

    .venv/bin/python benchmarks/snapshots.py --steps 200 --harness
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import UsageLimits
from temporalio.client import Client
from temporalio.worker import Worker

import agentledger
from agentledger import SqliteLedger
from agentledger.cli import start_dev_server
from agentledger.ledger._chunks import Manifest
from agentledger.model import SnapshotRecord

RESULTS = Path(__file__).parent / 'results' / 'snapshots.json'
HARNESS_VENV = Path(__file__).parent / '.harness-venv'
HARNESS_REQUIREMENT = 'pydantic-ai-harness==0.62.0'


def measure_harness(steps: int) -> dict[str, int]:
    """Run `_harness_side.py` in its own environment (the harness pins another pydantic-ai)."""
    python = HARNESS_VENV / 'bin' / 'python'
    if not python.exists():
        subprocess.run([sys.executable, '-m', 'venv', str(HARNESS_VENV)], check=True)
        subprocess.run([str(python), '-m', 'pip', 'install', '--quiet', HARNESS_REQUIREMENT], check=True)
    done = subprocess.run(
        [str(python), str(Path(__file__).parent / '_harness_side.py'), str(steps)],
        check=True,
        capture_output=True,
        text=True,
    )
    sizes: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return sizes


class TimedLedger(SqliteLedger):
    """A SqliteLedger that records how long each snapshot write took, by step."""

    write_times: dict[tuple[str, int], float]

    async def write_snapshot(self, **kwargs: Any) -> SnapshotRecord | None:
        started = time.perf_counter()
        record = await super().write_snapshot(**kwargs)
        self.write_times[(kwargs['kind'], kwargs['step'])] = time.perf_counter() - started
        return record


def make_agent(steps: int) -> Agent[None, str]:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = sum(1 for m in messages if isinstance(m, ModelResponse))
        if done + 1 >= steps:
            return ModelResponse(parts=[TextPart(f'done after {done + 1}')])
        return ModelResponse(parts=[ToolCallPart('fetch', {'i': done})])

    agent = Agent(FunctionModel(script), name='snapshot_bench', capabilities=[TemporalDurability()])

    @agent.tool_plain
    def fetch(i: int) -> str:
        # Distinct content per step (a real tool returns new data), ~4 KB.
        return f'{i:06d}' * 683

    return agent


def content_bytes(path: Path) -> dict[str, int]:
    """Bytes of stored content by what it serves: snapshots (message rows, snapshot records and the chunks
    their large messages are made of) and the Temporal payloads stored beside them (every other chunk)."""
    with sqlite3.connect(path) as db:
        messages = [bytes(row[0]) for row in db.execute('SELECT data FROM messages')]
        blobs = {row[0]: bytes(row[1]) for row in db.execute('SELECT hash, data FROM blobs')}
        sizes = {'snapshot_records': db.execute('SELECT COALESCE(SUM(LENGTH(body)), 0) FROM snapshots').fetchone()[0]}
        db.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    # A message of 4 KiB or more is stored as a chunk manifest; its pieces (and nested manifests'
    # pieces) are the snapshot's, even when a payload shares them.
    used: set[str] = set()
    pending = [Manifest.parse(data, 'message') for data in messages if Manifest.is_manifest(data)]
    while pending:
        manifest = pending.pop()
        for digest, _, nested in manifest.pieces:
            used.add(digest)
            if nested:
                pending.append(Manifest.parse(blobs[digest], 'nested manifest'))
    sizes['messages'] = sum(len(data) for data in messages)
    sizes['snapshot_blobs'] = sum(len(blobs[digest]) for digest in used)
    sizes['payload_blobs'] = sum(len(data) for digest, data in blobs.items() if digest not in used)
    sizes['sqlite_file'] = path.stat().st_size
    return sizes


async def timed_start(client: Client, coro: Any) -> float:
    started = time.perf_counter()
    handle = await coro
    await handle.result()
    return time.perf_counter() - started


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description='snapshot storage benchmark')
    parser.add_argument('--steps', type=int, default=200)
    parser.add_argument('--repetitions', type=int, default=5, help='for the continue vs fresh latency')
    parser.add_argument('--harness', action='store_true', help='also measure pydantic_ai_harness.step_persistence')
    args = parser.parse_args(argv)
    harness = measure_harness(args.steps) if args.harness else None

    agent = make_agent(args.steps)
    short = Agent(
        FunctionModel(lambda m, i: ModelResponse(parts=[TextPart('ok')])),
        name='fresh_bench',
        capabilities=[TemporalDurability()],
    )
    env = await start_dev_server()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'bench.db'
        ledger = TimedLedger(path)
        ledger.write_times = {}
        try:
            plugin = agentledger.LedgerPlugin(ledger, agents=[agent, short])
            client = await Client.connect(env.client.service_client.config.target_host, plugins=[plugin])
            async with Worker(client, task_queue='bench'):
                started = time.perf_counter()
                result = await agentledger.run(
                    client, agent, 'go', task_queue='bench', usage_limits=UsageLimits(request_limit=None)
                )
                run_s = time.perf_counter() - started
                final = await ledger.snapshot((await ledger.latest_snapshot(result.run_id)).snapshot_id)
                raw = len(ModelMessagesTypeAdapter.dump_json(final.messages))
                sizes = content_bytes(path)
                writes = {
                    step: ledger.write_times[('model_request', step)]
                    for step in (10, 100, args.steps)
                    if step <= args.steps
                }

                fresh: list[float] = []
                continued: list[float] = []
                for _ in range(args.repetitions):
                    fresh.append(await timed_start(client, agentledger.start(client, short, 'hi', task_queue='bench')))
                    continued.append(
                        await timed_start(client, agentledger.continue_run(client, result.run_id, 'and then?'))
                    )
        finally:
            await env.shutdown()

    stored = sizes['messages'] + sizes['snapshot_blobs'] + sizes['snapshot_records']
    report = {
        'steps': args.steps,
        'run_s': round(run_s, 2),
        'final_history_bytes': raw,
        'stored_content_bytes': stored,
        'sqlite_file_bytes': sizes['sqlite_file'],
        'storage_ratio': round(stored / raw, 3),
        'payload_bytes': sizes['payload_blobs'],
        'payload_ratio': round(sizes['payload_blobs'] / raw, 3),
        'snapshot_write_ms': {str(step): round(seconds * 1000, 2) for step, seconds in writes.items()},
        'fresh_run_median_s': round(statistics.median(fresh), 4),
        'continue_median_s': round(statistics.median(continued), 4),
        'continue_ratio': round(statistics.median(continued) / statistics.median(fresh), 3),
        'harness': harness,
    }
    print(f'{args.steps}-step run, ~4 KB tool output per step: {run_s:.1f} s')
    print(f'final history (raw JSON)      {raw / 1e6:8.2f} MB')
    print(
        f'snapshot storage              {stored / 1e6:8.2f} MB   ratio {report["storage_ratio"]:.2f}x (target <= 1.5)'
    )
    print(
        f'Temporal payloads stored      {sizes["payload_blobs"] / 1e6:8.2f} MB   '
        f'{report["payload_ratio"]:.2f}x more (activity inputs and results of 4 KiB or more, see history.py)'
    )
    print(f'SQLite file (incl. events)    {sizes["sqlite_file"] / 1e6:8.2f} MB')
    if harness is not None:
        print(f'pydantic_ai_harness SQLite      {harness["sqlite_bytes"] / 1e6:8.2f} MB   (same shape, in process)')
        print(f'pydantic_ai_harness files       {harness["file_bytes"] / 1e6:8.2f} MB')
    for step, ms in report['snapshot_write_ms'].items():
        print(f'snapshot write at step {step:>4}   {ms:8.2f} ms')
    print(
        f'continue from step {args.steps}       {report["continue_median_s"] * 1000:8.1f} ms median '
        f'vs fresh run {report["fresh_run_median_s"] * 1000:.1f} ms: ratio {report["continue_ratio"]:.2f} (target <= 2)'
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + '\n')
    print(f'wrote {RESULTS}')


if __name__ == '__main__':
    asyncio.run(main())
