"""Approvals in users' own workflows: a served agent's run waits for decisions sent to the user's workflow."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from agentledger import SqliteLedger
from agentledger.client import decide_approval, pending_approvals
from agentledger.model._approvals import PendingApproval

from ..conftest import serve
from ..helpers.agents import REFUNDS, approval_agent
from ..helpers.own_workflows import RefundDeskWorkflow


async def test_runs_in_a_user_workflow_wait_for_their_decisions(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with (
        SqliteLedger(tmp_path / 'runs.db') as ledger,
        serve(temporal_env, ledger, [approval_agent], workflows=[RefundDeskWorkflow]) as served,
    ):
        handle = await served.client.start_workflow(
            RefundDeskWorkflow.run, ['refund 601:5', 'refund 602:9'], id='desk-1', task_queue=served.task_queue
        )
        waiting: list[PendingApproval] = []
        for _ in range(200):
            waiting = await pending_approvals(handle)
            if len(waiting) == 2:
                break
            await asyncio.sleep(0.1)
        assert sorted(call.tool_call_id for call in waiting) == ['call-601', 'call-602']
        # The workflow answers the query before the ledger has heard of the wait (its activity runs next).
        for _ in range(200):
            runs = await ledger.runs(workflow_id='desk-1')
            if [run.status for run in runs] == ['awaiting_approval', 'awaiting_approval']:
                break
            await asyncio.sleep(0.1)
        assert [run.status for run in runs] == ['awaiting_approval', 'awaiting_approval']

        by_id = {call.tool_call_id: call for call in waiting}
        await decide_approval(handle, by_id['call-601'], 'approve', by='alice')
        await decide_approval(handle, by_id['call-602'], 'deny', reason='Not eligible.', by='bob')
        assert await handle.result() == ['refunded 5 on order 601', 'Not eligible.']
        assert REFUNDS.count((601, 5)) == 1 and all(order != 602 for order, _ in REFUNDS)

        runs = await ledger.runs(workflow_id='desk-1')
        assert sorted(run.status for run in runs) == ['completed', 'completed']
        events = [event for run in runs for event in await ledger.events(run.run_id)]
        kinds = sorted((event.kind, event.tool_call_id) for event in events if event.kind.startswith('approval_'))
        assert kinds == [
            ('approval_denied', 'call-602'),
            ('approval_granted', 'call-601'),
            ('approval_requested', 'call-601'),
            ('approval_requested', 'call-602'),
        ]


async def test_a_worker_may_leave_approvals_to_the_workflow(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """`LedgerPlugin(wait_for_approval=False)`: the run ends with `DeferredToolRequests`, as pydantic-ai's does."""
    async with (
        SqliteLedger(tmp_path / 'runs.db') as ledger,
        serve(
            temporal_env,
            ledger,
            [approval_agent],
            plugin_options={'wait_for_approval': False},
            workflows=[RefundDeskWorkflow],
        ) as served,
    ):
        handle = await served.client.start_workflow(
            RefundDeskWorkflow.run, ['refund 603:5'], id='desk-2', task_queue=served.task_queue
        )
        [output] = await handle.result()
        # The workflow returned pydantic-ai's `DeferredToolRequests`; untyped, the client reads it as its JSON.
        assert [call['tool_name'] for call in output['approvals']] == ['refund']
        [run] = await ledger.runs(workflow_id='desk-2')
        outcomes = [e.outcome for e in await ledger.events(run.run_id) if e.kind == 'tool_call_completed']
        assert outcomes == ['approval_required']
