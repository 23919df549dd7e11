"""The tool-call journal's records: payloads round-trip byte for byte, and a damaged entry is reported as corrupt."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentledger.errors import LedgerCorruptionError
from agentledger.model import KeyedRecord, ToolJournalEntry
from agentledger.model._keyed import JOURNAL, TOOL_JOURNAL
from agentledger.model._tool_journal import decode_payload, encode_payload, tool_journal_key

ENTRY = ToolJournalEntry(
    key=tool_journal_key('wf', 'run-1', 'charge', 'call-1'),
    workflow_id='wf',
    run_id='run-1',
    tool_name='charge',
    tool_call_id='call-1',
    step=2,
    payload=encode_payload({'encoding': b'json/plain', 'bin': b'\x00\xff'}, b'{"kind":"tool_return"}'),
    outcome='returned',
    detail=None,
    recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
    temporal_run_id='t-1',
    activity_id='4',
    attempt=1,
)


def test_an_entry_round_trips_through_its_stored_record() -> None:
    record = KeyedRecord(TOOL_JOURNAL, ENTRY.key, 'wf', ENTRY.to_value(), version='v1')
    assert ToolJournalEntry.from_record(record) == ENTRY
    assert decode_payload(ENTRY.payload) == (
        {'encoding': b'json/plain', 'bin': b'\x00\xff'},
        b'{"kind":"tool_return"}',
    )
    assert ENTRY.key == 'wf|run-1|tool|charge|call-1'
    assert (
        ToolJournalEntry.from_record(KeyedRecord(TOOL_JOURNAL, ENTRY.key, 'wf', ENTRY.void('reset').to_value())).voided
        == 'reset'
    )


@pytest.mark.parametrize(
    'damage',
    [
        lambda value: value.pop('payload'),
        lambda value: value.update(payload={'metadata': {}, 'data': 'not base64!'}),
        lambda value: value.update(recorded_at='yesterday'),
        lambda value: value.update(surprise=1),
    ],
    ids=['no-payload', 'bad-base64', 'bad-time', 'unknown-field'],
)
def test_a_damaged_entry_is_reported_as_corrupt(damage: object) -> None:
    value = ENTRY.to_value()
    damage(value)  # type: ignore[operator]
    with pytest.raises(LedgerCorruptionError, match='tool-call journal entry'):
        ToolJournalEntry.from_record(KeyedRecord(TOOL_JOURNAL, ENTRY.key, 'wf', value))


def test_a_record_of_another_namespace_is_not_an_entry() -> None:
    with pytest.raises(ValueError, match='not a tool-call journal entry'):
        ToolJournalEntry.from_record(KeyedRecord(JOURNAL, ENTRY.key, 'wf', ENTRY.to_value()))
