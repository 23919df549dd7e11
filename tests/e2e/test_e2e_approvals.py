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
from pydantic_ai import Agent, ApprovalRequired, DeferredToolRequests, RunContext
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger import Ledger, SqliteLedger
from agentledger.cli import main as cli
from agentledger.client import AgentRunHandle, decide_approval, pending_approvals
from agentledger.model import RunRecord, StepEvent
from agentledger.model._approvals import ApprovalDecision, PendingApproval
from agentledger.model._rules import total_usage
from agentledger.workflows import AgentRunWorkflow

from ..conftest import serve
from ..helpers.agents import APPROVAL_MODEL_CALLS, REFUNDS, approval_agent

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


async def status(ledger: Ledger, run_id: str, expected: str) -> None:
    """Wait until the ledger says the run is `expected` (the ledger hears of a wait just after the workflow)."""

    async def check() -> bool:
        return (await ledger.run(run_id)).status == expected

    await eventually(check)


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
        await status(ledger, handle.run_id, 'awaiting_approval')
        assert (101, 5) not in REFUNDS
        # Waiting is a workflow condition: no activity is pending (none holds a worker slot).
        description = await handle.workflow_handle.describe()
        assert not description.raw_description.pending_activities

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


def approval_events(events: list[StepEvent]) -> list[tuple[str, str | None]]:
    """The run's approval events, in order: (kind, tool_call_id)."""
    return [(e.kind, e.tool_call_id) for e in events if e.kind.startswith('approval_')]


async def test_a_run_continues_as_new_right_after_the_decisions(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The model request after the decisions is where the history limit is first checked: the run continues
    as new there, and the new Temporal run goes on from the tool's answer (one ledger run, nothing repeated)."""
    prompt = 'refund 201:5'
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [approval_agent]) as served:
        handle = await agentledger.start(
            served.client, approval_agent, prompt, task_queue=served.task_queue, history_event_limit=10
        )
        [call] = await waiting(handle)
        await handle.approve(call, by='alice')
        result = await handle.result()
        assert result.output == 'refunded 5 on order 201'
        assert REFUNDS.count((201, 5)) == 1
        assert APPROVAL_MODEL_CALLS[prompt] == 2  # the call's request, then the answer: neither asked again

        record = await ledger.run(handle.run_id)
        assert record.status == 'completed' and len(record.temporal_run_ids) == 2
        assert record.temporal_run_ids[0] == handle.workflow_handle.first_execution_run_id
        events = await ledger.events(handle.run_id)
        assert approval_events(events) == [('approval_requested', 'call-201'), ('approval_granted', 'call-201')]
        requested, granted = (e for e in events if e.kind.startswith('approval_'))
        assert requested.temporal_run_id == granted.temporal_run_id == record.temporal_run_ids[0]
        steps = await ledger.steps(handle.run_id)
        assert [s.step for s in steps if s.kind == 'model_request'] == [1, 2]
        assert all(s.status == 'completed' for s in steps)
        # The answer's request was made by the second Temporal run.
        [answer] = [e for e in events if e.kind == 'model_request_completed' and e.step == 2]
        assert answer.temporal_run_id == record.temporal_run_ids[1]
        [effect] = await ledger.tool_effects(handle.run_id)
        assert (effect.tool_call_id, effect.status, effect.outcome) == ('call-201', 'completed', 'returned')


async def reset_to(client: Client, workflow_id: str, event_id: int) -> str:
    """Reset the workflow's current run to the workflow task that completed at `event_id`; the new run's id."""
    response = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id),
            reason='test: reset while the run waits for approval',
            workflow_task_finish_event_id=event_id,
            request_id=str(uuid.uuid4()),
        )
    )
    return response.run_id


@pytest.mark.parametrize('point', ['first_workflow_task', 'last_workflow_task'])
async def test_a_run_reset_while_waiting_waits_again(
    temporal_env: WorkflowEnvironment, tmp_path: Path, point: str
) -> None:
    """Reset while the run waits, to its first workflow task (the model request runs again, answered from the
    model-call journal) or to the workflow task that began the wait. The new Temporal run of the same ledger
    run waits again for the same call, takes the decision, runs the tool once and completes."""
    order = 211 if point == 'first_workflow_task' else 212
    prompt = f'refund {order}:5'
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [approval_agent]) as served:
        handle = await agentledger.start(served.client, approval_agent, prompt, task_queue=served.task_queue)
        [call] = await waiting(handle)
        await status(ledger, handle.run_id, 'awaiting_approval')
        first_run = handle.workflow_handle.first_execution_run_id
        completed = [
            event.event_id
            for event in (await handle.workflow_handle.fetch_history()).events
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        ]
        # The last workflow task so far is the one that began the wait: the run has done nothing since.
        new_run = await reset_to(
            served.client, handle.workflow_id, completed[0] if point == 'first_workflow_task' else completed[-1]
        )
        reset = served.client.get_workflow_handle_for(AgentRunWorkflow.run, handle.workflow_id, run_id=new_run)

        async def waiting_again() -> list[PendingApproval]:
            return await pending_approvals(reset)

        [again] = await eventually(waiting_again)
        # The same call, digest and all: after the first task, the journal gave the model's answer back.
        assert (again.tool_call_id, again.args, again.digest) == (call.tool_call_id, call.args, call.digest)
        await status(ledger, handle.run_id, 'awaiting_approval')
        assert REFUNDS.count((order, 5)) == 0
        await decide_approval(reset, again, 'approve', by='alice')
        output = await reset.result()
        assert (output.output, output.run_id) == (f'refunded 5 on order {order}', handle.run_id)
        assert REFUNDS.count((order, 5)) == 1
        assert APPROVAL_MODEL_CALLS[prompt] == 2  # step 1 once (not again after the reset), step 2 once

        record = await ledger.run(handle.run_id)
        assert record.status == 'completed' and record.temporal_run_ids == (first_run, new_run)
        events = await ledger.events(handle.run_id)
        approvals = [(e.kind, e.temporal_run_id) for e in events if e.kind.startswith('approval_')]
        steps = await ledger.steps(handle.run_id)
        requests = [(s.step, s.temporal_run_id, s.replayed) for s in steps if s.kind == 'model_request']
        if point == 'first_workflow_task':
            # The new Temporal run asked again, and the model request it made again was not paid again.
            assert approvals == [
                ('approval_requested', first_run),
                ('approval_requested', new_run),
                ('approval_granted', new_run),
            ]
            assert requests == [(1, first_run, False), (1, new_run, True), (2, new_run, False)]
            calls = total_usage([s for s in steps if s.temporal_run_id == new_run])
            assert (calls.requests, calls.replayed_requests, calls.billed_requests) == (2, 1, 1)
        else:
            # Everything up to the wait is the first Temporal run's, recorded once.
            assert approvals == [('approval_requested', first_run), ('approval_granted', new_run)]
            assert requests == [(1, first_run, False), (2, new_run, False)]
        [effect] = await ledger.tool_effects(handle.run_id)
        assert (effect.tool_call_id, effect.status, effect.outcome) == (call.tool_call_id, 'completed', 'returned')


async def test_a_reset_run_waiting_for_approval_goes_by_its_new_temporal_run_id(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reset past the run's start to the task that asked the model: the new Temporal run never records a start,
    yet while it waits for approval again the ledger lists it, so `show` takes the id the Temporal UI shows."""
    prompt = 'refund 213:5'
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [approval_agent]) as served:
        handle = await agentledger.start(served.client, approval_agent, prompt, task_queue=served.task_queue)
        [call] = await waiting(handle)
        # The ledger heard of the wait (its activity ran) before the reset discards what the old run had scheduled.
        await status(ledger, handle.run_id, 'awaiting_approval')
        events = (await handle.workflow_handle.fetch_history()).events
        started = next(e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
        after_start = next(
            e.event_id
            for e in events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and e.event_id > started
        )
        new_run = await reset_to(served.client, handle.workflow_id, after_start)
        reset = served.client.get_workflow_handle_for(AgentRunWorkflow.run, handle.workflow_id, run_id=new_run)

        async def waiting_again() -> list[PendingApproval]:
            return await pending_approvals(reset)

        [again] = await eventually(waiting_again)
        await status(ledger, handle.run_id, 'awaiting_approval')
        first_run = handle.workflow_handle.first_execution_run_id
        assert (await ledger.run(handle.run_id)).temporal_run_ids == (first_run, new_run)
        url = f'sqlite:///{tmp_path / "runs.db"}'
        assert await asyncio.to_thread(cli, ['show', new_run, '--ledger', url]) == 0
        assert capsys.readouterr().out.splitlines()[0].split() == ['run', handle.run_id]
        await decide_approval(reset, again, 'approve', by='alice')
        assert (await reset.result()).run_id == handle.run_id
        assert again.tool_call_id == call.tool_call_id


def orchestrator_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Hands the prompt to the approval agent, then reports what it answered."""
    returns = [part for message in messages for part in message.parts if isinstance(part, ToolReturnPart)]
    if returns:
        return ModelResponse(parts=[TextPart(f'delegate said: {returns[0].content}')])
    prompt = next(part.content for part in messages[0].parts if isinstance(part, UserPromptPart))
    return ModelResponse(parts=[ToolCallPart('approval', {'task': prompt}, tool_call_id='hand-over')])


refund_desk = Agent(
    FunctionModel(orchestrator_script),
    name='refund_desk',
    tools=[agentledger.delegate(approval_agent)],
    capabilities=[TemporalDurability()],
)
"""Delegates refunds to `approval_agent`, whose tool needs approval: the child run waits, the parent with it."""


def test_a_delegate_returns_the_union_of_its_agents_output_types() -> None:
    """`approval_agent`'s `output_type=[str, DeferredToolRequests]` is the delegate tool's return type as a union."""
    schema = agentledger.delegate(approval_agent).function_schema.return_schema
    assert schema is not None and schema['anyOf'] == [{'type': 'string'}, {'$ref': '#/$defs/DeferredToolRequests'}]


async def test_a_delegate_waits_for_approval_and_its_orchestrator_with_it(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The delegate's child run waits for the decision in its own workflow: the ledger shows it awaiting
    approval under its parent, it is decided through the child's workflow, and the parent then completes."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [refund_desk]) as served:
        handle = await agentledger.start(served.client, refund_desk, 'refund 301:5', task_queue=served.task_queue)

        async def child_waiting() -> RunRecord | None:
            children = await ledger.runs(parent_run_id=handle.run_id)
            return children[0] if children and children[0].status == 'awaiting_approval' else None

        child = await eventually(child_waiting)
        assert (child.agent_name, child.parent_tool_call_id) == ('approval', 'hand-over')
        assert (await ledger.run(handle.run_id)).status == 'running'
        tree = await ledger.run_tree(handle.run_id)
        assert [(depth, node.run.run_id, node.run.status) for depth, node in tree.walk()] == [
            (0, handle.run_id, 'running'),
            (1, child.run_id, 'awaiting_approval'),
        ]

        # The parent has nothing waiting itself: the decision is the child's, in the child's workflow.
        assert await handle.pending_approvals() == []
        child_handle = served.client.get_workflow_handle(child.workflow_id)
        [call] = await pending_approvals(child_handle)
        assert (call.tool_call_id, call.args) == ('call-301', {'order': 301, 'amount': 5})
        await decide_approval(child_handle, call, 'approve', by='alice')

        result = await handle.result()
        assert result.output == 'delegate said: refunded 5 on order 301'
        assert REFUNDS.count((301, 5)) == 1
        tree = await ledger.run_tree(handle.run_id)
        assert [(depth, node.run.status) for depth, node in tree.walk()] == [(0, 'completed'), (1, 'completed')]
        [node] = tree.children
        assert node.step is not None and (node.step.tool_call_id, node.step.status) == ('hand-over', 'completed')
        approvals = approval_events(await ledger.events(child.run_id))
        assert approvals == [('approval_requested', 'call-301'), ('approval_granted', 'call-301')]
        assert approval_events(await ledger.events(handle.run_id)) == []


CREDITS: list[int] = []
"""Every store credit the credit agent's tool really gave, in this process."""


def credit_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Gives the credits the prompt names (`credit 60 20`, one call each), then reports the tools' answers."""
    returns = [part for message in messages for part in message.parts if isinstance(part, ToolReturnPart)]
    if returns:
        return ModelResponse(parts=[TextPart(' | '.join(str(part.content) for part in returns))])
    prompt = next(part.content for part in messages[0].parts if isinstance(part, UserPromptPart))
    amounts = str(prompt).split()[1:]
    return ModelResponse(
        parts=[ToolCallPart('store_credit', {'amount': int(a)}, tool_call_id=f'credit-{a}') for a in amounts]
    )


credit_agent = Agent(
    FunctionModel(credit_script),
    name='credit',
    output_type=[str, DeferredToolRequests],
    capabilities=[TemporalDurability()],
)


@credit_agent.tool
def store_credit(ctx: RunContext[None], amount: int) -> str:
    """Up to 50 at once; more only once a person approved it (`ApprovalRequired`, raised in its activity)."""
    if amount > 50 and not ctx.tool_call_approved:
        raise ApprovalRequired()
    CREDITS.append(amount)
    return f'{amount} credit given'


@pytest.mark.parametrize('decision', ['approve', 'deny'])
async def test_a_tool_that_raises_approval_required_waits_and_runs_once_approved(
    temporal_env: WorkflowEnvironment, tmp_path: Path, decision: str
) -> None:
    """The tool's activity asked for approval; once approved it runs again (approved), once denied it does not.
    Its effect in the ledger is how the call was decided, not the deferral its first activity ended with."""
    amount = 61 if decision == 'approve' else 62
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [credit_agent]) as served:
        handle = await agentledger.start(
            served.client, credit_agent, f'credit {amount} 20', task_queue=served.task_queue
        )
        [call] = await waiting(handle)
        assert (call.tool_call_id, call.tool_name, call.args) == (
            f'credit-{amount}',
            'store_credit',
            {'amount': amount},
        )
        if decision == 'approve':
            await handle.approve(call, override_args={'amount': 50}, by='alice')
        else:
            await handle.deny(call, reason='Too much credit.', by='bob')
        output = (await handle.result()).output
        effects = {effect.tool_call_id: effect for effect in await ledger.tool_effects(handle.run_id)}
        asked = effects[f'credit-{amount}']
        assert (effects['credit-20'].outcome, effects['credit-20'].attempts) == ('returned', 1)
        if decision == 'approve':
            assert output == '50 credit given | 20 credit given'
            assert CREDITS.count(50) == 1 and amount not in CREDITS
            assert (asked.status, asked.outcome, asked.attempts) == ('completed', 'returned', 2)
        else:
            assert output == 'Too much credit. | 20 credit given'
            assert amount not in CREDITS
            assert (asked.status, asked.outcome, asked.attempts) == ('completed', 'denied', 2)
