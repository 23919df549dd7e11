"""End-to-end on a real dev server: Temporal resets in the ledger, and every id the UI shows in the CLI.

`temporal workflow reset` (the Temporal CLI) resets a completed run to its first or its last workflow
task; the worker records one `run_reset` event with the reset point, the reason and the identity, and
`agentledger show` groups the steps by Temporal run with one accepted attempt per step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from agentledger import SqliteLedger, resolve_run_id
from agentledger.cli import main as cli
from agentledger.errors import UnknownRunIdError
from agentledger.model._resets import ResetPoint

from ..helpers import journal_agents
from ..helpers.checks import temporal_reset
from .test_e2e_journal import finished_run_id, start_payment, worker


@pytest.fixture(autouse=True)
def counters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(journal_agents.CALLS_ENV, str(tmp_path / 'calls.txt'))
    monkeypatch.setenv(journal_agents.TARGET_ENV, str(tmp_path / 'target.jsonl'))


async def task_after_the_start(client: Client, workflow_id: str) -> int:
    """The event id of the workflow task completed after the run's first activity (its start): a later task."""
    events = [e async for e in client.get_workflow_handle(workflow_id).fetch_history_events()]
    started = next(e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
    return next(
        e.event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and e.event_id > started
    )


@pytest.mark.parametrize('point', ['first', 'later'])
async def test_a_reset_is_recorded_once_and_show_groups_by_temporal_run(
    temporal_env: WorkflowEnvironment, tmp_path: Path, point: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """C14: a completed run reset to its first (or a later) workflow task records one `run_reset` event, with the event
    reset to, the reason and the identity; `show` lists the steps under each Temporal run, and each step has
    one accepted attempt across the ledger run: the reset run's attempt of a step run again is superseded."""
    url = f'sqlite:///{tmp_path / "runs.db"}'
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        task_queue = f'resets-{uuid.uuid4().hex[:8]}'
        async with worker(temporal_env, ledger, task_queue) as client:
            workflow_id = await start_payment(temporal_env, ledger, task_queue)
            run_id = await finished_run_id(client, ledger, workflow_id)
            first_run = (await ledger.run(run_id)).temporal_run_id
            if point == 'first':
                await temporal_reset(temporal_env, workflow_id, ['--type', 'FirstWorkflowTask'], 'try again')
                expected_event = 4  # started, task scheduled, task started, then the reset's task failed
            else:
                expected_event = await task_after_the_start(client, workflow_id)
                await temporal_reset(temporal_env, workflow_id, ['--event-id', str(expected_event)], 'try the end')
            handle = client.get_workflow_handle(workflow_id)
            new_run = (await handle.describe()).run_id
            await asyncio.wait_for(handle.result(), 60)
            assert new_run != first_run

        record = await ledger.run(run_id)
        assert record.temporal_run_ids == (first_run, new_run)
        events = await ledger.events(run_id)
        resets = [ResetPoint.from_event(e) for e in events if e.kind == 'run_reset']
        reason = 'try again' if point == 'first' else 'try the end'
        # The reason as history records it (the Temporal CLI puts its user's name first), and the identity of the
        # event Temporal wrote at the reset point (the server's own: no history event keeps the caller's identity).
        [recorded] = resets
        assert recorded is not None
        assert (recorded.temporal_run_id, recorded.base_run_id) == (new_run, first_run)
        assert recorded.event_id == expected_event
        assert recorded.reason.endswith(f': {reason}') and recorded.identity
        steps = await ledger.steps(run_id)
        accepted: dict[tuple[str, int | None, str | None], int] = {}
        for step in steps:
            if step.accepted_attempt is not None:
                key = (step.kind, step.step, step.tool_call_id)
                accepted[key] = accepted.get(key, 0) + 1
        assert accepted and set(accepted.values()) == {1}
        # Every step (activity) ran after the run's start, so each ran again in the new run: the first run's
        # attempts of them are superseded, and the new run's accepted.
        assert {s.status for s in steps if s.temporal_run_id == first_run} == {'superseded'}
        assert all(s.accepted_attempt is not None for s in steps if s.temporal_run_id == new_run)

    # The run_reset event is a fact of the new Temporal run's history: reconcile finds nothing to repair.
    host = temporal_env.client.service_client.config.target_host
    assert await asyncio.to_thread(cli, ['reconcile', run_id, '--dry-run', '--address', host, '--ledger', url]) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(cli, ['show', run_id, '--ledger', url]) == 0
    shown = capsys.readouterr().out
    assert 'run reset' in shown and f'{reason}, by {recorded.identity}' in shown
    assert f'reset to event {expected_event}' in shown
    step_lines = shown.split('\nSteps\n', 1)[1].split('\n\n', 1)[0].splitlines()
    assert f'  Temporal run {first_run[:8]}' in step_lines[1]
    assert any(line.startswith(f'  Temporal run {new_run[:8]} (reset from {first_run[:8]}') for line in step_lines)
    rows = [line for line in step_lines[1:] if not line.startswith('  Temporal run')]
    accepted_marks = [line.split()[:5] for line in rows if '#' in line]
    assert all('superseded' in line for line in rows[: len(rows) // 2])
    # One accepted mark per step number and kind, across both Temporal runs.
    keys = [(parts[0], parts[1]) for parts in accepted_marks]
    assert len(keys) == len(set(keys))


async def test_a_chain_of_two_resets_records_each_against_its_own_base_run(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run reset to its first workflow task (A to B), then reset again at a later task (B to C): C's history
    carries a copy of B's reset event first, yet each `run_reset` event names its own base run, event and
    reason; each step has one accepted attempt, and `show` lists each Temporal run under the one it was reset from."""
    url = f'sqlite:///{tmp_path / "runs.db"}'
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        task_queue = f'chain-{uuid.uuid4().hex[:8]}'
        async with worker(temporal_env, ledger, task_queue) as client:
            workflow_id = await start_payment(temporal_env, ledger, task_queue)
            run_id = await finished_run_id(client, ledger, workflow_id)
            first = (await ledger.run(run_id)).temporal_run_id
            handle = client.get_workflow_handle(workflow_id)
            await temporal_reset(temporal_env, workflow_id, ['--type', 'FirstWorkflowTask'], 'first reset')
            second = (await handle.describe()).run_id
            await asyncio.wait_for(handle.result(), 60)
            later_task = await task_after_the_start(client, workflow_id)
            await temporal_reset(temporal_env, workflow_id, ['--event-id', str(later_task)], 'second reset')
            third = (await handle.describe()).run_id
            await asyncio.wait_for(handle.result(), 60)

        assert (await ledger.run(run_id)).temporal_run_ids == (first, second, third)
        resets = [ResetPoint.from_event(e) for e in await ledger.events(run_id) if e.kind == 'run_reset']
        recorded = [(r.temporal_run_id, r.base_run_id, r.event_id, r.reason.split(': ', 1)[1]) for r in resets if r]
        assert recorded == [(second, first, 4, 'first reset'), (third, second, later_task, 'second reset')]
        accepted: dict[tuple[str, int | None, str | None], int] = {}
        for step in await ledger.steps(run_id):
            if step.accepted_attempt is not None:
                key = (step.kind, step.step, step.tool_call_id)
                accepted[key] = accepted.get(key, 0) + 1
        assert accepted and set(accepted.values()) == {1}

    assert await asyncio.to_thread(cli, ['show', run_id, '--ledger', url]) == 0
    step_lines = capsys.readouterr().out.split('\nSteps\n', 1)[1].split('\n\n', 1)[0].splitlines()
    assert any(line.startswith(f'  Temporal run {second[:8]} (reset from {first[:8]}') for line in step_lines)
    assert any(line.startswith(f'  Temporal run {third[:8]} (reset from {second[:8]}') for line in step_lines)
    rows = [line for line in step_lines[1:] if not line.startswith('  Temporal run')]
    keys = [tuple(line.split()[:2]) for line in rows if '#' in line]
    assert keys and len(keys) == len(set(keys))


async def test_every_command_takes_each_id_the_ui_shows(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`show`, `snapshots`, `reconcile`, `continue`, `fork`, `resume`, `abandon`, `approve` and `deny` take a
    ledger run id, a workflow id (its latest run) or a Temporal run id; an id that names no run fails with
    the kinds of id tried (C17)."""
    url = f'sqlite:///{tmp_path / "runs.db"}'
    host = temporal_env.client.service_client.config.target_host
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        task_queue = f'ids-{uuid.uuid4().hex[:8]}'
        async with worker(temporal_env, ledger, task_queue) as client:
            workflow_id = await start_payment(temporal_env, ledger, task_queue)
            run_id = await finished_run_id(client, ledger, workflow_id)
            temporal_run_id = (await ledger.run(run_id)).temporal_run_id
            ids = [run_id, workflow_id, temporal_run_id]
            for given in ids:
                assert await resolve_run_id(ledger, given) == run_id
            temporal = ['--address', host, '--ledger', url]
            seeded: list[str] = []
            for given in ids:
                assert await asyncio.to_thread(cli, ['show', given, '--ledger', url]) == 0
                assert f'run           {run_id}' in capsys.readouterr().out
                assert await asyncio.to_thread(cli, ['snapshots', given, '--ledger', url, '--json']) == 0
                assert f'"run_id": "{run_id}"' in capsys.readouterr().out
                assert await asyncio.to_thread(cli, ['reconcile', given, '--dry-run', *temporal]) == 0
                assert run_id in capsys.readouterr().out
                for seeding in (['continue', given, 'again'], ['fork', given, '--at-step', '1']):
                    assert await asyncio.to_thread(cli, [*seeding, '--json', *temporal]) == 0
                    started = json.loads(capsys.readouterr().out)
                    assert started['forked_from']['run_id'] == run_id
                    seeded.append(started['workflow_id'])
                # The run is completed: each command finds it by this id and refuses it for its status.
                for command in (['resume', given], ['abandon', given], ['approve', given, 'call-1']):
                    assert await asyncio.to_thread(cli, [*command, *temporal]) == 1
                    assert f'run {run_id} is not' in capsys.readouterr().err
                assert await asyncio.to_thread(cli, ['deny', given, 'call-1', '--reason', 'no', *temporal]) == 1
                assert f'run {run_id} is not awaiting approval' in capsys.readouterr().err
            # Each id seeded one continuation and one fork of the run; let them end before the worker stops (the
            # scripted model has no answer for them, so they fail).
            for seeded_workflow_id in seeded:
                with contextlib.suppress(WorkflowFailureError):
                    await asyncio.wait_for(client.get_workflow_handle(seeded_workflow_id).result(), 60)

        unknown = str(uuid.uuid4())
        with pytest.raises(UnknownRunIdError) as raised:
            await resolve_run_id(ledger, unknown)
        assert raised.value.tried == ('ledger run id', 'workflow id', 'Temporal run id')
    for command in (['show', unknown, '--ledger', url], ['resume', 'no-such-workflow', *temporal]):
        assert await asyncio.to_thread(cli, command) == 1
        err = capsys.readouterr().err
        assert 'no ledger run goes by' in err and 'workflow id' in err
    assert await asyncio.to_thread(cli, ['show', unknown, '--ledger', url]) == 1
    assert 'tried it as a ledger run id, workflow id or Temporal run id' in capsys.readouterr().err
