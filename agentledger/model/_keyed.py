"""Keyed records: the small compare-and-swap store that the journals and once-only effects share.

A keyed record is one JSON object under `(namespace, key)`, with a `scope` (the workflow id it
belongs to, for listing) and an opaque `version` the backend assigns on every write. The store has
exactly two write rules, which every backend decides atomically for one record:

- create: store the record only if no record has its key (SQLite: a transaction, S3: `If-None-Match: *`);
- replace: store it only if the stored version is still the one read (SQLite: a transaction, S3: `If-Match`).

A write that loses either race stores nothing and says so, so two writers racing (a zombie attempt
and its retry) can never both believe they won.

This module is pure (no I/O) and imported by worker code only.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

__all__ = ['EFFECTS', 'JOURNAL', 'TOOL_JOURNAL', 'KeyedRecord', 'check_namespace', 'entry_fields', 'entry_value']

JOURNAL = 'journal'
"""The namespace of model-call journal entries."""

TOOL_JOURNAL = 'tool-journal'
"""The namespace of tool-call journal entries."""

EFFECTS = 'effects'
"""The namespace of once-only effect records."""

_NAMESPACE = re.compile(r'[a-z][a-z0-9_-]{0,31}')


def check_namespace(namespace: str) -> str:
    """Return `namespace` if it is a valid namespace name (it names tables rows and S3 prefixes)."""
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(
            f'record namespace {namespace!r} is not valid: 1 to 32 lowercase letters, digits, "_" or "-", '
            'starting with a letter'
        )
    return namespace


@dataclass(frozen=True)
class KeyedRecord:
    """One keyed record as stored: its value and the version a compare-and-swap must name to replace it."""

    namespace: str
    key: str
    scope: str
    """What the record belongs to (a workflow id): `Ledger.records(namespace, scope=...)` lists by it."""
    value: dict[str, Any] = field(default_factory=dict)
    version: str = ''
    """Assigned by the backend on every write; empty for a record not stored yet."""

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict."""
        return {
            'namespace': self.namespace,
            'key': self.key,
            'scope': self.scope,
            'value': self.value,
            'version': self.version,
        }


def entry_value(entry: Any) -> dict[str, Any]:
    """A journal entry (a dataclass with `key` and `recorded_at`) as its stored JSON value: all but the key."""
    data = asdict(entry)
    del data['key']
    data['recorded_at'] = entry.recorded_at.isoformat()
    return data


def entry_fields(record: KeyedRecord) -> dict[str, Any]:
    """The fields of the journal entry `record` holds, its key included (`entry_value`'s inverse).

    Raises `KeyError` / `ValueError` for a value that is not one: the caller says which journal's entry
    does not decode.
    """
    values = dict(record.value)
    values['recorded_at'] = datetime.fromisoformat(values['recorded_at'])
    return {'key': record.key, **values}
