"""The ledger: the `Ledger` facade (public API, retries, snapshot chain) over a backend store.

`SqliteLedger` and `S3Ledger` are imported on first use, so that importing this package never
imports aiosqlite or boto3 until a backend is asked for. The records the ledger returns live in
`agentledger.model`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentledger.ledger._facade import Ledger, PayloadDeletion, RetryPolicy, Snapshot
from agentledger.ledger._outage import OutagePolicy
from agentledger.ledger._resolve import resolve_run_id
from agentledger.ledger._store import LedgerStore, RunFilter, RunList
from agentledger.ledger._url import open_ledger
from agentledger.ledger.backends.memory import MemoryLedger, MemoryStore

if TYPE_CHECKING:
    from agentledger.ledger.backends.s3 import S3Ledger
    from agentledger.ledger.backends.sqlite import SqliteLedger

__all__ = [
    'Ledger',
    'LedgerStore',
    'MemoryLedger',
    'MemoryStore',
    'OutagePolicy',
    'PayloadDeletion',
    'RetryPolicy',
    'RunFilter',
    'RunList',
    'S3Ledger',
    'Snapshot',
    'SqliteLedger',
    'open_ledger',
    'resolve_run_id',
]


def __getattr__(name: str) -> Any:
    """Import `SqliteLedger` (and with it aiosqlite) or `S3Ledger` (and boto3) only when it is asked for."""
    if name == 'SqliteLedger':
        from agentledger.ledger.backends.sqlite import SqliteLedger

        return SqliteLedger
    if name == 'S3Ledger':
        from agentledger.ledger.backends.s3 import S3Ledger

        return S3Ledger
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
