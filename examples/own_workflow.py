"""Agents inside your own workflow: every run of a listed agent is a ledger run.

Run it with `.venv/bin/python examples/own_workflow.py`: it starts a local Temporal dev server itself.
`SupportWorkflow` is an ordinary Temporal workflow: it loads a ticket with its own activity, asks a
durable agent to triage it, waits for a person's `approve` signal, then asks the agent to write the
reply. The worker's client carries `LedgerPlugin(ledger, agents=[agent])`; nothing else changes, and
the two agent runs become two ledger runs of the workflow, each with its steps and snapshots.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from pydantic_ai import Agent
    from pydantic_ai.durable_exec.temporal import TemporalDurability
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel
    from temporalio.client import Client
    from temporalio.worker import Worker

    import agentledger
    from agentledger.cli import start_dev_server


def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Looks the customer up, then answers (a real model would decide)."""
    if not any(isinstance(m, ModelResponse) for m in messages):
        return ModelResponse(parts=[ToolCallPart('customer_plan', {'customer': 'ada'})])
    return ModelResponse(parts=[TextPart('priority: high (plan: enterprise)')])


agent = Agent(FunctionModel(scripted_model), name='support', capabilities=[TemporalDurability()])


@agent.tool_plain
def customer_plan(customer: str) -> str:
    """The customer's plan."""
    return 'enterprise'


@activity.defn
async def load_ticket(ticket: str) -> str:
    """Your own activity: load the ticket's text."""
    return f'{ticket}: the export button does nothing'


@workflow.defn
class SupportWorkflow:
    """Your own workflow: an activity, an agent run, a signal, another agent run."""

    def __init__(self) -> None:
        self.approved = False

    @workflow.signal
    def approve(self) -> None:
        """A person approves the triage."""
        self.approved = True

    @workflow.run
    async def run(self, ticket: str) -> str:
        """Triage the ticket, wait for approval, write the reply."""
        text = await workflow.execute_activity(load_ticket, ticket, start_to_close_timeout=timedelta(seconds=10))
        triage = await agent.run(f'Triage: {text}')
        await workflow.wait_condition(lambda: self.approved)
        reply = await agent.run(f'Write the reply for: {text} ({triage.output})')
        return reply.output


async def main() -> None:
    env = await start_dev_server()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = agentledger.SqliteLedger(Path(tmp) / 'runs.db')
        plugin = agentledger.LedgerPlugin(ledger, agents=[agent])
        client = await Client.connect(env.client.service_client.config.target_host, plugins=[plugin])
        try:
            worker = Worker(client, task_queue='support', workflows=[SupportWorkflow], activities=[load_ticket])
            async with worker, ledger:
                handle = await client.start_workflow(
                    SupportWorkflow.run, 'T-42', id='support-T-42', task_queue='support'
                )
                await handle.signal(SupportWorkflow.approve)
                print('workflow result:', await handle.result())
                # `agentledger runs --workflow-id support-T-42` lists the same.
                for run in reversed(await ledger.runs(workflow_id='support-T-42')):
                    steps = await ledger.steps(run.run_id)
                    print(
                        run.run_id,
                        run.workflow_type,
                        run.status,
                        f'{len(steps)} steps',
                        repr(run.prompt_preview),
                    )
        finally:
            await env.shutdown()


if __name__ == '__main__':
    asyncio.run(main())
