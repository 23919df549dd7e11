"""A worker in its own process, for tests that kill it: `python -m tests.worker_process HOST QUEUE LEDGER AGENT...`."""

from __future__ import annotations

import asyncio
import sys

from temporalio.client import Client
from temporalio.worker import Worker

from agentledger import LedgerPlugin, open_ledger

from . import agents


async def main(host: str, task_queue: str, ledger_url: str, agent_names: list[str]) -> None:
    served = [getattr(agents, f'{name}_agent') for name in agent_names]
    plugin = LedgerPlugin(open_ledger(ledger_url), agents=served)
    client = await Client.connect(host, plugins=[plugin])
    async with Worker(client, task_queue=task_queue):
        print('ready', flush=True)
        await asyncio.Event().wait()


if __name__ == '__main__':
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
