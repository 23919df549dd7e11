"""The codec server: read an agent run's Temporal history back as what it stands for.

Run it with `.venv/bin/python examples/codec_server.py`: it starts a local Temporal dev server
itself, runs an agent whose tool returns ~8 KB (so history holds ledger references), then decodes
that history's payloads through the codec server, as the Temporal UI and CLI do.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

import agentledger
import agentledger.payloads
from agentledger.cli import start_dev_server


def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Stands in for a real model: reads the log twice, then answers."""
    if len(messages) < 5:
        return ModelResponse(parts=[ToolCallPart('read_log', {})])
    return ModelResponse(parts=[TextPart('The log is fine.')])


agent = Agent(FunctionModel(scripted_model), name='reader', capabilities=[TemporalDurability()])


@agent.tool_plain
def read_log() -> str:
    """A large tool result: stored in the ledger, referenced from Temporal's history."""
    return 'INFO all good\n' * 600


def post_decode(url: str, payloads: list[Payload]) -> list[dict[str, Any]]:
    """POST payloads to the codec server exactly as the Temporal UI and CLI do."""
    body = json.dumps({'payloads': [json_format.MessageToDict(p) for p in payloads]}).encode()
    request = urllib.request.Request(
        f'{url}/decode', data=body, headers={'Content-Type': 'application/json', 'X-Namespace': 'default'}
    )
    with urllib.request.urlopen(request) as response:
        answer = json.loads(response.read())['payloads']
    return [json.loads(json_format.ParseDict(p, Payload()).data) for p in answer]


async def decode(url: str, payloads: list[Payload]) -> list[dict[str, Any]]:
    """`post_decode` off the event loop, which serves the codec server in this process."""
    return await asyncio.to_thread(post_decode, url, payloads)


async def main() -> None:
    env = await start_dev_server()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = agentledger.SqliteLedger(Path(tmp) / 'runs.db')
        client = await Client.connect(
            env.client.service_client.config.target_host, plugins=[agentledger.LedgerPlugin(ledger, agents=[agent])]
        )
        try:
            async with Worker(client, task_queue='agents'):
                handle = await agentledger.start(client, agent, 'Check the log', task_queue='agents')
                print((await handle.result()).output, '| ledger run', handle.run_id)
            history = await handle.workflow_handle.fetch_history()
            scheduled = [
                e.activity_task_scheduled_event_attributes
                for e in history.events
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            ]
            last_request = [a for a in scheduled if a.activity_type.name.endswith('__model_request')][-1]
            references = [
                p
                for e in history.events
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
                for p in e.activity_task_completed_event_attributes.result.payloads
                if p.metadata.get('messageType') == b'temporal.api.sdk.v1.ExternalStorageReference'
            ]

            # `agentledger codec-server --ledger sqlite:///runs.db` serves the same from the command line.
            async with agentledger.payloads.CodecServer(ledger) as server:
                print('codec endpoint', server.url, '(temporal server start-dev --ui-codec-endpoint URL)')
                print('in history:', references[0].data.decode())
                print('decoded:   ', str((await decode(server.url, [references[0]]))[0])[:100], '...')
                (header,) = await decode(server.url, [last_request.header.fields['agentledger']])
                print('the last model request carried', header['history'], 'for these messages:')
                for message in header['history_messages']:
                    print('  ', message['kind'], [part['part_kind'] for part in message['parts']])
        finally:
            await env.shutdown()


if __name__ == '__main__':
    asyncio.run(main())
