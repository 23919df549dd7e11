"""End-to-end: `agentledger gc` keeps what runs inside retention reference, collects a deleted workflow's payloads."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest, DescribeWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger import Ledger, SqliteLedger
from agentledger.errors import LedgerCorruptionError
from agentledger.model import PayloadReference
from agentledger.payloads import collect_garbage
from agentledger.payloads._gc import ReferrerStatus, referrer_state, verdicts

from ..conftest import expect_discrepancy, serve
from ..helpers.s3_server import free_port, s3_ledger

gate = asyncio.Event()


def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = sum(1 for m in messages if isinstance(m, ModelResponse))
    prompt = str(messages[0].parts[-1].content)  # type: ignore[union-attr]
    if done == 0:
        return ModelResponse(parts=[ToolCallPart('export', {'what': prompt})])
    if done == 1 and prompt == 'wait':
        return ModelResponse(parts=[ToolCallPart('hold', {})])
    return ModelResponse(parts=[TextPart('exported')])


gc_agent = Agent(FunctionModel(script), name='gc', capabilities=[TemporalDurability()])


@gc_agent.tool_plain
def export(what: str) -> str:
    return f'{what}\n' + 'row 0001, a long and repetitive export\n' * 300  # ~12 KB: stored in the ledger


@gc_agent.tool_plain
async def hold() -> str:
    await gate.wait()
    return 'released'


@pytest.fixture(params=['sqlite', 's3'])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = SqliteLedger(tmp_path / 'runs.db') if request.param == 'sqlite' else s3_ledger()
    async with opened:
        yield opened


async def referenced_by(ledger: Ledger, workflow_id: str) -> set[str]:
    return {r.manifest for r in await ledger.payload_references() if r.workflow_id == workflow_id}


async def delete_workflow(client: Client, workflow_id: str) -> None:
    """Delete a closed workflow through Temporal and wait until describing it says it is gone.

    The dev server deletes asynchronously: about 30 seconds after the request.
    """
    execution = WorkflowExecution(workflow_id=workflow_id)
    await client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(namespace='default', workflow_execution=execution)
    )
    for _ in range(900):
        try:
            await client.workflow_service.describe_workflow_execution(
                DescribeWorkflowExecutionRequest(namespace='default', execution=execution)
            )
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return
            raise
        await asyncio.sleep(0.1)
    raise AssertionError(f'workflow {workflow_id} was not deleted')


async def test_gc_collects_a_deleted_workflows_payloads_and_keeps_a_live_runs(
    temporal_env: WorkflowEnvironment, ledger: Ledger
) -> None:
    gate.clear()
    async with serve(temporal_env, ledger, [gc_agent]) as served:
        done = await agentledger.run(served.client, gc_agent, 'done', task_queue=served.task_queue)
        live = await agentledger.start(served.client, gc_agent, 'wait', task_queue=served.task_queue)
        # The live run is parked in `hold`, after its first (large) tool result was stored.
        for _ in range(300):
            if await referenced_by(ledger, live.workflow_id) and any(
                e.tool_name == 'hold' for e in await ledger.events(live.run_id)
            ):
                break
            await asyncio.sleep(0.1)
        deleted_payloads = await referenced_by(ledger, done.workflow_id)
        live_payloads = await referenced_by(ledger, live.workflow_id)
        assert deleted_payloads and live_payloads and not deleted_payloads & live_payloads
        snapshot_of_done = await ledger.latest_snapshot(done.run_id)

        # A reference Temporal cannot decide on (its namespace does not exist) keeps its payload.
        orphan = await ledger.store_chunked(b'orphan payload ' * 500, referrers=[('no-such-namespace', 'wf-x')])
        client = served.client

        # Everything was stored just now: the default grace keeps it all.
        assert (await collect_garbage(ledger, client)).deleted == ()

        await delete_workflow(client, done.workflow_id)
        planned = await collect_garbage(ledger, client, grace=timedelta(0), dry_run=True)
        assert set(planned.deleted) == deleted_payloads
        for manifest in deleted_payloads:
            assert await ledger.load_chunked(manifest)

        report = await collect_garbage(ledger, client, grace=timedelta(0))
        assert set(report.deleted) == deleted_payloads and report.chunks == planned.chunks
        states = {r.workflow_id: r.state for r in report.referrers}
        assert states == {done.workflow_id: 'gone', live.workflow_id: 'open', 'wf-x': 'unknown'}
        kept = {k.manifest: k.reasons for k in report.kept}
        assert set(kept) == live_payloads | {orphan}
        assert 'no-such-namespace' in ' '.join(kept[orphan])
        assert [r.workflow_id for r in report.undecided] == ['wf-x']
        for manifest in deleted_payloads:
            with pytest.raises(LedgerCorruptionError):
                await ledger.load_chunked(manifest)
        # What the live run and the snapshots still use is whole: the chunks they share were kept.
        for manifest in live_payloads | {orphan}:
            assert await ledger.load_chunked(manifest)
        assert len((await ledger.snapshot(snapshot_of_done.snapshot_id)).messages) == snapshot_of_done.message_count

        # The live run goes on (its references resolve) and, closed inside the retention, keeps its payloads.
        gate.set()
        assert (await live.result()).output == 'exported'
        after = await collect_garbage(ledger, client, grace=timedelta(0))
        assert after.deleted == ()
        assert {r.workflow_id: r.state for r in after.referrers}[live.workflow_id] == 'retained'
    expect_discrepancy(ledger, done.run_id, 'orphan', 'the test deleted its workflow from Temporal to collect it')


async def test_gc_command(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """`agentledger gc --json` reports; with Temporal unreachable it deletes nothing and says why."""
    path = tmp_path / 'runs.db'
    async with SqliteLedger(path) as ledger:
        old = datetime.now(UTC) - timedelta(days=30)
        manifest = await ledger.store_chunked(b'forgotten ' * 1000)
        await ledger.record_payload_references([PayloadReference(manifest, 'default', 'wf-never-ran', old)])
    address = temporal_env.client.service_client.config.target_host
    command = [sys.executable, '-m', 'agentledger', 'gc', '--ledger', f'sqlite:///{path}', '--json']
    root = Path(__file__).parents[2]

    down = subprocess.run(
        [*command, '--address', f'127.0.0.1:{free_port()}'], capture_output=True, text=True, timeout=120, cwd=root
    )
    assert down.returncode == 1 and 'nothing was deleted' in down.stderr

    dry = subprocess.run(
        [*command, '--address', address, '--dry-run'], capture_output=True, text=True, timeout=120, cwd=root
    )
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned['schema'] == 'agentledger.gc/1' and planned['dry_run'] is True
    assert planned['deleted'] == [manifest]
    [referrer] = planned['referrers']
    assert (referrer['namespace'], referrer['workflow_id'], referrer['state']) == ('default', 'wf-never-ran', 'gone')

    text = subprocess.run(
        [*command[:-1], '--address', address, '--dry-run'], capture_output=True, text=True, timeout=120, cwd=root
    )
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith('would delete 1 stored payload(s)') and manifest in text.stdout

    done = subprocess.run([*command, '--address', address], capture_output=True, text=True, timeout=120, cwd=root)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['deleted'] == [manifest]
    async with SqliteLedger(path) as ledger:
        assert await ledger.payload_references() == []
        with pytest.raises(LedgerCorruptionError, match=manifest):
            await ledger.load_chunked(manifest)


def test_referrer_state_and_verdicts() -> None:
    """The pure rules: a closed workflow keeps its payloads for exactly the retention; any keeper keeps a payload."""
    now = datetime(2026, 1, 10, tzinfo=UTC)
    day = timedelta(days=1)
    completed = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_COMPLETED
    assert referrer_state(WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING, None, day, now)[0] == 'open'
    assert referrer_state(completed, now - day + timedelta(seconds=1), day, now)[0] == 'retained'
    state, detail = referrer_state(completed, now - day, day, now)
    assert state == 'expired' and 'completed' in detail
    assert referrer_state(completed, None, day, now)[0] == 'unknown'

    old = now - 2 * day
    refs = [
        PayloadReference('m-shared', 'default', 'wf-expired', old),
        PayloadReference('m-shared', 'default', 'wf-open', old),
        PayloadReference('m-alone', 'default', 'wf-expired', old),
        PayloadReference('m-gone', 'default', 'wf-gone', old),
        PayloadReference('m-recent', 'default', 'wf-gone', now - timedelta(minutes=5)),
        PayloadReference('m-unasked', 'default', 'wf-unasked', old),
    ]
    states = {
        ('default', 'wf-expired'): ReferrerStatus('default', 'wf-expired', 'expired', 'closed long ago'),
        ('default', 'wf-open'): ReferrerStatus('default', 'wf-open', 'open', 'running'),
        ('default', 'wf-gone'): ReferrerStatus('default', 'wf-gone', 'gone', 'not found'),
    }
    deletable, kept = verdicts(refs, states, now=now, grace=timedelta(hours=1))
    assert deletable == ['m-alone', 'm-gone']
    reasons = {k.manifest: ' '.join(k.reasons) for k in kept}
    assert set(reasons) == {'m-shared', 'm-recent', 'm-unasked'}
    assert 'wf-open: open' in reasons['m-shared'] and 'less than' in reasons['m-recent']
    assert 'not looked up' in reasons['m-unasked']
