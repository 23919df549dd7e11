"""The ledger: runs, step events and acceptances, stored by a backend behind the `Ledger` interface.

`SqliteLedger` and `S3Ledger` are imported on first use, so that importing this package (which
workflow code does, for the records) never imports aiosqlite or boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import Ledger, PayloadDeletion, RetryPolicy, RunFilter, Snapshot
from ._effects import EffectRecord, EffectStatus
from ._journal import JournalEntry
from ._keyed import KeyedRecord
from ._records import (
    Acceptance,
    ErrorInfo,
    ForkRef,
    PayloadReference,
    RunRecord,
    RunSeal,
    RunStart,
    RunTree,
    SnapshotRecord,
    StepEvent,
    StepRecord,
    ToolEffect,
    Usage,
)
from ._url import open_ledger
from .memory import MemoryLedger

if TYPE_CHECKING:
    from .s3 import S3Ledger
    from .sqlite import SqliteLedger

__all__ = [
    'Acceptance',
    'EffectRecord',
    'EffectStatus',
    'ErrorInfo',
    'ForkRef',
    'JournalEntry',
    'KeyedRecord',
    'Ledger',
    'MemoryLedger',
    'PayloadDeletion',
    'PayloadReference',
    'RetryPolicy',
    'RunFilter',
    'RunRecord',
    'RunSeal',
    'RunStart',
    'RunTree',
    'S3Ledger',
    'Snapshot',
    'SnapshotRecord',
    'SqliteLedger',
    'StepEvent',
    'StepRecord',
    'ToolEffect',
    'Usage',
    'open_ledger',
]


def __getattr__(name: str) -> Any:
    """Import `SqliteLedger` (and with it aiosqlite) or `S3Ledger` (and boto3) only when it is asked for."""
    if name == 'SqliteLedger':
        from .sqlite import SqliteLedger

        return SqliteLedger
    if name == 'S3Ledger':
        from .s3 import S3Ledger

        return S3Ledger
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
