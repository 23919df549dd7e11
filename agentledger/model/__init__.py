"""The pure layer: ledger records, the rules that fold them, conversions, ids, canonical content and provider validity.

Nothing here does I/O or reads the clock. It is the only agentledger code (with `agentledger.errors`
and `agentledger._compat`) that workflow code imports, so it is safe on Temporal's deterministic
event loop and inside the workflow sandbox.
"""

from agentledger.model._effects import EffectRecord, EffectStatus, ResolveOutcome
from agentledger.model._journal import JournalEntry
from agentledger.model._keyed import KeyedRecord
from agentledger.model._records import (
    Acceptance,
    ErrorInfo,
    EventKind,
    ForkRef,
    PayloadReference,
    RunRecord,
    RunSeal,
    RunStart,
    RunStatus,
    RunTree,
    SnapshotRecord,
    StepEvent,
    StepRecord,
    ToolEffect,
    ToolOutcome,
    Usage,
)
from agentledger.model._search_attributes import (
    SEARCH_AGENT,
    SEARCH_ATTRIBUTES,
    SEARCH_CONVERSATION_ID,
    SEARCH_PARENT_RUN_ID,
    SEARCH_RESTART_OF,
    SEARCH_RUN_ID,
    SEARCH_STATUS,
    registration_commands,
)
from agentledger.model._tool_journal import ToolJournalEntry
from agentledger.model._validity import ValidityProblem, is_provider_valid, validity_problems

__all__ = [
    'SEARCH_AGENT',
    'SEARCH_ATTRIBUTES',
    'SEARCH_CONVERSATION_ID',
    'SEARCH_PARENT_RUN_ID',
    'SEARCH_RESTART_OF',
    'SEARCH_RUN_ID',
    'SEARCH_STATUS',
    'Acceptance',
    'EffectRecord',
    'EffectStatus',
    'ErrorInfo',
    'EventKind',
    'ForkRef',
    'JournalEntry',
    'KeyedRecord',
    'PayloadReference',
    'ResolveOutcome',
    'RunRecord',
    'RunSeal',
    'RunStart',
    'RunStatus',
    'RunTree',
    'SnapshotRecord',
    'StepEvent',
    'StepRecord',
    'ToolEffect',
    'ToolJournalEntry',
    'ToolOutcome',
    'Usage',
    'ValidityProblem',
    'is_provider_valid',
    'registration_commands',
    'validity_problems',
]
