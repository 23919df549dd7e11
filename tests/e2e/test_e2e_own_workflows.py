"""End-to-end: agent runs inside users' own workflows are ledger runs, on a real dev server."""

from __future__ import annotations

import uuid
from pathlib import Path

from pydantic_ai.durable_exec.temporal import AgentPlugin
from temporalio.testing import WorkflowEnvironment

from agentledger import SqliteLedger

from ..conftest import serve
from ..helpers.agents import calc_agent
from ..helpers.checks import check_complete_calc_run
from ..helpers.own_workflows import FanOutWorkflow, ReviewWorkflow, prepare, unlisted_agent


async def test_each_agent_run_in_a_user_workflow_is_a_ledger_run(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A plain activity, two agent runs around a signal: two complete ledger runs of the workflow, in order."""
    async with (
        SqliteLedger(tmp_path / 'runs.db') as ledger,
        serve(temporal_env, ledger, [calc_agent], workflows=[ReviewWorkflow], activities=[prepare]) as served,
    ):
        workflow_id = f'review-{uuid.uuid4().hex[:8]}'
        handle = await served.client.start_workflow(
            ReviewWorkflow.run, 'topic', id=workflow_id, task_queue=served.task_queue
        )
        await handle.signal(ReviewWorkflow.approve, 'ok')
        assert await handle.result() == ['done', 'done']
        runs = list(await ledger.runs(workflow_id=workflow_id))
        assert len(runs) == 2
        first, second = sorted(runs, key=lambda run: run.started_at)
        assert first.run_id != second.run_id
        for run in runs:
            assert run.workflow_type == 'ReviewWorkflow'
            assert run.temporal_run_ids == (handle.result_run_id,)
            await check_complete_calc_run(ledger, run.run_id)
        assert first.prompt_preview == 'compute topic!'
        assert second.prompt_preview == 'compute again: ok'


async def test_concurrent_runs_are_separate_and_unlisted_agents_unrecorded(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Two agent runs at once are two ledger runs with their own events; an agent not listed records nothing."""
    async with (
        SqliteLedger(tmp_path / 'runs.db') as ledger,
        serve(
            temporal_env, ledger, [calc_agent], workflows=[FanOutWorkflow], plugins=[AgentPlugin(unlisted_agent)]
        ) as served,
    ):
        workflow_id = f'fan-{uuid.uuid4().hex[:8]}'
        result = await served.client.execute_workflow(
            FanOutWorkflow.run, 'topic', id=workflow_id, task_queue=served.task_queue
        )
        assert result == ['done', 'done', 'echo']
        runs = list(await ledger.runs(workflow_id=workflow_id))
        assert sorted(run.agent_name for run in runs) == ['calc', 'calc']
        assert sorted(run.prompt_preview or '' for run in runs) == ['topic a', 'topic b']
        for run in runs:
            events = await check_complete_calc_run(ledger, run.run_id)
            assert {event.run_id for event in events} == {run.run_id}
