"""The tool-call journal's records and key (pure: no I/O).

The model-call journal replays a provider's answers after a reset or a restart, so the tool calls
those answers ask for come back with the same tool_call_ids. The tool-call journal is its
counterpart: the result of a tool-call activity that completed is kept under its tool call, and a
later attempt of the same call (a retry, a reset Temporal run, a restart of the failed run) returns
that result instead of running the tool again.

A result is kept as the Temporal payload the worker's payload converter made of it (metadata and
data, base64), so a replay hands Temporal the very same bytes, whatever type the tool returned.
Only calls that ended with the tool's answer are kept (`JOURNALED_OUTCOMES`): a failed call runs
again, and a call deferred or waiting for approval is asked again with the same tool_call_id once
decided, so its first answer must not stand for the second.

An entry also keeps a digest of the call's arguments (`arguments_digest`): a tool_call_id names a
call only as far as its provider or the operator keeps it apart from others (an OpenAI-compatible
server may number calls `call_0` at every step; a call approved again with other `override_args`
after a reset keeps its id). A result recorded for other arguments is not replayed: the tool runs
and its result takes the entry's place. An entry without a digest (written before entries had
one) stands for any arguments, as it did when it was written.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic_core import to_jsonable_python

from agentledger.errors import LedgerCorruptionError
from agentledger.model._canonical import canonical_json
from agentledger.model._keyed import TOOL_JOURNAL, KeyedRecord, entry_fields, entry_value
from agentledger.model._records import ToolOutcome

__all__ = [
    'JOURNALED_OUTCOMES',
    'ToolJournalEntry',
    'arguments_digest',
    'decode_payload',
    'encode_payload',
    'tool_journal_key',
]

JOURNALED_OUTCOMES: frozenset[ToolOutcome] = frozenset({'returned', 'retry_requested', 'validation_error'})
"""The tool outcomes whose results are journaled: the tool's own answer to the call."""


def tool_journal_key(workflow_id: str, lineage_run_id: str, tool_name: str, tool_call_id: str) -> str:
    """`<workflow id>|<ledger run>|tool|<tool name>|<tool_call_id>`: where a tool call's result is journaled.

    `lineage_run_id` is the ledger run the workflow id's execution chain began with, as for the
    model-call journal: a reset and a restart of a failed run share it (a restart numbers its steps
    anew, so the step is not part of the key), a new run reusing the workflow id does not.
    """
    return f'{workflow_id}|{lineage_run_id}|tool|{tool_name}|{tool_call_id}'


def arguments_digest(arguments: Mapping[str, Any]) -> str:
    """The SHA-256 of a tool call's arguments in canonical JSON (sorted keys): what its journaled result was for."""
    return hashlib.sha256(canonical_json(to_jsonable_python(arguments))).hexdigest()


def encode_payload(metadata: Mapping[str, bytes], data: bytes) -> dict[str, Any]:
    """A Temporal payload's metadata and data as JSON (base64), exactly as it was."""
    return {
        'metadata': {name: base64.b64encode(value).decode() for name, value in metadata.items()},
        'data': base64.b64encode(data).decode(),
    }


def decode_payload(value: Mapping[str, Any]) -> tuple[dict[str, bytes], bytes]:
    """The payload's metadata and data back from `encode_payload`; raises `ValueError` for anything else."""
    metadata = value.get('metadata')
    data = value.get('data')
    if not isinstance(metadata, Mapping) or not isinstance(data, str):
        raise ValueError('a journaled payload needs "metadata" (an object) and "data" (base64 text)')
    return (
        {str(name): base64.b64decode(item, validate=True) for name, item in metadata.items()},
        base64.b64decode(data, validate=True),
    )


@dataclass(frozen=True)
class ToolJournalEntry:
    """A tool call's result as the tool-call journal keeps it, with the attempt that ran the tool."""

    key: str
    workflow_id: str
    run_id: str
    """The ledger run whose attempt ran the tool."""
    tool_name: str
    tool_call_id: str
    step: int | None
    payload: dict[str, Any]
    """The activity's result as a Temporal payload (see `encode_payload`), before any payload codec."""
    outcome: ToolOutcome
    detail: str | None
    recorded_at: datetime
    temporal_run_id: str
    activity_id: str
    attempt: int
    args_digest: str | None = None
    """`arguments_digest` of the call's arguments; `None` in entries written before entries kept it."""
    voided: str | None = None
    """Why the result no longer stands (an operator asked for the run's tools to run again): the next
    attempt of the call runs the tool, and its result takes this one's place."""

    def recorded_for(self, args_digest: str) -> bool:
        """Whether the result was recorded for a call with these arguments (see `arguments_digest`).

        An entry without a digest counts as recorded for any arguments: it was keyed by tool_call_id alone.
        """
        return self.args_digest is None or self.args_digest == args_digest

    def void(self, reason: str) -> ToolJournalEntry:
        """A copy of the entry, voided for `reason`."""
        return replace(self, voided=reason)

    def to_value(self) -> dict[str, Any]:
        """The stored JSON value (everything but the key)."""
        return entry_value(self)

    @classmethod
    def from_record(cls, record: KeyedRecord) -> ToolJournalEntry:
        """Rebuild from a stored keyed record of the tool-call journal's namespace."""
        if record.namespace != TOOL_JOURNAL:
            raise ValueError(f'record {record.key!r} is a {record.namespace} record, not a tool-call journal entry')
        try:
            entry = cls(**entry_fields(record))
            decode_payload(entry.payload)
        except (KeyError, TypeError, ValueError) as error:
            raise LedgerCorruptionError(f'tool-call journal entry {record.key!r} does not decode: {error}') from error
        return entry
