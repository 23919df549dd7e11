"""Listing runs at scale: `Ledger.runs(limit=50)` on ledgers of 1k, 10k and 100k runs, SQLite and S3.

For each backend one ledger grows from 1k to 10k to 100k runs (the runs added at each size start
later than those already stored, as a ledger grows), and at each size these listings are timed:

- `newest`: `runs(limit=50)`, newest first, no filter, and `newest, next page`: `before=` its last run;
- `agent`: `runs(agent=A, limit=50)`, and `agent, next page`;
- `agent, failed`: `runs(agent=A, status='failed', limit=50)`.

Each is called once to warm up, then `--repeat` times (15); the median is reported, with how many runs it
returned, and the ratio of the time at the largest size to the time at the smallest against the target
(at most 2x). S3 listings also report the requests they sent (LIST and GET) and SQLite listings the
query plan, which say where the time goes.

The runs: `--agents` agents (4; runs spread evenly over them at random), statuses in fixed shares (70%
completed, 25% failed, 5% running, drawn at random per run, seed fixed: even at 1k runs one agent has
more than a page of failed runs), start times 30 s apart
plus jitter. Each run's record is what the ledger folds from its start and seal
(`apply_run_start`, then `apply_seal` unless it is still running).

How the ledgers are written:

- SQLite (`SqliteLedger(path)`): the ledger's own write path, `Ledger.start_run` then `Ledger.seal_run`,
  1000 runs at a time (group commit), so the file holds the run rows and their run events.
- S3 (SeaweedFS, `weed mini`, started as the tests start it, on loopback): the first size through
  the ledger's own path, `Ledger.restore_run` (the store's `create_run`: the run's index entries, then
  its run record), 64 at a time, and its rate measured. When that rate would take more than
  `--ledger-path-budget` seconds for the rest (it does: well under 200 runs/s here, so 100k runs would
  take over ten minutes), the rest is written directly from 32 threads: the same objects the store
  writes, keys from the store's own `Layout` (`index_keys`, `status_index_keys`, `run_prefix(...) + 'run.json'`), bodies
  `RunRecord.to_json()` encoded as the store encodes them, index entries before the record, each PUT
  `If-None-Match: *` as the store sends it, signed by botocore's SigV4 signer and sent over urllib3
  (see `DirectWriter` for why not through boto3's client). Before the direct writer is used, its
  objects for runs the ledger wrote are compared with what the ledger stored (keys under the run,
  bytes, content type). The S3 ledger so holds each run's index entries and run record, not its
  events, counter or snapshots: a listing never meets those (they live under `runs/<id>/`).

Prints a table and writes `benchmarks/results/ledger_scale.json`.

    .venv/bin/python benchmarks/ledger_scale.py                          # 1k, 10k, 100k, both backends
    .venv/bin/python benchmarks/ledger_scale.py --sizes 500 2000 --backends sqlite   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agentledger import SqliteLedger
from agentledger.ledger import Ledger
from agentledger.ledger.backends._encoding import epoch_us
from agentledger.ledger.backends.s3 import S3Ledger
from agentledger.ledger.backends.s3._client import json_body
from agentledger.ledger.backends.s3._layout import Layout
from agentledger.ledger.backends.sqlite._schema import SELECT_RUN
from agentledger.model import RunRecord, RunSeal, RunStart
from agentledger.model._ids import ledger_run_id
from agentledger.model._records import ErrorInfo, RunStatus, Usage
from agentledger.model._rules import apply_run_start, apply_seal

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / 'results' / 'ledger_scale.json'
LIMIT = 50
TARGET_RATIO = 2.0
# A quarter failed, over 4 agents: even the smallest ledger (1k runs) holds more than a page (50) of one
# agent's failed runs, so every size answers `agent, failed` with a full page and the times compare.
SHARES: tuple[tuple[RunStatus, float], ...] = (('completed', 0.70), ('failed', 0.25), ('running', 0.05))
BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)
SEED = 20250101
DIRECT_THREADS = 32
PROMPT = 'Where is my order {n}? It was due on Monday and the tracking page has not changed since.'


# --- the runs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One run of the benchmark ledger: its start, its seal (none while running), and the record they fold to."""

    start: RunStart
    seal: RunSeal | None

    @property
    def record(self) -> RunRecord:
        record = apply_run_start(None, self.start)
        assert record is not None
        if self.seal is None:
            return record
        sealed = apply_seal(record, self.seal)
        assert sealed is not None
        return sealed


def make_specs(count: int, agents: int) -> list[Spec]:
    """`count` runs, oldest first, the same every time (seeded)."""
    rng = random.Random(SEED)
    names = [f'agent-{k}' for k in range(agents)]
    specs: list[Spec] = []
    for n in range(count):
        agent = rng.choice(names)
        draw, status = rng.random(), SHARES[-1][0]
        for name, share in SHARES:
            if draw < share:
                status = name
                break
            draw -= share
        workflow_id = f'{agent}-{rng.getrandbits(48):012x}'
        temporal_run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        started = BASE_TIME + timedelta(seconds=30 * n, microseconds=rng.randrange(20_000_000))
        start = RunStart(
            run_id=ledger_run_id(workflow_id, temporal_run_id),
            workflow_id=workflow_id,
            temporal_run_id=temporal_run_id,
            agent_name=agent,
            started_at=started,
            task_queue='agents',
            prompt_preview=PROMPT.format(n=n),
            workflow_type='AgentRunWorkflow',
        )
        seal = None
        if status != 'running':
            usage = Usage(requests=3, input_tokens=1200 + n % 500, output_tokens=300, tool_calls=2)
            seal = RunSeal(
                run_id=start.run_id,
                workflow_id=workflow_id,
                temporal_run_id=temporal_run_id,
                status=status,
                ended_at=started + timedelta(seconds=4 + n % 7),
                usage=usage,
                error=ErrorInfo('ModelHTTPError', 'status_code: 529, overloaded', True) if status == 'failed' else None,
                output_preview='Your order shipped on Monday and arrives Thursday.' if status == 'completed' else None,
            )
        specs.append(Spec(start, seal))
    return specs


@dataclass(frozen=True)
class Query:
    name: str
    agent: str | None = None
    status: RunStatus | None = None
    next_page: bool = False

    @property
    def call(self) -> str:
        """The call timed, as code."""
        filters = ''.join(
            f'{name}={value!r}, ' for name, value in (('agent', self.agent), ('status', self.status)) if value
        )
        return f'runs({filters}limit={LIMIT}{", before=<its last run id>" if self.next_page else ""})'


def queries(agent: str) -> list[Query]:
    return [
        Query('newest'),
        Query('newest, next page', next_page=True),
        Query('agent', agent=agent),
        Query('agent, next page', agent=agent, next_page=True),
        Query('agent, failed', agent=agent, status='failed'),
    ]


def expected(records: Sequence[RunRecord], query: Query) -> list[str]:
    """The run ids the query must return (both pages for a next page), computed from the records written."""
    matching = [
        r
        for r in records
        if (query.agent is None or r.agent_name == query.agent) and (query.status is None or r.status == query.status)
    ]
    matching.sort(key=lambda r: (epoch_us(r.started_at), r.run_id), reverse=True)
    return [r.run_id for r in matching[: 2 * LIMIT if query.next_page else LIMIT]]


# --- timing -----------------------------------------------------------------------------------------


async def time_query(
    ledger: Ledger, query: Query, records: Sequence[RunRecord], repeat: int, requests: collections.Counter[str] | None
) -> dict[str, Any]:
    """The query's median time over `repeat` calls after one warm-up, checked against the records written."""
    first = await ledger.runs(agent=query.agent, status=query.status, limit=LIMIT)
    before = first[-1].run_id if query.next_page and first else None

    async def call() -> list[RunRecord]:
        return await ledger.runs(agent=query.agent, status=query.status, limit=LIMIT, before=before)

    page = await call()  # warm-up
    got = [r.run_id for r in first] + ([r.run_id for r in page] if query.next_page else [])
    if got != expected(records, query):
        raise AssertionError(f'{query.name}: the listing does not return the runs written')
    times: list[float] = []
    if requests is not None:
        requests.clear()
    cpu = time.process_time()
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    row: dict[str, Any] = {
        'median_ms': round(statistics.median(times) * 1000, 3),
        'min_ms': round(min(times) * 1000, 3),
        # This process's CPU (every thread: aiosqlite's, the S3 ledger's boto3 pool) per call.
        'client_cpu_ms': round((time.process_time() - cpu) / repeat * 1000, 3),
        'returned': len(page),
    }
    if requests is not None:
        row['requests'] = {name: count // repeat for name, count in sorted(requests.items())}
    return row


# --- SQLite -----------------------------------------------------------------------------------------


async def sqlite_populate(ledger: Ledger, specs: Sequence[Spec]) -> None:
    """The ledger's own write path: each run's start, then its seal, 1000 runs at a time."""
    for k in range(0, len(specs), 1000):
        batch = specs[k : k + 1000]
        await asyncio.gather(*(ledger.start_run(s.start) for s in batch))
        await asyncio.gather(*(ledger.seal_run(s.seal) for s in batch if s.seal is not None))


def sqlite_plan(path: Path, query: Query) -> str:
    """SQLite's plan for the listing's statement (as `SqliteStore.read_runs` builds it)."""
    conditions = [c for c, v in (('agent_name = ?', query.agent), ('status = ?', query.status)) if v is not None]
    parameters: list[Any] = [v for v in (query.agent, query.status) if v is not None]
    if query.next_page:
        conditions.append('(started_at_us, run_id) < (?, ?)')
        parameters += [0, '']
    where = f' WHERE {" AND ".join(conditions)}' if conditions else ''
    sql = f'EXPLAIN QUERY PLAN {SELECT_RUN}{where} ORDER BY started_at_us DESC, run_id DESC LIMIT ?'
    with sqlite3.connect(f'file:{path}?mode=ro', uri=True) as connection:
        return '; '.join(row[3] for row in connection.execute(sql, (*parameters, LIMIT)))


async def run_sqlite(
    specs: list[Spec], sizes: list[int], qs: list[Query], repeat: int, directory: Path
) -> dict[str, Any]:
    path = directory / 'scale.db'
    result: dict[str, Any] = {'backend': 'sqlite', 'sizes': {}}
    written = 0
    for size in sizes:
        started = time.perf_counter()
        async with SqliteLedger(path) as ledger:
            await sqlite_populate(ledger, specs[written:size])
        seconds = time.perf_counter() - started
        note(f'sqlite: {size} runs ({size - written} written in {seconds:.1f} s)')
        new, written = size - written, size
        records = [s.record for s in specs[:size]]
        rows: dict[str, Any] = {}
        async with SqliteLedger(path, read_only=True) as ledger:
            for query in qs:
                rows[query.name] = {**await time_query(ledger, query, records, repeat, None)}
                rows[query.name]['plan'] = sqlite_plan(path, query)
        result['sizes'][str(size)] = {
            'write': {'method': 'Ledger.start_run + Ledger.seal_run', 'runs': new, 'seconds': round(seconds, 2)},
            'file_bytes': path.stat().st_size,
            'queries': rows,
        }
    return result


# --- S3 ---------------------------------------------------------------------------------------------


class S3Endpoint:
    """The S3 server the tests use (SeaweedFS, `tests/helpers/s3_server.py`), on loopback in its own process."""

    def __init__(self) -> None:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from tests.helpers.s3_server import S3Server

        self.server = S3Server()

    def __enter__(self) -> Any:
        self.server.start()
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.server.remove()


class DirectWriter:
    """Writes the objects `S3Store.create_run` writes, from many threads (see the module docstring).

    Each PUT is signed by botocore's own SigV4 signer (`S3SigV4Auth`, what boto3 signs with) and sent
    over urllib3 (botocore's HTTP layer), without the rest of boto3's client: that client costs about
    1.4 ms of CPU per PUT on this machine, three times the whole request here, and would make the 100k
    ledger take about ten minutes to write instead of about three.
    """

    def __init__(self, server: Any, bucket: str, layout: Layout) -> None:
        import urllib3
        from botocore.credentials import Credentials

        from tests.helpers import s3_server

        self.bucket = bucket
        self.layout = layout
        self.endpoint = server.endpoint
        self.region = s3_server.REGION
        self.credentials = Credentials(s3_server.ACCESS_KEY_ID, s3_server.SECRET_ACCESS_KEY)
        self.pool = urllib3.HTTPConnectionPool('127.0.0.1', server.port, maxsize=DIRECT_THREADS)
        self.admin = s3_server.admin_client(server.endpoint)

    def objects(self, record: RunRecord) -> list[tuple[str, bytes]]:
        """The run's objects in the order the store writes them: index entries, then the run record."""
        entries = self.layout.index_keys(record) + self.layout.status_index_keys(record)
        return [(key, b'') for key in entries] + [
            (self.layout.run_prefix(record.run_id) + 'run.json', json_body(record.to_json()))
        ]

    def _put(self, key: str, body: bytes) -> None:
        from urllib.parse import quote

        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest

        # What `S3Store._put` sends: If-None-Match: * (create only), and a JSON content type for .json keys.
        headers = {'If-None-Match': '*'}
        if key.endswith('.json'):
            headers['Content-Type'] = 'application/json'
        path = f'/{self.bucket}/{quote(key, safe="/~")}'
        request = AWSRequest('PUT', self.endpoint + path, data=body, headers=headers)
        S3SigV4Auth(self.credentials, 's3', self.region).add_auth(request)
        for attempt in range(5):
            response = self.pool.urlopen('PUT', path, body=body, headers=dict(request.headers.items()), retries=False)
            if response.status == 200:
                return
            if response.status < 500 or attempt == 4:
                raise RuntimeError(f'PUT {key}: HTTP {response.status}: {response.data[:300]!r}')
            time.sleep(0.1 * 2**attempt)

    def _write_run(self, record: RunRecord) -> None:
        for key, body in self.objects(record):
            self._put(key, body)

    def write(self, records: Sequence[RunRecord]) -> None:
        with ThreadPoolExecutor(DIRECT_THREADS) as pool:
            for done, _ in enumerate(pool.map(self._write_run, records), 1):
                if done % 10_000 == 0:
                    note(f's3: direct writes: {done}/{len(records)} runs')

    def check_same_as_ledger(self, records: Sequence[RunRecord]) -> int:
        """Compare this writer's objects for runs the ledger wrote with what the ledger stored; the objects checked."""
        checked = 0
        for record in records:
            mine = self.objects(record)
            run_prefix = self.layout.run_prefix(record.run_id)
            stored = self.admin.list_objects_v2(Bucket=self.bucket, Prefix=run_prefix)
            under_run = sorted(item['Key'] for item in stored.get('Contents', []))
            if under_run != [key for key, _ in mine if key.startswith(run_prefix)]:
                raise AssertionError(f'the ledger stored other objects under run {record.run_id}: {under_run}')
            for key, body in mine:
                got = self.admin.get_object(Bucket=self.bucket, Key=key)
                content_type = 'application/json' if key.endswith('.json') else None
                if got['Body'].read() != body or (content_type and got.get('ContentType') != content_type):
                    raise AssertionError(f'the direct writer would write {key!r} unlike the ledger does')
                checked += 1
        return checked


async def ledger_write(ledger: Ledger, records: Sequence[RunRecord], concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(record: RunRecord) -> None:
        async with gate:
            await ledger.restore_run(record)

    await asyncio.gather(*(one(r) for r in records))


async def run_s3(
    specs: list[Spec], sizes: list[int], qs: list[Query], repeat: int, ledger_path_budget_s: float
) -> dict[str, Any]:
    result: dict[str, Any] = {'backend': 's3', 'sizes': {}}
    with S3Endpoint() as server:
        bucket = server.new_bucket()

        def open_s3(**options: Any) -> S3Ledger:
            ledger: S3Ledger = server.ledger(bucket, **options)
            return ledger

        requests: collections.Counter[str] = collections.Counter()
        writer: DirectWriter | None = None
        ledger_rate: float | None = None
        written = 0
        for size in sizes:
            records = [s.record for s in specs[:size]]
            new = records[written:size]
            started = time.perf_counter()
            if writer is None:
                async with open_s3(max_concurrency=64) as ledger:
                    await ledger_write(ledger, new, 64)
                    layout = Layout(ledger.prefix, ledger.url)
                seconds = time.perf_counter() - started
                ledger_rate = len(new) / seconds
                method = 'Ledger.restore_run (the store create_run), 64 at a time'
                rest = len(specs) - size
                estimate = rest / ledger_rate
                note(f's3: {size} runs through the ledger in {seconds:.1f} s ({ledger_rate:.0f} runs/s)')
                if estimate > ledger_path_budget_s:
                    note(f's3: the ledger path would take ~{estimate:.0f} s for the other {rest} runs: direct writes')
                    writer = DirectWriter(server, bucket, layout)
                    result['direct_writer_checked_objects'] = await asyncio.to_thread(
                        writer.check_same_as_ledger, new[:: max(1, len(new) // 20)]
                    )
            else:
                await asyncio.to_thread(writer.write, new)
                seconds = time.perf_counter() - started
                method = f'signed PUTs of the objects the store writes, {DIRECT_THREADS} threads'
                rate = len(new) / seconds
                note(f's3: {size} runs ({len(new)} written directly in {seconds:.1f} s, {rate:.0f} runs/s)')
            written = size
            rows: dict[str, Any] = {}
            async with open_s3(read_only=True) as ledger:
                # The store's boto3 client is private; its events say which requests each listing sends.
                client = ledger.store._client
                assert client is not None
                client.meta.events.register('before-call.s3', lambda model, **_: requests.update([model.name]))
                for query in qs:
                    rows[query.name] = await time_query(ledger, query, records, repeat, requests)
            result['sizes'][str(size)] = {
                'write': {'method': method, 'runs': len(new), 'seconds': round(seconds, 2)},
                'queries': rows,
            }
        result['ledger_path_runs_per_s'] = round(ledger_rate or 0.0, 1)
    return result


# --- report -----------------------------------------------------------------------------------------


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def verdicts(backends: list[dict[str, Any]], sizes: list[int], qs: list[Query]) -> list[dict[str, Any]]:
    small, large = str(sizes[0]), str(sizes[-1])
    rows = []
    for backend in backends:
        for query in qs:
            times = {size: backend['sizes'][size]['queries'][query.name]['median_ms'] for size in backend['sizes']}
            ratio = times[large] / times[small]
            # Informative: the last step of growth (10k to 100k), where every page is a full one.
            previous = str(sizes[-2]) if len(sizes) > 2 else small
            rows.append(
                {
                    'backend': backend['backend'],
                    'query': query.name,
                    'median_ms': times,
                    'returned': {s: backend['sizes'][s]['queries'][query.name]['returned'] for s in backend['sizes']},
                    'ratio': round(ratio, 2),
                    'pass': ratio <= TARGET_RATIO,
                    'ratio_last_step': round(times[large] / times[previous], 2),
                }
            )
    return rows


def explain(backend: dict[str, Any], row: dict[str, Any], query: Query, sizes: list[int]) -> str:
    """What the figures say about a missed target: what each call returned, sent and cost at both ends."""
    small, large = str(sizes[0]), str(sizes[-1])
    at = {size: backend['sizes'][size]['queries'][query.name] for size in (small, large)}
    parts = [f'{backend["backend"]} `{query.name}`: {row["ratio"]}x']
    if at[small]['returned'] < at[large]['returned']:
        parts.append(
            f'at {small} runs only {at[small]["returned"]} runs match, so the call reads to the end of the index '
            f'and returns a partial page; at {large} it returns {at[large]["returned"]}'
        )
    if 'requests' in at[small]:
        gets = {size: at[size]['requests'].get('GetObject', 0) for size in at}
        lists = {size: at[size]['requests'].get('ListObjectsV2', 0) for size in at}
        parts.append(
            f'run records read (GETs) per call: {gets[small]} at {small}, {gets[large]} at {large} '
            f'({lists[small]} and {lists[large]} LISTs); client CPU per call {at[small]["client_cpu_ms"]:.0f} ms '
            f'and {at[large]["client_cpu_ms"]:.0f} ms'
        )
    parts.append(f'{large}/{sizes[-2] if len(sizes) > 2 else small}: {row["ratio_last_step"]}x')
    return '; '.join(parts)


def print_table(report: dict[str, Any]) -> None:
    sizes = [str(s) for s in report['sizes']]
    last_step = f'{sizes[-1]}/{sizes[-2] if len(sizes) > 2 else sizes[0]}'
    header = (
        f'{"backend":<7} {"query":<18}'
        + ''.join(f'{n + " runs":>17}' for n in sizes)
        + f'{sizes[-1] + "/" + sizes[0]:>14}  target      {last_step:>12}'
    )
    print(header)
    print('-' * len(header))
    for row in report['results']:
        cells = ''.join(f'{row["median_ms"][s]:>10.2f} ms {"(" + str(row["returned"][s]) + ")":>4}' for s in sizes)
        verdict = 'PASS' if row['pass'] else 'MISS'
        print(
            f'{row["backend"]:<7} {row["query"]:<18}{cells}{row["ratio"]:>13.2f}x  <= {TARGET_RATIO:g}x {verdict}'
            f'{row["ratio_last_step"]:>12.2f}x'
        )
    print('(n): runs the timed call returned')
    for line in report['missed']:
        print(f'MISS {line}')
    for backend in report['backends']:
        if backend['backend'] == 's3':
            print('\nS3 requests per listing (LIST/GET):')
            for query in report['queries']:
                per_size = {s: backend['sizes'][s]['queries'][query]['requests'] for s in sizes}
                cells = '  '.join(
                    f'{s}: {r.get("ListObjectsV2", 0)}/{r.get("GetObject", 0)}' for s, r in per_size.items()
                )
                print(f'  {query:<18} {cells}')
        if backend['backend'] == 'sqlite':
            print('\nSQLite query plans:')
            for query in report['queries']:
                print(f'  {query:<18} {backend["sizes"][sizes[-1]]["queries"][query]["plan"]}')
    print('\nwrites:')
    for backend in report['backends']:
        for size, data in backend['sizes'].items():
            write = data['write']
            where = f'{backend["backend"]:<7} to {size:>7}'
            print(f'  {where}: {write["runs"]:>6} runs in {write["seconds"]:>6.1f} s  ({write["method"]})')
    print(f'\ntotal {report["seconds_total"]:.0f} s')


@contextmanager
def directory() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix='agentledger-scale-') as name:
        yield Path(name)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument('--sizes', type=int, nargs='+', default=[1000, 10_000, 100_000], help='runs in the ledger')
    parser.add_argument('--backends', nargs='+', choices=['sqlite', 's3'], default=['sqlite', 's3'])
    parser.add_argument('--agents', type=int, default=4)
    parser.add_argument('--repeat', type=int, default=15, help='timed calls per listing (the median is reported)')
    parser.add_argument(
        '--ledger-path-budget', type=float, default=120.0, help='S3: seconds the ledger path may take for the rest'
    )
    parser.add_argument('--no-write', action='store_true', help='print only; do not write the results file')
    args = parser.parse_args()
    sizes = sorted(args.sizes)

    started = time.perf_counter()
    specs = make_specs(sizes[-1], args.agents)
    qs = queries('agent-3')
    backends: list[dict[str, Any]] = []
    runners: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {}
    with directory() as tmp:
        runners['sqlite'] = lambda: run_sqlite(specs, sizes, qs, args.repeat, tmp)
        runners['s3'] = lambda: run_s3(specs, sizes, qs, args.repeat, args.ledger_path_budget)
        for name in args.backends:
            backend_started = time.perf_counter()
            backends.append(await runners[name]())
            backends[-1]['seconds'] = round(time.perf_counter() - backend_started, 1)
    report: dict[str, Any] = {
        'sizes': sizes,
        'limit': LIMIT,
        'agents': args.agents,
        'statuses': dict(SHARES),
        'filtered_agent': 'agent-3',
        'repeat': args.repeat,
        'target_ratio': TARGET_RATIO,
        'queries': [q.name for q in qs],
        'calls': {q.name: q.call for q in qs},
        'cpus': os.cpu_count(),
        's3_server': 'SeaweedFS (weed mini, tests/helpers/s3_server.py) on loopback, separate process',
        'backends': backends,
    }
    report['results'] = verdicts(backends, sizes, qs)
    by_name = {q.name: q for q in qs}
    report['missed'] = [
        explain(next(b for b in backends if b['backend'] == row['backend']), row, by_name[row['query']], sizes)
        for row in report['results']
        if not row['pass']
    ]
    report['seconds_total'] = round(time.perf_counter() - started, 1)
    print_table(report)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + '\n')


if __name__ == '__main__':
    asyncio.run(main())
