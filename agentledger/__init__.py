"""agentledger: run pydantic-ai agents durably on Temporal and keep a ledger of every step.

```python
import agentledger
ledger = agentledger.SqliteLedger('runs.db')
plugin = agentledger.LedgerPlugin(ledger, agents=[agent])
client = await Client.connect('localhost:7233', plugins=[plugin])
async with Worker(client, task_queue='agents'):
    result = await agentledger.run(client, agent, 'prompt', task_queue='agents')
```

Every name is loaded on first use, so `import agentledger.workflows` (workflow code) loads only the
pure layer and never the client, the plugin, the backends, aiosqlite, boto3 or pyfastcdc. The
records live in `agentledger.model`, the errors in `agentledger.errors`, payload storage, the codec
server and gc in `agentledger.payloads`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentledger.client import (
        AgentRunHandle,
        AgentRunResult,
        RunOptions,
        abandon_parked,
        continue_run,
        fork_run,
        reset_run,
        resume_parked,
        run,
        start,
    )
    from agentledger.ledger import Ledger, MemoryLedger, OutagePolicy, RetryPolicy, open_ledger, resolve_run_id
    from agentledger.ledger.backends.s3 import S3Ledger
    from agentledger.ledger.backends.sqlite import SqliteLedger
    from agentledger.model import (
        SEARCH_AGENT,
        SEARCH_ATTRIBUTES,
        SEARCH_CONVERSATION_ID,
        SEARCH_PARENT_RUN_ID,
        SEARCH_RESTART_OF,
        SEARCH_RUN_ID,
        SEARCH_STATUS,
    )
    from agentledger.plugin import LedgerPlugin, SearchAttributeCheck, check_search_attributes
    from agentledger.reconcile import reconcile_ledger, reconcile_run
    from agentledger.tools import idempotency_key, once
    from agentledger.workflows import (
        AgentRunInput,
        AgentRunOutput,
        AgentRunWorkflow,
        DelegateOptions,
        DelegateTool,
        delegate,
    )

_WHERE: dict[str, str] = {
    'AgentRunHandle': 'agentledger.client',
    'AgentRunResult': 'agentledger.client',
    'RunOptions': 'agentledger.client',
    'abandon_parked': 'agentledger.client',
    'continue_run': 'agentledger.client',
    'fork_run': 'agentledger.client',
    'reset_run': 'agentledger.client',
    'resume_parked': 'agentledger.client',
    'run': 'agentledger.client',
    'start': 'agentledger.client',
    'Ledger': 'agentledger.ledger',
    'MemoryLedger': 'agentledger.ledger',
    'OutagePolicy': 'agentledger.ledger',
    'RetryPolicy': 'agentledger.ledger',
    'open_ledger': 'agentledger.ledger',
    'resolve_run_id': 'agentledger.ledger',
    'S3Ledger': 'agentledger.ledger.backends.s3',
    'SqliteLedger': 'agentledger.ledger.backends.sqlite',
    'LedgerPlugin': 'agentledger.plugin',
    'SearchAttributeCheck': 'agentledger.plugin',
    'check_search_attributes': 'agentledger.plugin',
    'SEARCH_AGENT': 'agentledger.model',
    'SEARCH_ATTRIBUTES': 'agentledger.model',
    'SEARCH_CONVERSATION_ID': 'agentledger.model',
    'SEARCH_PARENT_RUN_ID': 'agentledger.model',
    'SEARCH_RESTART_OF': 'agentledger.model',
    'SEARCH_RUN_ID': 'agentledger.model',
    'SEARCH_STATUS': 'agentledger.model',
    'reconcile_ledger': 'agentledger.reconcile',
    'reconcile_run': 'agentledger.reconcile',
    'idempotency_key': 'agentledger.tools',
    'once': 'agentledger.tools',
    'AgentRunInput': 'agentledger.workflows',
    'AgentRunOutput': 'agentledger.workflows',
    'AgentRunWorkflow': 'agentledger.workflows',
    'DelegateOptions': 'agentledger.workflows',
    'DelegateTool': 'agentledger.workflows',
    'delegate': 'agentledger.workflows',
}

__all__ = [
    'SEARCH_AGENT',
    'SEARCH_ATTRIBUTES',
    'SEARCH_CONVERSATION_ID',
    'SEARCH_PARENT_RUN_ID',
    'SEARCH_RESTART_OF',
    'SEARCH_RUN_ID',
    'SEARCH_STATUS',
    'AgentRunHandle',
    'AgentRunInput',
    'AgentRunOutput',
    'AgentRunResult',
    'AgentRunWorkflow',
    'DelegateOptions',
    'DelegateTool',
    'Ledger',
    'LedgerPlugin',
    'MemoryLedger',
    'OutagePolicy',
    'RetryPolicy',
    'RunOptions',
    'S3Ledger',
    'SearchAttributeCheck',
    'SqliteLedger',
    'abandon_parked',
    'check_search_attributes',
    'continue_run',
    'delegate',
    'fork_run',
    'idempotency_key',
    'once',
    'open_ledger',
    'reconcile_ledger',
    'reconcile_run',
    'reset_run',
    'resolve_run_id',
    'resume_parked',
    'run',
    'start',
]

__version__ = '0.3.0'


def __getattr__(name: str) -> Any:
    """Load a public name from the module that defines it, on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, '__version__'])
