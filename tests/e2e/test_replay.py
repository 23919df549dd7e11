"""C18: histories recorded on the dev server replay without nondeterminism with the plugin installed."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

import agentledger
from agentledger import SqliteLedger
from agentledger.model._approvals import ApprovalDecision

from ..conftest import serve
from ..helpers.agents import approval_agent, bulky_agent, calc_agent, notes_agent, relay_agent, zombie_agent

AGENTS = [approval_agent, bulky_agent, calc_agent, notes_agent, relay_agent, zombie_agent]


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
        # A run that parked on its failure and was resumed by update (C15).
        parking = await agentledger.start(
            served.client, relay_agent, 'relay', task_queue=queue, workflow_id=f'park-{uuid.uuid4().hex[:8]}',
            park_on_failure=True,
        )  # fmt: skip
        while not [r for r in await ledger.runs(workflow_id=parking.workflow_id) if r.status == 'parked']:
            await asyncio.sleep(0.1)
        await parking.resume('again')
        await parking.result()
        # Payloads stored in the ledger, and a run that continued as new three times.
        bulky = await agentledger.start(served.client, bulky_agent, '8', task_queue=queue, history_event_limit=30)
        await bulky.result()
        # A run that waited for approvals: one approved, one denied, and a wrong decision by signal (17).
        approvals = await agentledger.start(served.client, approval_agent, 'refund 501:5 502:6', task_queue=queue)
        while len(waiting := await approvals.pending_approvals()) < 2:
            await asyncio.sleep(0.1)
        await approvals.workflow_handle.signal('approve', ApprovalDecision('call-501', 'not-its-digest'))
        await approvals.approve(waiting[0], by='alice')
        await approvals.deny(waiting[1], reason='no', by='bob')
        await approvals.result()
        handles = [calc, notes, continued, failing, restarted, failed_validation, parking, approvals]
        histories: list[WorkflowHistory] = []
        for handle in handles:
            workflow = served.client.get_workflow_handle(
                handle.workflow_id, run_id=handle.workflow_handle.result_run_id
            )
            histories.append(await workflow.fetch_history())
        record = await ledger.run(bulky.run_id)
        assert len(record.temporal_run_ids) >= 3
        for temporal_run_id in record.temporal_run_ids:
            workflow = served.client.get_workflow_handle(bulky.workflow_id, run_id=temporal_run_id)
            histories.append(await workflow.fetch_history())

    # Replay reads referenced payloads from the ledger, opened afresh: it needs that content, nothing else.
    replayer = Replayer(
        workflows=[], plugins=[agentledger.LedgerPlugin(SqliteLedger(tmp_path / 'runs.db'), agents=AGENTS)]
    )
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f'{history.workflow_id}: {result.replay_failure}'
