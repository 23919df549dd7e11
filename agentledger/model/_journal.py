"""The model-call journal's records, its request hash and its key (pure: no I/O).

What is hashed (`request_hash`), as canonical JSON (sorted keys, no whitespace), SHA-256:

- the full message list the provider is about to see (after the worker resolved the history
  reference), each message dumped by pydantic-ai's own `ModelMessagesTypeAdapter` in the canonical
  form of `agentledger.model._canonical` (fields a release dumps as empty left out, so every
  supported pydantic-ai release hashes the same conversation alike), without the fields that change
  when the same logical request is made again: `timestamp` (of every message and part: they come
  from workflow time, which differs after a reset or a restart), `request_timestamp` and `duration`
  of responses (when and how long the provider answered), `run_id` and `conversation_id` of
  messages (pydantic-ai's per-run ids, new for every execution);
- the model id the request names (`None` for the agent's default model);
- the model settings;
- the model request parameters (tool definitions, output mode and tools, native tools), as
  pydantic-ai serialises them, in canonical form.

Everything else (the serialized run context with its step and retry counters, deps, telemetry ids)
is not part of the request a provider sees and is not hashed. A request that differs in any hashed
byte (another prompt, tool result, instruction, setting or tool schema) has another hash and is
never answered from the journal.

The same request can be asked twice on purpose: a hook that raises `RetryModelRequest`, or
`RetryOnModelErrors`, rejects an answer and asks again at the same step, often with the same
messages. So the key also carries the request's ordinal within its step (counted by workflow code,
deterministically): the second request at a step is a new model call, while a retried Temporal
attempt of the same activity (same ordinal) is answered from the journal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse
from pydantic_ai.models import ModelRequestParameters

from agentledger.errors import LedgerCorruptionError
from agentledger.model._canonical import HASH_FORMAT, canonical_json, canonical_message, canonical_parameters
from agentledger.model._keyed import JOURNAL, KeyedRecord, entry_fields, entry_value

__all__ = [
    'UNHASHED_MESSAGE_FIELDS',
    'UNHASHED_PART_FIELDS',
    'JournalEntry',
    'format_1_journal_key',
    'journal_key',
    'request_hash',
    'request_hash_of_key',
]

UNHASHED_MESSAGE_FIELDS = frozenset({'timestamp', 'request_timestamp', 'duration', 'run_id', 'conversation_id'})
"""Message fields left out of the request hash: they change between executions of the same request."""

UNHASHED_PART_FIELDS = frozenset({'timestamp'})
"""Part fields left out of the request hash."""

_PARAMETERS = TypeAdapter(ModelRequestParameters)
_SETTINGS = TypeAdapter(dict[str, Any] | None)


_FORMAT_1_UNHASHED = frozenset({'timestamp', 'run_id', 'conversation_id'})


def _stable(message: dict[str, Any], *, canonical: bool) -> dict[str, Any]:
    if canonical:
        kept = {k: v for k, v in canonical_message(message).items() if k not in UNHASHED_MESSAGE_FIELDS}
    else:
        kept = {k: v for k, v in message.items() if k not in _FORMAT_1_UNHASHED}
    if 'parts' in kept:
        kept['parts'] = [
            {k: v for k, v in part.items() if k not in UNHASHED_PART_FIELDS} if isinstance(part, dict) else part
            for part in kept['parts']
        ]
    return kept


def _request_digest(
    messages: Sequence[ModelMessage],
    model_id: str | None,
    settings: Mapping[str, Any] | None,
    parameters: ModelRequestParameters,
    *,
    canonical: bool,
) -> str:
    dumped = _PARAMETERS.dump_python(parameters, mode='json')
    body = {
        'messages': [
            _stable(m, canonical=canonical) for m in ModelMessagesTypeAdapter.dump_python(list(messages), mode='json')
        ],
        'model_id': model_id,
        'settings': _SETTINGS.dump_python(dict(settings) if settings else None, mode='json'),
        'parameters': canonical_parameters(dumped) if canonical else dumped,
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


def request_hash(
    messages: Sequence[ModelMessage],
    *,
    model_id: str | None,
    settings: Mapping[str, Any] | None,
    parameters: ModelRequestParameters,
) -> str:
    """The SHA-256 (hex) of what a model request asks, without what changes between its executions."""
    return _request_digest(messages, model_id, settings, parameters, canonical=True)


def format_1_journal_key(
    workflow_id: str,
    lineage_run_id: str,
    activity_type: str,
    messages: Sequence[ModelMessage],
    *,
    model_id: str | None,
    settings: Mapping[str, Any] | None,
    parameters: ModelRequestParameters,
) -> str:
    """The key agentledger 0.1.0 (hash format 1) journaled this request under: no format, no ordinal.

    Format 1 hashed every field as the running pydantic-ai release dumps it. An attempt of an
    activity that workflow code of that version scheduled (its header has no request ordinal) looks
    here too after a miss, so upgrading agentledger with runs in flight does not pay for answers
    journaled before the upgrade on the same pydantic-ai release.
    """
    digest = _request_digest(messages, model_id, settings, parameters, canonical=False)
    return f'{workflow_id}|{lineage_run_id}|{activity_type}|{digest}'


def journal_key(workflow_id: str, lineage_run_id: str, activity_type: str, digest: str, ordinal: int = 1) -> str:
    """`<workflow id>|<ledger run>|<activity type>|h<format>:<request hash>:<ordinal>`: where a response is journaled.

    `lineage_run_id` is the ledger run the workflow id's current execution chain began with (a
    restart of a failed run keeps its run's; a new, unrelated run of the same workflow id starts a
    new one), so a later run that reuses a workflow id never replays an older run's answers.
    `ordinal` is the request's place among the model requests of its step (1 for the first), so a
    request asked again on purpose is a new call. The hash format (`HASH_FORMAT`) is part of the key:
    entries of another format are never read as this one's.
    """
    return f'{workflow_id}|{lineage_run_id}|{activity_type}|h{HASH_FORMAT}:{digest}:{ordinal}'


def request_hash_of_key(key: str) -> str:
    """The request hash inside a journal key (either format)."""
    last = key.rsplit('|', 1)[-1]
    return last.split(':')[1] if last.startswith('h') and last.count(':') == 2 else last


@dataclass(frozen=True)
class JournalEntry:
    """A provider response as the model-call journal keeps it, with the attempt that paid for it."""

    key: str
    workflow_id: str
    run_id: str
    """The ledger run whose attempt called the provider."""
    activity_type: str
    request_hash: str
    response: dict[str, Any]
    """The `ModelResponse` as pydantic-ai's `ModelMessagesTypeAdapter` dumps it (JSON mode)."""
    recorded_at: datetime
    temporal_run_id: str
    activity_id: str
    attempt: int

    @classmethod
    def of(cls, response: ModelResponse, **fields: Any) -> JournalEntry:
        """An entry for `response`; `fields` are the others."""
        [dumped] = ModelMessagesTypeAdapter.dump_python([response], mode='json')
        return cls(response=dumped, **fields)

    def model_response(self) -> ModelResponse:
        """The recorded response, rebuilt; a stored entry that is not a response is reported as corrupt."""
        try:
            [message] = ModelMessagesTypeAdapter.validate_python([self.response])
        except ValueError as error:
            raise LedgerCorruptionError(f'journal entry {self.key!r} does not decode: {error}') from error
        if not isinstance(message, ModelResponse):
            raise LedgerCorruptionError(f'journal entry {self.key!r} holds a {message.kind}, not a model response')
        return message

    def to_value(self) -> dict[str, Any]:
        """The stored JSON value (everything but the key)."""
        return entry_value(self)

    @classmethod
    def from_record(cls, record: KeyedRecord) -> JournalEntry:
        """Rebuild from a stored keyed record of the `journal` namespace."""
        if record.namespace != JOURNAL:
            raise ValueError(f'record {record.key!r} is a {record.namespace} record, not a journal entry')
        try:
            return cls(**entry_fields(record))
        except (KeyError, TypeError, ValueError) as error:
            raise LedgerCorruptionError(f'journal entry {record.key!r} does not decode: {error}') from error
