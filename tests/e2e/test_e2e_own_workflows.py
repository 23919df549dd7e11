"""End-to-end: agent runs inside users' own workflows are ledger runs, on a real dev server."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

from pydantic_ai.durable_exec.temporal import AgentPlugin
from temporalio.testing import WorkflowEnvironment

from agentledger import SqliteLedger
from agentledger.model import is_provider_valid

from ..conftest import serve
from ..helpers.agents import calc_agent
from ..helpers.checks import check_complete_calc_run
from ..helpers.delegate_agents import boss, broken
from ..helpers.own_workflows import (
    LONG_STEPS,
    BatchWorkflow,
    FallbackWorkflow,
    FanOutWorkflow,
    ResearchWorkflow,
    ReviewWorkflow,
    long_agent,
    prepare,
    unlisted_agent,
)
from .test_e2e_history import model_request_inputs


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


async def test_bounded_history_valid_snapshots_and_delegates_in_a_user_workflow(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Model requests carry a reference plus their new messages, every snapshot is provider-valid and chained,
    and an orchestrator's delegates are child runs linked to the user workflow's agent run."""
    async with (
        SqliteLedger(tmp_path / 'runs.db') as ledger,
        serve(temporal_env, ledger, [long_agent, boss], workflows=[ResearchWorkflow]) as served,
    ):
        workflow_id = f'research-{uuid.uuid4().hex[:8]}'
        handle = await served.client.start_workflow(
            ResearchWorkflow.run, 'tides', id=workflow_id, task_queue=served.task_queue
        )
        long_output, brief = await handle.result()
        assert long_output == f'{1 + 2 * (LONG_STEPS - 1)} messages seen'
        assert brief == 'facts: tides rise twice a day | A POEM ON TIDES (4 words)'

        inputs = await model_request_inputs(served.client, handle)
        long_inputs = inputs[:LONG_STEPS]
        assert long_inputs[0] == (1, False)
        assert long_inputs[1:] == [(2, True)] * (LONG_STEPS - 1)

        runs = {run.agent_name: run for run in await ledger.runs(workflow_id=workflow_id)}
        assert set(runs) == {'long-own', 'boss'}
        for run in runs.values():
            snapshots = await ledger.snapshots(run.run_id)
            assert snapshots and snapshots[0].parent_id is None
            for parent, child in itertools.pairwise(snapshots):
                assert child.parent_id == parent.snapshot_id
            for record in snapshots:
                assert is_provider_valid((await ledger.snapshot(record.snapshot_id)).messages)

        orchestrator = runs['boss']
        children = await ledger.runs(parent_run_id=orchestrator.run_id)
        assert sorted(child.agent_name for child in children) == ['researcher', 'writer']
        for child in children:
            assert child.status == 'completed' and child.workflow_type == 'AgentRunWorkflow'
            assert child.workflow_id == f'{workflow_id}/delegate/{child.parent_tool_call_id}'
        rolled = sum((child.usage.requests for child in children), 0)
        assert orchestrator.usage.requests == 2 + rolled


async def test_a_user_workflow_that_continues_as_new_gets_a_ledger_run_per_agent_run(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Each Temporal run of the chain numbers its agent runs from 1 again: the ids still differ, one run each."""
    async with (
        SqliteLedger(tmp_path / 'runs.db') as ledger,
        serve(temporal_env, ledger, [calc_agent], workflows=[BatchWorkflow]) as served,
    ):
        workflow_id = f'batch-{uuid.uuid4().hex[:8]}'
        handle = await served.client.start_workflow(BatchWorkflow.run, 3, id=workflow_id, task_queue=served.task_queue)
        assert await handle.result() == 1
        runs = list(await ledger.runs(workflow_id=workflow_id))
        assert sorted(run.prompt_preview or '' for run in runs) == ['round 1', 'round 2', 'round 3']
        assert len({run.temporal_run_id for run in runs}) == 3
        for run in runs:
            await check_complete_calc_run(ledger, run.run_id)


async def test_a_failed_agent_run_the_workflow_catches_is_sealed_failed(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The agent's failure reaches the workflow as the agent's error, and its ledger run is sealed `failed`."""
    async with (
        SqliteLedger(tmp_path / 'runs.db') as ledger,
        serve(temporal_env, ledger, [calc_agent, broken], workflows=[FallbackWorkflow]) as served,
    ):
        workflow_id = f'fallback-{uuid.uuid4().hex[:8]}'
        result = await served.client.execute_workflow(
            FallbackWorkflow.run, 'stock', id=workflow_id, task_queue=served.task_queue
        )
        assert result == 'done'
        runs = {run.agent_name: run for run in await ledger.runs(workflow_id=workflow_id)}
        assert runs['calc'].status == 'completed'
        failed = runs['broken']
        assert failed.status == 'failed' and failed.error is not None
        assert 'the warehouse is on fire' in failed.error.message
        events = await ledger.events(failed.run_id)
        assert [events[0].kind, events[-1].kind] == ['run_started', 'run_failed']
        assert all(event.state != 'provisional' for event in events)
