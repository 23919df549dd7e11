"""End-to-end: runs are found in the Temporal UI's list by their search attributes, and say what they do.

Every run sets `AgentLedgerAgent`, `AgentLedgerRunId`, `AgentLedgerStatus` (at every transition),
`AgentLedgerConversationId`, `AgentLedgerParentRunId` and `AgentLedgerRestartOf`; it carries a static
summary and details, and its current details follow its step, last tool, park or wait. A namespace
without the attributes (and registration off) runs agents all the same, with one error naming them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowExecution, WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import agentledger
from agentledger import LedgerPlugin, MemoryLedger, SqliteLedger, cli
from agentledger.cli import start_dev_server
from agentledger.model import SEARCH_ATTRIBUTES

from ..conftest import Served, serve
from ..helpers import agents
from ..helpers.agents import approval_agent, calc_agent, holder_agent, relay_agent
from ..helpers.delegate_agents import boss

DEADLINE = 30.0


async def found(client: Client, query: str) -> list[WorkflowExecution]:
    """The executions `query` lists, polled until there is one (visibility is eventually consistent)."""
    end = time.monotonic() + DEADLINE
    while True:
        executions = [execution async for execution in client.list_workflows(query)]
        if executions or time.monotonic() > end:
            assert executions, f'nothing listed for {query!r} within {DEADLINE} s'
            return executions
        await asyncio.sleep(0.2)


async def details(handle: WorkflowHandle[Any, Any]) -> str:
    """The run's current details, as the Temporal UI reads them."""
    metadata = await handle.query('__temporal_workflow_metadata', result_type=WorkflowMetadata)
    return metadata.current_details


async def details_until(handle: WorkflowHandle[Any, Any], text: str) -> str:
    end = time.monotonic() + DEADLINE
    while True:
        shown = await details(handle)
        if text in shown or time.monotonic() > end:
            assert text in shown, f'current details never showed {text!r}; last: {shown!r}'
            return shown
        await asyncio.sleep(0.1)


def keyword(execution: WorkflowExecution, name: str) -> Any:
    key = next(key for key in SEARCH_ATTRIBUTES if key.name == name)
    return execution.typed_search_attributes.get(key)


async def test_a_run_is_listed_by_agent_and_status_and_shows_its_step_and_last_tool(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    workflow_id = f'search-hold-{uuid.uuid4().hex[:8]}'
    async with serve(temporal_env, SqliteLedger(tmp_path / 'runs.db'), [holder_agent]) as served:
        handle = await agentledger.start(
            served.client, holder_agent, 'hold\non, please', task_queue=served.task_queue, workflow_id=workflow_id,
            conversation_id='conv-search-1',
        )  # fmt: skip
        where = f"WorkflowId = '{workflow_id}'"
        running = await found(
            served.client, f"AgentLedgerAgent = 'holder' AND AgentLedgerStatus = 'running' AND {where}"
        )
        assert keyword(running[0], 'AgentLedgerRunId') == handle.run_id
        assert keyword(running[0], 'AgentLedgerConversationId') == 'conv-search-1'
        assert keyword(running[0], 'AgentLedgerParentRunId') is None
        await found(served.client, f"AgentLedgerConversationId = 'conv-search-1' AND {where}")
        shown = await details_until(handle.workflow_handle, 'step 2')
        assert shown == f'**Running** (agentledger run `{handle.run_id}`): step 2, last tool `add_up` (returned)'

        description = await handle.workflow_handle.describe()
        assert await description.static_summary() == 'holder: hold on, please'
        static = await description.static_details()
        assert static is not None
        assert '`holder`' in static and '`conv-search-1`' in static
        assert f'`agentledger show {workflow_id}`' in static

        agents.released.add(workflow_id)
        await handle.result()
        await found(served.client, f"AgentLedgerStatus = 'completed' AND {where}")
        assert await details(handle.workflow_handle) == (
            f'**Completed** (agentledger run `{handle.run_id}`): step 3, last tool `hold` (returned)'
        )
        assert not [e async for e in served.client.list_workflows(f"AgentLedgerStatus = 'running' AND {where}")]


async def _parked(served: Served, workflow_id: str) -> WorkflowHandle[Any, Any]:
    handle = await agentledger.start(
        served.client, relay_agent, 'relay', task_queue=served.task_queue, workflow_id=workflow_id,
        park_on_failure=True,
    )  # fmt: skip
    await found(
        served.client, f"AgentLedgerAgent = 'relay' AND AgentLedgerStatus = 'parked' AND WorkflowId = '{workflow_id}'"
    )
    return handle.workflow_handle


async def test_a_parked_run_is_listed_parked_with_its_reason_then_running_again(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    workflow_id = f'search-park-{uuid.uuid4().hex[:8]}'
    async with serve(temporal_env, SqliteLedger(tmp_path / 'runs.db'), [relay_agent]) as served:
        handle = await _parked(served, workflow_id)
        shown = await details(handle)
        assert shown.startswith('**Parked** (agentledger run ')
        assert 'the downstream system is down' in shown and '`resume`' in shown
        await agentledger.resume_parked(handle)
        await handle.result()
        await found(served.client, f"AgentLedgerStatus = 'completed' AND WorkflowId = '{workflow_id}'")
        assert (await details(handle)).endswith('last tool `second` (returned)')


async def test_a_run_awaiting_approval_is_listed_so(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    workflow_id = f'search-approval-{uuid.uuid4().hex[:8]}'
    where = f"WorkflowId = '{workflow_id}'"
    async with serve(temporal_env, SqliteLedger(tmp_path / 'runs.db'), [approval_agent]) as served:
        handle = await agentledger.start(
            served.client, approval_agent, 'refund 9301:4', task_queue=served.task_queue, workflow_id=workflow_id
        )
        await found(served.client, f"AgentLedgerStatus = 'awaiting_approval' AND {where}")
        shown = await details(handle.workflow_handle)
        assert shown.startswith('**Awaiting approval**') and '`refund(' in shown
        [call] = await handle.pending_approvals()
        await handle.approve(call)
        await handle.result()
        await found(served.client, f"AgentLedgerStatus = 'completed' AND {where}")


async def test_a_failed_run_and_its_restart_are_listed_and_linked(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    workflow_id = f'search-restart-{uuid.uuid4().hex[:8]}'
    where = f"WorkflowId = '{workflow_id}'"
    async with serve(temporal_env, SqliteLedger(tmp_path / 'runs.db'), [relay_agent]) as served:
        first = await agentledger.start(
            served.client, relay_agent, 'relay', task_queue=served.task_queue, workflow_id=workflow_id
        )
        with pytest.raises(WorkflowFailureError):
            await first.result()
        [failed] = await found(
            served.client, f"AgentLedgerAgent = 'relay' AND AgentLedgerStatus = 'failed' AND {where}"
        )
        assert keyword(failed, 'AgentLedgerRunId') == first.run_id
        assert await details(first.workflow_handle) == (
            f'**Failed** (agentledger run `{first.run_id}`): step 2, last tool `second` (failed)'
        )
        again = await agentledger.start(
            served.client, relay_agent, 'relay', task_queue=served.task_queue, workflow_id=workflow_id
        )
        await again.result()
        [restart] = await found(
            served.client, f"AgentLedgerRestartOf = '{first.run_id}' AND AgentLedgerStatus = 'completed'"
        )
        assert restart.id == workflow_id
        assert keyword(restart, 'AgentLedgerRunId') == again.run_id != first.run_id


async def test_a_delegate_is_listed_with_its_parent_and_has_details(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with serve(temporal_env, SqliteLedger(tmp_path / 'runs.db'), [boss]) as served:
        result = await agentledger.run(served.client, boss, 'brief moons', task_queue=served.task_queue)
        [child] = await found(
            served.client, f"AgentLedgerParentRunId = '{result.run_id}' AND AgentLedgerAgent = 'researcher'"
        )
        assert keyword(child, 'AgentLedgerStatus') == 'completed'
        description = await served.client.get_workflow_handle(child.id).describe()
        static = await description.static_details()
        assert static is not None and f'`{result.run_id}`' in static and f'`agentledger show {child.id}`' in static


@pytest.fixture(scope='module')
async def bare_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server whose namespace has none of the agentledger search attributes."""
    env = await start_dev_server(search_attributes=False)
    try:
        yield env
    finally:
        await env.shutdown()


async def test_a_namespace_without_the_attributes_runs_agents_and_names_what_is_missing(
    bare_server: WorkflowEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = MemoryLedger()
    plugin = LedgerPlugin(ledger, agents=[calc_agent], register_search_attributes=False)
    client = await Client.connect(bare_server.client.service_client.config.target_host, plugins=[plugin])
    task_queue = f'tq-{uuid.uuid4().hex[:8]}'
    with caplog.at_level(logging.ERROR, logger='agentledger.worker'):
        async with Worker(client, task_queue=task_queue):
            result = await agentledger.run(client, calc_agent, 'sum', task_queue=task_queue)
    assert result.output == 'done'
    [line] = [record.getMessage() for record in caplog.records if 'lacks the search attributes' in record.getMessage()]
    for key in SEARCH_ATTRIBUTES:
        assert key.name in line
    assert 'temporal operator search-attribute create --namespace default' in line
    assert 'tcld namespace search-attributes add --namespace default' in line
    history = await client.get_workflow_handle(result.workflow_id).fetch_history()
    assert all(event.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for event in history.events)
    # Temporal's own `TemporalChangeVersion` (set by patches) is the only search attribute upserted.
    upserted = {
        name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
        for name in event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    }
    assert upserted <= {'TemporalChangeVersion'}


async def test_the_cli_reports_missing_attributes_and_registers_them(
    bare_server: WorkflowEnvironment, capsys: pytest.CaptureFixture[str]
) -> None:
    address = bare_server.client.service_client.config.target_host
    assert await asyncio.to_thread(cli.main, ['search-attributes', '--address', address]) == 1
    out, err = capsys.readouterr()
    assert 'AgentLedgerStatus          missing' in out
    assert 'temporal operator search-attribute create' in err
    assert await asyncio.to_thread(cli.main, ['search-attributes', '--address', address, '--register']) == 0
    out, _ = capsys.readouterr()
    assert all(f'{key.name:<26} added' in out for key in SEARCH_ATTRIBUTES)
    assert await asyncio.to_thread(cli.main, ['search-attributes', '--address', address]) == 0
    out, _ = capsys.readouterr()
    assert all(f'{key.name:<26} present' in out for key in SEARCH_ATTRIBUTES)
