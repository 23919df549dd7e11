"""Encoding shared by the persistent backends: compact JSON, sortable instants, and one way to decode stored records.

SQLite and S3 store the same records as JSON; decoding them here means a damaged run or event is
refused by the same checks on either backend, and reported as `LedgerCorruptionError` naming
where it was stored, never returned.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, get_args

from agentledger.errors import LedgerCorruptionError
from agentledger.model._records import RunRecord, RunStatus, SnapshotKind, SnapshotRecord, StepEvent

__all__ = ['decode', 'decode_event', 'decode_run', 'decode_snapshot', 'dumps', 'epoch_us', 'loads_object']

T = TypeVar('T')

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RUN_STATUSES = frozenset(get_args(RunStatus))
_SNAPSHOT_KINDS = frozenset(get_args(SnapshotKind))


def dumps(value: object) -> str:
    """Compact JSON text, non-ASCII kept as is: what every stored body is."""
    return json.dumps(value, separators=(',', ':'), ensure_ascii=False)


def epoch_us(moment: datetime) -> int:
    """UTC microseconds since the epoch: ISO text with different UTC offsets does not sort by instant, this does."""
    # astimezone() reads a naive datetime as local time, the same reading datetime comparison gives it.
    return (moment.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)


def loads_object(text: str | bytes) -> dict[str, Any]:
    """Parse a JSON object; anything else raises `ValueError`."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f'expected a JSON object, got {type(value).__name__}')
    return value


def decode(where: str, build: Callable[[], T], *, run_id: str | None = None) -> T:
    """Run `build`; a value it refuses raises `LedgerCorruptionError` saying `where` the record does not decode.

    `run_id` (for a run record) is carried by the error, so a listing that skips the record can name the run.
    """
    try:
        return build()
    except (ValueError, TypeError, KeyError) as error:
        raise LedgerCorruptionError(f'{where} does not decode: {error}', run_id=run_id) from error


def decode_run(value: dict[str, Any]) -> RunRecord:
    """A run record from its `RunRecord.to_json()` form, its status and lists checked; raises `ValueError`."""
    status = value['status']
    if status not in _RUN_STATUSES:
        raise ValueError(f'unknown status {status!r}')
    temporal_run_ids = value['temporal_run_ids']
    if not (
        isinstance(temporal_run_ids, list) and temporal_run_ids and all(isinstance(i, str) for i in temporal_run_ids)
    ):
        raise ValueError(f'temporal_run_ids is not a non-empty list of strings: {temporal_run_ids!r}')
    degraded = value.get('degraded', [])
    if not isinstance(degraded, list) or not all(isinstance(line, str) for line in degraded):
        raise ValueError(f'degraded is not a list of strings: {degraded!r}')
    for name in ('usage', 'error', 'forked_from'):
        if value.get(name) is not None and not isinstance(value[name], dict):
            raise ValueError(f'{name} is not a JSON object: {value[name]!r}')
    return RunRecord.from_json(value)


def decode_event(value: dict[str, Any]) -> StepEvent:
    """A step event from its stored `StepEvent.to_json()` form (with the `seq` it was stored under)."""
    return StepEvent.from_json(value)


def decode_snapshot(value: dict[str, Any]) -> SnapshotRecord:
    """A snapshot record from its `SnapshotRecord.to_json()` form, its kind checked; raises `ValueError`."""
    record = SnapshotRecord.from_json(value)
    if record.kind not in _SNAPSHOT_KINDS:
        raise ValueError(f'unknown snapshot kind {record.kind!r}')
    return record
