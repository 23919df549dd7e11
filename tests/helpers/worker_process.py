"""A worker in its own process, for tests that kill it.

`python -m tests.helpers.worker_process HOST QUEUE LEDGER AGENT...`
"""

from __future__ import annotations

import asyncio
import os
import sys

from temporalio.client import Client
from temporalio.worker import Worker

from agentledger import LedgerPlugin, open_ledger

from . import agents, journal_agents, own_workflows


async def main(host: str, task_queue: str, ledger_url: str, names: list[str]) -> None:
    served = [getattr(agents, f'{name}_agent', None) or getattr(journal_agents, f'{name}_agent') for name in names]
    journal = journal_agents.NO_JOURNAL_ENV not in os.environ
    plugin = LedgerPlugin(open_ledger(ledger_url), agents=served, model_journal=journal)
    client = await Client.connect(host, plugins=[plugin])
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[own_workflows.PaymentsWorkflow],
        interceptors=[journal_agents.CrashPoints()],
    ):
        print('ready', flush=True)
        await asyncio.Event().wait()


if __name__ == '__main__':
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
