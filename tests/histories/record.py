"""Record the golden `AgentRunWorkflow` histories in this folder (`python -m tests.histories.record`).

Each scenario runs the test agents on a fresh local dev server and writes every workflow history it
produced (its delegates' and its continued-as-new runs' too) as `<scenario>-<n>.json`: the workflow id,
the pydantic-ai and temporalio releases it was recorded with, and `WorkflowHistory.to_json()`.
Record with the oldest supported pydantic-ai (`.venv-oldest/bin/python -m tests.histories.record`):
the test suite replays them on the newest, as a fleet upgrading with runs in flight would. The worker
keeps every payload inline (no payload threshold), so the histories hold all their content and replay
without a ledger (`tests/test_golden_histories.py`).
Re-record deliberately, when a change to the workflows is meant to make the old histories unreplayable.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

import agentledger
from agentledger import AgentRunHandle, LedgerPlugin, MemoryLedger
from agentledger._compat import SUPPORTED_PYDANTIC_AI
from agentledger.cli import start_dev_server

from ..helpers.agents import calc_agent, notes_agent, relay_agent
from ..helpers.delegate_agents import boss

HERE = Path(__file__).parent
AGENTS = [boss, calc_agent, notes_agent, relay_agent]
"""The agents the histories ran; replaying them needs the same agents registered."""

Scenario = Callable[[Client, MemoryLedger, str, str], Awaitable[AgentRunHandle[Any]]]
"""Runs one scenario under a workflow id to its end and returns its handle."""


async def plain_run(client: Client, ledger: MemoryLedger, queue: str, workflow_id: str) -> AgentRunHandle[Any]:
    """One tool call, then the answer."""
    return await agentledger.start(client, notes_agent, 'save tea', task_queue=queue, workflow_id=workflow_id)


async def delegates(client: Client, ledger: MemoryLedger, queue: str, workflow_id: str) -> AgentRunHandle[Any]:
    """An orchestrator whose tools start two delegate agents as child workflows."""
    return await agentledger.start(client, boss, 'brief tides', task_queue=queue, workflow_id=workflow_id)


async def parked_and_resumed(client: Client, ledger: MemoryLedger, queue: str, workflow_id: str) -> AgentRunHandle[Any]:
    """A run that parks on a failing tool and is resumed by update."""
    handle = await agentledger.start(
        client, relay_agent, 'relay', task_queue=queue, workflow_id=workflow_id, park_on_failure=True
    )
    while not [r for r in await ledger.runs(workflow_id=workflow_id) if r.status == 'parked']:
        await asyncio.sleep(0.1)
    await handle.resume('again')
    return handle


async def retried_tool_continued_as_new(
    client: Client, ledger: MemoryLedger, queue: str, workflow_id: str
) -> AgentRunHandle[Any]:
    """A tool retried after a failed attempt, a ModelRetry and a validation error, in a run that continues
    as new: one ledger run over two Temporal runs."""
    return await agentledger.start(
        client, calc_agent, 'compute', task_queue=queue, workflow_id=workflow_id, history_event_limit=45
    )


SCENARIOS: dict[str, Scenario] = {
    'plain-run': plain_run,
    'delegates': delegates,
    'parked-and-resumed': parked_and_resumed,
    'retried-tool-continued-as-new': retried_tool_continued_as_new,
}


_WORKER_IDENTITY = re.compile(r'^\d+@.+?(?=(-[0-9a-f]{32})?$)')
"""A worker's default identity, `<pid>@<host>`, alone or leading its sticky task queue's name."""


def anonymous(value: Any) -> Any:
    """`value` without what names the recording machine: worker identities and failures' stack traces."""
    if isinstance(value, dict):
        return {key: '' if key == 'stackTrace' else anonymous(item) for key, item in value.items()}
    if isinstance(value, list):
        return [anonymous(item) for item in value]
    if isinstance(value, str):
        return _WORKER_IDENTITY.sub('golden-recorder', value)
    return value


async def histories_of(client: Client, ledger: MemoryLedger, run_id: str) -> list[dict[str, Any]]:
    """Every Temporal run of `run_id` and of its delegates, parents first, as they are written out."""
    found: list[dict[str, Any]] = []
    for _, node in (await ledger.run_tree(run_id)).walk():
        for temporal_run_id in node.run.temporal_run_ids:
            handle = client.get_workflow_handle(node.run.workflow_id, run_id=temporal_run_id)
            history = await handle.fetch_history()
            found.append(
                {
                    'workflow_id': history.workflow_id,
                    'recorded_with': {name: version(name) for name in ('pydantic-ai-slim', 'temporalio')},
                    'history': anonymous(json.loads(history.to_json())),
                }
            )
    return found


async def main() -> None:
    if version('pydantic-ai-slim') != SUPPORTED_PYDANTIC_AI[0]:
        raise SystemExit(f'record with the oldest supported pydantic-ai ({SUPPORTED_PYDANTIC_AI[0]}): .venv-oldest')
    ledger = MemoryLedger()
    async with await start_dev_server() as env:
        # Every payload stays inline in history, as if the ledger were not there to hold the large ones.
        plugin = LedgerPlugin(ledger, agents=AGENTS, payload_threshold=None)
        client = await Client.connect(env.client.service_client.config.target_host, plugins=[plugin])
        queue = f'golden-{uuid.uuid4().hex[:8]}'
        async with Worker(client, task_queue=queue):
            for name, scenario in SCENARIOS.items():
                handle = await scenario(client, ledger, queue, f'golden-{name}')
                await handle.result()
                for old in HERE.glob(f'{name}-*.json'):
                    old.unlink()
                for n, recorded in enumerate(await histories_of(client, ledger, handle.run_id), start=1):
                    (HERE / f'{name}-{n}.json').write_text(json.dumps(recorded) + '\n')
            # A payload stored in the ledger would make a history depend on this discarded ledger.
            assert not await ledger.payload_references(), 'a payload went to the ledger'


if __name__ == '__main__':
    asyncio.run(main())
