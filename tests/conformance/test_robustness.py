"""Conformance: failures on every backend: unknown ids, retried and failing writes, ledgers sharing a store,
run records lost or corrupted behind the ledger's back."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from agentledger.errors import LedgerCorruptionError, LedgerUnavailableError, RunNotFoundError
from agentledger.ledger import Ledger
from agentledger.ledger.backends.memory import MemoryStore
from agentledger.model import Usage

from ..helpers.ledgers import FAST_RETRY, SHARED_BACKENDS, corrupt_run_record, drop_run_record, make_sharing_pair
from ..helpers.records import at, event, ids, run_seal, run_start


async def test_unknown_run_id_raises_run_not_found(ledger: Ledger) -> None:
    """C17: every read of an unknown run id raises RunNotFoundError naming the id."""
    await ledger.start_run(run_start('r1'))
    for read in (ledger.run, ledger.events, ledger.steps):
        with pytest.raises(RunNotFoundError, match='no-such-run') as info:
            await read('no-such-run')
        assert info.value.run_id == 'no-such-run'
    with pytest.raises(RunNotFoundError, match='no-such-run'):
        await ledger.runs(before='no-such-run')


class FlakyMemoryStore(MemoryStore):
    """Fails the first `failures` event writes as an unreachable backend would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def write_events(self, events: Any) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise LedgerUnavailableError('backend unreachable')
        await super().write_events(events)


class FlakyMemoryLedger(Ledger):
    def __init__(self, failures: int) -> None:
        super().__init__(FlakyMemoryStore(failures), retry=FAST_RETRY)


async def test_transient_write_failures_are_retried() -> None:
    """C16: a write that fails transiently is retried and then stored once."""
    ledger = FlakyMemoryLedger(failures=FAST_RETRY.attempts - 1)
    await ledger.start_run(run_start())
    await ledger.record_events([event('1', 1, 'tool_call_started')])
    assert len(await ledger.events('r1')) == 2


async def test_persistent_write_failure_names_what_was_not_written() -> None:
    """C16: a write that keeps failing raises LedgerUnavailableError saying what was not recorded."""
    ledger = FlakyMemoryLedger(failures=FAST_RETRY.attempts)
    await ledger.start_run(run_start())
    with pytest.raises(
        LedgerUnavailableError, match=r'1 event\(s\) of run r1 .* after 3 attempts: backend unreachable'
    ):
        await ledger.record_events([event('1', 1, 'tool_call_started')])


@pytest.mark.parametrize('backend', SHARED_BACKENDS)
async def test_two_ledgers_sharing_a_store_lose_no_update(backend: str, tmp_path: Path) -> None:
    """Two workers on one store: SQLite's BEGIN IMMEDIATE and S3's compare-and-swap keep every update, seq unique."""
    one, two = make_sharing_pair(backend, tmp_path)
    async with one as first, two as second:
        await first.start_run(run_start('r1', 't0'))
        await asyncio.gather(
            *((first if i % 2 else second).start_run(run_start('r1', f't{i}', started=i)) for i in range(1, 11)),
            *((second if i % 2 else first).record_events([event(str(i), 1, 'tool_call_started')]) for i in range(30)),
        )
        run = await second.run('r1')
        assert sorted(run.temporal_run_ids) == sorted(f't{i}' for i in range(11))
        events = await first.events('r1')
        assert len(events) == 11 + 30
        assert len({e.seq for e in events}) == len(events)
        assert events == await second.events('r1')


async def test_a_seal_that_finds_no_run_record_is_kept_and_reported_c19(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    """C19: a seal whose run record was lost is stored as the run's terminal event, and a warning says so."""
    await ledger.start_run(run_start('r1', prompt_preview='hi'))
    await ledger.record_events([event('1', 1, 'tool_call_started')])
    started = await ledger.run('r1')
    drop_run_record(ledger, 'r1')

    seal = run_seal('r1', usage=Usage(requests=2, input_tokens=5), output_preview='bye')
    with caplog.at_level(logging.WARNING, logger='agentledger.ledger'):
        await ledger.seal_run(seal)
    [warning] = [r.getMessage() for r in caplog.records if r.name == 'agentledger.ledger']
    assert 'run r1 has no run record' in warning and 'run_completed' in warning
    assert '`agentledger reconcile r1`' in warning
    with pytest.raises(RunNotFoundError):
        await ledger.run('r1')  # not recreated half-empty from a seal that lacks the agent, the queue, the prompt

    # Nothing of the seal is lost: its event holds it all, for reconcile to rebuild the record from.
    events, acceptances = await ledger.stored_rows('r1')
    assert [e.kind for e in events] == ['run_started', 'tool_call_started', 'run_completed']
    end = events[-1]
    assert (end.timestamp, end.usage, end.detail, end.error) == (at(60), seal.usage, 'bye', None)
    assert acceptances == []
    with pytest.raises(RunNotFoundError):
        await ledger.stored_rows('no-such-run')

    # A rebuilt record is stored only where none is, and listed like any other.
    await ledger.restore_run(started)
    await ledger.restore_run(dataclasses.replace(started, agent_name='someone else'))
    assert await ledger.run('r1') == started
    assert ids(await ledger.runs(agent='support')) == ['r1']
    await ledger.seal_run(seal)
    assert (await ledger.run('r1')).status == 'completed'


async def test_a_corrupt_run_record_is_skipped_by_listings_and_reported_c19(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    """C19: a run record that does not decode is left out of listings and reported; reading it raises."""
    for index in range(1, 6):
        await ledger.start_run(run_start(f'r{index}', started=index))
    if not corrupt_run_record(ledger, 'r3'):
        pytest.skip(f'{type(ledger).__name__} holds records as objects: none can fail to decode')

    with caplog.at_level(logging.WARNING, logger='agentledger.ledger'):
        listed = await ledger.runs()
    assert ids(listed) == ['r5', 'r4', 'r2', 'r1']
    [error] = listed.corrupt
    assert isinstance(error, LedgerCorruptionError) and error.run_id == 'r3'
    assert "'r3'" in str(error) or '/r3/' in str(error)
    assert [r.getMessage() for r in caplog.records if r.name == 'agentledger.ledger'] == [
        f'skipped a corrupt run record while listing runs: {error}'
    ]

    # The corrupt record takes no place in a page, and paging goes on past it.
    page = await ledger.runs(limit=3)
    assert ids(page) == ['r5', 'r4', 'r2'] and [e.run_id for e in page.corrupt] == ['r3']
    assert ids(await ledger.runs(agent='support', limit=2, before='r4')) == ['r2', 'r1']
    assert ids(await ledger.runs(limit=2)) == ['r5', 'r4']

    with pytest.raises(LedgerCorruptionError, match='r3') as info:
        await ledger.run('r3')
    assert info.value.run_id == 'r3'
