"""Garbage collection: stored payloads go once no workflow inside its retention references them.

Run it with `.venv/bin/python examples/gc.py`: it starts a local Temporal dev server itself, runs
two agents whose tool returns ~8 KB (so their payloads are stored in the ledger), deletes the first
workflow from Temporal (the dev server takes about 30 seconds to do so), and collects: the first
run's payloads go, the second's (closed, but inside the namespace's retention) stay.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest, DescribeWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

import agentledger
import agentledger.payloads
from agentledger.cli import start_dev_server


def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Stands in for a real model: exports once, then answers."""
    if len(messages) == 1:
        return ModelResponse(parts=[ToolCallPart('export', {})])
    return ModelResponse(parts=[TextPart('Exported.')])


agent = Agent(FunctionModel(scripted_model), name='exporter', capabilities=[TemporalDurability()])


@agent.tool_plain
def export() -> str:
    """A large tool result: stored in the ledger, referenced from Temporal's history."""
    return 'id,name,total\n' + '42,ACME,1000\n' * 600


async def delete_workflow(client: Client, workflow_id: str) -> None:
    """Delete a closed workflow (as an operator would, or as Temporal does after the retention) and wait for it."""
    execution = WorkflowExecution(workflow_id=workflow_id)
    await client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(namespace='default', workflow_execution=execution)
    )
    while True:
        try:
            await client.workflow_service.describe_workflow_execution(
                DescribeWorkflowExecutionRequest(namespace='default', execution=execution)
            )
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return
            raise
        await asyncio.sleep(1)


async def main() -> None:
    env = await start_dev_server()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = agentledger.SqliteLedger(Path(tmp) / 'runs.db')
        client = await Client.connect(
            env.client.service_client.config.target_host, plugins=[agentledger.LedgerPlugin(ledger, agents=[agent])]
        )
        try:
            async with Worker(client, task_queue='agents'):
                old = await agentledger.run(client, agent, 'Export last year', task_queue='agents')
                recent = await agentledger.run(client, agent, 'Export this year', task_queue='agents')
            print('ran', old.run_id, 'and', recent.run_id)
            print('deleting workflow', old.workflow_id, 'from Temporal...')
            await delete_workflow(client, old.workflow_id)
            async with ledger:
                # `agentledger gc --ledger sqlite:///runs.db --grace-minutes 0` does the same from the command line.
                report = await agentledger.payloads.collect_garbage(ledger, client, grace=timedelta(0))
            for referrer in report.referrers:
                print(f'  {referrer.workflow_id}: {referrer.state} ({referrer.detail})')
            print(f'deleted {len(report.deleted)} payload(s), {report.chunks} chunk(s), {report.bytes} bytes')
            print(f'kept {len(report.kept)} payload(s), referenced by the run inside the retention')
        finally:
            await env.shutdown()


if __name__ == '__main__':
    asyncio.run(main())
