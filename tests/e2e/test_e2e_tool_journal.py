"""End-to-end on a real dev server: the tool-call journal across resets, restarts and copied input.

The `steps` agent makes `STEPS` tool-calling steps; the fake provider, the tool bodies and the
once-only effects count what they do in files (see `journal_agents`).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RawValue
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import agentledger
from agentledger import LedgerPlugin, SqliteLedger
from agentledger.cli import main as cli
from agentledger.model import StepEvent
from agentledger.model._resets import ResetPoint
from agentledger.model._tool_journal import arguments_digest

from ..helpers import journal_agents
from ..helpers.checks import temporal_reset
from ..helpers.journal_agents import (
    REUSED_STEPS,
    STEPS,
    StepDeps,
    performed,
    provider_calls,
    reused_ids_agent,
    steps_agent,
    tool_runs,
)


@pytest.fixture(autouse=True)
def counters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(journal_agents.CALLS_ENV, str(tmp_path / 'calls.txt'))
    monkeypatch.setenv(journal_agents.TARGET_ENV, str(tmp_path / 'target.jsonl'))
    monkeypatch.setenv(journal_agents.TOOLS_ENV, str(tmp_path / 'tools.txt'))


@asynccontextmanager
async def worker(env: WorkflowEnvironment, ledger: SqliteLedger, task_queue: str) -> AsyncIterator[Client]:
    plugin = LedgerPlugin(ledger, agents=[steps_agent, reused_ids_agent])
    client = await Client.connect(env.client.service_client.config.target_host, plugins=[plugin])
    async with Worker(client, task_queue=task_queue):
        yield client


async def completed(client: Client, workflow_id: str) -> None:
    await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), 120)


async def failed_fragile_run(
    client: Client, task_queue: str, deps: StepDeps, **options: Any
) -> agentledger.AgentRunHandle[str]:
    """Start a `steps` run whose `fragile` tool fails for good at step 2 (after `work` of step 2), and see it fail."""
    handle = await agentledger.start(client, steps_agent, 'fragile', task_queue=task_queue, deps=deps, **options)
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.workflow_handle.result(), 60)
    return handle


def replayed_tools(events: list[StepEvent], temporal_run_id: str) -> list[StepEvent]:
    return [
        e for e in events if e.kind == 'tool_call_completed' and e.replayed and e.temporal_run_id == temporal_run_id
    ]


async def test_reset_of_a_completed_ten_step_run_repeats_no_tool_and_no_model_call(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A completed 10-step run reset to its first workflow task completes again with 0 tool executions and
    0 model calls: the model-call journal gives back the same tool_call_ids, the tool-call journal their results."""
    url = f'sqlite:///{tmp_path / "runs.db"}'
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        task_queue = f'tools-{uuid.uuid4().hex[:8]}'
        async with worker(temporal_env, ledger, task_queue) as client:
            handle = await agentledger.start(client, steps_agent, 'go', task_queue=task_queue, deps=StepDeps())
            await completed(client, handle.workflow_id)
            first_run = (await ledger.run(handle.run_id)).temporal_run_id
            assert (provider_calls(), len(tool_runs()), len(performed())) == (STEPS + 1, STEPS, STEPS)

            await temporal_reset(
                temporal_env, handle.workflow_id, ['--type', 'FirstWorkflowTask'], 'reset the ten steps'
            )
            second_run = (await client.get_workflow_handle(handle.workflow_id).describe()).run_id
            assert second_run != first_run
            result = await asyncio.wait_for(client.get_workflow_handle(handle.workflow_id).result(), 120)

        assert result['output'] == f'{STEPS} steps done'
        assert (provider_calls(), len(tool_runs()), len(performed())) == (STEPS + 1, STEPS, STEPS)
        record = await ledger.run(handle.run_id)
        assert record.status == 'completed' and record.temporal_run_ids == (first_run, second_run)
        events = await ledger.events(handle.run_id)
        replayed = replayed_tools(events, second_run)
        assert sorted(e.tool_call_id or '' for e in replayed) == sorted(
            e.tool_call_id or '' for e in events if e.kind == 'tool_call_completed' and e.temporal_run_id == first_run
        )
        assert len(replayed) == STEPS and all(e.state == 'accepted' for e in replayed)
        starts = [e for e in events if e.kind == 'tool_call_started' and e.temporal_run_id == second_run]
        assert len(starts) == STEPS and all(e.replayed for e in starts)
        assert all(f'of Temporal run {first_run}' in (e.detail or '') for e in replayed)
        assert not replayed_tools(events, first_run)

        assert await asyncio.to_thread(cli, ['show', handle.run_id, '--ledger', url]) == 0
        assert capsys.readouterr().out.count('replayed from the tool-call journal') == STEPS


async def test_restart_after_a_failure_replays_the_completed_tool_calls(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Step 2 calls `work` and `fragile`; `fragile` fails for good after `work` completed. Starting the workflow
    id again resumes from the snapshot before step 2's answer, which the model-call journal replays: `work` of
    step 2 is replayed from the tool-call journal, and only `fragile` (which failed) runs again."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        task_queue = f'tools-{uuid.uuid4().hex[:8]}'
        deps = StepDeps(failed_marker=str(tmp_path / 'fragile-failed'))
        async with worker(temporal_env, ledger, task_queue) as client:
            handle = await failed_fragile_run(client, task_queue, deps)
            assert tool_runs() == ['work 1', 'work 2', 'fragile 2']

            again = await agentledger.start(
                client, steps_agent, 'fragile', task_queue=task_queue, deps=deps, workflow_id=handle.workflow_id
            )
            await completed(client, handle.workflow_id)

        assert tool_runs()[3:] == ['fragile 2', *(f'work {n}' for n in range(3, STEPS + 1))]
        assert len(performed()) == STEPS
        resumed = await ledger.run(again.run_id)
        assert resumed.forked_from is not None and resumed.forked_from.reason == 'restart'
        [replayed] = [e for e in await ledger.events(again.run_id) if e.kind == 'tool_call_completed' and e.replayed]
        # The restart numbers its steps from its snapshot: its first step is the failed run's second.
        assert (replayed.tool_name, replayed.step) == ('work', 1)


async def test_reset_with_reexecute_tools_runs_them_again_but_not_their_once_effects(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`agentledger reset --reexecute-tools` voids the run's journaled tool results: the reset run runs every
    tool again (the model answers still replay), while the `once` effects inside them are done and stay done."""
    url = f'sqlite:///{tmp_path / "runs.db"}'
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        task_queue = f'tools-{uuid.uuid4().hex[:8]}'
        async with worker(temporal_env, ledger, task_queue) as client:
            handle = await agentledger.start(client, steps_agent, 'go', task_queue=task_queue, deps=StepDeps())
            await completed(client, handle.workflow_id)
            host = temporal_env.client.service_client.config.target_host
            command = ['reset', handle.run_id, '--reexecute-tools', '--reason', 'tools changed', '--ledger', url]
            assert await asyncio.to_thread(cli, [*command, '--address', host]) == 0
            captured = capsys.readouterr()
            assert f'voided {STEPS} journaled tool results' in captured.err
            second_run = captured.out.split()[-1]
            await completed(client, handle.workflow_id)

        assert (provider_calls(), len(tool_runs()), len(performed())) == (STEPS + 1, 2 * STEPS, STEPS)
        record = await ledger.run(handle.run_id)
        assert record.temporal_run_ids[-1] == second_run
        events = await ledger.events(handle.run_id)
        assert not replayed_tools(events, second_run)
        # Temporal keeps no caller identity for a reset: `agentledger reset` names it in the recorded reason.
        [reset] = [ResetPoint.from_event(e) for e in events if e.kind == 'run_reset']
        assert reset is not None and reset.temporal_run_id == second_run
        caller, _, why = reset.reason.partition(': ')
        assert why == 'tools changed' and caller.startswith(f'{os.getpid()}@')
        entries = await ledger.records('tool-journal', scope=handle.workflow_id)
        assert len(entries) == STEPS
        # The tools that ran again recorded their results in place of the voided ones.
        assert {entry.value['temporal_run_id'] for entry in entries} == {second_run}
        assert all(entry.value['voided'] is None for entry in entries)


async def test_reexecute_tools_on_a_restart_runs_the_completed_tools_again(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Restarted with `reexecute_tools=True`, the call that completed before the failure runs again; a plain
    reset of the restarted run afterwards replays every tool call the restart ran (0 executions)."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        task_queue = f'tools-{uuid.uuid4().hex[:8]}'
        deps = StepDeps(failed_marker=str(tmp_path / 'fragile-failed'))
        async with worker(temporal_env, ledger, task_queue) as client:
            handle = await failed_fragile_run(client, task_queue, deps)
            again = await agentledger.start(
                client,
                steps_agent,
                'fragile',
                task_queue=task_queue,
                deps=deps,
                workflow_id=handle.workflow_id,
                reexecute_tools=True,
            )
            await completed(client, handle.workflow_id)
            assert tool_runs()[3:5] == ['work 2', 'fragile 2']
            assert len(performed()) == STEPS
            ran = len(tool_runs())

            # The restart asked to run the failed run's tools again, not those of every later reset of it.
            restarted = await client.get_workflow_handle(handle.workflow_id).describe()
            await temporal_reset(temporal_env, handle.workflow_id, ['--type', 'FirstWorkflowTask'], 'replay')
            await completed(client, handle.workflow_id)
            reset_run = (await client.get_workflow_handle(handle.workflow_id).describe()).run_id
            assert reset_run != restarted.run_id

        assert len(tool_runs()) == ran
        events = await ledger.events(again.run_id)
        # The restart's calls: `work` of steps 2..10 and `fragile` of step 2, all replayed.
        assert len(replayed_tools(events, reset_run)) == STEPS
        entries = await ledger.records('tool-journal', scope=handle.workflow_id)
        assert {entry.value['run_id'] for entry in entries} == {handle.run_id, again.run_id}
        restarted_entries = [entry for entry in entries if entry.value['run_id'] == again.run_id]
        assert {entry.value['temporal_run_id'] for entry in restarted_entries} == {restarted.run_id}


async def test_a_copy_under_a_new_workflow_id_is_a_fresh_run_naming_the_run_it_repeats(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The exact input of a run started under another workflow id (as the Temporal UI's "Start Workflow Like
    This One" does) is a new run: nothing is replayed, and the ledger says whose input it repeats."""
    url = f'sqlite:///{tmp_path / "runs.db"}'
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        task_queue = f'tools-{uuid.uuid4().hex[:8]}'
        async with worker(temporal_env, ledger, task_queue) as client:
            original = await agentledger.start(client, steps_agent, 'go', task_queue=task_queue, deps=StepDeps())
            await completed(client, original.workflow_id)
            history = await original.workflow_handle.fetch_history()
            [payload] = history.events[0].workflow_execution_started_event_attributes.input.payloads
            copy_id = f'copy-{uuid.uuid4().hex[:8]}'
            await client.start_workflow('AgentRunWorkflow', RawValue(payload), id=copy_id, task_queue=task_queue)
            await completed(client, copy_id)

        assert (provider_calls(), len(tool_runs()), len(performed())) == (2 * (STEPS + 1), 2 * STEPS, 2 * STEPS)
        [copy] = await ledger.runs(workflow_id=copy_id)
        assert copy.run_id != original.run_id and copy.forked_from is None and copy.status == 'completed'
        events = await ledger.events(copy.run_id)
        [repeated] = [e for e in events if e.kind == 'input_repeated']
        assert repeated.detail == f'repeats the input of run {original.run_id} (workflow {original.workflow_id})'
        assert not any(e.replayed for e in events)
        [own] = await ledger.runs(workflow_id=original.workflow_id)
        assert not [e for e in await ledger.events(own.run_id) if e.kind == 'input_repeated']

        assert await asyncio.to_thread(cli, ['show', copy.run_id, '--ledger', url]) == 0
        assert f'repeats the input of run {original.run_id}' in capsys.readouterr().out


async def test_a_restart_from_a_copied_continued_input_is_a_new_run(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A run that continued as new and then failed, started again under its workflow id with its last input
    (what "Start Workflow Like This One" copies: it names the failed ledger run and where to go on), is a
    restart: a new ledger run forked from the failed one, which stays failed, and its completed calls replay."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        task_queue = f'tools-{uuid.uuid4().hex[:8]}'
        deps = StepDeps(failed_marker=str(tmp_path / 'fragile-failed'))
        async with worker(temporal_env, ledger, task_queue) as client:
            handle = await failed_fragile_run(client, task_queue, deps, history_event_limit=10)
            failed = await ledger.run(handle.run_id)
            assert failed.status == 'failed' and len(failed.temporal_run_ids) == 2

            last = client.get_workflow_handle(handle.workflow_id, run_id=failed.temporal_run_ids[-1])
            history = await last.fetch_history()
            [payload] = history.events[0].workflow_execution_started_event_attributes.input.payloads
            await client.start_workflow(
                'AgentRunWorkflow', RawValue(payload), id=handle.workflow_id, task_queue=task_queue
            )
            await completed(client, handle.workflow_id)

        restart, before = await ledger.runs(workflow_id=handle.workflow_id)
        assert before.run_id == handle.run_id and before.status == 'failed'
        assert restart.forked_from is not None and restart.forked_from.reason == 'restart'
        assert restart.forked_from.run_id == handle.run_id and restart.status == 'completed'
        replayed = [e for e in await ledger.events(restart.run_id) if e.kind == 'tool_call_completed' and e.replayed]
        assert [e.tool_name for e in replayed] == ['work']


async def test_a_tool_call_id_reused_for_other_arguments_runs_the_tool(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A provider that numbers every response's calls `call_0` makes three `echo` calls under one tool_call_id:
    each runs with its own arguments and the model reads its own result, never the one journaled for another."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        task_queue = f'tools-{uuid.uuid4().hex[:8]}'
        async with worker(temporal_env, ledger, task_queue) as client:
            handle = await agentledger.start(client, reused_ids_agent, 'go', task_queue=task_queue)
            result = await asyncio.wait_for(client.get_workflow_handle(handle.workflow_id).result(), 120)

        assert result['output'] == 'echo 1, echo 2, echo 3'
        assert tool_runs() == [f'echo {n}' for n in range(1, REUSED_STEPS + 1)]
        events = await ledger.events(handle.run_id)
        ends = [e for e in events if e.kind == 'tool_call_completed']
        assert not any(e.replayed for e in ends)
        note = 'ran: the tool-call journal held a result of this tool_call_id for other arguments'
        assert [e.detail for e in ends] == [None, note, note]
        [entry] = await ledger.records('tool-journal', scope=handle.workflow_id)
        assert entry.value['args_digest'] == arguments_digest({'n': REUSED_STEPS})
