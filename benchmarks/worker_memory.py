"""A worker with 200 agent runs in flight: its memory per in-flight run, and the ledger events/s of the batch.

One Temporal dev server (`agentledger.cli.start_dev_server`) and one worker PROCESS (this file with
`--serve`): `agentledger.LedgerPlugin` on a SQLite ledger, serving one pydantic-ai agent whose model
is scripted (`FunctionModel`): its first request waits (an `asyncio.sleep` loop) until the benchmark
releases it, then asks for one tool call; its second answers. So every run started stays in flight,
its model request waiting in the worker, until all of them are.

The worker's settings, so that nothing caps the runs in flight: `max_concurrent_activities` twice the
runs (each run holds one model-request activity while it waits; the default is 100), the default
`max_concurrent_workflow_tasks` (100: a workflow waiting on its activity holds no workflow task slot)
and `max_cached_workflows` (1000, above the runs: none is evicted and replayed), the default
workflow sandbox, and a 5-minute start-to-close timeout for the agent's activities (the default
60 s could expire while the first runs wait for the last). The benchmark checks that every run is
in flight at once: the worker counts the model requests waiting, and the ledger's `running` runs
are counted while they wait.

Phases: the worker starts (RSS `fresh`); 2 warm-up runs complete, so that one-time costs (imports,
the sandbox's first workflow, the ledger's connections) are paid (RSS `idle`); `--runs` runs are
started at once through `agentledger.start`; once all of them wait, RSS is sampled for a few seconds
(`peak`, the largest sample while all runs wait), then they are released and awaited; a few seconds
later RSS is sampled again (`after`). RSS is the worker process's `VmRSS` from `/proc/<pid>/status`
(and `VmHWM`, its high-water mark), sampled every 0.25 s. Memory per in-flight run is
`(peak - idle) / runs`. Events/s is the events the ledger holds for the batch's runs (counted from the
ledger afterwards) over the batch's active time: from the first start until all runs wait, plus from
their release until the last result (the hold in between, when the worker writes nothing, is not
counted; over the whole wall time it is reported too).

Prints a table and writes `benchmarks/results/worker_memory.json`.

    .venv/bin/python benchmarks/worker_memory.py --runs 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.workflow import ActivityConfig

import agentledger
from agentledger import SqliteLedger
from agentledger.cli import start_dev_server

RESULTS = Path(__file__).parent / 'results' / 'worker_memory.json'
AGENT = 'waiter'
TASK_QUEUE = 'bench-memory'
WARMUP_RUNS = 2
HOLD_S = 3.0
SAMPLE_S = 0.25
ACTIVITY_TIMEOUT = timedelta(minutes=5)


# --- the worker process ---------------------------------------------------------------------------


def make_agent(state: Path) -> Agent[None, str]:
    """The scripted agent: the first model request waits until `state/release-<batch>` exists, then calls a tool."""
    waiting = 0
    releases: dict[str, asyncio.Event] = {}

    def count(change: int) -> None:
        nonlocal waiting
        waiting += change
        (state / 'waiting.tmp').write_text(str(waiting))
        os.replace(state / 'waiting.tmp', state / 'waiting')

    async def poll(batch: str, event: asyncio.Event) -> None:
        while not (state / f'release-{batch}').exists():
            await asyncio.sleep(0.1)
        event.set()

    async def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if any(isinstance(m, ModelResponse) for m in messages):
            return ModelResponse(parts=[TextPart('Your order shipped on Monday.')])
        prompt = next(
            part.content
            for m in messages
            if isinstance(m, ModelRequest)
            for part in m.parts
            if isinstance(part, UserPromptPart)
        )
        batch = str(prompt).split(':', 1)[0]
        if batch not in releases:
            releases[batch] = asyncio.Event()
            asyncio.get_running_loop().create_task(poll(batch, releases[batch]))
        count(+1)
        try:
            await releases[batch].wait()
        finally:
            count(-1)
        return ModelResponse(parts=[ToolCallPart('lookup', {'order': 1234})])

    durability = TemporalDurability(activity_config=ActivityConfig(start_to_close_timeout=ACTIVITY_TIMEOUT))
    agent = Agent(FunctionModel(script), name=AGENT, capabilities=[durability])

    @agent.tool_plain
    def lookup(order: int) -> str:
        return f'order {order}: shipped on Monday, arriving Thursday'

    return agent


async def serve(config: dict[str, Any]) -> None:
    """The worker: serves the agent until its stdin closes."""
    agent = make_agent(Path(config['state']))
    ledger = SqliteLedger(config['ledger'])
    client = await Client.connect(config['host'], plugins=[agentledger.LedgerPlugin(ledger, agents=[agent])])
    worker = Worker(client, task_queue=TASK_QUEUE, max_concurrent_activities=config['max_concurrent_activities'])
    async with worker:
        print('ready', flush=True)
        await asyncio.to_thread(sys.stdin.read)


# --- the benchmark --------------------------------------------------------------------------------


def memory(pid: int) -> tuple[int, int]:
    """The process's resident set (`VmRSS`) and its high-water mark (`VmHWM`), in bytes."""
    fields: dict[str, int] = {}
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        name, _, value = line.partition(':')
        if name in ('VmRSS', 'VmHWM'):
            fields[name] = int(value.split()[0]) * 1024
    return fields['VmRSS'], fields['VmHWM']


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time so far."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


class Sampler:
    """Samples the worker's RSS every `SAMPLE_S` seconds, with the number of model requests waiting."""

    def __init__(self, pid: int, state: Path) -> None:
        self.pid = pid
        self.state = state
        self.samples: list[tuple[float, int, int]] = []
        self._task: asyncio.Task[None] | None = None

    def waiting(self) -> int:
        try:
            return int((self.state / 'waiting').read_text() or 0)
        except FileNotFoundError:
            return 0

    async def _run(self) -> None:
        while True:
            self.samples.append((time.perf_counter(), memory(self.pid)[0], self.waiting()))
            await asyncio.sleep(SAMPLE_S)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def between(self, start: float, end: float) -> list[int]:
        return [rss for at, rss, _ in self.samples if start <= at <= end]


async def settle(sampler: Sampler, seconds: float) -> int:
    """The median RSS over the next `seconds`."""
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    return int(statistics.median(sampler.between(start, time.perf_counter())))


async def running_runs(ledger_path: Path, batch: set[str]) -> int:
    """How many of the batch's runs the ledger lists as `running`, paging through `runs(status='running')`."""
    found = 0
    async with SqliteLedger(ledger_path, read_only=True) as ledger:
        before: str | None = None
        while True:
            page = await ledger.runs(status='running', limit=100, before=before)
            found += sum(1 for run in page if run.run_id in batch)
            if len(page) < 100:
                return found
            before = page[-1].run_id


async def count_events(ledger_path: Path, run_ids: Sequence[str]) -> int:
    async with SqliteLedger(ledger_path, read_only=True) as ledger:
        return sum([len(await ledger.events(run_id)) for run_id in run_ids])


async def start_batch(client: Client, batch: str, runs: int) -> list[agentledger.AgentRunHandle[str]]:
    return list(
        await asyncio.gather(
            *(
                agentledger.start(client, AGENT, f'{batch}: where is order {n}?', task_queue=TASK_QUEUE)
                for n in range(runs)
            )
        )
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument('--runs', type=int, default=200, help='runs in flight at once')
    parser.add_argument('--serve', metavar='CONFIG', help=argparse.SUPPRESS)
    parser.add_argument('--no-write', action='store_true', help='print only; do not write the results file')
    args = parser.parse_args()
    if args.serve:
        await serve(json.loads(Path(args.serve).read_text()))
        return

    began = time.perf_counter()
    env = await start_dev_server()
    try:
        with tempfile.TemporaryDirectory(prefix='agentledger-memory-') as tmp:
            report = await measure(env.client.service_client.config.target_host, Path(tmp), args.runs)
    finally:
        await env.shutdown()
    report['seconds_total'] = round(time.perf_counter() - began, 1)
    print_report(report)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + '\n')


async def measure(host: str, tmp: Path, runs: int) -> dict[str, Any]:
    state = tmp / 'state'
    state.mkdir()
    ledger_path = tmp / 'runs.db'
    settings = {'max_concurrent_activities': 2 * runs}
    config = tmp / 'worker.json'
    config.write_text(json.dumps({'host': host, 'state': str(state), 'ledger': str(ledger_path), **settings}))
    log = (tmp / 'worker.log').open('wb')
    worker = subprocess.Popen(
        [sys.executable, __file__, '--serve', str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        env={
            **os.environ,
            'PYTHONPATH': os.pathsep.join(
                filter(None, [str(Path(__file__).parent.parent), os.environ.get('PYTHONPATH')])
            ),
        },
    )
    assert worker.stdout is not None and worker.stdin is not None
    sampler = Sampler(worker.pid, state)
    try:
        line = await asyncio.to_thread(worker.stdout.readline)
        if line.strip() != b'ready':
            raise RuntimeError(f'the worker did not start:\n{(tmp / "worker.log").read_text()[-3000:]}')
        sampler.start()
        rss_fresh = await settle(sampler, 2.0)

        client = await Client.connect(
            host, plugins=[agentledger.LedgerPlugin(SqliteLedger(ledger_path), agents=[make_agent(state)])]
        )
        (state / 'release-warmup').touch()
        for handle in await start_batch(client, 'warmup', WARMUP_RUNS):
            await handle.result()
        rss_idle = await settle(sampler, 3.0)

        started, cpu_started = time.perf_counter(), cpu_seconds(worker.pid)
        handles = await start_batch(client, 'batch', runs)
        started_all = time.perf_counter()
        while sampler.waiting() < runs:
            if time.perf_counter() - started > 180:
                raise RuntimeError(f'only {sampler.waiting()} of {runs} runs were in flight after 180 s')
            await asyncio.sleep(0.1)
        all_waiting = time.perf_counter()
        batch_ids = {handle.run_id for handle in handles}
        running = await running_runs(ledger_path, batch_ids)
        events_waiting = await count_events(ledger_path, sorted(batch_ids))
        await asyncio.sleep(max(0.0, HOLD_S - (time.perf_counter() - all_waiting)))
        held_waiting = sampler.waiting()
        hold_end = time.perf_counter()
        peak_samples = sampler.between(all_waiting, hold_end)
        rss_peak = max(peak_samples)

        released = time.perf_counter()
        (state / 'release-batch').touch()
        results = await asyncio.gather(*(handle.result() for handle in handles))
        finished, worker_cpu = time.perf_counter(), cpu_seconds(worker.pid) - cpu_started
        rss_after = await settle(sampler, 3.0)
        rss_batch_max = max(sampler.between(started, time.perf_counter()))
        _, high_water = memory(worker.pid)
        events = await count_events(ledger_path, sorted(batch_ids))
    finally:
        await sampler.stop()
        worker.stdin.close()
        try:
            await asyncio.to_thread(worker.wait, 30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()

    if any(result.output != 'Your order shipped on Monday.' for result in results):
        raise AssertionError('a run did not end with the scripted answer')
    active_s = (all_waiting - started) + (finished - released)
    wall_s = finished - started
    return {
        'runs': runs,
        'worker': {
            'process': 'one worker process, LedgerPlugin on SqliteLedger, default sandboxed workflow runner',
            'max_concurrent_activities': settings['max_concurrent_activities'],
            'max_concurrent_workflow_tasks': 'default (100)',
            'max_cached_workflows': 'default (1000)',
            'activity_start_to_close_timeout_s': ACTIVITY_TIMEOUT.total_seconds(),
        },
        'in_flight': {
            'model_requests_waiting': held_waiting,
            'ledger_running': running,
        },
        'rss_bytes': {
            'fresh': rss_fresh,
            'idle': rss_idle,
            'peak': rss_peak,
            'after': rss_after,
            'batch_max': rss_batch_max,
            'high_water_mark': high_water,
        },
        'rss_per_in_flight_run_bytes': round((rss_peak - rss_idle) / runs),
        'rss_per_in_flight_run_from_fresh_bytes': round((rss_peak - rss_fresh) / runs),
        'seconds': {
            'start_all': round(started_all - started, 2),
            'until_all_in_flight': round(all_waiting - started, 2),
            'held': round(released - all_waiting, 2),
            'release_to_done': round(finished - released, 2),
            'active': round(active_s, 2),
            'wall': round(wall_s, 2),
        },
        'events': events,
        'events_per_run': round(events / runs, 1),
        'events_until_all_in_flight': events_waiting,
        'events_per_s_active': round(events / active_s, 1),
        'events_per_s_wall': round(events / wall_s, 1),
        'worker_cpu_s': round(worker_cpu, 2),
        'cpus': os.cpu_count(),
    }


def print_report(report: dict[str, Any]) -> None:
    mib = 2**20
    rss = report['rss_bytes']
    seconds = report['seconds']
    flight = report['in_flight']
    rows = [
        ('runs started at once', f'{report["runs"]}'),
        ('model requests waiting', f'{flight["model_requests_waiting"]} (held in the worker)'),
        ('runs running in the ledger', f'{flight["ledger_running"]} (while held)'),
        ('worker RSS fresh', f'{rss["fresh"] / mib:.1f} MiB'),
        ('worker RSS idle', f'{rss["idle"] / mib:.1f} MiB (after {WARMUP_RUNS} warm-up runs)'),
        ('worker RSS peak', f'{rss["peak"] / mib:.1f} MiB (all runs in flight)'),
        ('worker RSS after', f'{rss["after"] / mib:.1f} MiB (high-water mark {rss["high_water_mark"] / mib:.1f} MiB)'),
        ('RSS per in-flight run', f'{report["rss_per_in_flight_run_bytes"] / 1024:.0f} KiB ((peak - idle) / runs)'),
        ('ledger events', f'{report["events"]} ({report["events_per_run"]} per run)'),
        ('events/s (active)', f'{report["events_per_s_active"]:.0f} over {seconds["active"]} s'),
        (
            '  of which',
            f'{seconds["until_all_in_flight"]} s until all in flight, {seconds["release_to_done"]} s to finish',
        ),
        ('worker CPU over the batch', f'{report["worker_cpu_s"]} s'),
        ('events/s (wall)', f'{report["events_per_s_wall"]:.0f} over {seconds["wall"]} s ({seconds["held"]} s held)'),
        ('total', f'{report["seconds_total"]:.0f} s'),
    ]
    for name, value in rows:
        print(f'{name:<28} {value}')


if __name__ == '__main__':
    asyncio.run(main())
