"""End-to-end: park on failure, then resume or abandon by update or signal (C15), on every backend."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic_ai.messages import ModelMessage
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger import AgentRunHandle, Ledger, SqliteLedger, cli
from agentledger.model import RunRecord
from agentledger.workflows import AbandonRequest, ResumeRequest

from ..conftest import Served, serve
from ..helpers import agents
from ..helpers.agents import holder_agent, relay_agent
from ..helpers.s3_server import s3_ledger

BACKENDS: dict[str, Callable[[Path], Ledger]] = {
    'sqlite': lambda tmp_path: SqliteLedger(tmp_path / 'runs.db'),
    's3': lambda tmp_path: s3_ledger(),
}


def parts(messages: list[ModelMessage]) -> list[list[tuple[str, object]]]:
    """What a provider is shown, without the timestamps and run ids each execution restamps."""
    return [[(part.part_kind, getattr(part, 'content', None)) for part in message.parts] for message in messages]


async def _start_parked(served: Served, timeout: float = 30) -> tuple[AgentRunHandle[str], RunRecord]:
    """Start the relay agent with `park_on_failure`; return its handle and run record once it parked."""
    workflow_id = f'park-{uuid.uuid4().hex[:8]}'
    handle = await agentledger.start(
        served.client, relay_agent, 'relay', task_queue=served.task_queue, workflow_id=workflow_id,
        park_on_failure=True,
    )  # fmt: skip

    async def poll() -> RunRecord:
        while True:
            runs = await served.ledger.runs(workflow_id=workflow_id)
            if runs and runs[0].status == 'parked':
                return runs[0]
            await asyncio.sleep(0.1)

    return handle, await asyncio.wait_for(poll(), timeout)


async def _until(ledger: Ledger, workflow_id: str, kind: str, timeout: float = 30) -> None:
    async def poll() -> None:
        while True:
            for run in await ledger.runs(workflow_id=workflow_id):
                if any(e.kind == kind for e in await ledger.events(run.run_id)):
                    return
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), timeout)


async def _details(handle: WorkflowHandle[object, object]) -> str:
    metadata = await handle.query('__temporal_workflow_metadata')
    return str(metadata.current_details)


@pytest.mark.parametrize('backend', sorted(BACKENDS))
async def test_a_parked_run_resumes_by_update_from_its_latest_valid_snapshot_c15(
    temporal_env: WorkflowEnvironment, tmp_path: Path, backend: str
) -> None:
    """C15: the failing run parks (ledger, UI details), resumes by update, re-runs no completed tool, completes."""
    async with BACKENDS[backend](tmp_path) as ledger, serve(temporal_env, ledger, [relay_agent]) as served:
        agents.relay_calls.clear()
        handle, parked = await _start_parked(served)
        assert parked.error is not None and 'the downstream system is down' in parked.error.message
        assert agents.relay_calls == ['first', 'second']
        details = await _details(handle.workflow_handle)
        assert 'Parked' in details and 'the downstream system is down' in details and 'resume' in details
        latest = await ledger.latest_snapshot(parked.run_id)

        await handle.resume()
        assert (await ledger.run(parked.run_id)).status in ('running', 'completed')
        result = await handle.result()
        assert result.output == 'relayed' and result.run_id == parked.run_id
        # `first` completed before the park and is not executed again; only `second` is.
        assert agents.relay_calls == ['first', 'second', 'second']

        record = await ledger.run(parked.run_id)
        assert record.status == 'completed' and record.error is None
        assert record.usage.requests == 4  # two before the park, two after: all spent
        kinds = [e.kind for e in await ledger.events(parked.run_id)]
        assert kinds.count('run_parked') == kinds.count('run_resumed') == 1
        assert kinds.index('run_parked') < kinds.index('run_resumed') < kinds.index('run_completed')
        model_steps = [s.step for s in await ledger.steps(parked.run_id) if s.kind == 'model_request']
        assert model_steps == [1, 2, 3, 4]  # numbered on after the resume
        # The resumed run's first request saw exactly the latest valid snapshot.
        resumed_request = next(s for s in await ledger.snapshots(parked.run_id) if s.step == 3)
        seen = (await ledger.snapshot(resumed_request.snapshot_id)).messages
        assert parts(seen) == parts((await ledger.snapshot(latest.snapshot_id)).messages)
        assert len(seen) == latest.message_count
        # The UI's details no longer say parked: they show how the run ended, at its last step.
        assert await _details(handle.workflow_handle) == (
            f'**Completed** (agentledger run `{parked.run_id}`): step 4, last tool `second` (returned)'
        )


async def test_a_parked_run_resumes_by_signal_with_a_new_prompt_c15(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The signal form (what the Temporal UI sends) resumes too; a new prompt joins the history."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [relay_agent]) as served:
        handle, parked = await _start_parked(served)
        await handle.workflow_handle.signal('resume', ResumeRequest(prompt='try the second tool again'))
        assert (await handle.result()).output == 'relayed'
        events = await ledger.events(parked.run_id)
        resumed = next(e for e in events if e.kind == 'run_resumed')
        assert resumed.detail == 'try the second tool again'
        final = await ledger.snapshot((await ledger.latest_snapshot(parked.run_id)).snapshot_id)
        prompts = [
            part.content
            for message in final.messages
            for part in getattr(message, 'parts', [])
            if part.part_kind == 'user-prompt'
        ]
        assert prompts == ['relay', 'try the second tool again']


async def test_an_abandoned_parked_run_fails_and_a_run_not_parked_refuses_resume_c15(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """`abandon` fails the run with the error it parked on; `resume` of a run that is not parked is refused."""
    async with (
        SqliteLedger(tmp_path / 'runs.db') as ledger,
        serve(temporal_env, ledger, [relay_agent, holder_agent]) as served,
    ):
        handle, parked = await _start_parked(served)
        await handle.workflow_handle.execute_update('abandon', AbandonRequest(reason='not worth it'))
        with pytest.raises(WorkflowFailureError) as raised:
            await handle.result()
        assert 'abandoned while parked: not worth it' in str(raised.value.cause)
        record = await ledger.run(parked.run_id)
        assert record.status == 'failed' and record.error is not None
        assert 'the downstream system is down' in record.error.message

        # A run that is running, not parked, refuses `resume` (the update's validator) and goes on.
        open_id = f'hold-{uuid.uuid4().hex[:8]}'
        running = await agentledger.start(
            served.client, holder_agent, 'go', task_queue=served.task_queue, workflow_id=open_id,
            park_on_failure=True,
        )  # fmt: skip
        await _until(ledger, open_id, 'tool_call_started')
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await running.resume()
        assert 'is not parked' in str(refused.value.cause)
        agents.released.add(open_id)
        assert (await running.result()).output == 'released'


async def test_cli_resumes_a_parked_run_and_refuses_one_that_is_not_parked(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`agentledger resume RUN_ID` resumes a parked run; a run that is not parked gets a clear error, no update."""
    path = tmp_path / 'runs.db'
    async with SqliteLedger(path) as ledger, serve(temporal_env, ledger, [relay_agent]) as served:
        handle, parked = await _start_parked(served)
        address = temporal_env.client.service_client.config.target_host
        options = ['--ledger', f'sqlite:///{path}', '--address', address]
        assert await asyncio.to_thread(cli.main, ['show', parked.run_id, '--ledger', f'sqlite:///{path}']) == 0
        shown = capsys.readouterr().out
        assert 'parked' in shown and f'agentledger resume {parked.run_id}' in shown
        assert 'run parked' in shown and 'the downstream system is down' in shown
        code = await asyncio.to_thread(cli.main, ['resume', parked.run_id, *options])
        assert code == 0, capsys.readouterr().err
        assert 'resumed from its latest valid snapshot' in capsys.readouterr().err
        assert (await handle.result()).output == 'relayed'

        assert await asyncio.to_thread(cli.main, ['abandon', parked.run_id, *options]) == 1
        assert f'run {parked.run_id} is not parked (status completed)' in capsys.readouterr().err
        assert await asyncio.to_thread(cli.main, ['resume', 'run-missing', *options]) == 1
        assert 'run-missing' in capsys.readouterr().err


async def test_a_parked_run_cancelled_ends_cancelled(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """Cancelling the workflow of a parked run seals the ledger run `cancelled`, not left `parked`."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [relay_agent]) as served:
        handle, parked = await _start_parked(served)
        await handle.workflow_handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        record = await ledger.run(parked.run_id)
        assert record.status == 'cancelled' and record.usage.requests == 2
        assert [e.kind for e in await ledger.events(parked.run_id)][-2:] == ['run_parked', 'run_cancelled']
