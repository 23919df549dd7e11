"""Park on failure: a failing run waits for an operator instead of failing, then resumes.

Run it with `.venv/bin/python examples/park.py`: it starts a local Temporal dev server itself. The
agent looks an order up (that works), then books a courier, which fails while the courier's API is
down. Started with `park_on_failure=True`, the run parks; once the API is back, `resume` goes on from
the latest valid snapshot: the order lookup is not run again, only the booking is.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker
from temporalio.workflow import ActivityConfig

import agentledger
import agentledger.model
from agentledger.cli import start_dev_server

courier_api_up = False
calls: list[str] = []


def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Looks the order up, books the courier, then answers."""
    answered = sum(isinstance(m, ModelResponse) for m in messages)
    if answered == 0:
        return ModelResponse(parts=[ToolCallPart('find_order', {'order': 'A-17'})])
    if answered == 1:
        return ModelResponse(parts=[ToolCallPart('book_courier', {'order': 'A-17'})])
    return ModelResponse(parts=[TextPart('courier booked for A-17')])


agent = Agent(FunctionModel(scripted_model), name='dispatcher', capabilities=[TemporalDurability()])


@agent.tool_plain
def find_order(order: str) -> str:
    """Look an order up."""
    calls.append('find_order')
    return f'{order}: 2 parcels, Main Street 4'


@agent.tool_plain(metadata={'temporal': ActivityConfig(retry_policy=RetryPolicy(maximum_attempts=1))})
def book_courier(order: str) -> str:
    """Book a courier; fails while the courier's API is down."""
    calls.append('book_courier')
    if not courier_api_up:
        raise RuntimeError("the courier's API is down")
    return f'courier booked for {order}'


async def parked(ledger: agentledger.Ledger, workflow_id: str) -> agentledger.model.RunRecord:
    """Wait until the workflow's ledger run is parked (`agentledger runs --status parked` lists such runs)."""
    while not (found := [r for r in await ledger.runs(workflow_id=workflow_id) if r.status == 'parked']):
        await asyncio.sleep(0.1)
    return found[0]


async def main() -> None:
    global courier_api_up
    env = await start_dev_server()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = agentledger.SqliteLedger(Path(tmp) / 'runs.db')
        plugin = agentledger.LedgerPlugin(ledger, agents=[agent])
        client = await Client.connect(env.client.service_client.config.target_host, plugins=[plugin])
        try:
            async with Worker(client, task_queue='agents'), ledger:
                handle = await agentledger.start(
                    client, agent, 'Dispatch order A-17', task_queue='agents', park_on_failure=True
                )
                record = await parked(ledger, handle.workflow_id)
                assert record.error is not None
                print('parked:', handle.run_id, '|', record.error.type, record.error.message)
                print('spent while parked:', record.usage.billed_requests, 'model requests billed')

                courier_api_up = True
                await handle.resume('The courier API is back; book it again.')
                result = await handle.result()
                final = await ledger.run(result.run_id)
                print(result.output, '| ledger run', result.run_id, '| status', final.status)
                # One usage: the result reports what the ledger records, the requests before the park included.
                assert result.usage == final.usage
                print('usage:', final.usage.requests, 'requests,', final.usage.billed_requests, 'billed')
                print('tool calls:', calls)  # find_order once: it completed before the park
        finally:
            await env.shutdown()


if __name__ == '__main__':
    asyncio.run(main())
