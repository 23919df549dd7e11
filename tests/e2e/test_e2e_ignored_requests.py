"""End-to-end: a `resume` or `abandon` a run cannot take is refused (update) or recorded as ignored (signal)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger import Ledger, SqliteLedger, cli
from agentledger.errors import RUN_NOT_PARKED
from agentledger.model import StepEvent
from agentledger.workflows import AbandonRequest, ResumeRequest

from ..conftest import serve
from ..helpers import agents
from ..helpers.agents import holder_agent


async def _events(ledger: Ledger, workflow_id: str, kind: str, count: int, timeout: float = 30) -> list[StepEvent]:
    """The run's events of `kind`, once there are `count` of them."""

    async def poll() -> list[StepEvent]:
        while True:
            for run in await ledger.runs(workflow_id=workflow_id):
                found = [e for e in await ledger.events(run.run_id) if e.kind == kind]
                if len(found) >= count:
                    return found
            await asyncio.sleep(0.1)

    return await asyncio.wait_for(poll(), timeout)


async def _details(handle: WorkflowHandle[object, object]) -> str:
    metadata = await handle.query('__temporal_workflow_metadata')
    return str(metadata.current_details)


async def test_resume_and_abandon_signals_to_a_running_run_are_recorded_as_ignored(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Signals: recorded at once in the ledger, shown by `show` and in the current details; the run goes on."""
    path = tmp_path / 'runs.db'
    async with SqliteLedger(path) as ledger, serve(temporal_env, ledger, [holder_agent]) as served:
        workflow_id = f'hold-{uuid.uuid4().hex[:8]}'
        running = await agentledger.start(
            served.client, holder_agent, 'go', task_queue=served.task_queue, workflow_id=workflow_id,
            park_on_failure=True,
        )  # fmt: skip
        handle = running.workflow_handle
        await _events(ledger, workflow_id, 'tool_call_started', 2)

        await handle.signal('resume', ResumeRequest(prompt='go on'))
        (resumed,) = await _events(ledger, workflow_id, 'request_ignored', 1)
        # Recorded while the run still holds its tool call: no later activity carried it.
        assert not any(
            e.kind == 'tool_call_completed' and e.tool_name == 'hold' for e in await ledger.events(resumed.run_id)
        )
        assert resumed.detail == 'resume signal: the run is not parked; input {"prompt": "go on"}'
        assert resumed.activity_id == 'request:1' and resumed.state == 'accepted'
        status, note = (await _details(handle)).split('\n\n')
        # The run's own status line stays; the ignored signal is shown under it.
        assert status.startswith('**Running** (agentledger run ')
        assert note.startswith('**Ignored** `resume` signal at ')
        assert note.endswith('UTC: the run is not parked (input `{"prompt": "go on"}`)')

        await handle.signal('abandon', AbandonRequest(reason='enough'))
        ignored = await _events(ledger, workflow_id, 'request_ignored', 2)
        assert [e.detail for e in ignored][1] == 'abandon signal: the run is not parked; input {"reason": "enough"}'
        # Only the latest ignored signal stays in the details.
        details = await _details(handle)
        assert details.count('**Ignored**') == 1 and '`abandon` signal' in details

        agents.released.add(workflow_id)
        assert (await running.result()).output == 'released'
        record = await ledger.run(resumed.run_id)
        assert record.status == 'completed' and record.error is None
        kinds = [e.kind for e in await ledger.events(resumed.run_id)]
        assert 'run_parked' not in kinds and 'run_resumed' not in kinds

        assert await asyncio.to_thread(cli.main, ['show', resumed.run_id, '--ledger', f'sqlite:///{path}']) == 0
        shown = capsys.readouterr().out
        assert 'request ignored' in shown
        assert 'resume signal: the run is not parked; input {"prompt": "go on"}' in shown


async def test_resume_and_abandon_updates_to_a_running_run_are_rejected_with_a_clear_message(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Updates: the validator rejects, naming the run, why, and what the request is for; nothing is recorded."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [holder_agent]) as served:
        workflow_id = f'hold-{uuid.uuid4().hex[:8]}'
        running = await agentledger.start(
            served.client, holder_agent, 'go', task_queue=served.task_queue, workflow_id=workflow_id,
            park_on_failure=True,
        )  # fmt: skip
        (started,) = await _events(ledger, workflow_id, 'run_started', 1)
        for action, request in (('resume', ResumeRequest()), ('abandon', AbandonRequest(reason='enough'))):
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await running.workflow_handle.execute_update(action, request)
            cause = refused.value.cause
            assert isinstance(cause, ApplicationError) and cause.type == RUN_NOT_PARKED
            assert cause.message == (
                f'cannot {action} run {started.run_id}: it is not parked; {action} applies to a parked run '
                '(one that failed with park_on_failure and waits)'
            )
        agents.released.add(workflow_id)
        assert (await running.result()).output == 'released'
        assert not any(e.kind == 'request_ignored' for e in await ledger.events(started.run_id))
