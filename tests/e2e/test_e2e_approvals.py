"""Approvals: a run waits inside itself for people to approve or deny tool calls, through Updates or signals.

Against the dev server: the decision is bound to the call's digest, recorded with who took it, used
once, and the run goes on from the same history without asking the model again.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger import SqliteLedger
from agentledger.client import AgentRunHandle
from agentledger.model._approvals import ApprovalDecision, PendingApproval

from ..conftest import serve
from ..helpers.agents import REFUNDS, approval_agent

T = TypeVar('T')


async def eventually(check: Callable[[], Awaitable[T | None]], *, timeout_s: float = 20) -> T:
    """Poll `check` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError('timed out waiting')
        await asyncio.sleep(0.1)


async def waiting(handle: AgentRunHandle[Any], count: int = 1) -> list[PendingApproval]:
    """The run's pending calls, once `count` of them wait."""

    async def pending() -> list[PendingApproval] | None:
        calls = await handle.pending_approvals()
        return calls if len(calls) == count else None

    return await eventually(pending)


async def test_approve_runs_the_tool_and_goes_on_without_asking_the_model_again(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [approval_agent]) as served:
        handle = await agentledger.start(served.client, approval_agent, 'refund 101:5', task_queue=served.task_queue)
        [call] = await waiting(handle)
        assert (call.tool_call_id, call.tool_name, call.args) == ('call-101', 'refund', {'order': 101, 'amount': 5})
        assert (await ledger.run(handle.run_id)).status == 'awaiting_approval'
        assert (101, 5) not in REFUNDS

        assert (
            await handle.approve(call, by='alice')
            == f'approved tool call call-101 of run {handle.run_id}; 0 still waiting'
        )
        result = await handle.result()
        assert result.output == 'refunded 5 on order 101'
        assert REFUNDS.count((101, 5)) == 1

        record = await ledger.run(handle.run_id)
        assert record.status == 'completed' and record.usage.requests == 2  # the call's request and the answer
        events = await ledger.events(handle.run_id)
        approvals = [(e.kind, e.tool_call_id) for e in events if e.kind.startswith('approval_')]
        assert approvals == [('approval_requested', 'call-101'), ('approval_granted', 'call-101')]
        granted = next(e for e in events if e.kind == 'approval_granted')
        assert granted.detail == f'digest {call.digest}; by alice'
        [effect] = await ledger.tool_effects(handle.run_id)
        assert (effect.tool_name, effect.status, effect.outcome) == ('refund', 'completed', 'returned')


async def test_deny_answers_the_model_and_never_runs_the_tool(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [approval_agent]) as served:
        handle = await agentledger.start(served.client, approval_agent, 'refund 102:500', task_queue=served.task_queue)
        [call] = await waiting(handle)
        await handle.deny(call, reason='Over the refund limit.', by='bob')
        result = await handle.result()
        assert result.output == 'Over the refund limit.'
        assert all(order != 102 for order, _ in REFUNDS)
        events = await ledger.events(handle.run_id)
        denied = next(e for e in events if e.kind == 'approval_denied')
        assert denied.detail == f'digest {call.digest}; by bob; reason: Over the refund limit.'
        [effect] = await ledger.tool_effects(handle.run_id)
        assert (effect.tool_name, effect.status, effect.outcome) == ('refund', 'completed', 'denied')


async def test_approve_with_overridden_arguments(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [approval_agent]) as served:
        handle = await agentledger.start(served.client, approval_agent, 'refund 103:90', task_queue=served.task_queue)
        [call] = await waiting(handle)
        await handle.approve(call, override_args={'order': 103, 'amount': 40}, by='carol')
        assert (await handle.result()).output == 'refunded 40 on order 103'
        assert REFUNDS.count((103, 40)) == 1 and (103, 90) not in REFUNDS
        granted = next(e for e in await ledger.events(handle.run_id) if e.kind == 'approval_granted')
        assert granted.detail == f'digest {call.digest}; by carol; override_args: {{"amount": 40, "order": 103}}'


async def test_a_decision_is_bound_to_the_digest_and_used_once(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [approval_agent]) as served:
        handle = await agentledger.start(
            served.client, approval_agent, 'refund 104:5 105:6', task_queue=served.task_queue
        )
        first, second = await waiting(handle, 2)
        wrong = ApprovalDecision(first.tool_call_id, second.digest, by='mallory')
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.workflow_handle.execute_update('approve', wrong, result_type=str)
        cause = refused.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == 'ApprovalRejected'
        assert f'digest {second.digest!r} does not match tool call {first.tool_call_id!r}' in str(cause)

        # A signal cannot be refused: the wrong one is recorded as rejected, and decides nothing.
        await handle.workflow_handle.signal('approve', wrong)
        await handle.approve(first, by='alice')
        with pytest.raises(WorkflowUpdateFailedError) as again:
            await handle.approve(first, by='alice')
        assert 'was already approved' in str(again.value.cause)
        with pytest.raises(WorkflowUpdateFailedError) as unknown:
            await handle.workflow_handle.execute_update(
                'deny', ApprovalDecision('call-999', second.digest), result_type=str
            )
        assert "no approval is pending for tool call 'call-999'" in str(unknown.value.cause)
        await handle.deny(second, reason='Not this one.')
        assert (await handle.result()).output == 'refunded 5 on order 104 | Not this one.'

        events = await ledger.events(handle.run_id)
        rejected = [e for e in events if e.kind == 'approval_rejected']
        assert len(rejected) == 1 and rejected[0].tool_call_id == first.tool_call_id
        assert 'by mallory' in (rejected[0].detail or '') and 'does not match' in (rejected[0].detail or '')


async def test_two_approvers_racing_one_wins(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [approval_agent]) as served:
        handle = await agentledger.start(served.client, approval_agent, 'refund 106:5', task_queue=served.task_queue)
        [call] = await waiting(handle)
        outcomes = await asyncio.gather(
            handle.approve(call, by='alice'), handle.deny(call, reason='no', by='bob'), return_exceptions=True
        )
        won = [o for o in outcomes if isinstance(o, str)]
        lost = [o for o in outcomes if isinstance(o, WorkflowUpdateFailedError)]
        assert len(won) == 1 and len(lost) == 1, outcomes
        assert 'was already' in str(lost[0].cause)
        await handle.result()
        decisions = [
            e.kind for e in await ledger.events(handle.run_id) if e.kind in ('approval_granted', 'approval_denied')
        ]
        assert len(decisions) == 1


async def test_a_run_waits_across_a_worker_restart(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """The wait is workflow state: a new worker (no cache) replays it and takes the decision."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        async with serve(temporal_env, ledger, [approval_agent]) as served:
            handle = await agentledger.start(
                served.client, approval_agent, 'refund 107:5', task_queue=served.task_queue
            )
            [call] = await waiting(handle)
            task_queue = served.task_queue
        # No worker now: the run holds no slot anywhere while it waits.
        async with serve(temporal_env, ledger, [approval_agent], task_queue=task_queue) as served:
            await handle.approve(call, by='alice')
            assert (await handle.result()).output == 'refunded 5 on order 107'


@pytest.mark.parametrize('action', ['deny', 'fail', 'park'])
async def test_an_approval_deadline(temporal_env: WorkflowEnvironment, tmp_path: Path, action: str) -> None:
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [approval_agent]) as served:
        handle = await agentledger.start(
            served.client,
            approval_agent,
            'refund 108:5',
            task_queue=served.task_queue,
            approval_timeout_s=1,
            on_approval_timeout=action,  # type: ignore[typeddict-item]
        )
        if action == 'deny':
            output = (await handle.result()).output
            assert isinstance(output, str) and output.startswith('Denied: no decision within')
            denied = next(e for e in await ledger.events(handle.run_id) if e.kind == 'approval_denied')
            assert 'by timeout' in (denied.detail or '')
        elif action == 'fail':
            with pytest.raises(WorkflowFailureError) as failed:
                await handle.result()
            assert isinstance(failed.value.cause, ApplicationError) and failed.value.cause.type == 'ApprovalTimedOut'
            record = await ledger.run(handle.run_id)
            assert record.status == 'failed' and record.error is not None and record.error.type == 'ApprovalTimedOut'
        else:

            async def parked() -> bool:
                runs = await ledger.runs(status='parked')
                return any(run.run_id == handle.run_id for run in runs)

            await eventually(parked)
            await handle.abandon('no one answered')
            with pytest.raises(WorkflowFailureError):
                await handle.result()
        assert all(order != 108 for order, _ in REFUNDS)


async def test_a_worker_killed_while_the_run_waits(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """SIGKILL the worker process while the run waits: another worker takes the decision and the run goes on."""
    path = tmp_path / 'runs.db'
    host = temporal_env.client.service_client.config.target_host
    task_queue = f'tq-{uuid.uuid4().hex[:8]}'
    process = subprocess.Popen(
        [sys.executable, '-m', 'tests.helpers.worker_process', host, task_queue, f'sqlite:///{path}', 'approval'],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == 'ready'
        async with SqliteLedger(path) as ledger:
            client = await Client.connect(host, plugins=[agentledger.LedgerPlugin(ledger)])
            handle = await agentledger.start(client, approval_agent, 'refund 109:5', task_queue=task_queue)
            [call] = await waiting(handle)
            process.kill()
            process.wait()
            async with serve(temporal_env, ledger, [approval_agent], task_queue=task_queue):
                await handle.approve(call, by='alice')
                assert (await handle.result()).output == 'refunded 5 on order 109'
            assert REFUNDS.count((109, 5)) == 1
            assert (await ledger.run(handle.run_id)).status == 'completed'
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
