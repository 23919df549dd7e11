"""Ledger backends against a real S3 server, with that server's own limits beside them: one run, one server.

    .venv/bin/python benchmarks/ledger_backends.py                              # full run: writes the results
    .venv/bin/python benchmarks/ledger_backends.py --steps 3 --concurrency 1 8  # a quick look

**Server.** SeaweedFS (`weed mini`), started exactly as the tests start it (`tests/helpers/s3_server.py`,
binary from `scripts/build_s3_server.sh`), on loopback in a process of its own, with its data in a
temporary directory. The one server serves every phase below. The machine's CPUs are shared by the
server, this process and its boto3 threads: the figures are what one box does, not AWS S3's scale-out.

**Raw server rates** (the limit), per concurrency c: c threads share one boto3 client
(`max_pool_connections = max(16, c)`, the standard retry mode, as the S3 ledger configures its own)
and for `--raw-seconds` each sends conditional PUTs (`If-None-Match: *`) of new, unique keys with a
JSON body of about one step event's size (`RAW_BODY_BYTES`); then for as long each GETs the keys it
wrote, in turn. PUT/s and GET/s = requests completed / elapsed. That is the server's rate through the
same client stack (boto3 in Python threads) the S3 ledger uses.

**Ledger events**, per backend and c: c runs at once against one fresh ledger, each written as the
worker's interceptor writes it: `start_run`, then per step `model_request_started`,
`model_request_completed`, `tool_call_started` and `tool_call_completed`, each in its own
`record_events` call, then `seal_run`. No snapshots here. events/s = every event (run start and seal
included: `4 * steps + 2` per run) / elapsed. The S3 ledger gets `max_concurrency=max(16, c)`, its
thread pool and pooled connections, so its client is not capped below the raw measurement's thread
count. For S3 the client-side requests per event are counted too (every request the ledger's boto3
client sends while the phase runs, retries included, over the events written).

**Snapshots**, per backend and c: c runs at once against one fresh ledger (started first, untimed),
each writing `steps` snapshots of its growing conversation one after another (`write_snapshot` of the
history model request k sees: the prompt, then a tool call and its result per step before it; each
run's content its own, so nothing is deduplicated across runs). p50/p95 over every write's latency.

**Targets** (from the project's issue): S3 events/s at 32 concurrent runs >= 0.8x the raw conditional
PUT/s at 32 measured in the same run; S3 snapshot p50 at 32 <= 3x its p50 at 1; SQLite >= 5,000
events/s at 32 concurrent runs. The ratios are printed at every concurrency, judged at 32. Beside
the snapshot ratio stands its bound: the server's own PUT p50 at c threads over its p50 at 1. The
phases are closed loops that keep the server saturated, so its queue, not the ledger, sets a single
request's latency, and a snapshot (several requests in a row) cannot grow less than one request does. Prints a
table per phase and the ratios, writes `benchmarks/results/ledger_backends.json`, and exits 1 when a
target measured in the run is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart, ToolReturnPart, UserPromptPart

from agentledger.ledger import Ledger
from agentledger.ledger.backends.sqlite import SqliteLedger
from agentledger.model import RunSeal, RunStart, StepEvent

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from tests.helpers.s3_server import S3Server

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / 'results' / 'ledger_backends.json'
TOOL_OUTPUT = 'order 1234: shipped on Monday, arriving Thursday; ' * 20
RAW_BODY_BYTES = 460
"""About the size of one step event as the S3 ledger stores it (450-470 bytes for the events written here)."""
TARGET_S3_EVENTS_VS_PUT = 0.8
TARGET_S3_SNAPSHOT_P50_GROWTH = 3.0
TARGET_SQLITE_EVENTS_PER_S = 5000.0
JUDGED_AT = 32


def s3_server() -> S3Server:
    """The tests' SeaweedFS server (not started): the repository root goes on `sys.path` for `tests.helpers`."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.helpers.s3_server import S3Server

    return S3Server()


def server_description() -> str:
    """What the S3 server is: the SeaweedFS version `scripts/seaweedfs/go.mod` pins, or the binary named instead."""
    gomod = (ROOT / 'scripts' / 'seaweedfs' / 'go.mod').read_text()
    version = next(
        line.split()[-1] for line in gomod.splitlines() if line.startswith('require github.com/seaweedfs/seaweedfs ')
    )
    description = f'SeaweedFS (weed mini) on loopback, built from github.com/seaweedfs/seaweedfs {version}'
    if os.environ.get('AGENTLEDGER_S3_SERVER'):
        description = f'SeaweedFS (weed mini) on loopback, the binary {os.environ["AGENTLEDGER_S3_SERVER"]}'
    return description


def pool_size(concurrency: int) -> int:
    """Threads and pooled connections for `concurrency` concurrent callers: the S3 ledger's default 16, or more."""
    return max(16, concurrency)


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


# --- the server's own rates ----------------------------------------------------------------------------


def raw_client(server: S3Server, concurrency: int) -> S3Client:
    """A boto3 client configured as the S3 ledger configures its own, with a pool for `concurrency` threads."""
    from tests.helpers.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY

    return boto3.Session().client(
        's3',
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(
            retries={'total_max_attempts': 3, 'mode': 'standard'},
            connect_timeout=3.0,
            read_timeout=20.0,
            max_pool_connections=pool_size(concurrency),
        ),
    )


def event_body(key: str) -> bytes:
    """A JSON body of `RAW_BODY_BYTES` bytes, shaped like a stored step event."""
    document = {
        'run_id': key[-24:],
        'kind': 'tool_call_completed',
        'timestamp': datetime.now(UTC).isoformat(),
        'step': 3,
        'outcome': 'returned',
        'pad': '',
    }
    size = len(json.dumps(document).encode())
    document['pad'] = 'x' * max(0, RAW_BODY_BYTES - size)
    return json.dumps(document).encode()


def timed_loop(concurrency: int, seconds: float, work: Callable[[int, int], None]) -> tuple[int, float, list[float]]:
    """`concurrency` threads call `work(thread, n)` for n = 0, 1, ... until `seconds` have passed (all start at once).

    Returns the calls completed, the elapsed time (until the last thread's last call returned) and every call's latency.
    """
    barrier = threading.Barrier(concurrency + 1)
    deadline = 0.0
    latencies: list[list[float]] = [[] for _ in range(concurrency)]

    def worker(thread: int) -> None:
        barrier.wait()
        mine = latencies[thread]
        n = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            work(thread, n)
            mine.append(time.perf_counter() - started)
            n += 1

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(worker, thread) for thread in range(concurrency)]
        deadline = time.perf_counter() + seconds
        barrier.wait()
        started = time.perf_counter()
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - started
    every = [latency for mine in latencies for latency in mine]
    return len(every), elapsed, every


def raw_rates(server: S3Server, bucket: str, concurrency: int, seconds: float) -> dict[str, Any]:
    """Conditional PUTs of new keys by `concurrency` threads for `seconds`, then GETs of those keys for as long."""
    client = raw_client(server, concurrency)
    tag = uuid.uuid4().hex[:8]
    written: list[list[str]] = [[] for _ in range(concurrency)]

    def put(thread: int, n: int) -> None:
        key = f'raw/{tag}/c{concurrency}/t{thread}/{n:08d}-{uuid.uuid4().hex}'
        client.put_object(Bucket=bucket, Key=key, Body=event_body(key), IfNoneMatch='*')
        written[thread].append(key)

    def get(thread: int, n: int) -> None:
        keys = written[thread] or ['raw/warm-up']
        client.get_object(Bucket=bucket, Key=keys[n % len(keys)])['Body'].read()

    puts, put_elapsed, put_latencies = timed_loop(concurrency, seconds, put)
    gets, get_elapsed, get_latencies = timed_loop(concurrency, seconds, get)
    client.close()
    return {
        'concurrency': concurrency,
        'threads': concurrency,
        'max_pool_connections': pool_size(concurrency),
        'body_bytes': len(event_body('x' * 60)),
        'put_requests': puts,
        'put_seconds': round(put_elapsed, 3),
        'put_per_s': round(puts / put_elapsed, 1),
        'put_ms_p50': ms(statistics.median(put_latencies)),
        'put_ms_p95': ms(percentile(put_latencies, 0.95)),
        'get_requests': gets,
        'get_seconds': round(get_elapsed, 3),
        'get_per_s': round(gets / get_elapsed, 1),
        'get_ms_p50': ms(statistics.median(get_latencies)),
        'get_ms_p95': ms(percentile(get_latencies, 0.95)),
    }


# --- the ledgers ------------------------------------------------------------------------------------------


class RequestCount:
    """Counts the HTTP requests an S3 ledger's boto3 client sends (retries included), by method."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.methods: Counter[str] = Counter()

    def attach(self, ledger: Ledger) -> bool:
        """Hook the ledger's open client; `False` when it has none to hook (SQLite, or a reworked S3 store)."""
        client = getattr(getattr(ledger, 'store', None), '_client', None)
        events = getattr(getattr(client, 'meta', None), 'events', None)
        if events is None:
            return False
        events.register('before-send.s3', self._sent)
        return True

    def _sent(self, request: Any, **_: Any) -> None:
        # Returning None lets botocore send the request.
        with self._lock:
            self.methods[str(request.method)] += 1

    @property
    def total(self) -> int:
        return sum(self.methods.values())


def conversation(run_id: str, steps: int) -> list[ModelMessage]:
    """A run's whole history, its content its own: the prompt, then per step a tool call and its result."""
    at = datetime(2025, 3, 1, tzinfo=UTC)
    messages: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart(f'Where are my orders? ({run_id})', timestamp=at)])
    ]
    for step in range(1, steps):
        call = ToolCallPart('lookup', {'order': step, 'run': run_id}, tool_call_id=f'call-{step}')
        messages.append(ModelResponse(parts=[call], timestamp=at))
        output = f'{run_id} {step}: {TOOL_OUTPUT}'
        messages.append(
            ModelRequest(parts=[ToolReturnPart('lookup', output, tool_call_id=f'call-{step}', timestamp=at)])
        )
    return messages


def run_start(run_id: str) -> RunStart:
    return RunStart(run_id, f'wf-{run_id}', f't-{run_id}', 'bench', datetime.now(UTC), 'bench')


def new_run_id() -> str:
    return f'run-{uuid.uuid4().hex[:20]}'


async def one_run(ledger: Ledger, run_id: str, steps: int) -> int:
    """Write one run's events as the interceptor does, one `record_events` call per event; return how many."""
    start = run_start(run_id)
    workflow_id, temporal_run_id = start.workflow_id, start.temporal_run_id
    await ledger.start_run(start)

    def event(activity: int, kind: Any, **fields: Any) -> StepEvent:
        return StepEvent(run_id, workflow_id, temporal_run_id, str(activity), 1, kind, datetime.now(UTC), **fields)

    for step in range(1, steps + 1):
        await ledger.record_events([event(2 * step, 'model_request_started', step=step)])
        await ledger.record_events([event(2 * step, 'model_request_completed', step=step)])
        await ledger.record_events([event(2 * step + 1, 'tool_call_started', step=step, tool_call_id=f'call-{step}')])
        await ledger.record_events([event(2 * step + 1, 'tool_call_completed', step=step, outcome='returned')])
    await ledger.seal_run(RunSeal(run_id, workflow_id, temporal_run_id, 'completed', datetime.now(UTC)))
    return 4 * steps + 2


async def snapshots_of_run(ledger: Ledger, run_id: str, steps: int, latencies: list[float]) -> None:
    """Write `steps` snapshots of the run's growing history one after another, timing each write."""
    messages = conversation(run_id, steps)
    for step in range(1, steps + 1):
        started = time.perf_counter()
        record = await ledger.write_snapshot(
            run_id=run_id,
            temporal_run_id=f't-{run_id}',
            step=step,
            kind='model_request',
            messages=messages[: 2 * step - 1],
        )
        latencies.append(time.perf_counter() - started)
        assert record is not None


async def events_phase(make: Callable[[int], Ledger], concurrency: int, steps: int) -> dict[str, Any]:
    requests = RequestCount()
    async with make(concurrency) as ledger:
        counted = requests.attach(ledger)
        started = time.perf_counter()
        counts = await asyncio.gather(*(one_run(ledger, new_run_id(), steps) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    events = sum(counts)
    return {
        'events': events,
        'events_seconds': round(elapsed, 3),
        'events_per_s': round(events / elapsed, 1),
        'requests_per_event': round(requests.total / events, 2) if counted else None,
        'event_requests_by_method': dict(sorted(requests.methods.items())) if counted else None,
    }


async def snapshot_phase(make: Callable[[int], Ledger], concurrency: int, steps: int) -> dict[str, Any]:
    requests = RequestCount()
    latencies: list[float] = []
    async with make(concurrency) as ledger:
        run_ids = [new_run_id() for _ in range(concurrency)]
        await asyncio.gather(*(ledger.start_run(run_start(run_id)) for run_id in run_ids))
        counted = requests.attach(ledger)
        started = time.perf_counter()
        await asyncio.gather(*(snapshots_of_run(ledger, run_id, steps, latencies) for run_id in run_ids))
        elapsed = time.perf_counter() - started
    return {
        'snapshots': len(latencies),
        'snapshot_seconds': round(elapsed, 3),
        'snapshot_ms_p50': ms(statistics.median(latencies)),
        'snapshot_ms_p95': ms(percentile(latencies, 0.95)),
        'requests_per_snapshot': round(requests.total / len(latencies), 2) if counted else None,
    }


# --- report -------------------------------------------------------------------------------------------------


def ratios(raw: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The three comparisons of the issue at every concurrency measured; each judged at `JUDGED_AT` runs only."""

    def row(backend: str, concurrency: int) -> dict[str, Any] | None:
        return next((r for r in rows if r['backend'] == backend and r['concurrent_runs'] == concurrency), None)

    def judged(
        name: str, concurrency: int, value: float | None, op: str, target: float, unit: str = 'x'
    ) -> dict[str, Any]:
        verdict = None
        if concurrency == JUDGED_AT and value is not None:
            verdict = 'PASS' if (value >= target if op == '>=' else value <= target) else 'MISS'
        return {
            'name': name,
            'concurrent_runs': concurrency,
            'value': None if value is None else round(value, 3 if unit == 'x' else 1),
            'target': f'{op} {target:g}{unit}' if concurrency == JUDGED_AT else None,
            'verdict': verdict,
        }

    out: list[dict[str, Any]] = []
    for measured in raw:
        s3 = row('s3', measured['concurrency'])
        if s3 is not None:
            value = s3['events_per_s'] / measured['put_per_s'] if measured['put_per_s'] else None
            out.append(
                judged(
                    'S3 events/s ÷ raw conditional PUT/s', s3['concurrent_runs'], value, '>=', TARGET_S3_EVENTS_VS_PUT
                )
            )
    alone = row('s3', 1)
    for s3 in (r for r in rows if r['backend'] == 's3' and r['concurrent_runs'] != 1):
        value = s3['snapshot_ms_p50'] / alone['snapshot_ms_p50'] if alone and alone['snapshot_ms_p50'] else None
        out.append(
            judged(
                'S3 snapshot p50 ÷ its p50 at 1 run', s3['concurrent_runs'], value, '<=', TARGET_S3_SNAPSHOT_P50_GROWTH
            )
        )
    # The server's own latency grows with the requests queued at it: a snapshot (several requests in
    # a row) cannot grow less than one request does. Printed beside the snapshot ratio as its bound.
    raw_alone = next((m for m in raw if m['concurrency'] == 1), None)
    for measured in raw:
        if measured['concurrency'] != 1 and raw_alone is not None and raw_alone['put_ms_p50']:
            out.append(
                {
                    'name': 'bound: server PUT p50 ÷ its p50 at 1 thread',
                    'concurrent_runs': measured['concurrency'],
                    'value': round(measured['put_ms_p50'] / raw_alone['put_ms_p50'], 3),
                    'target': None,
                    'verdict': None,
                }
            )
    sqlite = row('sqlite', JUDGED_AT)
    if sqlite is not None:
        out.append(
            judged('SQLite events/s', JUDGED_AT, sqlite['events_per_s'], '>=', TARGET_SQLITE_EVENTS_PER_S, unit='')
        )
    return out


def print_tables(raw: list[dict[str, Any]], rows: list[dict[str, Any]], compared: list[dict[str, Any]]) -> None:
    print(
        '\nraw server rates (threads sharing one boto3 client, max_pool_connections = max(16, threads); '
        f'{RAW_BODY_BYTES}-byte bodies):'
    )
    header = (
        f'{"threads":>7} {"cond. PUT/s":>12} {"PUT p50 ms":>11} {"PUT p95 ms":>11} '
        f'{"GET/s":>9} {"GET p50 ms":>11} {"GET p95 ms":>11}'
    )
    print(header)
    print('-' * len(header))
    for r in raw:
        print(
            f'{r["concurrency"]:>7} {r["put_per_s"]:>12} {r["put_ms_p50"]:>11} {r["put_ms_p95"]:>11} '
            f'{r["get_per_s"]:>9} {r["get_ms_p50"]:>11} {r["get_ms_p95"]:>11}'
        )

    def cell(value: Any) -> str:
        return '-' if value is None else str(value)

    print('\nledger events, one record_events call per event (S3 ledger max_concurrency = max(16, runs)):')
    header = f'{"backend":<8} {"runs":>5} {"events":>7} {"seconds":>8} {"events/s":>10} {"S3 req/event":>13}'
    print(header)
    print('-' * len(header))
    for r in rows:
        print(
            f'{r["backend"]:<8} {r["concurrent_runs"]:>5} {r["events"]:>7} {r["events_seconds"]:>8} '
            f'{r["events_per_s"]:>10} {cell(r["requests_per_event"]):>13}'
        )
    print('\nsnapshots, each run writing its growing history step after step:')
    header = f'{"backend":<8} {"runs":>5} {"snapshots":>9} {"p50 ms":>9} {"p95 ms":>9} {"S3 req/snapshot":>16}'
    print(header)
    print('-' * len(header))
    for r in rows:
        print(
            f'{r["backend"]:<8} {r["concurrent_runs"]:>5} {r["snapshots"]:>9} {r["snapshot_ms_p50"]:>9} '
            f'{r["snapshot_ms_p95"]:>9} {cell(r["requests_per_snapshot"]):>16}'
        )
    print(f'\nratios (judged at {JUDGED_AT} concurrent runs):')
    header = f'{"measure":<44} {"runs":>5} {"value":>9} {"target":>9} {"verdict":>8}'
    print(header)
    print('-' * len(header))
    for c in compared:
        print(
            f'{c["name"]:<44} {c["concurrent_runs"]:>5} {cell(c["value"]):>9} {cell(c["target"]):>9} '
            f'{cell(c["verdict"]):>8}'
        )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument('--steps', type=int, default=10, help='model requests (and tool calls) per run')
    parser.add_argument('--concurrency', type=int, nargs='+', default=[1, 8, 32, 128], help='concurrent runs')
    parser.add_argument('--raw-seconds', type=float, default=5.0, help='how long each raw PUT and GET measurement runs')
    args = parser.parse_args()
    began = time.perf_counter()

    server = s3_server()
    raw: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    await asyncio.to_thread(server.start)
    try:
        with tempfile.TemporaryDirectory(prefix='ledger-backends-') as directory:
            bucket = server.new_bucket()
            warm = raw_client(server, 1)
            warm.put_object(Bucket=bucket, Key='raw/warm-up', Body=event_body('raw/warm-up'), IfNoneMatch='*')
            warm.close()
            for concurrency in args.concurrency:
                measured = await asyncio.to_thread(raw_rates, server, bucket, concurrency, args.raw_seconds)
                raw.append(measured)
                print(
                    f'raw x{concurrency}: {measured["put_per_s"]} conditional PUT/s, {measured["get_per_s"]} GET/s',
                    file=sys.stderr,
                    flush=True,
                )

            def sqlite(concurrency: int) -> Ledger:
                return SqliteLedger(Path(directory) / f'{uuid.uuid4().hex}.db')

            def s3(concurrency: int) -> Ledger:
                return server.ledger(server.new_bucket(), 'ledger', max_concurrency=pool_size(concurrency))

            for backend, make in (('sqlite', sqlite), ('s3', s3)):
                for concurrency in args.concurrency:
                    events = await events_phase(make, concurrency, args.steps)
                    snapshots = await snapshot_phase(make, concurrency, args.steps)
                    row = {
                        'backend': backend,
                        'concurrent_runs': concurrency,
                        's3_max_concurrency': pool_size(concurrency) if backend == 's3' else None,
                        **events,
                        **snapshots,
                    }
                    rows.append(row)
                    print(
                        f'{backend} x{concurrency}: {row["events_per_s"]} events/s, snapshot p50 '
                        f'{row["snapshot_ms_p50"]} ms',
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        await asyncio.to_thread(server.remove)

    compared = ratios(raw, rows)
    print_tables(raw, rows, compared)
    seconds = time.perf_counter() - began
    print(f'\n{server_description()}; {os.cpu_count()} CPUs; {seconds:.0f} s in all')
    report = {
        's3_server': server_description(),
        'cpus': os.cpu_count(),
        'steps_per_run': args.steps,
        'events_per_run': 4 * args.steps + 2,
        'snapshots_per_run': args.steps,
        'concurrency': args.concurrency,
        'raw_seconds': args.raw_seconds,
        'raw_body_bytes': RAW_BODY_BYTES,
        's3_max_concurrency': 'max(16, concurrent runs); raw: max_pool_connections = max(16, threads)',
        'raw': raw,
        'rows': rows,
        'ratios': compared,
        'targets': {
            's3_events_per_s_vs_raw_put_per_s': f'>= {TARGET_S3_EVENTS_VS_PUT:g}x at {JUDGED_AT} concurrent runs',
            's3_snapshot_p50_vs_p50_at_1': f'<= {TARGET_S3_SNAPSHOT_P50_GROWTH:g}x at {JUDGED_AT} concurrent runs',
            'sqlite_events_per_s': f'>= {TARGET_SQLITE_EVENTS_PER_S:g} at {JUDGED_AT} concurrent runs',
        },
        'seconds': round(seconds, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + '\n')
    missed = [c for c in compared if c['verdict'] == 'MISS']
    return 1 if missed else 0


if __name__ == '__main__':
    raise SystemExit(asyncio.run(main()))
