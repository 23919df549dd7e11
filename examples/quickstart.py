"""Quickstart: an existing pydantic-ai agent, run durably on Temporal with a SQLite ledger.

Run it with `.venv/bin/python examples/quickstart.py`: it starts a local Temporal dev server
itself. Against your own server, connect the client to its address instead.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from pydantic_ai import Agent, RunContext
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.client import Client
from temporalio.worker import Worker

import agentledger
from agentledger.cli import start_dev_server


def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Stands in for a real model (e.g. 'openai:gpt-4o'): asks for the weather, then answers."""
    if len(messages) == 1:
        return ModelResponse(parts=[ToolCallPart('weather', {'city': 'Paris'})])
    return ModelResponse(parts=[TextPart('Take an umbrella.')])


# 1. The agent: a name and the TemporalDurability capability are all agentledger needs.
agent = Agent(FunctionModel(scripted_model), name='assistant', capabilities=[TemporalDurability()])


@agent.tool
def weather(ctx: RunContext[None], city: str) -> str:
    """A tool with a side effect would pass agentledger.idempotency_key(ctx) to the system it calls."""
    return f'rain in {city} (request {agentledger.idempotency_key(ctx)})'


async def main() -> None:
    env = await start_dev_server()  # or: Client.connect('localhost:7233', plugins=[plugin])
    with tempfile.TemporaryDirectory() as tmp:
        # 2. One plugin for client and worker: it registers AgentRunWorkflow, the agent's activities
        #    and the ledger's interceptors; the worker opens the ledger while it runs.
        ledger = agentledger.SqliteLedger(Path(tmp) / 'runs.db')
        plugin = agentledger.LedgerPlugin(ledger, agents=[agent])
        client = await Client.connect(env.client.service_client.config.target_host, plugins=[plugin])
        try:
            async with Worker(client, task_queue='agents'):
                # 3. Every Agent.run is one workflow execution.
                result = await agentledger.run(client, agent, 'Do I need an umbrella?', task_queue='agents')
                print(result.output, '| ledger run', result.run_id, '| workflow', result.workflow_id)

                # 4. The ledger: every attempt of every model request and tool call.
                async with ledger:
                    for event in await ledger.events(result.run_id):
                        print(f'  {event.seq:3} {event.kind:24} attempt {event.attempt} {event.tool_name or ""}')
                    # 5. Continue from the latest provider-valid snapshot, with a new prompt.
                    follow_up = await agentledger.continue_run(client, result.run_id, 'And tomorrow?')
                    print((await follow_up.result()).output, '| continued from', result.run_id)
        finally:
            await env.shutdown()


if __name__ == '__main__':
    asyncio.run(main())
