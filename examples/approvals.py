"""Approvals: a run waits inside itself for a person to approve or deny the tool calls that need it.

Run it with `.venv/bin/python examples/approvals.py`: it starts a local Temporal dev server itself.
The agent asks for two refunds (a tool with `requires_approval=True`) and a store credit (a tool
that raises `ApprovalRequired` above 50). The run waits, `awaiting_approval` in the ledger, holding
no worker slot; here the code plays the approver: it reads the pending calls, approves one refund,
denies the other and approves the credit with a smaller amount. The run then goes on from the same
history: the model is not asked again for the calls it made, and the denied refund never runs.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from pydantic_ai import Agent, ApprovalRequired, RunContext
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.client import Client
from temporalio.worker import Worker

import agentledger
from agentledger.cli import start_dev_server

paid: list[str] = []


def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Asks for two refunds and a store credit, then reports what each call answered."""
    returns = [part for message in messages for part in message.parts if isinstance(part, ToolReturnPart)]
    if returns:
        return ModelResponse(parts=[TextPart(' | '.join(str(part.content) for part in returns))])
    return ModelResponse(
        parts=[
            ToolCallPart('refund', {'order': 'A-17', 'amount': 30}, tool_call_id='call-1'),
            ToolCallPart('refund', {'order': 'B-2', 'amount': 900}, tool_call_id='call-2'),
            ToolCallPart('store_credit', {'customer': 'ann', 'amount': 80}, tool_call_id='call-3'),
        ]
    )


# The run answers pydantic-ai's deferred calls itself, so the output type needs no DeferredToolRequests
# (unless the agent also has tools that raise CallDeferred, or runs start with wait_for_approval=False).
agent = Agent(FunctionModel(scripted_model), name='refunds', capabilities=[TemporalDurability()])


@agent.tool_plain(requires_approval=True)
def refund(order: str, amount: int) -> str:
    """Pay money back: every call waits for a person's decision."""
    paid.append(f'refund {order} {amount}')
    return f'refunded {amount} on {order}'


@agent.tool
def store_credit(ctx: RunContext[None], customer: str, amount: int) -> str:
    """Give store credit: up to 50 at once, more only once a person approved it."""
    if amount > 50 and not ctx.tool_call_approved:
        raise ApprovalRequired()
    paid.append(f'credit {customer} {amount}')
    return f'{amount} credit for {customer}'


async def main() -> None:
    env = await start_dev_server()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = agentledger.SqliteLedger(Path(tmp) / 'runs.db')
        plugin = agentledger.LedgerPlugin(ledger, agents=[agent])
        client = await Client.connect(env.client.service_client.config.target_host, plugins=[plugin])
        try:
            async with Worker(client, task_queue='agents'), ledger:
                handle = await agentledger.start(client, agent, 'Settle the complaints', task_queue='agents')
                # What an approver reads (the Temporal UI shows it too, in the workflow's current details).
                while len(pending := await handle.pending_approvals()) < 3:
                    await asyncio.sleep(0.1)
                for call in pending:
                    print(f'waiting: {call.tool_name}({call.args}) | digest {call.digest}')
                while (await ledger.run(handle.run_id)).status != 'awaiting_approval':
                    await asyncio.sleep(0.1)
                print('ledger run', handle.run_id, '| status awaiting_approval | paid so far:', paid)
                assert paid == []

                # A decision names the call's digest: it approves the arguments that were read, no others.
                calls = {call.tool_call_id: call for call in pending}
                print(await handle.approve(calls['call-1'], by='alice'))
                print(await handle.deny(calls['call-2'], reason='Over the refund limit: a manager calls.', by='bob'))
                print(await handle.approve(calls['call-3'], override_args={'customer': 'ann', 'amount': 50}))

                result = await handle.result()
                print(result.output, '| ledger run', result.run_id)
                # The denied refund never ran; the credit ran once, with the approved amount.
                assert sorted(paid) == ['credit ann 50', 'refund A-17 30'], paid  # run in parallel
                for event in await ledger.events(result.run_id):
                    if event.kind.startswith('approval_'):
                        print(f'  {event.kind:18} {event.tool_call_id} {event.detail}')
                for effect in await ledger.tool_effects(result.run_id):
                    print(f'  {effect.tool_call_id} {effect.tool_name}: {effect.status}, {effect.outcome}')
        finally:
            await env.shutdown()


if __name__ == '__main__':
    asyncio.run(main())
