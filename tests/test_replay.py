"""C18: histories recorded on the dev server replay without nondeterminism with the plugin installed."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

import agentledger
from agentledger import MemoryLedger, SqliteLedger

from .agents import calc_agent, notes_agent, relay_agent, zombie_agent
from .conftest import serve

AGENTS = [calc_agent, notes_agent, relay_agent, zombie_agent]


async def test_recorded_histories_replay_c18(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, AGENTS) as served:
        queue = served.task_queue
        calc = await agentledger.start(served.client, calc_agent, 'compute', task_queue=queue)
        await calc.result()
        notes = await agentledger.start(served.client, notes_agent, 'save tea', task_queue=queue)
        await notes.result()
        continued = await agentledger.continue_run(served.client, notes.run_id, 'count')
        await continued.result()
        relay_id = f'relay-{uuid.uuid4().hex[:8]}'
        failing = await agentledger.start(served.client, relay_agent, 'relay', task_queue=queue, workflow_id=relay_id)
        with pytest.raises(WorkflowFailureError):
            await failing.result()
        restarted = await agentledger.start(served.client, relay_agent, 'relay', task_queue=queue, workflow_id=relay_id)
        await restarted.result()
        failed_validation = await agentledger.start(served.client, 'unknown-agent', 'x', task_queue=queue)
        with pytest.raises(WorkflowFailureError):
            await failed_validation.result()
        handles = [calc, notes, continued, failing, restarted, failed_validation]
        histories: list[WorkflowHistory] = []
        for handle in handles:
            workflow = served.client.get_workflow_handle(
                handle.workflow_id, run_id=handle.workflow_handle.result_run_id
            )
            histories.append(await workflow.fetch_history())

    replayer = Replayer(workflows=[], plugins=[agentledger.LedgerPlugin(MemoryLedger(), agents=AGENTS)])
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f'{history.workflow_id}: {result.replay_failure}'
