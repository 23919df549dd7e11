"""End-to-end: delegates as child workflows, linked in the ledger, on a real dev server (C11, C12, C18)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from pathlib import Path

import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import UsageLimits
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer
from temporalio.workflow import ParentClosePolicy

import agentledger
import agentledger.errors
import agentledger.model
from agentledger import Ledger, MemoryLedger, SqliteLedger
from agentledger.model import RunRecord, StepEvent, Usage
from agentledger.model._rules import total_usage
from agentledger.workflows import AgentRunWorkflow

from ..conftest import serve
from ..helpers import delegate_agents as agents
from ..helpers.delegate_agents import (
    Draft,
    boss,
    broken,
    chief,
    napper,
    night_owl,
    persistent,
    researcher,
    shaky,
    strict_triage,
    triage,
    writer,
)

ORCHESTRATORS = [boss, chief, triage, strict_triage, persistent, napper, night_owl]


async def own_usage(ledger: Ledger, run: RunRecord) -> Usage:
    """What the run's own model requests used, from its accepted model-request steps."""
    return total_usage(await ledger.steps(run.run_id))


def delegate_events(events: list[StepEvent]) -> list[StepEvent]:
    return [e for e in events if e.activity_id.startswith('delegate:')]


async def history(client: Client, workflow_id: str, run_id: str | None = None) -> WorkflowHistory:
    return await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()


def test_plugin_serves_the_delegates_of_its_agents() -> None:
    plugin = agentledger.LedgerPlugin(MemoryLedger(), agents=[chief])
    assert [a.name for a in plugin.agents] == ['chief', 'boss', 'researcher', 'writer']


async def test_in_process_without_temporal() -> None:
    """Outside Temporal the same agents delegate in-process, sharing the orchestrator's usage."""
    before = Counter(agents.model_calls)
    result = await boss.run('brief moons')
    assert result.output == 'facts: moons rise twice a day | A POEM ON MOONS (4 words)'
    assert result.usage.requests == 5  # boss 2, researcher 2, writer 1
    calls = agents.model_calls - before
    assert calls == Counter(boss=2, researcher=2, writer=1)

    failed = await triage.run('go')
    assert failed.output == "recovered from: delegate 'broken' failed: RuntimeError: the warehouse is on fire"
    with pytest.raises(agentledger.errors.DelegateFailedError, match='the warehouse is on fire'):
        await strict_triage.run('go')

    # Typed input: the model fills the input type's fields; the delegate's prompt is the value as JSON.
    def ask_typed(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart('draft', {'title': 'tides', 'words': 3})])
        return ModelResponse(parts=[TextPart(str(messages[-1].parts[0].content))])

    typed = Agent(FunctionModel(ask_typed), tools=[agentledger.delegate(writer, name='draft', input_type=Draft)])
    answer = (await typed.run('go')).output
    assert answer == str(Draft(title='{\n  "TITLE": "TIDES",\n  "WORDS": 3\n}', words=6))


async def test_delegates_are_linked_child_workflows_with_usage_rolled_up_c12(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """C12, in parallel: two delegates from one model response run as child workflows linked to their calls."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [boss]) as served:
        before = Counter(agents.model_calls)
        result = await agentledger.run(served.client, boss, 'brief tides', task_queue=served.task_queue)
        assert result.output == 'facts: tides rise twice a day | A POEM ON TIDES (4 words)'
        assert agents.model_calls - before == Counter(boss=2, researcher=2, writer=1)

        parent = await ledger.run(result.run_id)
        assert parent.status == 'completed'
        children = await ledger.runs(parent_run_id=parent.run_id)
        assert sorted(c.agent_name for c in children) == ['researcher', 'writer']
        assert all(c.status == 'completed' for c in children)

        # The parent's tool events record the child run; the child run records the parent run and call.
        events = await ledger.events(parent.run_id)
        assert all(e.state != 'provisional' for e in events)
        calls = delegate_events(events)
        assert Counter(e.kind for e in calls) == Counter(tool_call_started=2, tool_call_completed=2)
        for child in children:
            assert child.parent_tool_call_id is not None
            assert child.workflow_id == f'{parent.workflow_id}/delegate/{child.parent_tool_call_id}'
            call = [e for e in calls if e.tool_call_id == child.parent_tool_call_id]
            assert [(e.kind, e.attempt, e.state, e.child_run_id) for e in call] == [
                ('tool_call_started', 1, 'accepted', child.run_id),
                ('tool_call_completed', 1, 'accepted', child.run_id),
            ]
            assert call[0].tool_name == child.agent_name and call[1].outcome == 'returned'
            assert call[1].usage == child.usage
        steps = {s.tool_name: s for s in await ledger.steps(parent.run_id) if s.kind == 'tool_call'}
        assert {name: s.child_run_id for name, s in steps.items()} == {c.agent_name: c.run_id for c in children}
        assert all(s.status == 'completed' and s.accepted_attempt == 1 for s in steps.values())

        # Usage: the parent's is its own model requests plus every child's.
        own = await own_usage(ledger, parent)
        rolled = own
        for child in children:
            rolled = rolled + child.usage
        assert (parent.usage.requests, parent.usage.input_tokens, parent.usage.output_tokens) == (
            rolled.requests,
            rolled.input_tokens,
            rolled.output_tokens,
        )
        assert parent.usage.requests == 5 and own.requests == 2
        assert parent.usage.tool_calls == 2 + sum(c.usage.tool_calls for c in children)
        assert result.usage == parent.usage

        # Inside the researcher, its tool failed once and Temporal retried it (its own activity, its own ledger run).
        research = next(c for c in children if c.agent_name == 'researcher')
        lookup = [e for e in await ledger.events(research.run_id) if e.tool_name == 'lookup']
        assert [(e.kind, e.attempt) for e in lookup] == [
            ('tool_call_started', 1),
            ('tool_call_failed', 1),
            ('tool_call_started', 2),
            ('tool_call_completed', 2),
        ]

        # Temporal knows them as children, started in parallel from one workflow task.
        for child in children:
            description = await served.client.get_workflow_handle(child.workflow_id).describe()
            parent_execution = description.raw_description.workflow_execution_info.parent_execution
            assert parent_execution.workflow_id == parent.workflow_id
        kinds = [e.event_type for e in (await history(served.client, parent.workflow_id)).events]
        initiated = [
            i for i, k in enumerate(kinds) if k == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
        ]
        completed = [i for i, k in enumerate(kinds) if k == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED]
        assert len(initiated) == 2 and max(initiated) < min(completed)

        # The tree: which step started which delegate, with status, usage and duration per node.
        tree = await ledger.run_tree(parent.run_id)
        assert tree.run == parent and tree.step is None
        assert [(node.run.agent_name, node.step.tool_name if node.step else None) for node in tree.children] == [
            (c.agent_name, c.agent_name) for c in sorted(children, key=lambda c: (c.started_at, c.run_id))
        ]
        assert all(node.run.duration_s is not None for _, node in tree.walk())
        assert tree.to_json()['children'][0]['run']['parent_run_id'] == parent.run_id


async def test_nested_delegation_two_levels_deep(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """chief -> team (boss) -> researcher + writer: a three-level tree, usage rolled up at each level."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [chief]) as served:
        result = await agentledger.run(served.client, chief, 'stars', task_queue=served.task_queue)
        assert result.output == 'chief: facts: stars rise twice a day | A POEM ON STARS (4 words)'

        tree = await ledger.run_tree(result.run_id)
        shape = [(depth, node.run.agent_name, node.run.status) for depth, node in tree.walk()]
        assert sorted(shape) == sorted(
            [
                (0, 'chief', 'completed'),
                (1, 'boss', 'completed'),
                (2, 'researcher', 'completed'),
                (2, 'writer', 'completed'),
            ]
        )
        (team,) = tree.children
        assert team.step is not None and team.step.tool_name == 'team'
        assert team.run.workflow_id.startswith(f'{tree.run.workflow_id}/delegate/')
        for node in team.children:
            assert node.run.workflow_id.startswith(f'{team.run.workflow_id}/delegate/')
        for _, node in tree.walk():
            expected = await own_usage(ledger, node.run)
            for child in node.children:
                expected = expected + child.run.usage
            assert node.run.usage.requests == expected.requests
            assert node.run.usage.input_tokens == expected.input_tokens
        assert result.usage.requests == 2 + 2 + 2 + 1
        assert (await ledger.run_tree(result.run_id, max_depth=1)).children[0].children == ()


async def test_failing_delegate_is_a_tool_error_the_orchestrator_handles(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A delegate that fails reaches the orchestrator's model as a failed tool result, not a crash."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [triage]) as served:
        result = await agentledger.run(served.client, triage, 'go', task_queue=served.task_queue)
        (child,) = await ledger.runs(parent_run_id=result.run_id)
        assert child.status == 'failed' and child.error is not None
        assert child.error.type == 'RuntimeError' and 'the warehouse is on fire' in child.error.message
        assert result.output == (
            f"recovered from: delegate 'broken' (run {child.run_id}) failed: RuntimeError: the warehouse is on fire"
        )
        parent = await ledger.run(result.run_id)
        assert parent.status == 'completed'
        # What the failed child spent is still the parent's: one request each for triage and broken, and triage's last.
        assert child.usage.requests == 1 and parent.usage.requests == 3

        (started, ended) = delegate_events(await ledger.events(result.run_id))
        assert (started.kind, started.child_run_id) == ('tool_call_started', child.run_id)
        assert (ended.kind, ended.outcome, ended.child_run_id, ended.state) == (
            'tool_call_completed',
            'failed',
            child.run_id,
            'accepted',
        )
        assert ended.error is not None and ended.error.type == 'RuntimeError'
        # The history the model saw: the call answered by a failed tool return (provider-valid, C5).
        final = await ledger.snapshot((await ledger.latest_snapshot(result.run_id)).snapshot_id)
        failed_returns = [
            p for m in final.messages for p in m.parts if isinstance(p, ToolReturnPart) and p.outcome == 'failed'
        ]
        assert len(failed_returns) == 1


async def test_failing_delegate_with_on_failure_raise_fails_the_orchestrator(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [strict_triage]) as served:
        handle = await agentledger.start(served.client, strict_triage, 'go', task_queue=served.task_queue)
        with pytest.raises(WorkflowFailureError) as raised:
            await handle.result()
        cause = raised.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == 'DelegateFailedError'
        assert 'the warehouse is on fire' in cause.message
        parent = await ledger.run(handle.run_id)
        (child,) = await ledger.runs(parent_run_id=handle.run_id)
        assert parent.status == 'failed' and child.status == 'failed'
        assert parent.error is not None and child.run_id in parent.error.message
        assert parent.usage.requests == 2  # its own request and the child's
        ended = delegate_events(await ledger.events(handle.run_id))[-1]
        assert (ended.kind, ended.child_run_id) == ('tool_call_failed', child.run_id)


async def test_delegate_that_fails_once_is_retried_from_its_snapshot(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """retry_policy restarts the failed child's workflow id, which resumes from its latest valid snapshot."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [persistent]) as served:
        before = Counter(agents.tool_runs)
        result = await agentledger.run(served.client, persistent, 'go', task_queue=served.task_queue)
        assert result.output == 'shipped: shaky done'
        # `gather` completed before the failure and was not repeated; `fragile` ran twice.
        assert agents.tool_runs - before == Counter(gather=1, fragile=2)

        first, second = sorted(await ledger.runs(parent_run_id=result.run_id), key=lambda r: r.started_at)
        assert (first.status, second.status) == ('failed', 'completed')
        assert first.workflow_id == second.workflow_id
        assert first.parent_tool_call_id == second.parent_tool_call_id
        assert second.forked_from is not None
        assert (second.forked_from.run_id, second.forked_from.reason) == (first.run_id, 'restart')

        calls = delegate_events(await ledger.events(result.run_id))
        assert [(e.kind, e.attempt, e.state, e.child_run_id) for e in calls] == [
            ('tool_call_started', 1, 'abandoned', first.run_id),
            ('tool_call_failed', 1, 'abandoned', first.run_id),
            ('tool_call_started', 2, 'accepted', second.run_id),
            ('tool_call_completed', 2, 'accepted', second.run_id),
        ]
        (step,) = [s for s in await ledger.steps(result.run_id) if s.kind == 'tool_call']
        assert (step.attempts, step.accepted_attempt, step.child_run_id) == (2, 2, second.run_id)
        parent = await ledger.run(result.run_id)
        assert parent.usage.requests == 2 + first.usage.requests + second.usage.requests
        assert len((await ledger.run_tree(result.run_id)).children) == 2


async def test_usage_limits_cover_the_delegates(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """A delegate gets what is left of the orchestrator's limits; running out fails the orchestrator."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [boss]) as served:
        handle = await agentledger.start(
            served.client,
            boss,
            'brief comets',
            task_queue=served.task_queue,
            usage_limits=UsageLimits(request_limit=2),
        )
        with pytest.raises(WorkflowFailureError) as raised:
            await handle.result()
        cause = raised.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == 'UsageLimitExceeded'
        children = await ledger.runs(parent_run_id=handle.run_id)
        research = next(c for c in children if c.agent_name == 'researcher')
        assert research.status == 'failed' and research.error is not None
        assert research.error.type == 'UsageLimitExceeded'


async def test_continuing_an_orchestrator_does_not_rerun_its_delegates_c11(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """C11 (continuation and fork): completed delegates are in the seed; no child workflow starts again."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [boss]) as served:
        first = await agentledger.run(served.client, boss, 'brief rivers', task_queue=served.task_queue)
        before = Counter(agents.model_calls)

        continued = await (await agentledger.continue_run(served.client, first.run_id, 'how many?')).result()
        assert continued.output == '2 delegate answers so far'
        forked = await (await agentledger.fork_run(served.client, first.run_id, at_step=2)).result()
        assert forked.output == 'facts: rivers rise twice a day | A POEM ON RIVERS (4 words)'

        assert agents.model_calls - before == Counter(boss=2)
        assert await ledger.runs(parent_run_id=continued.run_id) == []
        assert await ledger.runs(parent_run_id=forked.run_id) == []
        assert len(await ledger.runs(parent_run_id=first.run_id)) == 2


async def test_reset_past_a_completed_delegate_reuses_its_result_c11(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """C11 (Temporal reset): the same tool call finds the completed child by its id and reads its result."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [boss]) as served:
        first = await agentledger.run(served.client, boss, 'brief lakes', task_queue=served.task_queue)
        children = await ledger.runs(parent_run_id=first.run_id)
        before = Counter(agents.model_calls)

        point = _reset_point(await history(served.client, first.workflow_id))
        reset_run = await _reset(served.client, first.workflow_id, point)
        again = await served.client.get_workflow_handle_for(
            AgentRunWorkflow.run, first.workflow_id, run_id=reset_run
        ).result()
        assert again.output == first.output

        # No model was asked again: the delegates' runs are found by id, and the boss's request after the
        # reset point is answered from the model-call journal. No second child execution exists.
        assert agents.model_calls - before == Counter()
        for child in children:
            executions = [e async for e in served.client.list_workflows(f'WorkflowId = "{child.workflow_id}"')]
            assert len(executions) == 1
        after_reset = await history(served.client, first.workflow_id, reset_run)
        kinds = [e.event_type for e in after_reset.events]
        assert kinds.count(EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED) == 2
        assert len(await ledger.runs(parent_run_id=first.run_id)) == 2


async def _child_napping(ledger: Ledger, parent_run_id: str) -> RunRecord:
    """The parent's delegate run, once its `nap` tool call has started."""

    async def poll() -> RunRecord:
        while True:
            for child in await ledger.runs(parent_run_id=parent_run_id):
                if any(e.kind == 'tool_call_started' for e in await ledger.events(child.run_id)):
                    return child
            await asyncio.sleep(0.1)

    return await asyncio.wait_for(poll(), timeout=30)


def _reset_point(recorded: WorkflowHistory) -> int:
    """The workflow task that started the first child workflow: resetting there re-issues the start."""
    initiated = next(
        e for e in recorded.events if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    )
    return initiated.start_child_workflow_execution_initiated_event_attributes.workflow_task_completed_event_id


async def _reset(client: Client, workflow_id: str, event_id: int) -> str:
    response = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id),
            reason='test: reset past a delegate call',
            workflow_task_finish_event_id=event_id,
            request_id=str(uuid.uuid4()),
        )
    )
    return response.run_id


async def test_cancelling_the_orchestrator_cancels_its_running_delegate(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """parent_close_policy=REQUEST_CANCEL (default): the running child is cancelled and both runs say so."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [napper]) as served:
        handle = await agentledger.start(served.client, napper, 'nap 30', task_queue=served.task_queue)
        child = await _child_napping(ledger, handle.run_id)
        await handle.workflow_handle.cancel()
        with pytest.raises(WorkflowFailureError) as raised:
            await handle.result()
        assert isinstance(raised.value.cause, CancelledError)

        assert (await ledger.run(handle.run_id)).status == 'cancelled'
        assert (await ledger.run(child.run_id)).status == 'cancelled'
        calls = delegate_events(await ledger.events(handle.run_id))
        assert [(e.kind, e.attempt, e.state, e.child_run_id) for e in calls] == [
            ('tool_call_started', 1, 'accepted', child.run_id),
            ('tool_call_failed', 1, 'accepted', child.run_id),
        ]
        assert calls[1].error is not None and calls[1].error.type == 'CancelledError'
        (step,) = [s for s in await ledger.steps(handle.run_id) if s.kind == 'tool_call']
        assert step.status == 'cancelled'


async def test_reset_while_an_abandoned_delegate_runs_waits_for_it(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """parent_close_policy=ABANDON: a delegate running when its orchestrator is reset is resumed, not re-run."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [night_owl]) as served:
        before = Counter(agents.model_calls)
        handle = await agentledger.start(served.client, night_owl, 'nap 3', task_queue=served.task_queue)
        child = await _child_napping(ledger, handle.run_id)
        point = _reset_point(await history(served.client, handle.workflow_id))
        new_run = await _reset(served.client, handle.workflow_id, point)

        output = await served.client.get_workflow_handle_for(
            AgentRunWorkflow.run, handle.workflow_id, run_id=new_run
        ).result()
        assert output.output == 'woke: rested'
        # The sleeper ran once (two model requests), and the reset run read its result.
        assert agents.model_calls - before == Counter(sleeper=2, napper=2)
        assert (await ledger.run(child.run_id)).status == 'completed'
        executions = [e async for e in served.client.list_workflows(f'WorkflowId = "{child.workflow_id}"')]
        assert len(executions) == 1
        kinds = [e.event_type for e in (await history(served.client, handle.workflow_id, new_run)).events]
        assert EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED in kinds


async def test_orchestrator_histories_replay_c18(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """C18: orchestrator and delegate histories replay without nondeterminism with the plugin installed."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, ORCHESTRATORS) as served:
        queue = served.task_queue
        handles = [
            await agentledger.start(served.client, chief, 'clouds', task_queue=queue),
            await agentledger.start(served.client, triage, 'go', task_queue=queue),
            await agentledger.start(served.client, persistent, 'go', task_queue=queue),
            await agentledger.start(served.client, strict_triage, 'go', task_queue=queue),
        ]
        workflow_ids: list[str] = []
        for handle in handles:
            with contextlib.suppress(WorkflowFailureError):
                await handle.result()
            workflow_ids.append(handle.workflow_id)
            workflow_ids.extend(r.workflow_id for _, r in _runs(await ledger.run_tree(handle.run_id)))
        histories = [await history(served.client, workflow_id) for workflow_id in dict.fromkeys(workflow_ids)]

    replayer = Replayer(workflows=[], plugins=[agentledger.LedgerPlugin(MemoryLedger(), agents=ORCHESTRATORS)])
    for recorded in histories:
        replayed = await replayer.replay_workflow(recorded, raise_on_replay_failure=False)
        assert replayed.replay_failure is None, f'{recorded.workflow_id}: {replayed.replay_failure}'
    assert len(histories) >= 8


def _runs(tree: agentledger.model.RunTree) -> list[tuple[int, RunRecord]]:
    return [(depth, node.run) for depth, node in tree.walk()]


def test_delegate_tool_shape() -> None:
    """The tool the orchestrator's model sees: typed input, the delegate's output type, run in workflow code."""
    tool = agentledger.delegate(writer, name='draft', description='Drafts a poem.')
    assert isinstance(tool, agentledger.DelegateTool)
    assert (tool.name, tool.description, tool.metadata) == ('draft', 'Drafts a poem.', {'temporal': False})
    schema = tool.function_schema.json_schema
    assert schema['properties']['task']['type'] == 'string' and schema['required'] == ['task']
    assert tool.function_schema.return_schema is not None
    assert tool.function_schema.return_schema['properties'].keys() == {'title', 'words'}
    assert agentledger.delegate(researcher).description == 'Finds facts about a topic.'
    typed = agentledger.delegate(shaky, input_type=Draft)
    assert typed.function_schema.json_schema['properties'].keys() == {'title', 'words'}
    assert broken.name == 'broken' and Draft(title='t', words=1).words == 1


def test_delegate_options_given_once_make_delegates_alike() -> None:
    """One `DelegateOptions` passed as `**options` sets every delegate made with it; the rest keep their defaults."""
    options = agentledger.DelegateOptions(task_queue='elsewhere', on_failure='raise')
    first, second = agentledger.delegate(writer, **options), agentledger.delegate(shaky, **options)
    for tool in (first, second):
        assert (tool.task_queue, tool.on_failure) == ('elsewhere', 'raise')
        assert (tool.deps, tool.retry_policy, tool.execution_timeout) == (None, None, None)
        assert tool.parent_close_policy == ParentClosePolicy.REQUEST_CANCEL
    with pytest.raises(UserError, match='on_failure'):
        agentledger.delegate(writer, on_failure='ignore')  # type: ignore[typeddict-item]
