"""agentledger: run pydantic-ai agents durably on Temporal and keep a ledger of every step.

```python
import agentledger
ledger = agentledger.SqliteLedger('runs.db')
plugin = agentledger.LedgerPlugin(ledger, agents=[agent])
client = await Client.connect('localhost:7233', plugins=[plugin])
async with Worker(client, task_queue='agents'):
    result = await agentledger.run(client, agent, 'prompt', task_queue='agents')
```

Backends that need optional libraries (`SqliteLedger`: aiosqlite, `S3Ledger`: boto3) are imported
on first use, so workflow code importing this package never loads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._client import (
    AgentRunHandle,
    AgentRunResult,
    abandon_parked,
    continue_run,
    fork_run,
    resume_parked,
    run,
    start,
)
from ._codec import PayloadDecoder
from ._codec_server import CodecServer
from ._errors import (
    AgentLedgerError,
    DelegateFailedError,
    EffectBusyError,
    EffectNotFoundError,
    EffectStateError,
    EffectUnknownError,
    LedgerConfigError,
    LedgerCorruptionError,
    LedgerError,
    LedgerUnavailableError,
    RunNotFoundError,
    UnresolvablePayloadReference,
)
from ._gc import GcReport, KeptPayload, ReferrerStatus, collect_garbage
from ._once import once
from ._reconcile import Finding, ReconcileReport, reconcile_ledger, reconcile_run
from ._tools import idempotency_key
from .ledger import (
    Acceptance,
    EffectRecord,
    ErrorInfo,
    ForkRef,
    JournalEntry,
    KeyedRecord,
    Ledger,
    MemoryLedger,
    PayloadDeletion,
    PayloadReference,
    RetryPolicy,
    RunRecord,
    RunTree,
    Snapshot,
    SnapshotRecord,
    StepEvent,
    StepRecord,
    ToolEffect,
    Usage,
    open_ledger,
)
from .ledger._snapshots import SnapshotNotFoundError
from .plugin import LedgerPlugin, OutagePolicy
from .workflows import (
    AbandonRequest,
    AgentRunInput,
    AgentRunOutput,
    AgentRunWorkflow,
    DelegateTool,
    ResumeRequest,
    delegate,
)

if TYPE_CHECKING:
    from .ledger.s3 import S3Ledger
    from .ledger.sqlite import SqliteLedger

__all__ = [
    'AbandonRequest',
    'Acceptance',
    'AgentLedgerError',
    'AgentRunHandle',
    'AgentRunInput',
    'AgentRunOutput',
    'AgentRunResult',
    'AgentRunWorkflow',
    'CodecServer',
    'DelegateFailedError',
    'DelegateTool',
    'EffectBusyError',
    'EffectNotFoundError',
    'EffectRecord',
    'EffectStateError',
    'EffectUnknownError',
    'ErrorInfo',
    'Finding',
    'ForkRef',
    'GcReport',
    'JournalEntry',
    'KeptPayload',
    'KeyedRecord',
    'Ledger',
    'LedgerConfigError',
    'LedgerCorruptionError',
    'LedgerError',
    'LedgerPlugin',
    'LedgerUnavailableError',
    'MemoryLedger',
    'OutagePolicy',
    'PayloadDecoder',
    'PayloadDeletion',
    'PayloadReference',
    'ReconcileReport',
    'ReferrerStatus',
    'ResumeRequest',
    'RetryPolicy',
    'RunNotFoundError',
    'RunRecord',
    'RunTree',
    'S3Ledger',
    'Snapshot',
    'SnapshotNotFoundError',
    'SnapshotRecord',
    'SqliteLedger',
    'StepEvent',
    'StepRecord',
    'ToolEffect',
    'UnresolvablePayloadReference',
    'Usage',
    'abandon_parked',
    'collect_garbage',
    'continue_run',
    'delegate',
    'fork_run',
    'idempotency_key',
    'once',
    'open_ledger',
    'reconcile_ledger',
    'reconcile_run',
    'resume_parked',
    'run',
    'start',
]

__version__ = '0.1.0'


def __getattr__(name: str) -> Any:
    if name == 'SqliteLedger':
        from .ledger.sqlite import SqliteLedger

        return SqliteLedger
    if name == 'S3Ledger':
        from .ledger.s3 import S3Ledger

        return S3Ledger
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
