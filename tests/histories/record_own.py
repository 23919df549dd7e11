"""Record the golden histories of a user's own workflow (`python -m tests.histories.record_own`).

`BriefingWorkflow` (`tests/histories/own_workflows.py`) calls durable agents between its own activities
and a signal. Its histories are recorded as a pydantic-ai user's worker writes them, WITHOUT the ledger
plugin (pydantic-ai's `PydanticAIPlugin` on the client, `AgentPlugin` per agent on the worker):

- `plain-complete`: run to its end;
- `plain-waiting`: stopped at the signal wait, after its first agent run (a workflow in flight), and
  `upgraded`: the same workflow, whose worker then stopped and one WITH `LedgerPlugin` took over its
  task queue, signalled it and ran it to its end;
- `plain-mid-run` and `upgraded-mid-run`: the same, with the worker stopped in the middle of the first
  agent run (while one of its tool activities runs);
- `with-plugin`: run to its end on a worker with `LedgerPlugin` from the start.

Each history is written to `tests/histories/own/` as `<scenario>-<n>.json`, the workflow's own first and
then those of the child workflows its tool calls started, in the format of `tests/histories/record.py`
(workflow id, the releases it was recorded with, `WorkflowHistory.to_json()`, machine names removed).
Record with the oldest supported pydantic-ai (`.venv-oldest/bin/python -m tests.histories.record_own`):
the tests replay them with the plugin, on the newest too (`tests/test_own_workflow_histories.py`). The
plugin keeps every payload inline (no payload threshold), so the histories replay without the ledger they
were recorded with.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pydantic_ai.durable_exec.temporal import AgentPlugin, PydanticAIPlugin
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.converter import PayloadConverter
from temporalio.worker import Replayer, Worker

from agentledger import Ledger, LedgerPlugin, MemoryLedger
from agentledger._compat import SUPPORTED_PYDANTIC_AI
from agentledger.cli import start_dev_server

from .own_workflows import AGENTS, BriefingWorkflow, file_report, held, holding, prepare_brief
from .record import anonymous

HERE = Path(__file__).parent / 'own'
SCENARIOS = ('plain-complete', 'plain-waiting', 'upgraded', 'plain-mid-run', 'upgraded-mid-run', 'with-plugin')
TOPIC = 'tides'
NOTE = 'go on'
EXPECTED_RESULT = [
    'archived: brief on tides (3 words)',
    'done',
    'done',
    'archived: go on: archived: brief on tides (3 words) (8 words)',
    'filed 4 outputs',
]
"""What `BriefingWorkflow.run(TOPIC)` returns once signalled with `NOTE`."""
PLAIN_WORKER = 'worker-without-ledger-plugin'
LEDGER_WORKER = 'worker-with-ledger-plugin'
"""The workers' identities, in the histories."""


async def plain_client(target_host: str) -> Client:
    """A client as a pydantic-ai user has it: pydantic-ai's plugin, no ledger."""
    return await Client.connect(target_host, plugins=[PydanticAIPlugin()])


@asynccontextmanager
async def plain_worker(client: Client, task_queue: str) -> AsyncIterator[Worker]:
    """A worker of `BriefingWorkflow` without the ledger plugin: pydantic-ai's `AgentPlugin` per agent."""
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BriefingWorkflow],
        activities=[prepare_brief, file_report],
        plugins=[AgentPlugin(agent) for agent in AGENTS],
        identity=PLAIN_WORKER,
    ) as worker:
        yield worker


@asynccontextmanager
async def ledger_worker(client: Client, task_queue: str) -> AsyncIterator[Worker]:
    """A worker of `BriefingWorkflow` whose client has `LedgerPlugin` (which serves the agents)."""
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BriefingWorkflow],
        activities=[prepare_brief, file_report],
        identity=LEDGER_WORKER,
    ) as worker:
        yield worker


def ledger_replayer(ledger: Ledger) -> Replayer:
    """A replayer of `BriefingWorkflow` with `LedgerPlugin` alone, as a worker with the plugin runs it.

    `LedgerPlugin` registers the agents' tool child workflows on a replayer too, which the child
    histories need.
    """
    return Replayer(workflows=[BriefingWorkflow], plugins=[LedgerPlugin(ledger, agents=AGENTS)])


async def wait_for_signal_wait(handle: WorkflowHandle[Any, Any], timeout_s: float = 30.0) -> None:
    """Until the workflow's first agent run is done and it waits for `go`."""
    async with asyncio.timeout(timeout_s):
        while await handle.query(BriefingWorkflow.stage) != 'waiting':
            await asyncio.sleep(0.1)


@asynccontextmanager
async def moved_to_the_plugin(
    plain: Client, with_ledger: Client, task_queue: str, workflow_id: str, *, mid_run: bool
) -> AsyncIterator[tuple[WorkflowHandle[Any, Any], WorkflowHistory]]:
    """Start `BriefingWorkflow` on a worker without the plugin, stop that worker, start one with the plugin.

    The first worker stops once the workflow waits for its signal, after its first agent run; or, with
    `mid_run`, while that run's `count_words` tool activity runs (the worker's shutdown cancels that
    attempt, and the worker with the plugin runs the next). Yields, while the worker with the plugin
    runs, the workflow's handle and its history as the first worker left it.
    """
    if mid_run:
        held.add(workflow_id)
    try:
        async with plain_worker(plain, task_queue):
            handle = await plain.start_workflow(BriefingWorkflow.run, TOPIC, id=workflow_id, task_queue=task_queue)
            if mid_run:
                async with asyncio.timeout(30):
                    while workflow_id not in holding:
                        await asyncio.sleep(0.05)
            else:
                await wait_for_signal_wait(handle)
            left = await handle.fetch_history()
    finally:
        held.discard(workflow_id)
    async with ledger_worker(with_ledger, task_queue):
        yield handle, left


async def with_children(client: Client, history: WorkflowHistory) -> list[WorkflowHistory]:
    """`history`, then the histories of the child workflows it started, in the order it started them."""
    found = [history]
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
            execution = event.child_workflow_execution_started_event_attributes.workflow_execution
            child = client.get_workflow_handle(execution.workflow_id, run_id=execution.run_id)
            found.append(await child.fetch_history())
    return found


def patch_ids(history: WorkflowHistory) -> list[str]:
    """The ids of the `workflow.patched` markers in `history`, in order."""
    found: list[str] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            found.append(PayloadConverter.default.from_payloads(details['patch-data'].payloads)[0]['id'])
    return found


def write(name: str, histories: list[WorkflowHistory]) -> None:
    """Replace the committed histories of scenario `name` by `histories`."""
    for old in HERE.glob(f'{name}-*.json'):
        old.unlink()
    for n, history in enumerate(histories, start=1):
        recorded = {
            'workflow_id': history.workflow_id,
            'recorded_with': {package: version(package) for package in ('pydantic-ai-slim', 'temporalio')},
            'history': anonymous(json.loads(history.to_json())),
        }
        (HERE / f'{name}-{n}.json').write_text(json.dumps(recorded) + '\n')


async def main() -> None:
    if version('pydantic-ai-slim') != SUPPORTED_PYDANTIC_AI[0]:
        raise SystemExit(f'record with the oldest supported pydantic-ai ({SUPPORTED_PYDANTIC_AI[0]}): .venv-oldest')
    HERE.mkdir(exist_ok=True)
    ledger = MemoryLedger()
    async with await start_dev_server() as env:
        target = env.client.service_client.config.target_host
        plain = await plain_client(target)
        # Every payload stays inline in history, as if the ledger were not there to hold the large ones.
        with_ledger = await Client.connect(
            target, plugins=[LedgerPlugin(ledger, agents=AGENTS, payload_threshold=None)]
        )
        queue = f'golden-own-{uuid.uuid4().hex[:8]}'

        async with plain_worker(plain, queue):
            handle = await plain.start_workflow(BriefingWorkflow.run, TOPIC, id='golden-own-plain', task_queue=queue)
            await wait_for_signal_wait(handle)
            await handle.signal(BriefingWorkflow.go, NOTE)
            assert await handle.result() == EXPECTED_RESULT
            write('plain-complete', await with_children(plain, await handle.fetch_history()))

        for mid_run, suffix in ((False, ''), (True, '-mid-run')):
            workflow_id = f'golden-own-upgraded{suffix}'
            async with moved_to_the_plugin(plain, with_ledger, queue, workflow_id, mid_run=mid_run) as (handle, left):
                write('plain-mid-run' if mid_run else 'plain-waiting', [left])
                await wait_for_signal_wait(handle)
                await handle.signal(BriefingWorkflow.go, NOTE)
                assert await handle.result() == EXPECTED_RESULT
                write(f'upgraded{suffix}', await with_children(plain, await handle.fetch_history()))
            # The three agent runs after the switch are ledger runs; the one it interrupted or followed is not.
            assert len(await ledger.runs(workflow_id=workflow_id)) == 3

        async with ledger_worker(with_ledger, queue):
            handle = await with_ledger.start_workflow(
                BriefingWorkflow.run, TOPIC, id='golden-own-with-plugin', task_queue=queue
            )
            await wait_for_signal_wait(handle)
            await handle.signal(BriefingWorkflow.go, NOTE)
            assert await handle.result() == EXPECTED_RESULT
            write('with-plugin', await with_children(with_ledger, await handle.fetch_history()))
        assert len(await ledger.runs(workflow_id='golden-own-with-plugin')) == 4
        assert not await ledger.payload_references(), 'a payload went to the ledger'


if __name__ == '__main__':
    asyncio.run(main())
