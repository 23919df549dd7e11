"""Conformance: failures on every backend: unknown ids, retried and failing writes, ledgers sharing a store,
run records corrupted behind the ledger's back."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from agentledger.errors import LedgerCorruptionError, LedgerUnavailableError, RunNotFoundError
from agentledger.ledger import Ledger
from agentledger.ledger.backends.memory import MemoryStore

from ..helpers.ledgers import FAST_RETRY, SHARED_BACKENDS, corrupt_run_record, make_sharing_pair
from ..helpers.records import event, ids, run_start


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
