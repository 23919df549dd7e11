"""Once-only side effects and the model-call and tool-call journals, across resets of a completed run.

Run it with `.venv/bin/python examples/once.py`: it starts a local Temporal dev server itself.
The run charges a card through `agentledger.once`; then the run is reset to its first workflow task,
so Temporal runs the whole agent again. The model-call journal answers both model requests from the
responses already paid for (the same tool_call_id comes back), and the tool-call journal answers the
tool call with its recorded result: the provider is called twice in all and the tool runs once. A
second reset with `reexecute_tools=True` runs the tool again, and `once` returns the recorded charge:
the card is charged once.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.client import Client
from temporalio.worker import Worker

import agentledger
from agentledger.cli import start_dev_server

provider_calls = 0
tool_runs = 0


def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Stands in for a paid model. Like a real provider it makes up a new tool_call_id on every call."""
    global provider_calls
    provider_calls += 1
    if len(messages) == 1:
        return ModelResponse(parts=[ToolCallPart('charge', {'amount': 5})])
    return ModelResponse(parts=[TextPart('Charged 5.')])


class Payments:
    """A payment system that would charge twice if asked twice (it only remembers keys for lookups)."""

    def __init__(self) -> None:
        self.charges: dict[str, int] = {}

    async def charge(self, amount: int, idempotency_key: str) -> dict[str, Any]:
        self.charges[f'{idempotency_key}#{len(self.charges)}'] = amount
        return {'charge_id': f'ch-{len(self.charges)}', 'amount': amount}

    async def lookup(self, idempotency_key: str) -> dict[str, Any] | None:
        found = [amount for key, amount in self.charges.items() if key.startswith(f'{idempotency_key}#')]
        return {'charge_id': 'ch-found', 'amount': found[0]} if found else None


payments = Payments()
agent = Agent(FunctionModel(scripted_model), name='shop', capabilities=[TemporalDurability()])


@agent.tool
async def charge(ctx: RunContext[None], amount: int) -> str:
    """Charge the card once per tool call, whatever retries, crashes and resets happen."""
    global tool_runs
    tool_runs += 1
    result = await agentledger.once(
        ctx,
        'charge',
        lambda key: payments.charge(amount, idempotency_key=key),
        reconcile=lambda key: payments.lookup(key),
    )
    return str(result['charge_id'])


async def reset_and_wait(client: Client, run_id: str, *, reexecute_tools: bool = False) -> str:
    """What `agentledger reset RUN_ID [--reexecute-tools]` does; wait for the reset run and return its output."""
    reset = await agentledger.reset_run(client, run_id, reason='example reset', reexecute_tools=reexecute_tools)
    handle = client.get_workflow_handle(reset.workflow_id, result_type=agentledger.AgentRunOutput)
    return str((await handle.result()).output)


async def main() -> None:
    env = await start_dev_server()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = agentledger.SqliteLedger(Path(tmp) / 'runs.db')
        # Both journals are on by default; False calls the provider (runs the tool) on every attempt.
        plugin = agentledger.LedgerPlugin(ledger, agents=[agent], model_journal=True, tool_journal=True)
        client = await Client.connect(env.client.service_client.config.target_host, plugins=[plugin])
        try:
            async with Worker(client, task_queue='shop'):
                result = await agentledger.run(client, agent, 'Charge me 5.', task_queue='shop')
                print(result.output, '| ledger run', result.run_id)
                print('after a reset:', await reset_and_wait(client, result.run_id))
                print(f'provider calls: {provider_calls}, tool runs: {tool_runs}')
                assert (provider_calls, tool_runs) == (2, 1)
                print(
                    'after a reset with reexecute_tools:',
                    await reset_and_wait(client, result.run_id, reexecute_tools=True),
                )

                async with ledger:
                    steps = await ledger.steps(result.run_id)
                    replayed = [s for s in steps if s.kind == 'model_request' and s.replayed]
                    print(
                        f'provider calls: {provider_calls}, model requests replayed from the journal: {len(replayed)}'
                    )
                    tools = [e for e in await ledger.events(result.run_id) if e.kind == 'tool_call_completed']
                    print(f'tool runs: {tool_runs}, tool calls replayed: {sum(e.replayed for e in tools)}')
                    print(f'charges: {len(payments.charges)}')
                    for effect in await ledger.effects(workflow_id=result.workflow_id):
                        print(f'  effect {effect.key}: {effect.status} ({effect.resolution}) -> {effect.result}')
            assert (provider_calls, tool_runs, len(payments.charges)) == (2, 2, 1)
        finally:
            await env.shutdown()


if __name__ == '__main__':
    asyncio.run(main())
