"""Ledger backends compared: events/s and snapshot write latency, SQLite vs S3, at 1, 8 and 32 concurrent runs.

Each run writes what a worker's interceptor writes for an agent run of N steps: `run_started`, then
per step a model request (started, a snapshot of the history it sees, completed) and one tool call
(started, completed), each event in its own `record_events` call as the interceptor makes them, then
the seal. All runs go at once against one ledger. S3 is moto's server on loopback in a process of
its own (`python -m moto.server`): it measures the ledger's own cost (requests per event, client
CPU) against a store with about a millisecond of latency, not AWS S3's latency or its scale-out.
Prints a table and writes `benchmarks/results/ledger_backends.json`.

    .venv/bin/python benchmarks/ledger_backends.py --steps 10 --concurrency 1 8 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart, ToolReturnPart, UserPromptPart

from agentledger.ledger import Ledger
from agentledger.ledger.backends.s3 import S3Ledger
from agentledger.ledger.backends.sqlite import SqliteLedger
from agentledger.model import RunSeal, RunStart, StepEvent

RESULTS = Path(__file__).parent / 'results' / 'ledger_backends.json'
TOOL_OUTPUT = 'order 1234: shipped on Monday, arriving Thursday; ' * 20
CREDENTIALS = {'aws_access_key_id': 'bench', 'aws_secret_access_key': 'bench-secret', 'region_name': 'us-east-1'}


@contextmanager
def moto_server() -> Iterator[str]:
    """An S3 endpoint on loopback, in its own process so that it does not share this one's GIL."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, '-m', 'moto.server', '-H', '127.0.0.1', '-p', str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f'http://127.0.0.1:{port}'
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f'{endpoint}/moto-api/', timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield endpoint
    finally:
        process.terminate()
        process.wait()


def conversation(steps: int) -> list[ModelMessage]:
    """A run's whole history: the prompt, then per step a tool call and its result (model request k sees 2k-1)."""
    at = datetime(2025, 3, 1, tzinfo=UTC)
    messages: list[ModelMessage] = [ModelRequest(parts=[UserPromptPart('Where are my orders?', timestamp=at)])]
    for step in range(1, steps):
        call = ToolCallPart('lookup', {'order': step}, tool_call_id=f'call-{step}')
        messages.append(ModelResponse(parts=[call], timestamp=at))
        result = ToolReturnPart('lookup', f'{step}: {TOOL_OUTPUT}', tool_call_id=f'call-{step}', timestamp=at)
        messages.append(ModelRequest(parts=[result]))
    return messages


async def one_run(ledger: Ledger, run_id: str, steps: int, snapshot_latencies: list[float]) -> int:
    """Write one run as the interceptor would; return how many events it wrote."""
    workflow_id, temporal_run_id = f'wf-{run_id}', f't-{run_id}'
    messages = conversation(steps)
    now = datetime.now(UTC)
    await ledger.start_run(RunStart(run_id, workflow_id, temporal_run_id, 'bench', now, 'bench'))
    written = 1

    def event(activity: int, kind: Any, **fields: Any) -> StepEvent:
        return StepEvent(run_id, workflow_id, temporal_run_id, str(activity), 1, kind, datetime.now(UTC), **fields)

    for step in range(1, steps + 1):
        await ledger.record_events([event(2 * step, 'model_request_started', step=step)])
        started = time.perf_counter()
        record = await ledger.write_snapshot(
            run_id=run_id,
            temporal_run_id=temporal_run_id,
            step=step,
            kind='model_request',
            messages=messages[: 2 * step - 1],
        )
        snapshot_latencies.append(time.perf_counter() - started)
        assert record is not None
        await ledger.record_events([event(2 * step, 'model_request_completed', step=step)])
        await ledger.record_events([event(2 * step + 1, 'tool_call_started', step=step, tool_call_id=f'call-{step}')])
        await ledger.record_events([event(2 * step + 1, 'tool_call_completed', step=step, outcome='returned')])
        written += 4
    await ledger.seal_run(RunSeal(run_id, workflow_id, temporal_run_id, 'completed', datetime.now(UTC)))
    return written + 1


async def measure(make: Callable[[], Ledger], concurrency: int, steps: int) -> dict[str, Any]:
    latencies: list[float] = []
    async with make() as ledger:
        started = time.perf_counter()
        counts = await asyncio.gather(
            *(one_run(ledger, f'run-{uuid.uuid4().hex[:20]}', steps, latencies) for _ in range(concurrency))
        )
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        'concurrent_runs': concurrency,
        'events': sum(counts),
        'seconds': round(elapsed, 3),
        'events_per_s': round(sum(counts) / elapsed, 1),
        'snapshots': len(latencies),
        'snapshot_ms_p50': round(statistics.median(ordered) * 1000, 2),
        'snapshot_ms_p95': round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument('--steps', type=int, default=10, help='model requests (and tool calls) per run')
    parser.add_argument('--concurrency', type=int, nargs='+', default=[1, 8, 32], help='concurrent runs')
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as directory, moto_server() as endpoint:
        s3 = boto3.client('s3', endpoint_url=endpoint, **CREDENTIALS)

        def sqlite() -> Ledger:
            return SqliteLedger(Path(directory) / f'{uuid.uuid4().hex}.db')

        def s3_ledger() -> Ledger:
            bucket = f'bench-{uuid.uuid4().hex[:16]}'
            s3.create_bucket(Bucket=bucket)
            return S3Ledger(f's3://{bucket}/ledger', endpoint_url=endpoint, **CREDENTIALS)

        for backend, make in (('sqlite', sqlite), ('s3', s3_ledger)):
            for concurrency in args.concurrency:
                row = {'backend': backend, **await measure(make, concurrency, args.steps)}
                rows.append(row)
                print(f'{backend} x{concurrency}: {row["events_per_s"]} events/s', file=sys.stderr, flush=True)

    header = (
        f'{"backend":<8} {"runs":>5} {"events":>7} {"events/s":>10} {"snapshot p50 ms":>16} {"snapshot p95 ms":>16}'
    )
    print(header)
    print('-' * len(header))
    for row in rows:
        print(
            f'{row["backend"]:<8} {row["concurrent_runs"]:>5} {row["events"]:>7} {row["events_per_s"]:>10} '
            f'{row["snapshot_ms_p50"]:>16} {row["snapshot_ms_p95"]:>16}'
        )
    report = {
        'steps_per_run': args.steps,
        'events_per_run': 4 * args.steps + 2,
        's3_server': 'moto (python -m moto.server) on loopback, separate process',
        'cpus': os.cpu_count(),
        'results': rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + '\n')


if __name__ == '__main__':
    asyncio.run(main())
