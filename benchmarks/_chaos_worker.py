"""The worker process of the chaos harness (`benchmarks/chaos.py`): `python benchmarks/_chaos_worker.py CONFIG.json`.

It serves the chaos agent with `LedgerPlugin` and fires the plan's faults where the plan says.
The supervisor in `chaos.py` restarts it whenever it dies: it keeps a spare process that has
imported and built everything and waits for `go` on stdin before it connects. The fault points:

- `before_tool`: `_Inner`, an activity interceptor *inside* the plugin's (after it in the
  worker's interceptor list), just before pydantic-ai's tool activity body runs;
- `after_provider`: `_Outer`, an activity interceptor *outside* the plugin's, when a
  model-request activity has returned the provider's answer through every interceptor inside it
  (ledger events, journal) and the worker has not yet reported it to Temporal;
- `after_ledger_write`: `FaultyStore.write_events` (a subclass of the real backend store), right
  after the batch holding the step's `*_completed` event is stored; for the baselines, right after
  their own row is committed;
- `in_txn`: inside the storage transaction that writes the step's `*_completed` event: SQLite,
  after the write's statements ran inside `BEGIN IMMEDIATE` and before `COMMIT`; S3, after the
  run's log object holding the event is assembled and before it is sent; the baselines,
  between their `INSERT` and `COMMIT`;
- `in_seal`: `FaultyStore.write_seal`, inside the seal activity after its acceptances, events and
  final snapshot were written and before the run record is sealed;
- `zombie`: the effect tool's body ignores cancellation, sleeps past its start-to-close timeout
  (Temporal retries it meanwhile) and then performs its effect and returns late;
- `in_effect`: inside the effect itself (`act(key)` of `agentledger.once`, or the plain effect of the
  baselines), after the target committed the effect and before `act` returns.

Actions: `exit` (`os._exit`, the plug pulled), `raise` (an unexpected exception), `hang` (stall
for longer than the activity's start-to-close timeout, then carry on: the attempt finishes late).
A fault is claimed in a small SQLite file before it acts, so a restarted worker never fires it again.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from _chaos_check import step_kind
from pydantic_ai import Agent, RunContext
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage
from temporalio import activity
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.plugin import SimplePlugin
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor, Worker
from temporalio.workflow import ActivityConfig

import agentledger
import agentledger.model
from agentledger import Ledger

ACTIVITY_TIMEOUT_S = 4.0
"""Start-to-close timeout of the agent's activities: a killed or hung attempt is retried after it."""
HANG_S = ACTIVITY_TIMEOUT_S + 2.0
"""How long `hang` stalls, and how long a zombie outlives its attempt's start (both past the timeout)."""
PRICE_PER_CALL_USD = 0.005
"""What the fake provider bills per model call."""
PROVIDER_LATENCY_S = 0.5
"""How long the fake provider takes to answer (real ones take seconds); the call is billed when it answers.

Without it, a worker killed anywhere during a model request would almost always kill it after the
answer, which overstates what a crash costs next to a real provider."""
AGENT_NAME = 'chaos'


class ChaosFault(RuntimeError):
    """The exception a `raise` fault raises."""


@dataclass(frozen=True)
class Fault:
    """One planned fault: where (run, point, activity), what (action), and its id in the fired table."""

    id: str
    run: int
    point: str
    action: str
    activity_id: str | None = None


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    connection.execute('PRAGMA journal_mode=WAL')
    return connection


def run_index(workflow_id: str) -> int | None:
    """The plan's run index of a chaos workflow id (`<prefix>-<index>`), or `None` for anything else."""
    tail = workflow_id.rsplit('-', 1)[-1]
    return int(tail) if tail.isdigit() else None


class Faults:
    """The plan's faults, matched by (run index, point, activity id), each fired once (claimed durably)."""

    def __init__(self, plan: Sequence[Fault], fired_db: str) -> None:
        self._by_place = {(f.run, f.point, f.activity_id): f for f in plan}
        self._db = fired_db
        with _connect(fired_db) as connection:
            connection.execute('CREATE TABLE IF NOT EXISTS fired (id TEXT PRIMARY KEY, pid INTEGER, at REAL)')

    def match(self, workflow_id: str, point: str, activity_id: str | None = None) -> Fault | None:
        """The fault planned at this place, if any (fired or not)."""
        run = run_index(workflow_id)
        return None if run is None else self._by_place.get((run, point, activity_id))

    def claim(self, fault: Fault) -> bool:
        """Record `fault` as fired; false if it already was (by this worker or one before it)."""
        connection = _connect(self._db)
        try:
            cursor = connection.execute(
                'INSERT OR IGNORE INTO fired (id, pid, at) VALUES (?, ?, ?)', (fault.id, os.getpid(), time.time())
            )
            return cursor.rowcount == 1
        finally:
            connection.close()

    def _strike(self, fault: Fault | None) -> bool:
        """Claim `fault` and act out `exit` or `raise`; whether the caller must now hang."""
        if fault is None or not self.claim(fault):
            return False
        _log(f'fault {fault.id}: {fault.action} at {fault.point} (run {fault.run}, activity {fault.activity_id})')
        if fault.action == 'exit':
            os._exit(17)
        if fault.action == 'raise':
            raise ChaosFault(f'chaos fault {fault.id} at {fault.point}')
        return True

    async def fire(self, fault: Fault | None) -> None:
        """Act out `fault` if it has not fired yet (on the event loop)."""
        if self._strike(fault):
            await asyncio.sleep(HANG_S)

    def fire_sync(self, fault: Fault | None) -> None:
        """Act out `fault` if it has not fired yet (in a worker thread)."""
        if self._strike(fault):
            time.sleep(HANG_S)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the fake targets: the provider's bill and the effects, in a SQLite file of their own ------------


class Targets:
    """The systems the agent acts on: a provider that bills each call, and a table of performed effects."""

    def __init__(self, path: str) -> None:
        self._path = path
        with _connect(path) as connection:
            connection.execute(
                'CREATE TABLE IF NOT EXISTS billed '
                '(workflow_id TEXT, activity_id TEXT, attempt INTEGER, asked REAL, at REAL)'
            )
            connection.execute(
                'CREATE TABLE IF NOT EXISTS effects '
                '(logical TEXT, key TEXT, workflow_id TEXT, attempt INTEGER, result TEXT, at REAL)'
            )

    def bill(self, workflow_id: str, activity_id: str, attempt: int, asked: float) -> None:
        """The provider answered one call asked at `asked` (epoch seconds): it is paid for."""
        connection = _connect(self._path)
        try:
            connection.execute(
                'INSERT INTO billed VALUES (?, ?, ?, ?, ?)', (workflow_id, activity_id, attempt, asked, time.time())
            )
        finally:
            connection.close()

    def perform(self, logical: str, key: str, workflow_id: str, attempt: int, result: str) -> None:
        """Perform one effect: a committed row per execution, named by its logical identity."""
        connection = _connect(self._path)
        try:
            connection.execute(
                'INSERT INTO effects VALUES (?, ?, ?, ?, ?, ?)',
                (logical, key, workflow_id, attempt, result, time.time()),
            )
        finally:
            connection.close()

    def lookup(self, key: str) -> str | None:
        """What the target did under idempotency key `key`: the result, or `None` if nothing."""
        connection = _connect(self._path)
        try:
            row = connection.execute('SELECT result FROM effects WHERE key = ? LIMIT 1', (key,)).fetchone()
            return None if row is None else str(row[0])
        finally:
            connection.close()


# --- the agent --------------------------------------------------------------------------------------


def make_agent(steps: int, faults: Faults, targets: Targets, *, use_once: bool) -> Agent[None, str]:
    """A `steps`-request agent: each request but the last calls the `effect` tool once, then it answers.

    With `use_once` (and an agentledger that has it) the tool acts through `agentledger.once`;
    otherwise it acts directly, as a tool without agentledger's protection does.
    """

    async def provider(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        asked = time.time()
        await asyncio.sleep(PROVIDER_LATENCY_S)
        current = activity.info()
        await asyncio.to_thread(targets.bill, current.workflow_id or '', current.activity_id, current.attempt, asked)
        done = sum(1 for m in messages if isinstance(m, ModelResponse))
        usage = RequestUsage(input_tokens=100 + 10 * done, output_tokens=20)
        if done + 1 >= steps:
            return ModelResponse(parts=[TextPart(f'done after {done} effects')], usage=usage)
        # No tool_call_id given: pydantic-ai makes a random one, as a real provider would.
        return ModelResponse(parts=[ToolCallPart('effect', {'op': done + 1})], usage=usage)

    config: ActivityConfig = {
        'start_to_close_timeout': timedelta(seconds=ACTIVITY_TIMEOUT_S),
        'retry_policy': RetryPolicy(
            initial_interval=timedelta(milliseconds=200), backoff_coefficient=1.5, maximum_interval=timedelta(seconds=1)
        ),
    }
    agent = Agent(FunctionModel(provider), name=AGENT_NAME, capabilities=[TemporalDurability(activity_config=config)])
    once = getattr(agentledger, 'once', None) if use_once else None

    @agent.tool
    async def effect(ctx: RunContext[None], op: int) -> str:
        """Perform effect number `op` of this run at the target, once."""
        current = activity.info()
        workflow_id = current.workflow_id or ''
        zombie = faults.match(workflow_id, 'zombie', current.activity_id)
        if zombie is not None and faults.claim(zombie):
            _log(f'fault {zombie.id}: zombie (run {zombie.run}, activity {zombie.activity_id})')
            await _outlive(HANG_S)
        logical = f'{workflow_id}#{op}'

        async def act(key: str) -> str:
            result = f'effect {op} done'
            await asyncio.to_thread(targets.perform, logical, key, workflow_id, current.attempt, result)
            await faults.fire(faults.match(workflow_id, 'in_effect', current.activity_id))
            return result

        async def reconcile(key: str) -> str | None:
            return await asyncio.to_thread(targets.lookup, key)

        if once is not None:
            result: str = await once(ctx, 'effect', act, reconcile=reconcile)
            return result
        # Without agentledger.once (the baselines, or an agentledger without it) the effect is performed
        # as it is: at least once.
        return await act(agentledger.idempotency_key(ctx))

    return agent


async def _outlive(seconds: float) -> None:
    """Sleep `seconds`, ignoring cancellation: an attempt that will not die when Temporal gives up on it."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            await asyncio.sleep(left)
        except asyncio.CancelledError:
            continue


# --- fault interceptors ----------------------------------------------------------------------------


class _FaultInterceptor(Interceptor):
    def __init__(self, faults: Faults, outer: bool) -> None:
        self._faults = faults
        self._outer = outer

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return (_Outer if self._outer else _Inner)(next, self._faults)


class _Inner(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, faults: Faults) -> None:
        super().__init__(next)
        self._faults = faults

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        if step_kind(info.activity_type) == 'tool_call':
            await self._faults.fire(self._faults.match(info.workflow_id or '', 'before_tool', info.activity_id))
        return await super().execute_activity(input)


class _Outer(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, faults: Faults) -> None:
        super().__init__(next)
        self._faults = faults

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        info = activity.info()
        if step_kind(info.activity_type) == 'model_request':
            await self._faults.fire(self._faults.match(info.workflow_id or '', 'after_provider', info.activity_id))
        return result


# --- the ledger under test, with faults inside its writes --------------------------------------------

_txn_fault: contextvars.ContextVar[Fault | None] = contextvars.ContextVar('chaos_txn_fault', default=None)


def faulty_store(base: type[Any], faults: Faults, points: frozenset[str]) -> type[Any]:
    """A subclass of the backend store `base` whose writes fire the faults of `points`.

    `points` is a subset of `after_ledger_write`, `in_txn` and `in_seal`.
    """

    def completed_fault(events: Sequence[agentledger.model.StepEvent], point: str) -> Fault | None:
        if point not in points:
            return None
        for event in events:
            if event.kind.endswith('_completed') and event.step_kind is not None:
                fault = faults.match(event.workflow_id, point, event.activity_id)
                if fault is not None:
                    return fault
        return None

    class FaultyStore(base):  # type: ignore[valid-type,misc]
        async def write_events(self, events: Sequence[agentledger.model.StepEvent]) -> None:
            token = _txn_fault.set(completed_fault(events, 'in_txn'))
            try:
                await super().write_events(events)
            finally:
                _txn_fault.reset(token)
            await faults.fire(completed_fault(events, 'after_ledger_write'))

        async def write_seal(self, seal: Any, event: Any) -> bool:
            if 'in_seal' in points:
                await faults.fire(faults.match(seal.workflow_id, 'in_seal'))
            return await super().write_seal(seal, event)

        # SQLite: the write runs in the writer task's `BEGIN IMMEDIATE` transaction; the fault fires
        # after the write's statements and before `COMMIT`.
        async def _submit(self, write: Callable[[Any], Awaitable[None]]) -> None:
            fault = _txn_fault.get()
            if fault is None:
                await super()._submit(write)
                return

            async def write_then_fault(connection: Any) -> None:
                await write(connection)
                await faults.fire(fault)

            await super()._submit(write_then_fault)

        # S3: the log object holding the events is assembled and its slot chosen, not sent yet. (The
        # task that writes it was started by an append of this write, so it sees the write's fault.)
        async def _write_slot(self, run_id: str, cursor: Any, entries: list[Any]) -> int:
            await faults.fire(_txn_fault.get())
            slot: int = await super()._write_slot(run_id, cursor, entries)
            return slot

    FaultyStore.__name__ = f'Faulty{base.__name__}'
    return FaultyStore


# --- the baselines: plain rows written by an activity interceptor ----------------------------------


class BaselineRows(Interceptor):
    """A ledger as a plain table: `naive` inserts one row per attempt end, `upsert` keeps one row per activity."""

    def __init__(self, path: str, mode: str, faults: Faults) -> None:
        self._path = path
        self._mode = mode
        self._faults = faults
        with _connect(path) as connection:
            connection.execute(
                'CREATE TABLE IF NOT EXISTS rows (workflow_id TEXT, activity_id TEXT, activity_type TEXT, '
                'attempt INTEGER, status TEXT, at REAL, UNIQUE (workflow_id, activity_id, attempt, at))'
            )
            connection.execute(
                'CREATE TABLE IF NOT EXISTS upserted (workflow_id TEXT, activity_id TEXT, activity_type TEXT, '
                'attempt INTEGER, status TEXT, at REAL, PRIMARY KEY (workflow_id, activity_id))'
            )

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BaselineActivity(next, self)

    def write(self, workflow_id: str, activity_id: str, activity_type: str, attempt: int, status: str) -> None:
        row = (workflow_id, activity_id, activity_type, attempt, status, time.time())
        connection = _connect(self._path)
        try:
            connection.execute('BEGIN IMMEDIATE')
            try:
                if self._mode == 'naive':
                    connection.execute('INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?)', row)
                else:
                    connection.execute(
                        'INSERT INTO upserted VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workflow_id, activity_id) '
                        'DO UPDATE SET attempt = excluded.attempt, status = excluded.status, at = excluded.at',
                        row,
                    )
                if status == 'completed':
                    self._faults.fire_sync(self._faults.match(workflow_id, 'in_txn', activity_id))
                connection.execute('COMMIT')
            except BaseException:
                connection.execute('ROLLBACK')
                raise
        finally:
            connection.close()


class _BaselineActivity(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, rows: BaselineRows) -> None:
        super().__init__(next)
        self._rows = rows

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        if step_kind(info.activity_type) is None:
            return await super().execute_activity(input)
        where = (info.workflow_id or '', info.activity_id, info.activity_type, info.attempt)
        try:
            result = await super().execute_activity(input)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self._rows.write, *where, 'failed'))
            raise
        await asyncio.to_thread(self._rows.write, *where, 'completed')
        faults = self._rows._faults
        await faults.fire(faults.match(where[0], 'after_ledger_write', where[1]))
        return result


# --- the process ---------------------------------------------------------------------------------


def build_ledger(config: dict[str, Any], faults: Faults) -> Ledger:
    """The ledger the plugin writes: over the real backend's store (a faulty subclass)."""
    from agentledger.ledger.backends.sqlite import SqliteStore

    if config['variant'] in ('naive', 'upsert'):
        # The baselines' rows are a table of their own. The workflow still needs the plugin's ledger
        # (model requests carry references to its snapshots), kept in SQLite and not checked; only
        # the seal's fault fires in it.
        return Ledger(faulty_store(SqliteStore, faults, frozenset({'in_seal'}))(config['ledger_path']))
    points = frozenset({'after_ledger_write', 'in_txn', 'in_seal'})
    if config['backend'] == 'sqlite':
        return Ledger(faulty_store(SqliteStore, faults, points)(config['ledger_path']))
    from agentledger.ledger.backends.s3 import S3Store

    return Ledger(faulty_store(S3Store, faults, points)(config['ledger_url'], **config['s3_options']))


async def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    faults = Faults([Fault(**f) for f in config['plan']], config['fired_db'])
    targets = Targets(config['targets_db'])
    agent = make_agent(config['steps'], faults, targets, use_once=config['variant'] == 'agentledger')
    ledger = build_ledger(config, faults)
    plugin = agentledger.LedgerPlugin(ledger, agents=[agent], **config['plugin_options'])
    # Client plugins configure the worker in order, each appending its interceptors: this one comes
    # after LedgerPlugin's, so it runs inside it (closer to the activity body).
    inner = SimplePlugin('chaos.inner', interceptors=[_FaultInterceptor(faults, outer=False)])
    # A warm spare: imported and built, it waits for the supervisor's word before it takes any work.
    if await asyncio.to_thread(sys.stdin.readline) != 'go\n':
        return
    client = await Client.connect(config['host'], plugins=[plugin, inner])
    # Interceptors given to the worker come before the plugins' in the list: they run outside them.
    outer: list[Interceptor] = [_FaultInterceptor(faults, outer=True)]
    if config['variant'] in ('naive', 'upsert'):
        outer.append(BaselineRows(config['baseline_db'], config['variant'], faults))
    worker = Worker(
        client,
        task_queue=config['task_queue'],
        interceptors=outer,
        # A dead worker's sticky queue hands its workflow tasks back after this, not after 10 s.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=1),
    )
    async with worker:
        print('ready', flush=True)
        await asyncio.Event().wait()


if __name__ == '__main__':
    asyncio.run(main(sys.argv[1]))
