"""The `warn` outage policy's buffer on its own: order per run, catching up, the degraded mark, what it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from agentledger import Ledger
from agentledger.errors import LedgerCorruptionError, LedgerUnavailableError
from agentledger.ledger._outage import OutageBuffer
from agentledger.ledger.backends.memory import MemoryStore

from .helpers.ledgers import FAST_RETRY
from .helpers.records import event, run_start


class DownStore(MemoryStore):
    """A memory store whose event writes fail while `down` (as an unreachable backend's would), or are corrupt."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.corrupt = False

    async def write_events(self, events: Any) -> None:
        if self.corrupt:
            raise LedgerCorruptionError('a row does not decode')
        if self.down:
            raise LedgerUnavailableError('backend unreachable')
        await super().write_events(events)


class DownLedger(Ledger):
    store: DownStore

    def __init__(self) -> None:
        super().__init__(DownStore(), retry=FAST_RETRY)


async def test_writes_missed_during_an_outage_land_in_order_and_mark_the_run_degraded() -> None:
    ledger = DownLedger()
    buffer = OutageBuffer(ledger, interval_s=0.01)
    await ledger.start_run(run_start('r1'))
    ledger.store.down = True
    await buffer.write('r1', 'first', buffer.events([event('1', 1, 'tool_call_started')]))
    ledger.store.down = False
    # The ledger is back, but a later write of the same run waits behind the kept one: the order holds.
    await buffer.write('r1', 'second', buffer.events([event('1', 1, 'tool_call_completed')]))
    assert buffer.pending('r1') == 2
    assert await buffer.flush()
    assert [e.kind for e in await ledger.events('r1')] == ['run_started', 'tool_call_started', 'tool_call_completed']
    assert (await ledger.run('r1')).degraded == (
        'first: missed a ledger outage',
        'second: missed a ledger outage',
    )
    # Another run never waited: its writes go straight in.
    await ledger.start_run(run_start('r2'))
    await buffer.write('r2', 'other', buffer.events([event('1', 1, 'tool_call_started', run_id='r2')]))
    assert buffer.pending() == 0 and (await ledger.run('r2')).degraded == ()
    await buffer.close()


async def test_a_ledger_that_stays_down_keeps_the_writes_and_a_corrupt_one_is_not_waited_for() -> None:
    ledger = DownLedger()
    buffer = OutageBuffer(ledger, interval_s=0.01)
    await ledger.start_run(run_start('r1'))
    ledger.store.down = True
    await buffer.write('r1', 'kept', buffer.events([event('1', 1, 'tool_call_started')]))
    assert not await buffer.flush() and buffer.pending('r1') == 1
    await buffer.close()  # says what is still not written; nothing is dropped silently
    assert buffer.pending('r1') == 1

    ledger.store.down, ledger.store.corrupt = False, True
    with pytest.raises(LedgerCorruptionError):
        await buffer.write('r2', 'refused', buffer.events([event('1', 1, 'tool_call_started', run_id='r2')]))
    assert buffer.pending('r2') == 0


async def test_under_fail_an_owed_end_is_written_before_the_next_write_of_its_run_and_marks_nothing() -> None:
    """Policy `fail` keeps only the ends of attempts the outage failed; the run's next write waits for them."""
    ledger = DownLedger()
    owed = OutageBuffer(ledger, interval_s=3600, mark_degraded=False)
    await ledger.start_run(run_start('r1'))
    await ledger.record_events([event('1', 1, 'tool_call_started')])
    ledger.store.down = True
    owed.keep(
        'r1', 'the end of attempt 1', owed.events([event('1', 1, 'tool_call_failed')]), LedgerUnavailableError('x')
    )
    with pytest.raises(LedgerUnavailableError, match=r'could not write the end of attempt 1 of run r1.*unreachable'):
        await owed.write_owed('r1')
    await owed.write_owed('r2')  # another run owes nothing: it never waits
    ledger.store.down = False
    await owed.write_owed('r1')
    assert owed.pending() == 0
    assert [e.kind for e in await ledger.events('r1')] == ['run_started', 'tool_call_started', 'tool_call_failed']
    assert (await ledger.run('r1')).degraded == ()
    await owed.close()
