"""End-to-end: `LedgerPlugin` on a client and worker that also run the application's own workflows and activities.

Adding the plugin changes nothing of the application's own set-up: its external storage keeps its
payloads, its own registrations of the agents' activities (or of `AgentRunWorkflow`) are not
refused, and a ledger that is down when the worker starts stops only the agent runs.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import AgentPlugin, PydanticAIPlugin, TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import ExternalStorageReference
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import DataConverter, ExternalStorage, JSONProtoPayloadConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import agentledger
from agentledger import LedgerPlugin, MemoryLedger, RetryPolicy, SqliteLedger
from agentledger.payloads._driver import DRIVER_NAME
from agentledger.workflows import AgentRunWorkflow

from ..conftest import check_at_session_end, serve
from ..helpers.agents import calc_agent
from ..helpers.checks import check_calc_run, retried_failures
from ..helpers.own_setup import MemoryDriver, ReportWorkflow, make_report
from ..helpers.s3_server import S3Server

OWN_THRESHOLD = 1024
"""The application's own storage threshold: below the ledger's (4 KiB), so both could claim the same payloads."""


def _big_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if len(messages) == 1:
        return ModelResponse(parts=[ToolCallPart('big', {})])
    return ModelResponse(parts=[TextPart('done')])


big_agent = Agent(FunctionModel(_big_script), name='own-setup-big', capabilities=[TemporalDurability()])


@big_agent.tool_plain
def big() -> str:
    """A 20 KB result: a payload the ledger stores."""
    return 'y' * 20_000


hello_agent = Agent(
    FunctionModel(lambda messages, info: ModelResponse(parts=[TextPart('hello')])),
    name='own-setup-hello',
    capabilities=[TemporalDurability()],
)


def _reference(payload: Payload) -> ExternalStorageReference | None:
    if payload.metadata.get('messageType') != ExternalStorageReference.DESCRIPTOR.full_name.encode():
        return None
    reference = JSONProtoPayloadConverter().from_payload(payload, ExternalStorageReference)
    assert isinstance(reference, ExternalStorageReference)
    return reference


async def _activity_results(handle: WorkflowHandle[object, object]) -> list[Payload]:
    """The result payloads of the workflow's completed activities, as Temporal's history holds them."""
    history = await handle.fetch_history()
    return [
        payload
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        for payload in event.activity_task_completed_event_attributes.result.payloads
    ]


async def test_the_application_storage_keeps_its_payloads_beside_the_ledger(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A large result of the application's activity goes to its own driver (history holds its reference); an
    agent run on the same worker still stores its large payloads in the ledger, none in the application's driver."""
    own = MemoryDriver()
    converter = DataConverter(external_storage=ExternalStorage(drivers=[own], payload_size_threshold=OWN_THRESHOLD))
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        plugin = LedgerPlugin(ledger, agents=[big_agent])
        client = await Client.connect(
            temporal_env.client.service_client.config.target_host, data_converter=converter, plugins=[plugin]
        )
        task_queue = f'tq-{uuid.uuid4().hex[:8]}'
        async with Worker(client, task_queue=task_queue, workflows=[ReportWorkflow], activities=[make_report]):
            report = await client.start_workflow(
                ReportWorkflow.run, 50_000, id=f'report-{uuid.uuid4().hex[:8]}', task_queue=task_queue
            )
            assert await report.result() == 50_000
            result = await agentledger.run(client, big_agent, 'go', task_queue=task_queue)
            assert result.output == 'done'
        check_at_session_end(ledger, client)

        # The report went to the application's driver, and only it.
        [stored] = own.stored.values()
        assert stored.data.startswith(b'"rrrr') and len(stored.data) == 50_002
        [in_history] = await _activity_results(report)
        reference = _reference(in_history)
        assert reference is not None and reference.driver_name == own.name()
        assert in_history.ByteSize() < 1000

        # The agent run's tool result is in the ledger, referenced from its history.
        agent_run = client.get_workflow_handle(result.workflow_id)
        drivers = {ref.driver_name for p in await _activity_results(agent_run) if (ref := _reference(p)) is not None}
        assert drivers == {DRIVER_NAME}
        referrers = {reference.workflow_id for reference in await ledger.payload_references()}
        assert result.workflow_id in referrers and report.id not in referrers


@pytest.mark.parametrize('registered_by', ['worker-arguments', 'worker-plugins'])
async def test_a_worker_that_registers_the_agent_itself_serves_agent_runs(
    temporal_env: WorkflowEnvironment, tmp_path: Path, registered_by: str
) -> None:
    """The worker registers the agent's activities and `AgentRunWorkflow` itself (as arguments, or through its own
    `AgentPlugin` and `PydanticAIPlugin`) besides the plugin's: each is registered once and the run is recorded."""
    durability = TemporalDurability.from_agent(calc_agent)
    assert durability is not None
    own: dict[str, Any] = {
        'activities': [*durability.temporal_activities, make_report],
        'workflows': [AgentRunWorkflow, ReportWorkflow],
    }
    if registered_by == 'worker-plugins':
        own = {'activities': [make_report], 'workflows': [ReportWorkflow, AgentRunWorkflow]}
        own['plugins'] = [AgentPlugin(calc_agent), PydanticAIPlugin()]
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [calc_agent], **own) as served:
        result = await agentledger.run(served.client, calc_agent, 'compute', task_queue=served.task_queue)
        await check_calc_run(ledger, result)
        report = await served.client.execute_workflow(
            ReportWorkflow.run, 10, id=f'report-{uuid.uuid4().hex[:8]}', task_queue=served.task_queue
        )
        assert report == 10


@activity.defn(name='agent__calc__model_request')
async def own_model_request(request: object) -> object:
    """The application's own activity, under the name of one of the served agent's activities."""
    return request


async def test_a_different_activity_under_an_agent_activity_name_is_refused_clearly(
    temporal_env: WorkflowEnvironment,
) -> None:
    plugin = LedgerPlugin(MemoryLedger(), agents=[calc_agent])
    client = await Client.connect(temporal_env.client.service_client.config.target_host, plugins=[plugin])
    with pytest.raises(ValueError) as info:
        Worker(client, task_queue=f'tq-{uuid.uuid4().hex[:8]}', activities=[own_model_request])
    message = str(info.value)
    assert "activity 'agent__calc__model_request' is registered twice" in message
    assert f'{__name__}.own_model_request (from the worker or another plugin)' in message
    assert 'activity_handler (from LedgerPlugin)' in message


async def test_a_ledger_down_at_worker_start_stops_only_the_agent_runs(
    temporal_env: WorkflowEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    """The S3 ledger's endpoint is down when the worker starts: the worker starts (and says so), the
    application's workflow completes, an agent run waits (its ledger activity fails and is retried, the
    `fail` policy), and once the endpoint is up the run completes, recorded, and agrees with history."""
    server = S3Server()  # not started yet: its port is closed
    bucket = f'ledger-{uuid.uuid4().hex[:16]}'
    # Fast failures while down: one request per call, two tries per ledger operation.
    ledger = server.ledger(bucket, request_attempts=1, retry=RetryPolicy(attempts=2, initial_backoff_s=0.05))
    plugin = LedgerPlugin(ledger, agents=[hello_agent])
    client = await Client.connect(temporal_env.client.service_client.config.target_host, plugins=[plugin])
    task_queue = f'tq-{uuid.uuid4().hex[:8]}'
    try:
        with caplog.at_level(logging.WARNING, logger='agentledger.worker'):
            async with Worker(client, task_queue=task_queue, workflows=[ReportWorkflow], activities=[make_report]):
                report = await client.execute_workflow(
                    ReportWorkflow.run, 10, id=f'report-{uuid.uuid4().hex[:8]}', task_queue=task_queue
                )
                assert report == 10
                assert any(
                    'unavailable' in record.getMessage() and 'the worker starts anyway' in record.getMessage()
                    for record in caplog.records
                    if record.name == 'agentledger.worker'
                ), caplog.text

                handle = await agentledger.start(client, hello_agent, 'hi', task_queue=task_queue)

                async def failed_once() -> None:
                    while True:
                        pending = (await handle.workflow_handle.describe()).raw_description.pending_activities
                        if any(activity.attempt > 1 for activity in pending):
                            return
                        await asyncio.sleep(0.05)

                await asyncio.wait_for(failed_once(), timeout=20)
                server.start()
                server.client().create_bucket(Bucket=bucket)
                result = await asyncio.wait_for(handle.result(), timeout=30)
                assert result.output == 'hello'

                record = await ledger.run(result.run_id)
                assert record.status == 'completed'
                [failure] = await retried_failures(handle.workflow_handle)
                assert failure.application_failure_info.type == 'LedgerUnavailableError'
                report_of_run = await agentledger.reconcile_run(client, ledger, result.run_id)
                assert report_of_run.clean, report_of_run
    finally:
        server.stop()
