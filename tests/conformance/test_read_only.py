"""Conformance: a ledger opened read-only reads what the ledger holds and refuses every write, on every backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from agentledger.errors import LedgerReadOnlyError
from agentledger.ledger import Ledger
from agentledger.model import ErrorInfo, JournalEntry, PayloadReference
from agentledger.model._keyed import EFFECTS

from ..helpers.ledgers import read_only_view
from ..helpers.records import acceptance, conversation, event, ids, run_seal, run_start, snapshot_steps


def journal_entry(key: str, at: datetime) -> JournalEntry:
    return JournalEntry(
        key=key,
        workflow_id='wf-run-a',
        run_id='run-a',
        activity_type='agent__model_request',
        request_hash='0' * 64,
        response={},
        recorded_at=at,
        temporal_run_id='t1',
        activity_id='1',
        attempt=1,
    )


async def test_read_only_ledger_reads_everything_and_refuses_every_write(ledger: Ledger) -> None:
    """Each write method of a read-only ledger raises LedgerReadOnlyError naming it; nothing is stored."""
    await ledger.start_run(run_start('run-a'))
    await ledger.record_events(
        [event('1', 1, 'tool_call_started', run_id='run-a'), event('1', 1, 'tool_call_completed', run_id='run-a')]
    )
    await ledger.accept([acceptance('1', run_id='run-a')])
    [snapshot] = await snapshot_steps(ledger, 'run-a', conversation(2), range(1, 2))
    payload = await ledger.store_chunked(b'payload ' * 500, referrers=[('default', 'wf-run-a')])
    record = await ledger.create_record(EFFECTS, 'effect-1', {'status': 'started'}, scope='wf-run-a')
    assert record is not None
    before = await ledger.events('run-a')

    async with read_only_view(ledger) as reader:
        assert reader.read_only
        assert ids(await reader.runs()) == ['run-a']
        assert await reader.events('run-a') == before
        assert (await reader.snapshot(snapshot.snapshot_id)).record == snapshot
        assert await reader.load_chunked(payload) == b'payload ' * 500
        stored = await reader.record(EFFECTS, 'effect-1')
        assert stored is not None

        at = datetime.now(UTC)
        writes: dict[str, Callable[[], Awaitable[object]]] = {
            'run start of run-b': lambda: reader.start_run(run_start('run-b')),
            'event(s) of run run-a': lambda: reader.record_events([event('2', 1, 'tool_call_started', run_id='run-a')]),
            'acceptance': lambda: reader.accept([acceptance('2', run_id='run-a')]),
            'seal of run run-a': lambda: reader.seal_run(run_seal('run-a')),
            "effects record 'effect-2'": lambda: reader.create_record(EFFECTS, 'effect-2', {}, scope='wf-run-a'),
            "effects record 'effect-1'": lambda: reader.replace_record(stored, {'status': 'done'}),
            "journal record 'j1'": lambda: reader.record_journal(journal_entry('j1', at)),
            'repair of stored events': lambda: reader.replace_events('run-a', [1], []),
            'repair of stored acceptances': lambda: reader.replace_acceptances(
                [acceptance('1', 'failed', run_id='run-a')]
            ),
            'update of run run-a': lambda: reader.park_run('run-a', ErrorInfo('Boom', 'boom', False), at),
            'snapshot of run run-a': lambda: snapshot_steps(reader, 'run-a', conversation(3), range(1, 3)),
            'chunk(s)': lambda: reader.store_chunked(b'other ' * 500),
            'payload reference(s)': lambda: reader.record_payload_references(
                [PayloadReference(payload, 'default', 'wf-run-b', at)]
            ),
            'payload(s)': lambda: reader.delete_payloads([payload]),
            'probe record': reader.check_writable,
        }
        for what, write in writes.items():
            with pytest.raises(LedgerReadOnlyError, match='open read-only') as info:
                await write()
            assert what in str(info.value)
            assert reader.url in str(info.value)
        # A dry run deletes nothing, so a read-only ledger answers it.
        assert (await reader.delete_payloads([payload], dry_run=True)).manifests == (payload,)

    assert ids(await ledger.runs()) == ['run-a']
    assert await ledger.events('run-a') == before
    assert (await ledger.run('run-a')).status == 'running'
    assert len(await ledger.snapshots('run-a')) == 1
    assert await ledger.record(EFFECTS, 'effect-2') is None
    assert await ledger.load_chunked(payload) == b'payload ' * 500
    assert {r.workflow_id for r in await ledger.payload_references()} == {'wf-run-a'}


async def test_the_write_probe_needs_no_delete_and_is_nobodys_payload(ledger: Ledger) -> None:
    """A worker's start-up probe writes one record, the same each time, that no payload listing (nor gc) shows."""
    await ledger.check_writable()
    await ledger.check_writable()
    assert await ledger.payload_references() == []
