"""End-to-end: snapshots, continue, fork, restart and crash recovery on a real dev server (C4-C11, C13)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from pydantic_ai.messages import (
    BinaryContent,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    UserPromptPart,
)
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import agentledger
from agentledger import Ledger, SqliteLedger
from agentledger.cli import find_temporal_cli
from agentledger.errors import RunNotFoundError, SnapshotNotFoundError
from agentledger.model._content import content_hash
from agentledger.model._validity import is_provider_valid
from agentledger.workflows import AgentRunWorkflow

from ..conftest import serve
from ..helpers import agents
from ..helpers.agents import calc_agent, crashy_agent, notes_agent, relay_agent


def dump(messages: list[ModelMessage]) -> bytes:
    return ModelMessagesTypeAdapter.dump_json(messages)


async def test_snapshots_are_valid_chained_and_continuable_c5_c7_c9_c11(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Every stored snapshot is provider-valid; continue seeds exactly the latest one and re-runs no tool."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [notes_agent]) as served:
        before = agents.saved_notes.count('milk')
        first = await agentledger.run(served.client, notes_agent, 'save milk', task_queue=served.task_queue)
        assert agents.saved_notes.count('milk') == before + 1

        snapshots = await ledger.snapshots(first.run_id)
        assert [(s.kind, s.step) for s in snapshots] == [('model_request', 1), ('model_request', 2), ('final', 2)]
        for record in snapshots:
            assert is_provider_valid((await ledger.snapshot(record.snapshot_id)).messages)  # C5
        # A chain: each snapshot adds only what its parent lacks.
        assert snapshots[0].parent_id is None
        assert snapshots[1].parent_id == snapshots[0].snapshot_id
        assert snapshots[2].parent_id == snapshots[1].snapshot_id
        assert len(snapshots[2].new_hashes) == 1 and snapshots[2].message_count == 4
        final = await ledger.snapshot(snapshots[2].snapshot_id)

        # C9: the continuation's first model request sees exactly the latest snapshot plus the new prompt.
        handle = await agentledger.continue_run(served.client, first.run_id, 'how many?')
        second = await handle.result()
        assert second.output == f'{len(agents.saved_notes)} notes'
        seen = agents.seen_histories[-1]
        assert dump(seen[:-1]) == dump(final.messages)
        assert isinstance(seen[-1], ModelRequest)
        assert [p.content for p in seen[-1].parts if isinstance(p, UserPromptPart)] == ['how many?']
        # C11: the completed tool call was not executed again.
        assert agents.saved_notes.count('milk') == before + 1

        record = await ledger.run(second.run_id)
        assert record.forked_from is not None
        assert (record.forked_from.run_id, record.forked_from.snapshot_id, record.forked_from.reason) == (
            first.run_id,
            snapshots[2].snapshot_id,
            'continue',
        )
        # C7: the continuation shares the stored messages: its first snapshot adds only the new prompt.
        continued = await ledger.snapshots(second.run_id)
        assert continued[0].parent_id == snapshots[2].snapshot_id
        assert len(continued[0].new_hashes) == 1
        # Lineage is visible from both ends.
        assert [r.run_id for r in await ledger.runs(forked_from_run_id=first.run_id)] == [second.run_id]


async def test_fork_at_step_and_clear_errors_c10(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """C10: fork seeds from the snapshot at or before step k; bad ids and steps fail before any workflow starts."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [calc_agent]) as served:
        source = await agentledger.run(served.client, calc_agent, 'compute', task_queue=served.task_queue)
        runs_before = await ledger.runs()

        with pytest.raises(SnapshotNotFoundError, match='has no step 99'):
            await agentledger.fork_run(served.client, source.run_id, at_step=99)
        with pytest.raises(RunNotFoundError, match='run-nope'):
            await agentledger.fork_run(served.client, 'run-nope', at_step=1)
        with pytest.raises(SnapshotNotFoundError, match='malformed snapshot id'):
            await agentledger.fork_run(served.client, source.run_id, snapshot='garbage')
        with pytest.raises(RunNotFoundError):
            await agentledger.continue_run(served.client, 'run-0000')
        assert await ledger.runs() == runs_before  # nothing started

        at_two = await ledger.snapshot_at_step(source.run_id, 2)
        assert at_two.step == 2
        handle = await agentledger.fork_run(served.client, source.run_id, at_step=2)
        forked = await handle.result()
        record = await ledger.run(forked.run_id)
        assert record.forked_from is not None and record.forked_from.snapshot_id == at_two.snapshot_id
        assert record.forked_from.reason == 'fork'
        # The fork replays from step 2's history: steps 2..5 of the script, so four model requests.
        assert forked.output == 'done' and forked.usage.requests == 4


async def test_start_from_the_temporal_cli_with_run_id_in_the_input(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """An operator continues a run with `temporal workflow start --input '{..."continue_from": ...}'`."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [notes_agent]) as served:
        eggs = agents.saved_notes.count('eggs')
        first = await agentledger.run(served.client, notes_agent, 'save eggs', task_queue=served.task_queue)
        workflow_id = f'cli-{uuid.uuid4().hex[:8]}'
        cli = find_temporal_cli()
        assert cli is not None
        command = [
            cli,
            'workflow',
            'start',
            '--address',
            temporal_env.client.service_client.config.target_host,
            '--type',
            'AgentRunWorkflow',
            '--task-queue',
            served.task_queue,
            '--workflow-id',
            workflow_id,
            '--input',
            f'{{"agent": "notes", "prompt": "count", "continue_from": "{first.run_id}"}}',
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        output = await served.client.get_workflow_handle_for(AgentRunWorkflow.run, workflow_id).result()
        assert output.output == f'{len(agents.saved_notes)} notes'
        assert agents.saved_notes.count('eggs') == eggs + 1  # the continuation did not save again
        record = await ledger.run(output.run_id)
        assert record.forked_from is not None and record.forked_from.run_id == first.run_id

        # A bad id in such an input fails the run with a readable reason (no client-side check there).
        bad = f'cli-bad-{uuid.uuid4().hex[:8]}'
        command[command.index(workflow_id)] = bad
        command[-1] = '{"agent": "notes", "prompt": "count", "continue_from": "run-missing"}'
        assert subprocess.run(command, capture_output=True, text=True, timeout=60).returncode == 0
        with pytest.raises(WorkflowFailureError) as raised:
            await served.client.get_workflow_handle(bad).result()
        assert 'run-missing' in str(raised.value.cause)


async def test_restart_same_workflow_id_resumes_from_latest_snapshot_c13(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """C13: starting a failed run's workflow id again resumes from its latest valid snapshot."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [relay_agent]) as served:
        workflow_id = f'relay-{uuid.uuid4().hex[:8]}'
        agents.relay_calls.clear()
        with pytest.raises(WorkflowFailureError):
            await agentledger.run(
                served.client, relay_agent, 'relay', task_queue=served.task_queue, workflow_id=workflow_id
            )
        failed = (await ledger.runs(workflow_id=workflow_id))[0]
        assert failed.status == 'failed' and failed.error is not None
        assert agents.relay_calls == ['first', 'second']

        resumed = await agentledger.run(
            served.client, relay_agent, 'relay', task_queue=served.task_queue, workflow_id=workflow_id
        )
        assert resumed.output == 'relayed'
        # `first` completed before the failure and is not executed again; only `second` is retried.
        assert agents.relay_calls == ['first', 'second', 'second']
        record = await ledger.run(resumed.run_id)
        assert record.forked_from is not None
        assert record.forked_from.reason == 'restart' and record.forked_from.run_id == failed.run_id
        latest_of_failed = await ledger.latest_snapshot(failed.run_id)
        assert record.forked_from.snapshot_id == latest_of_failed.snapshot_id

        # fresh_start ignores the failed history.
        agents.relay_calls.clear()
        fresh_id = f'relay-{uuid.uuid4().hex[:8]}'
        with pytest.raises(WorkflowFailureError):
            await agentledger.run(
                served.client, relay_agent, 'relay', task_queue=served.task_queue, workflow_id=fresh_id
            )
        again = await agentledger.run(
            served.client, relay_agent, 'relay', task_queue=served.task_queue, workflow_id=fresh_id, fresh_start=True
        )
        assert (await ledger.run(again.run_id)).forked_from is None
        assert agents.relay_calls == ['first', 'second', 'first', 'second']


async def _wait_for(ledger: Ledger, run_id_prefix_workflow: str, kind: str, timeout: float = 30) -> str:
    async def poll() -> str:
        while True:
            for run in await ledger.runs(workflow_id=run_id_prefix_workflow):
                if any(e.kind == kind for e in await ledger.events(run.run_id)):
                    return run.run_id
            await asyncio.sleep(0.1)

    return await asyncio.wait_for(poll(), timeout)


async def test_worker_killed_mid_tool_call_c4_c6(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """C4 and C6: SIGKILL the worker mid tool call; a new worker finishes the run; the attempt is in doubt."""
    path = tmp_path / 'runs.db'
    task_queue = f'crash-{uuid.uuid4().hex[:8]}'
    host = temporal_env.client.service_client.config.target_host
    process = subprocess.Popen(
        [sys.executable, '-m', 'tests.helpers.worker_process', host, task_queue, f'sqlite:///{path}', 'crashy'],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert process.stdout is not None
        assert (await asyncio.to_thread(process.stdout.readline)).strip() == 'ready'
        async with SqliteLedger(path) as ledger:
            client = await Client.connect(host, plugins=[agentledger.LedgerPlugin(ledger, agents=[crashy_agent])])
            workflow_id = f'crashy-{uuid.uuid4().hex[:8]}'
            handle = await agentledger.start(client, 'crashy', 'go', task_queue=task_queue, workflow_id=workflow_id)
            await _wait_for(ledger, workflow_id, 'tool_call_started')
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)

            # C6: the latest snapshot is the one before the tool call's model response, and it is valid.
            latest = await ledger.latest_snapshot(handle.run_id)
            assert (latest.kind, latest.step) == ('model_request', 1)
            assert is_provider_valid((await ledger.snapshot(latest.snapshot_id)).messages)
            effects = await ledger.tool_effects(handle.run_id)
            assert [e.status for e in effects] == ['started']

            # A new worker on the killed one's task queue picks the run up after the attempt times out.
            async with Worker(client, task_queue=task_queue):
                result = await handle.result()
            assert result.output == 'recovered'

            events = await ledger.events(handle.run_id)
            tool = [(e.kind, e.attempt, e.state) for e in events if e.tool_name == 'long_task']
            assert tool[0] == ('tool_call_started', 1, 'abandoned')
            assert ('tool_call_completed', 2, 'accepted') in tool
            assert not any(kind != 'tool_call_started' and attempt == 1 for kind, attempt, _ in tool)
            (effect,) = await ledger.tool_effects(handle.run_id)
            assert effect.status == 'completed' and effect.in_doubt_attempts == (1,)  # C4
            assert effect.idempotency_key == f'{workflow_id}/{effect.tool_call_id}'
    finally:
        if process.poll() is None:
            process.kill()


async def test_binary_content_round_trips_byte_identical_c8(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """C8: a prompt with a large image runs through Temporal and the ledger; snapshots give the same bytes back."""
    image = bytes(range(256)) * 400  # 100 KB, not compressible text
    prompt = ['what is in this picture?', BinaryContent(data=image, media_type='image/png')]
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [notes_agent]) as served:
        first = await agentledger.run(served.client, notes_agent, prompt, task_queue=served.task_queue)
        stored_after_first = blob_bytes(tmp_path / 'runs.db')
        second = await agentledger.run(served.client, notes_agent, prompt, task_queue=served.task_queue)
        for run in (first, second):
            for record in await ledger.snapshots(run.run_id):
                request = (await ledger.snapshot(record.snapshot_id)).messages[0]
                assert isinstance(request, ModelRequest)
                (part,) = [p for p in request.parts if isinstance(p, UserPromptPart)]
                assert isinstance(part.content, list)
                binary = part.content[1]
                assert isinstance(binary, BinaryContent)
                assert binary.data == image and binary.media_type == 'image/png'
        # The model saw the same bytes, and the ledger stores the image once across both runs.
        seen = agents.seen_histories[-1][0]
        assert isinstance(seen, ModelRequest)
        (seen_part,) = [p for p in seen.parts if isinstance(p, UserPromptPart)]
        assert isinstance(seen_part.content, list) and isinstance(seen_part.content[1], BinaryContent)
        assert seen_part.content[1].data == image
        with closing(sqlite3.connect(tmp_path / 'runs.db')) as db:
            assert db.execute('SELECT COUNT(*) FROM blobs WHERE hash = ?', (content_hash(image),)).fetchone() == (1,)
        # The second run's payloads (its input, its model request) reuse the first run's chunks.
        assert blob_bytes(tmp_path / 'runs.db') - stored_after_first < len(image) // 10


def blob_bytes(path: Path) -> int:
    """The bytes of every blob and chunk stored in a SQLite ledger."""
    with closing(sqlite3.connect(path)) as db:
        (total,) = db.execute('SELECT COALESCE(SUM(LENGTH(data)), 0) FROM blobs').fetchone()
        return int(total)
