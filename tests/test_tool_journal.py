"""The tool-call journal's records: payloads round-trip byte for byte, and a damaged entry is reported as corrupt."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentledger.errors import LedgerCorruptionError
from agentledger.model import KeyedRecord, ToolJournalEntry
from agentledger.model._keyed import JOURNAL, TOOL_JOURNAL
from agentledger.model._tool_journal import arguments_digest, decode_payload, encode_payload, tool_journal_key

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
    args_digest=arguments_digest({'amount': 5}),
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


def test_the_arguments_digest_is_canonical_and_tells_calls_apart() -> None:
    """Key order does not matter, values do; an entry is recorded for its own arguments only, and one without
    a digest (written before entries kept one) for any."""
    assert arguments_digest({'a': 1, 'b': [1, 2]}) == arguments_digest({'b': [1, 2], 'a': 1})
    assert arguments_digest({'amount': 5}) != arguments_digest({'amount': 50})
    assert arguments_digest({}) != arguments_digest({'amount': None})
    assert ENTRY.recorded_for(arguments_digest({'amount': 5}))
    assert not ENTRY.recorded_for(arguments_digest({'amount': 50}))
    value = ENTRY.to_value()
    del value['args_digest']
    undigested = ToolJournalEntry.from_record(KeyedRecord(TOOL_JOURNAL, ENTRY.key, 'wf', value))
    assert undigested.args_digest is None and undigested.recorded_for(arguments_digest({'amount': 50}))
