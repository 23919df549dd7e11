"""End-to-end: a secret planted in the ledger URL reaches no sink.

The S3 ledger's URL carries credentials in its endpoint (`endpoint_url=http://user:SECRET@host`).
A worker started from the command line serves a run while the S3 server goes away and comes back,
so errors are raised, logged, kept for later, written to the ledger and reported to Temporal. Then
every place the URL could have gone is searched for the secret: the worker's log (its start line
included), the command line's error output, every object in the ledger's bucket, and the run's
history as `temporal workflow show -o json` prints it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin, TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger.cli import find_temporal_cli

from ..helpers.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server

ROOT = Path(__file__).parents[2]
SECRET = 'Pl4nted-S3cret-' + 'x' * 8
MARKER_ENV = 'AGENTLEDGER_TEST_SINK_MARKER'


def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if len(messages) == 1:
        return ModelResponse(parts=[ToolCallPart('wait_a_little', {})])
    return ModelResponse(parts=[TextPart('done')])


sink_agent = Agent(FunctionModel(script), name='sink', capabilities=[TemporalDurability()])


@sink_agent.tool_plain
async def wait_a_little() -> str:
    """Tell the test the tool runs (it stops the S3 server now), then return while the server is away."""
    Path(os.environ[MARKER_ENV]).touch()
    await asyncio.sleep(1.0)
    return 'waited'


async def test_a_planted_secret_reaches_no_sink(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    server = S3Server()
    server.start()
    try:
        bucket = server.new_bucket()
        url = f's3://{bucket}/agentledger?endpoint_url=http://planted:{SECRET}@127.0.0.1:{server.port}'
        address = temporal_env.client.service_client.config.target_host
        task_queue = f'sinks-{uuid.uuid4().hex[:8]}'
        marker = tmp_path / 'tool-started'
        env = {
            **os.environ,
            'AWS_ACCESS_KEY_ID': ACCESS_KEY_ID,
            'AWS_SECRET_ACCESS_KEY': SECRET_ACCESS_KEY,
            'AWS_REGION': REGION,
            MARKER_ENV: str(marker),
        }
        env.pop('AWS_ENDPOINT_URL_S3', None)
        log = tmp_path / 'worker.log'
        agent_spec = 'tests.e2e.test_redaction_sinks:sink_agent'
        argv = ['worker', '--agent', agent_spec, '--ledger', url, '--address', address, '--task-queue', task_queue]
        with log.open('w') as stderr:
            worker = subprocess.Popen([sys.executable, '-m', 'agentledger', *argv], cwd=ROOT, stderr=stderr, env=env)
        try:
            deadline = time.monotonic() + 60
            while 'worker: serving' not in log.read_text():
                assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.1)
            client = await Client.connect(address, plugins=[PydanticAIPlugin()])
            handle = await agentledger.start(client, sink_agent, 'go', task_queue=task_queue)
            while not marker.exists():
                await asyncio.sleep(0.05)
            server.stop()
            cli_error = subprocess.run(
                [sys.executable, '-m', 'agentledger', 'runs', '--ledger', url],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            await asyncio.sleep(5.0)
            server.start()
            result = await asyncio.wait_for(handle.result(), 90)
        finally:
            worker.terminate()
            await asyncio.to_thread(worker.wait, 30)
        assert result.output == 'done'

        # The sinks were used: the CLI failed, errors were logged and reported to Temporal.
        assert cli_error.returncode == 1 and cli_error.stderr.startswith('agentledger: ')
        assert cli_error.stderr.count('\n') == 1, cli_error.stderr
        worker_log = log.read_text()
        assert 'http://***@127.0.0.1' in worker_log and 'LedgerUnavailableError' in worker_log
        shown = subprocess.run(
            [
                str(find_temporal_cli()),
                'workflow',
                'show',
                '-w',
                handle.workflow_id,
                '--address',
                address,
                '-o',
                'json',
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert 'LedgerUnavailableError' in shown
        stored = [
            server.client().get_object(Bucket=bucket, Key=item['Key'])['Body'].read().decode(errors='replace')
            for item in server.client().list_objects_v2(Bucket=bucket).get('Contents', [])
        ]
        assert any('LedgerUnavailableError' in body for body in stored), 'no failure reached the ledger'

        for sink, text in [('CLI', cli_error.stderr), ('worker log', worker_log), ('history', shown)]:
            assert SECRET not in text, f'the secret reached the {sink}'
        assert not [body for body in stored if SECRET in body], 'the secret reached the ledger'
    finally:
        server.stop()
