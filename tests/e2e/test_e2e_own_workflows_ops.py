"""End-to-end: reconcile, show, runs, continue and fork of agent runs inside users' own workflows.

An `Agent.run` of a listed agent inside a user's workflow is a ledger run that shares its workflow id
and Temporal run with the workflow's own activities and its other agent runs, starts and ends with its
own `run_started` and seal activities, and may end long before (or without) the workflow closing. These
tests hold the operations on ledger runs to what a Temporal user expects of such runs, on a real dev server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from pydantic_ai.messages import ModelMessagesTypeAdapter, ModelRequest, UserPromptPart
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger import Ledger, SqliteLedger, reconcile_ledger, reconcile_run
from agentledger.errors import RunNotFoundError
from agentledger.model import ForkRef, RunRecord
from agentledger.model._records import AGENT_RUN_WORKFLOW_TYPE
from agentledger.workflows._types import RUN_STARTED_ACTIVITY

from ..conftest import serve
from ..helpers import agents
from ..helpers.agents import calc_agent, holder_agent
from ..helpers.ledgers import drop_run_record
from ..helpers.own_workflows import (
    AnswerWorkflow,
    BatchWorkflow,
    GatedWorkflow,
    HoldingWorkflow,
    ReviewWorkflow,
    prepare,
)
from .test_cli import fact, invoke, line_with
from .test_reconcile import audits, delete_acceptance, delete_event, reader

_T = TypeVar('_T')


async def _until(probe: Callable[[], Awaitable[_T | None]], timeout: float = 30) -> _T:
    """Poll `probe` until it returns something (a run id not yet recorded counts as nothing)."""

    async def poll() -> _T:
        while True:
            with contextlib.suppress(RunNotFoundError):
                found = await probe()
                if found is not None:
                    return found
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), timeout)


async def _sealed_runs(ledger: Ledger, workflow_id: str, count: int) -> list[RunRecord] | None:
    """The workflow's ledger runs, oldest first, once `count` of them have ended."""
    runs = sorted(await ledger.runs(workflow_id=workflow_id), key=lambda run: run.started_at)
    return runs if sum(run.ended_at is not None for run in runs) >= count else None


async def _holding(ledger: Ledger, workflow_id: str) -> RunRecord | None:
    """The workflow's one agent run, once its `hold` tool call started."""
    runs = await ledger.runs(workflow_id=workflow_id)
    for run in runs:
        if any(e.tool_name == 'hold' and e.kind == 'tool_call_started' for e in await ledger.events(run.run_id)):
            return run
    return None


async def _rows(ledger: Ledger, run_id: str) -> int:
    """How many rows of the run reconcile checks: its record, its events (audits aside) and its acceptances."""
    events = [e for e in await ledger.events(run_id) if e.kind != 'ledger_repaired']
    return 1 + len(events) + len(await ledger.acceptances(run_id))


async def test_reconcile_checks_each_agent_run_against_its_own_activities(
    temporal_env: WorkflowEnvironment, ledger: Ledger
) -> None:
    """Each agent run of a user workflow is checked against the activities that name it, and nothing else.

    The workflow's own activity and its other agent run are not the run's rows (no orphans, nothing
    missing); a run that sealed is checked as finished while the workflow still waits for a signal; a
    lost event, acceptance and run record are reported, repaired (audited) and then agree.
    """
    async with serve(temporal_env, ledger, [calc_agent], workflows=[ReviewWorkflow], activities=[prepare]) as served:
        client = served.client
        workflow_id = f'review-{uuid.uuid4().hex[:8]}'
        handle = await client.start_workflow(ReviewWorkflow.run, 'topic', id=workflow_id, task_queue=served.task_queue)
        [first] = await _until(lambda: _sealed_runs(ledger, workflow_id, 1))
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        # Sealed while its workflow waits for the signal: finished, checked row by row, nothing to repair.
        report = await reconcile_run(client, ledger, first.run_id)
        assert report.clean and not report.open and not report.repaired and report.status == 'completed'
        assert report.ok == await _rows(ledger, first.run_id)

        await handle.signal(ReviewWorkflow.approve, 'ok')
        assert await handle.result() == ['done', 'done']
        first, second = await _until(lambda: _sealed_runs(ledger, workflow_id, 2))
        for run in (first, second):
            report = await reconcile_run(client, ledger, run.run_id)
            assert report.clean and not report.open and not report.repaired
            assert report.ok == await _rows(ledger, run.run_id)

    # Lost behind the ledger's back: an event and an acceptance of the second run, the first run's record.
    second_events = await ledger.events(second.run_id)
    answer = next(e for e in second_events if e.kind == 'model_request_completed' and e.step == 2)
    [acceptance, *_] = await ledger.acceptances(second.run_id)
    delete_event(ledger, answer)
    delete_acceptance(ledger, acceptance)
    drop_run_record(ledger, first.run_id)

    async with reader(ledger) as other:
        # `reconcile_ledger` walks run records: it sees the second run, and only what that run lost.
        [dry] = await reconcile_ledger(client, other, repair=False)
        assert dry.run_id == second.run_id and not dry.repaired
        assert sorted((f.category, f.row, f.key) for f in dry.findings) == [
            ('missing', 'acceptance', acceptance.key),
            ('missing', 'event', answer.key),
        ]
        # The first run's record is rebuilt from the `run_started` activity whose header names it.
        lost = await reconcile_run(client, other, first.run_id, repair=False)
        [finding] = lost.findings
        assert (finding.category, finding.row, finding.key, finding.before) == ('missing', 'run', first.run_id, None)
        assert RunRecord.from_json(finding.after or {}) == first
        with pytest.raises(RunNotFoundError):
            await other.run(first.run_id)  # a dry run writes nothing

        for run in (first, second):
            repaired = await reconcile_run(client, other, run.run_id)
            assert repaired.repaired and repaired.status == 'completed'
        assert await other.run(first.run_id) == first
        assert (await other.run(second.run_id)).usage == second.usage
        assert {e.key for e in await other.events(second.run_id)} >= {e.key for e in second_events}
        assert acceptance in await other.acceptances(second.run_id)
        assert [(a['category'], a['row']) for a in audits(await other.events(first.run_id))] == [('missing', 'run')]
        assert len(audits(await other.events(second.run_id))) == 2
        for report in await reconcile_ledger(client, other, repair=False):
            assert report.clean, report.findings
        assert sorted(run.run_id for run in await other.runs(workflow_id=workflow_id)) == sorted(
            [first.run_id, second.run_id]
        )


async def test_an_agent_run_ends_with_its_seal_while_its_workflow_goes_on_and_fails(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The run ended when its seal ran: repaired while the workflow still runs, and not undone when it fails."""
    async with (
        SqliteLedger(tmp_path / 'runs.db') as ledger,
        serve(temporal_env, ledger, [calc_agent], workflows=[GatedWorkflow]) as served,
    ):
        workflow_id = f'gated-{uuid.uuid4().hex[:8]}'
        handle = await served.client.start_workflow(
            GatedWorkflow.run, 'topic', id=workflow_id, task_queue=served.task_queue
        )
        [run] = await _until(lambda: _sealed_runs(ledger, workflow_id, 1))
        end = next(e for e in await ledger.events(run.run_id) if e.kind == 'run_completed')
        assert end.activity_id == 'agent-1.run'
        delete_event(ledger, end)

        report = await reconcile_run(served.client, ledger, run.run_id)
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert not report.open and report.repaired and report.status == 'completed'
        assert [(f.category, f.key) for f in report.findings] == [('missing', end.key)]
        restored = next(e for e in await ledger.events(run.run_id) if e.kind == 'run_completed')
        assert (restored.key, restored.timestamp, restored.usage) == (end.key, end.timestamp, end.usage)
        assert (await reconcile_run(served.client, ledger, run.run_id)).clean

        await handle.signal(GatedWorkflow.finish, 'not good enough')
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        after = await reconcile_run(served.client, ledger, run.run_id)
        assert after.clean and after.status == 'completed'
        assert await ledger.run(run.run_id) == run


async def test_an_agent_run_its_workflow_closed_without_a_seal_ends_as_the_workflow_did(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Unsealed in a running workflow: open, reported only. The workflow terminated: sealed `terminated` by
    reconcile. The workflow cancelled: the run sealed itself `cancelled`, and reconcile agrees."""
    async with (
        SqliteLedger(tmp_path / 'runs.db') as ledger,
        serve(temporal_env, ledger, [holder_agent], workflows=[HoldingWorkflow]) as served,
    ):
        client = served.client
        workflow_id = f'hold-{uuid.uuid4().hex[:8]}'
        handle = await client.start_workflow(HoldingWorkflow.run, 'go', id=workflow_id, task_queue=served.task_queue)
        run = await _until(lambda: _holding(ledger, workflow_id))
        report = await reconcile_run(client, ledger, run.run_id)
        assert report.open and not report.repaired and report.clean and report.status == 'running'

        await handle.terminate(reason='test: an operator stops the workflow')
        agents.released.add(workflow_id)
        dry = await reconcile_run(client, ledger, run.run_id, repair=False)
        assert not dry.open and not dry.repaired
        end_key = next(f.key for f in dry.findings if f.row == 'event')
        assert end_key.endswith('agent-1.run|0|run_terminated'), end_key
        assert sorted((f.category, f.row) for f in dry.findings) == [('missing', 'event'), ('missing', 'run')]

        sealed = await reconcile_run(client, ledger, run.run_id)
        assert sealed.repaired and sealed.status == 'terminated'
        record = await ledger.run(run.run_id)
        assert record.error is not None and record.error.type == 'WorkflowTerminated'
        assert 'an operator stops the workflow' in record.error.message
        assert record.usage.requests == 2
        assert [e.kind for e in await ledger.events(run.run_id) if e.step_kind is None][:2] == [
            'run_started',
            'run_terminated',
        ]
        assert (await reconcile_run(client, ledger, run.run_id)).clean

        cancelled_id = f'hold-{uuid.uuid4().hex[:8]}'
        cancelled = await client.start_workflow(
            HoldingWorkflow.run, 'go', id=cancelled_id, task_queue=served.task_queue
        )
        held = await _until(lambda: _holding(ledger, cancelled_id))
        await cancelled.cancel()
        agents.released.add(cancelled_id)
        with pytest.raises(WorkflowFailureError):
            await cancelled.result()
        [ended] = await _until(lambda: _sealed_runs(ledger, cancelled_id, 1))
        assert ended.run_id == held.run_id and ended.status == 'cancelled'
        report = await reconcile_run(client, ledger, held.run_id)
        assert report.clean and not report.repaired and report.status == 'cancelled'


async def test_a_reset_user_workflow_runs_its_later_agent_run_again_under_the_same_ledger_run(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Reset to the workflow task that started the second agent run: the new Temporal run inherits the first
    agent run's activities (that run keeps its one Temporal run) and runs the second again, under its ledger
    run id; reconcile finds both agree with history."""
    async with (
        SqliteLedger(tmp_path / 'runs.db') as ledger,
        serve(temporal_env, ledger, [calc_agent], workflows=[ReviewWorkflow], activities=[prepare]) as served,
    ):
        client = served.client
        workflow_id = f'review-{uuid.uuid4().hex[:8]}'
        handle = await client.start_workflow(ReviewWorkflow.run, 'topic', id=workflow_id, task_queue=served.task_queue)
        await handle.signal(ReviewWorkflow.approve, 'ok')
        await handle.result()
        first, second = await _until(lambda: _sealed_runs(ledger, workflow_id, 2))
        starts = [
            event.activity_task_scheduled_event_attributes
            for event in (await handle.fetch_history()).events
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and event.activity_task_scheduled_event_attributes.activity_type.name == RUN_STARTED_ACTIVITY
        ]
        assert [start.activity_id for start in starts] == ['agent-1.1', 'agent-2.1']
        response = await client.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=client.namespace,
                workflow_execution=WorkflowExecution(workflow_id=workflow_id),
                reason='test: run the second review again',
                workflow_task_finish_event_id=starts[1].workflow_task_completed_event_id,
                request_id=str(uuid.uuid4()),
            )
        )
        reset = response.run_id
        assert await client.get_workflow_handle(workflow_id, run_id=reset).result() == ['done', 'done']

        async def rerun() -> RunRecord | None:
            record = await ledger.run(second.run_id)
            return record if record.temporal_run_ids[-1] == reset and record.status == 'completed' else None

        again = await _until(rerun)
        assert again.temporal_run_ids == (handle.result_run_id, reset)
        assert await ledger.run(first.run_id) == first
        assert len(await ledger.runs(workflow_id=workflow_id)) == 2
        for run in (first, again):
            report = await reconcile_run(client, ledger, run.run_id)
            assert report.clean and not report.repaired and not report.open, report.findings
            assert report.ok == await _rows(ledger, run.run_id)


async def test_each_temporal_run_of_a_user_workflow_that_continues_as_new_has_its_own_agent_runs(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Continue-as-new numbers the workflow's agent runs afresh: two ledger runs, one per Temporal run."""
    async with (
        SqliteLedger(tmp_path / 'runs.db') as ledger,
        serve(temporal_env, ledger, [calc_agent], workflows=[BatchWorkflow]) as served,
    ):
        workflow_id = f'rounds-{uuid.uuid4().hex[:8]}'
        assert (
            await served.client.execute_workflow(BatchWorkflow.run, 2, id=workflow_id, task_queue=served.task_queue)
            == 1
        )
        first, second = await _until(lambda: _sealed_runs(ledger, workflow_id, 2))
        assert (first.prompt_preview, second.prompt_preview) == ('round 2', 'round 1')
        assert len({*first.temporal_run_ids, *second.temporal_run_ids}) == 2
        for run in (first, second):
            assert len(run.temporal_run_ids) == 1 and run.status == 'completed'
            report = await reconcile_run(served.client, ledger, run.run_id)
            assert report.clean and not report.repaired and not report.open, report.findings
            assert report.ok == await _rows(ledger, run.run_id)


async def test_continue_and_fork_an_agent_run_of_a_user_workflow(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """`continue_run` and `fork_run` of a run recorded in a user workflow start `AgentRunWorkflow`s seeded
    from its snapshots, on its workflow's task queue (where the plugin serves the agent), lineage recorded."""
    async with (
        SqliteLedger(tmp_path / 'runs.db') as ledger,
        serve(temporal_env, ledger, [calc_agent], workflows=[AnswerWorkflow], activities=[prepare]) as served,
    ):
        workflow_id = f'answer-{uuid.uuid4().hex[:8]}'
        assert (
            await served.client.execute_workflow(
                AnswerWorkflow.run, 'topic', id=workflow_id, task_queue=served.task_queue
            )
            == 'done!'
        )
        [source] = await ledger.runs(workflow_id=workflow_id)
        assert source.workflow_type == 'AnswerWorkflow'
        final = await ledger.latest_snapshot(source.run_id)
        earlier = (await ledger.snapshot(final.snapshot_id)).messages

        handle = await agentledger.continue_run(served.client, source.run_id, 'and now?')
        continued = await handle.result()
        assert (continued.output, continued.usage.requests) == ('done', 1)
        record = await ledger.run(continued.run_id)
        assert record.forked_from == ForkRef(source.run_id, final.snapshot_id, 'continue')
        assert (record.workflow_type, record.task_queue) == (AGENT_RUN_WORKFLOW_TYPE, served.task_queue)
        assert record.workflow_id != workflow_id and record.conversation_id == source.conversation_id
        # The first model request's history: the earlier conversation, as stored, and then the new prompt.
        first_request = (await ledger.snapshots(continued.run_id))[0]
        assert first_request.parent_id == final.snapshot_id
        seen = (await ledger.snapshot(first_request.snapshot_id)).messages
        assert ModelMessagesTypeAdapter.dump_json(seen[:-1]) == ModelMessagesTypeAdapter.dump_json(earlier)
        assert isinstance(seen[-1], ModelRequest)
        assert [p.content for p in seen[-1].parts if isinstance(p, UserPromptPart)] == ['and now?']
        assert any(
            isinstance(part, UserPromptPart) and part.content == 'compute topic!'
            for message in seen
            if isinstance(message, ModelRequest)
            for part in message.parts
        )

        at_two = await ledger.snapshot_at_step(source.run_id, 2)
        forked = await (await agentledger.fork_run(served.client, source.run_id, at_step=2)).result()
        # Step 2's history replays steps 2 to 5 of the script: four model requests.
        assert (forked.output, forked.usage.requests) == ('done', 4)
        forked_record = await ledger.run(forked.run_id)
        assert forked_record.forked_from == ForkRef(source.run_id, at_two.snapshot_id, 'fork')
        assert forked_record.workflow_type == AGENT_RUN_WORKFLOW_TYPE
        assert {run.run_id for run in await ledger.runs(forked_from_run_id=source.run_id)} == {
            continued.run_id,
            forked.run_id,
        }
        # The user workflow's runs are untouched: the seeded runs have workflows of their own.
        assert [run.run_id for run in await ledger.runs(workflow_id=workflow_id)] == [source.run_id]


async def test_the_command_line_names_the_user_workflow_and_continues_its_runs(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`show` names the workflow and its type and lists its agent runs; `runs --workflow-id` lists them;
    `reconcile` agrees; `continue` goes on from a run of a user workflow on that workflow's task queue."""
    path = tmp_path / 'runs.db'
    url = f'sqlite:///{path}'
    address = temporal_env.client.service_client.config.target_host
    async with (
        SqliteLedger(path) as ledger,
        serve(temporal_env, ledger, [calc_agent], workflows=[ReviewWorkflow], activities=[prepare]) as served,
    ):
        workflow_id = f'review-{uuid.uuid4().hex[:8]}'
        handle = await served.client.start_workflow(
            ReviewWorkflow.run, 'topic', id=workflow_id, task_queue=served.task_queue
        )
        await handle.signal(ReviewWorkflow.approve, 'ok')
        await handle.result()
        first, second = await _until(lambda: _sealed_runs(ledger, workflow_id, 2))

        assert await invoke('show', second.run_id, '--ledger', url) == 0
        out = capsys.readouterr().out
        assert fact(out, 'workflow') == f'{workflow_id} (ReviewWorkflow)'
        assert fact(out, 'workflow runs') == f'{first.run_id} (calc, completed)'
        assert line_with(out, second.run_id, 'this run').strip() == f'{second.run_id} (calc, completed, this run)'
        assert await invoke('show', second.run_id, '--ledger', url, '--json') == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown['run']['workflow_type'] == 'ReviewWorkflow'
        assert shown['workflow_runs'] == [first.run_id, second.run_id]

        assert await invoke('runs', '--ledger', url, '--workflow-id', workflow_id) == 0
        out = capsys.readouterr().out
        for run in (first, second):
            assert line_with(out, run.run_id).split()[-2:] == ['ReviewWorkflow', workflow_id]
        assert await invoke('runs', '--ledger', url, '--workflow-id', workflow_id, '--json') == 0
        listed = json.loads(capsys.readouterr().out)['runs']
        assert sorted(run['run_id'] for run in listed) == sorted([first.run_id, second.run_id])
        assert {run['workflow_type'] for run in listed} == {'ReviewWorkflow'}
        assert await invoke('runs', '--ledger', url, '--workflow-id', 'no-such-workflow') == 0
        assert capsys.readouterr().out.strip() == 'No runs.'

        assert await invoke('reconcile', '--all', '--ledger', url, '--address', address, '--dry-run') == 0
        out = capsys.readouterr().out
        for run in (first, second):
            assert line_with(out, run.run_id).endswith('agrees with history')

        # No --task-queue: the continuation goes to the user workflow's, where the plugin serves the agent.
        assert await invoke('continue', first.run_id, 'and now?', '--ledger', url, '--address', address, '--wait') == 0
        assert capsys.readouterr().out == 'done\n'
        [continued] = await ledger.runs(forked_from_run_id=first.run_id)
        assert (continued.status, continued.task_queue, continued.workflow_type) == (
            'completed',
            served.task_queue,
            AGENT_RUN_WORKFLOW_TYPE,
        )
        assert await invoke('show', first.run_id, '--ledger', url) == 0
        final = await ledger.latest_snapshot(first.run_id)
        assert fact(capsys.readouterr().out, 'continued by') == (
            f'{continued.run_id} (completed, from snapshot {final.snapshot_id})'
        )
        assert await invoke('show', continued.run_id, '--ledger', url) == 0
        out = capsys.readouterr().out
        assert fact(out, 'workflow') == f'{continued.workflow_id} (AgentRunWorkflow)'
        assert 'workflow runs' not in out
