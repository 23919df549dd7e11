"""End-to-end C18 for users' own workflows: the plugin turned on under a workflow in flight, on a real dev server.

`BriefingWorkflow` (`tests/histories/own_workflows.py`) starts on a worker without the ledger plugin. While
it waits for its signal after its first agent run, or in the middle of that run, that worker stops and one
with `LedgerPlugin` takes over its task queue. The workflow goes on without a workflow task failure, the
agent runs it starts from then on are complete ledger runs (the first is not one), and its history, and
that of a run with the plugin throughout, replay with the plugin.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from agentledger import LedgerPlugin, SqliteLedger
from agentledger.model._ids import own_workflow_run_id
from agentledger.workflows._own import RUN_PATCH_PREFIX

from ..conftest import check_at_session_end
from ..helpers.checks import check_complete_calc_run, kinds
from ..histories.own_workflows import AGENTS, BriefingWorkflow
from ..histories.record_own import (
    EXPECTED_RESULT,
    LEDGER_WORKER,
    NOTE,
    PLAIN_WORKER,
    TOPIC,
    ledger_replayer,
    ledger_worker,
    moved_to_the_plugin,
    patch_ids,
    plain_client,
    wait_for_signal_wait,
    with_children,
)


def _check_history(history: WorkflowHistory) -> None:
    """No workflow task failed; the workflow's own activities kept their ids and carry no ledger header."""
    failed = [e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert not failed, f'workflow tasks failed at events {failed}'
    assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    own = [a for a in scheduled if a.activity_type.name in ('prepare_brief', 'file_report')]
    assert [a.activity_type.name for a in own] == ['prepare_brief', 'file_report']
    for attributes in own:
        assert not attributes.activity_id.startswith('agent-'), attributes.activity_id
        assert 'agentledger' not in attributes.header.fields


async def _replays_with_the_plugin(histories: list[WorkflowHistory], ledger_path: Path) -> None:
    # Replay reads the payloads the ledger holds: from the same file, opened afresh.
    replayer = ledger_replayer(SqliteLedger(ledger_path))
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f'{history.workflow_id}: {result.replay_failure}'


def _scheduled_by(history: WorkflowHistory, activity_id: str) -> str:
    """The identity of the worker whose workflow task scheduled the activity `activity_id`."""
    identities = {
        e.event_id: e.workflow_task_completed_event_attributes.identity
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    }
    for e in history.events:
        attributes = e.activity_task_scheduled_event_attributes
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and attributes.activity_id == activity_id:
            return identities[attributes.workflow_task_completed_event_id]
    raise AssertionError(f'no activity {activity_id}')


@pytest.mark.parametrize('mid_run', [False, True], ids=['at-the-signal-wait', 'mid-agent-run'])
async def test_plugin_turned_on_under_a_user_workflow_in_flight(
    temporal_env: WorkflowEnvironment, tmp_path: Path, mid_run: bool
) -> None:
    """The worker without the plugin stops after the first agent run, or during it; one with the plugin goes on."""
    target = temporal_env.client.service_client.config.target_host
    queue = f'tq-{uuid.uuid4().hex[:8]}'
    workflow_id = f'briefing-{uuid.uuid4().hex[:8]}'
    plain = await plain_client(target)
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        client = await Client.connect(target, plugins=[LedgerPlugin(ledger, agents=AGENTS)])
        async with moved_to_the_plugin(plain, client, queue, workflow_id, mid_run=mid_run) as (handle, left):
            await wait_for_signal_wait(handle)
            await handle.signal(BriefingWorkflow.go, NOTE)
            assert await handle.result() == EXPECTED_RESULT
        check_at_session_end(ledger, client)
        history = await handle.fetch_history()
        _check_history(history)
        assert not [p for p in patch_ids(left) if p.startswith(RUN_PATCH_PREFIX)]
        # The first agent run's last model request (activity 4: not a ledger run's, so Temporal's own id) was
        # scheduled by the worker without the plugin, or, when that stopped mid-run, by the one with it.
        assert _scheduled_by(history, '4') == (LEDGER_WORKER if mid_run else PLAIN_WORKER)
        assert [p for p in patch_ids(history) if p.startswith(RUN_PATCH_PREFIX)] == [
            f'{RUN_PATCH_PREFIX}{ordinal}' for ordinal in (2, 3, 4)
        ]

        # The agent run before the switch (or across it) is not in the ledger; the three after it are complete runs.
        first_run_id = handle.first_execution_run_id
        assert first_run_id is not None
        run_ids = [own_workflow_run_id(workflow_id, first_run_id, None, ordinal) for ordinal in (1, 2, 3, 4)]
        runs = {run.run_id: run for run in await ledger.runs(workflow_id=workflow_id)}
        assert set(runs) == set(run_ids[1:])
        assert [runs[run_id].prompt_preview for run_id in run_ids[1:]] == [
            f'{TOPIC} a',
            f'{TOPIC} b',
            f'{NOTE}: {EXPECTED_RESULT[0]}',
        ]
        for run_id in run_ids[1:3]:
            await check_complete_calc_run(ledger, run_id)
        scout = runs[run_ids[3]]
        assert (scout.agent_name, scout.status, scout.workflow_type) == ('scout', 'completed', 'BriefingWorkflow')
        events = await ledger.events(scout.run_id)
        assert (events[0].kind, events[-1].kind) == ('run_started', 'run_completed')
        assert kinds(events)['model_request_completed'] == 2
        # Its `archive` call ran as a child workflow, not an activity: recorded from the workflow, as one attempt.
        tools = {(e.tool_name, e.kind, e.attempt, e.state, e.outcome) for e in events if e.tool_name is not None}
        assert tools == {
            ('count_words', 'tool_call_started', 1, 'accepted', None),
            ('count_words', 'tool_call_completed', 1, 'accepted', 'returned'),
            ('archive', 'tool_call_started', 1, 'accepted', None),
            ('archive', 'tool_call_completed', 1, 'accepted', 'returned'),
        }
        archived = next(e for e in events if e.tool_name == 'archive' and e.kind == 'tool_call_completed')
        assert archived.activity_id == f'child:{archived.tool_call_id}'
        assert archived.activity_type is not None and archived.activity_type.endswith('__call_tool__child_workflow')

        await _replays_with_the_plugin(await with_children(client, history), tmp_path / 'runs.db')


async def test_user_workflow_run_with_the_plugin_replays_with_it(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    target = temporal_env.client.service_client.config.target_host
    queue = f'tq-{uuid.uuid4().hex[:8]}'
    workflow_id = f'briefing-{uuid.uuid4().hex[:8]}'
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        client = await Client.connect(target, plugins=[LedgerPlugin(ledger, agents=AGENTS)])
        async with ledger_worker(client, queue):
            handle = await client.start_workflow(BriefingWorkflow.run, TOPIC, id=workflow_id, task_queue=queue)
            await wait_for_signal_wait(handle)
            await handle.signal(BriefingWorkflow.go, NOTE)
            assert await handle.result() == EXPECTED_RESULT
        check_at_session_end(ledger, client)
        history = await handle.fetch_history()
        _check_history(history)
        runs = await ledger.runs(workflow_id=workflow_id)
        assert sorted(run.agent_name for run in runs) == ['calc', 'calc', 'scout', 'scout']
        assert all(run.status == 'completed' for run in runs)
        await _replays_with_the_plugin(await with_children(client, history), tmp_path / 'runs.db')
