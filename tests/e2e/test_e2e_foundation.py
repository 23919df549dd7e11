"""End-to-end: agents run as `AgentRunWorkflow` on a real dev server, recorded in a real SQLite ledger."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import DeferredToolRequests
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

import agentledger
import agentledger.errors
import agentledger.model
from agentledger import SqliteLedger
from agentledger.model import StepEvent
from agentledger.workflows import AgentRunInput, AgentRunWorkflow
from agentledger.workflows._registry import register_agent

from ..conftest import serve
from ..helpers.agents import (
    ZOMBIE_DELAY_S,
    Account,
    LockTarget,
    Verdict,
    calc_agent,
    defer_agent,
    outage_agent,
    plain_agent,
    typed_agent,
    zombie_agent,
)
from ..helpers.checks import check_calc_run, kinds, retried_failures


async def test_run_records_every_step_c1_c2_c3(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """C1 (counts, causal order), C2 (a failed attempt then the next), C3 (ModelRetry, validation error)."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [calc_agent]) as served:
        result = await agentledger.run(served.client, calc_agent, 'compute', task_queue=served.task_queue)
        await check_calc_run(ledger, result)


async def test_typed_output_and_deps(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """The caller gets the agent's output_type back; deps cross as data and are validated."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [typed_agent]) as served:
        handle = await agentledger.start(
            served.client, typed_agent, 'judge', task_queue=served.task_queue, deps=Account(user_id=7)
        )
        result = await handle.result()
        assert result.output == Verdict(user_id=7, approved=True)
        assert result.run_id == handle.run_id
        assert (await ledger.runs(agent='typed'))[0].run_id == handle.run_id


async def test_run_options_given_once_start_runs_alike(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """One `RunOptions` passed as `**options` to two starts gives both workflows the same input, every option in it;
    a name `RunOptions` does not declare is refused before anything starts."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [typed_agent]) as served:
        options = agentledger.RunOptions(
            deps=Account(user_id=7),
            conversation_id='conversation-1',
            metadata={'origin': 'test'},
            history_event_limit=10_000,
            park_on_failure=True,
        )
        queue = served.task_queue
        first = await agentledger.start(
            served.client, typed_agent, 'judge', task_queue=queue, workflow_id='a', **options
        )
        second = await agentledger.start(
            served.client, typed_agent, 'judge', task_queue=queue, workflow_id='b', **options
        )
        inputs = []
        for handle in (first, second):
            assert (await handle.result()).output == Verdict(user_id=7, approved=True)
            history = await handle.workflow_handle.fetch_history()
            started = history.events[0].workflow_execution_started_event_attributes
            assert started.task_queue.name == served.task_queue
            (input,) = await served.client.data_converter.decode(started.input.payloads, [AgentRunInput])
            inputs.append(input)
        assert (first.workflow_id, second.workflow_id) == ('a', 'b')
        # Alike but for the workflow id each start stamps into its input (so that a copy is told apart).
        assert [i.started_as for i in inputs] == ['a', 'b']
        assert dataclasses.replace(inputs[0], started_as=None) == dataclasses.replace(inputs[1], started_as=None)
        assert (inputs[0].conversation_id, inputs[0].metadata) == ('conversation-1', {'origin': 'test'})
        assert inputs[0].park_on_failure and inputs[0].history_event_limit == 10_000

        misspelt: dict[str, Any] = {'park_on_faliure': True}
        with pytest.raises(TypeError, match="start\\(\\) got an unexpected keyword argument 'park_on_faliure'"):
            await agentledger.start(served.client, typed_agent, 'judge', task_queue=queue, **misspelt)
        with pytest.raises(ValueError, match='takes no fresh_start'):
            await agentledger.continue_run(served.client, first.run_id, fresh_start=True)
        assert sorted(run.workflow_id for run in await ledger.runs()) == ['a', 'b']  # the refused calls started nothing


async def _failure(coro: object) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as raised:
        await coro  # type: ignore[misc]
    cause = raised.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def test_clear_errors_fail_the_workflow(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """Unknown agent, wrong deps and a missing durability capability fail the run with a readable message."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [typed_agent]) as served:
        unknown = await _failure(agentledger.run(served.client, 'nope', 'hi', task_queue=served.task_queue))
        assert unknown.type == 'UnknownAgent'
        assert "no agent named 'nope'" in unknown.message and 'typed' in unknown.message

        bad_deps = await _failure(
            agentledger.run(served.client, typed_agent, 'hi', task_queue=served.task_queue, deps={'user_id': 'x'})
        )
        assert bad_deps.type == 'InvalidDeps' and 'Account' in bad_deps.message

        # The plugin refuses such an agent up front; a worker registering one by other means still fails clearly.
        register_agent(served.task_queue, plain_agent)
        not_durable = await _failure(
            served.client.execute_workflow(
                AgentRunWorkflow.run,
                AgentRunInput(agent='not-durable', prompt='hi'),
                id=f'nd-{served.task_queue}',
                task_queue=served.task_queue,
            )
        )
        assert not_durable.type == 'AgentNotDurable' and 'TemporalDurability' in not_durable.message

        failed = await ledger.runs(status='failed')
        assert {r.error.type for r in failed if r.error} == {'UnknownAgent', 'InvalidDeps', 'AgentNotDurable'}
        for record in failed:
            events = await ledger.events(record.run_id)
            assert [e.kind for e in events] == ['run_started', 'run_failed']


def test_plugin_rejects_agents_it_cannot_run() -> None:
    with pytest.raises(ValueError, match='TemporalDurability'):
        agentledger.LedgerPlugin(agentledger.MemoryLedger(), agents=[plain_agent])
    with pytest.raises(ValueError, match='unique'):
        agentledger.LedgerPlugin(agentledger.MemoryLedger(), agents=[calc_agent, calc_agent])


async def test_zombie_attempt_is_abandoned_and_matches_history(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """An attempt that outlives its timeout and writes late is abandoned; the accepted one is Temporal's."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [zombie_agent]) as served:
        handle = await agentledger.start(served.client, zombie_agent, 'go', task_queue=served.task_queue)
        result = await handle.result()
        assert result.output == 'finished'

        async def late_write_landed() -> list[StepEvent]:
            while True:
                events = await ledger.events(result.run_id)
                if any(e.tool_name == 'slow' and e.attempt == 1 and e.kind == 'tool_call_completed' for e in events):
                    return events
                await asyncio.sleep(0.2)

        events = await asyncio.wait_for(late_write_landed(), timeout=ZOMBIE_DELAY_S + 10)
        slow = [e for e in events if e.tool_name == 'slow']
        zombie_end = next(e for e in slow if e.attempt == 1 and e.kind == 'tool_call_completed')
        assert zombie_end.state == 'abandoned'
        assert zombie_end.seq > next(e for e in events if e.kind == 'run_completed').seq
        assert {e.state for e in slow if e.attempt == 1} == {'abandoned'}

        steps = await ledger.steps(result.run_id)
        slow_step = next(s for s in steps if s.tool_name == 'slow')

        # Temporal's history records the attempt it accepted on the activity's started event.
        history = await handle.workflow_handle.fetch_history()
        scheduled = {
            e.event_id: e.activity_task_scheduled_event_attributes.activity_id
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        }
        accepted_by_temporal = {
            scheduled[e.activity_task_started_event_attributes.scheduled_event_id]: (
                e.activity_task_started_event_attributes.attempt
            )
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        }
        assert slow_step.accepted_attempt == accepted_by_temporal[slow_step.activity_id] == 2
        for step in steps:
            assert step.accepted_attempt == accepted_by_temporal[step.activity_id]


async def test_ledger_outage_pauses_the_run_and_loses_nothing_c16(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """C16: while the ledger cannot be written, attempts fail with a specific error and are retried; nothing is lost."""
    path = tmp_path / 'runs.db'
    ledger = SqliteLedger(path, retry=agentledger.RetryPolicy(attempts=2, initial_backoff_s=0.05), busy_timeout_s=0.1)
    async with ledger, serve(temporal_env, ledger, [outage_agent]) as served:
        handle = await agentledger.start(
            served.client,
            outage_agent,
            'go',
            task_queue=served.task_queue,
            deps=LockTarget(path=str(path), hold_s=2.0),
        )
        result = await handle.result()
        assert result.output == 'survived'

        events = await ledger.events(result.run_id)
        accepted = kinds(events)
        assert accepted['model_request_started'] == accepted['model_request_completed'] == 2
        assert accepted['tool_call_started'] == accepted['tool_call_completed'] == 1
        assert events[-1].kind == 'run_completed'

        steps = await ledger.steps(result.run_id)
        tool = next(s for s in steps if s.tool_name == 'lock_ledger')
        assert tool.accepted_attempt is not None and tool.accepted_attempt > 1
        # Attempt 1 ran the tool but could not record its end, so Temporal saw it fail: the worker kept that
        # end and wrote it once the ledger was back, before the attempt that followed started.
        first = [e for e in events if e.tool_name == 'lock_ledger' and e.attempt == 1]
        assert [(e.kind, e.state) for e in first] == [
            ('tool_call_started', 'abandoned'),
            ('tool_call_failed', 'abandoned'),
        ]
        end = first[1]
        assert end.error is not None and end.error.type == 'LedgerUnavailableError'
        assert end.detail == 'the tool call finished, but the ledger could not record it'
        later = next(e for e in events if e.tool_name == 'lock_ledger' and e.attempt > 1)
        assert end.seq < later.seq

        # Temporal saw the specific failure: the ledger error, naming what could not be written.
        failures = await retried_failures(handle.workflow_handle)
        assert any(
            f.application_failure_info.type == 'LedgerUnavailableError' and 'could not write' in f.message
            for f in failures
        )


async def test_worker_with_unopenable_ledger_fails_at_start(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """A ledger that cannot be opened fails the worker's start with its own error instead of hanging."""
    not_a_database = tmp_path / 'not-a-db'
    not_a_database.write_bytes(b'this is not sqlite' * 100)
    with pytest.raises(agentledger.errors.LedgerError, match='not-a-db'):
        async with serve(temporal_env, SqliteLedger(not_a_database), [calc_agent]):
            await asyncio.sleep(30)


async def test_deferred_and_approval_required_tools_end_in_a_recorded_state(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """C3: a tool needing approval (no activity) and a tool deferring itself both end completed, with their outcome."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [defer_agent]) as served:
        result = await agentledger.run(served.client, defer_agent, 'pay', task_queue=served.task_queue)
        assert isinstance(result.output, DeferredToolRequests)  # typed, from the union of output specs
        assert [c.tool_name for c in result.output.approvals] == ['wire_money']
        assert [c.tool_name for c in result.output.calls] == ['ask_human']

        events = await ledger.events(result.run_id)
        tools = sorted((e.tool_name, e.kind, e.outcome) for e in events if e.step_kind == 'tool_call')
        assert tools == [
            ('ask_human', 'tool_call_completed', 'deferred'),
            ('ask_human', 'tool_call_started', None),
            ('wire_money', 'tool_call_completed', 'approval_required'),
            ('wire_money', 'tool_call_started', None),
        ]
        effects = {e.tool_name: (e.status, e.outcome) for e in await ledger.tool_effects(result.run_id)}
        assert effects == {'ask_human': ('completed', 'deferred'), 'wire_money': ('completed', 'approval_required')}


async def test_ledger_outage_under_warn_lets_the_run_go_on_and_marks_it_degraded_c16(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """C16, outage policy `warn`: the SQLite file is locked mid-run. The run goes on and completes while the
    ledger refuses writes; what it missed is written once the lock is gone and the run is marked degraded;
    `reconcile` checks it against history and clears the mark."""
    path = tmp_path / 'runs.db'
    ledger = SqliteLedger(path, retry=agentledger.RetryPolicy(attempts=2, initial_backoff_s=0.05), busy_timeout_s=0.1)
    async with ledger, serve(temporal_env, ledger, [outage_agent], plugin_options={'outage': 'warn'}) as served:
        handle = await agentledger.start(
            served.client, outage_agent, 'go', task_queue=served.task_queue, deps=LockTarget(path=str(path), hold_s=4.0)
        )
        result = await handle.result()
        assert result.output == 'survived'
        # The run finished while the file was still locked: its seal is not in the ledger yet.
        assert (await ledger.run(result.run_id)).status == 'running'

        async def caught_up() -> agentledger.model.RunRecord:
            while (record := await ledger.run(result.run_id)).status == 'running':
                await asyncio.sleep(0.1)
            return record

        record = await asyncio.wait_for(caught_up(), timeout=30)
        assert record.status == 'completed'
        assert any('tool_call_completed of lock_ledger' in line for line in record.degraded), record.degraded
        assert any('seal (completed)' in line for line in record.degraded)

        events = await ledger.events(result.run_id)
        accepted = kinds(events)
        assert accepted['model_request_started'] == accepted['model_request_completed'] == 2
        assert accepted['tool_call_started'] == accepted['tool_call_completed'] == 1
        # Nothing was retried: under `warn` the attempt that ran the tool is the one the run used.
        tool = next(s for s in await ledger.steps(result.run_id) if s.tool_name == 'lock_ledger')
        assert tool.accepted_attempt == 1
        assert await retried_failures(handle.workflow_handle) == []
        assert len(await ledger.snapshots(result.run_id)) == 3  # both requests and the final history

        report = await agentledger.reconcile_run(served.client, ledger, result.run_id)
        assert report.clean and report.repaired
        assert (await ledger.run(result.run_id)).degraded == ()
        assert [e.kind for e in await ledger.events(result.run_id)][-1] == 'ledger_repaired'


async def test_writes_a_stopped_worker_kept_during_an_outage_are_rebuilt_by_reconcile_c16(
    temporal_env: WorkflowEnvironment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """C16, `warn`: the worker stops while the ledger is still locked, losing what it kept in memory. It says so,
    and `reconcile` rebuilds every lost row and the seal from Temporal's history."""
    path = tmp_path / 'runs.db'
    ledger = SqliteLedger(path, retry=agentledger.RetryPolicy(attempts=2, initial_backoff_s=0.05), busy_timeout_s=0.1)
    async with ledger:
        async with serve(temporal_env, ledger, [outage_agent], plugin_options={'outage': 'warn'}) as served:
            handle = await agentledger.start(
                served.client,
                outage_agent,
                'go',
                task_queue=served.task_queue,
                deps=LockTarget(path=str(path), hold_s=3.0),
            )
            result = await handle.result()
            client = served.client
        assert 'rebuilds them from Temporal history' in caplog.text
        lost = await ledger.events(result.run_id)
        assert not any(e.tool_name == 'lock_ledger' and e.kind == 'tool_call_completed' for e in lost)
        assert (await ledger.run(result.run_id)).status == 'running'

        await asyncio.sleep(3.5)  # the lock is gone; nobody is left to write what was kept
        report = await agentledger.reconcile_run(client, ledger, result.run_id)
        assert report.repaired and report.status == 'completed'
        assert report.counts['missing'] >= 5, report.counts  # the tool's end, request 2, acceptances, the seal
        events = await ledger.events(result.run_id)
        accepted = kinds(events)
        assert accepted['model_request_started'] == accepted['model_request_completed'] == 2
        assert accepted['tool_call_started'] == accepted['tool_call_completed'] == 1
        assert accepted['run_completed'] == 1
        assert all(s.status == 'completed' for s in await ledger.steps(result.run_id))
        assert (await agentledger.reconcile_run(client, ledger, result.run_id)).clean
