"""Conformance: step events on every backend: causal order, idempotent delivery, repairs, accepted attempts."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from agentledger.errors import RunNotFoundError
from agentledger.ledger import Ledger
from agentledger.model import ErrorInfo, Usage
from agentledger.model._resets import ResetPoint, run_event_for_reset

from ..helpers.records import acceptance, at, event, run_seal, run_start, states


async def test_events_keep_causal_order(ledger: Ledger) -> None:
    """C1: events come back in the order they were recorded, across calls, with increasing `seq`."""
    await ledger.start_run(run_start())
    await ledger.record_events([event('1', 1, 'model_request_started', step=1)])
    await ledger.record_events(
        [
            event('1', 1, 'model_request_completed', step=1, when=2),
            event('2', 1, 'tool_call_started', when=3, tool_name='lookup', tool_call_id='call-1'),
        ]
    )
    await ledger.record_events([event('2', 1, 'tool_call_completed', when=4, tool_name='lookup', outcome='returned')])
    await ledger.seal_run(run_seal())

    events = await ledger.events('r1')
    assert [(e.activity_id, e.kind) for e in events] == [
        ('-', 'run_started'),
        ('1', 'model_request_started'),
        ('1', 'model_request_completed'),
        ('2', 'tool_call_started'),
        ('2', 'tool_call_completed'),
        ('-', 'run_completed'),
    ]
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)


async def test_event_fields_round_trip(ledger: Ledger) -> None:
    await ledger.start_run(run_start())
    original = event(
        '7',
        2,
        'tool_call_failed',
        when=5.25,
        scheduled=4.5,
        step=3,
        activity_type='agent__support__tool_call',
        tool_call_id='call-7',
        tool_name='refund',
        model_name='openai:gpt-5',
        duration_s=0.75,
        error=ErrorInfo(type='ValueError', message='amount must be positive — got -3', retryable=False),
        usage=Usage(requests=1, input_tokens=3, output_tokens=4, tool_calls=1),
        outcome='failed',
        detail='ünïcödé detail',
    )
    await ledger.record_events([original])

    stored = (await ledger.events('r1'))[-1]
    assert stored == original.with_seq(stored.seq).with_state('provisional')


async def test_events_of_one_run_only(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1'))
    await ledger.start_run(run_start('r2'))
    await ledger.record_events([event('1', 1, 'tool_call_started', run_id='r1')])
    await ledger.record_events([event('1', 1, 'tool_call_started', run_id='r2')])
    assert [e.run_id for e in await ledger.events('r1')] == ['r1', 'r1']
    assert [e.run_id for e in await ledger.events('r2')] == ['r2', 'r2']


async def test_concurrent_writes_all_land_with_distinct_seq(ledger: Ledger) -> None:
    """C1/C2: 50 concurrent `record_events` calls (one event each) are all stored, each with its own seq."""
    await ledger.start_run(run_start())
    await asyncio.gather(*(ledger.record_events([event(str(i), 1, 'tool_call_started')]) for i in range(50)))

    events = [e for e in await ledger.events('r1') if e.kind == 'tool_call_started']
    assert sorted(e.activity_id for e in events) == sorted(str(i) for i in range(50))
    assert len({e.seq for e in events}) == 50


async def test_concurrent_starts_events_and_seals_of_many_runs(ledger: Ledger) -> None:
    await asyncio.gather(*(ledger.start_run(run_start(f'r{i}', started=i)) for i in range(20)))
    await asyncio.gather(
        *(ledger.record_events([event('1', 1, 'model_request_started', run_id=f'r{i}')]) for i in range(20)),
        *(ledger.accept([acceptance('1', run_id=f'r{i}')]) for i in range(20)),
    )
    await asyncio.gather(*(ledger.seal_run(run_seal(f'r{i}')) for i in range(20)))

    runs = await ledger.runs(limit=100)
    assert len(runs) == 20
    assert {run.status for run in runs} == {'completed'}
    for i in range(20):
        assert [e.kind for e in await ledger.events(f'r{i}')] == [
            'run_started',
            'model_request_started',
            'run_completed',
        ]


async def test_duplicate_delivery_is_stored_once(ledger: Ledger) -> None:
    """C2: at-least-once delivery of the same start, event, acceptance and seal is stored once."""
    start = run_start()
    started = event('1', 1, 'model_request_started')
    completed = event('1', 1, 'model_request_completed', when=2)
    await ledger.start_run(start)
    await ledger.start_run(start)
    await ledger.record_events([started, started])
    await ledger.record_events([started, completed])
    await ledger.record_events([completed])
    await ledger.accept([acceptance('1')])
    await ledger.accept([acceptance('1'), acceptance('1')])
    first = await ledger.events('r1')
    await ledger.seal_run(run_seal())
    await ledger.seal_run(run_seal())

    events = await ledger.events('r1')
    assert [e.kind for e in events] == [
        'run_started',
        'model_request_started',
        'model_request_completed',
        'run_completed',
    ]
    assert [e.seq for e in events[:3]] == [e.seq for e in first]
    run = await ledger.run('r1')
    assert run.temporal_run_ids == ('t1',)
    assert run.status == 'completed'
    [step] = await ledger.steps('r1')
    assert (step.attempts, step.accepted_attempt, step.status) == (1, 1, 'completed')


async def test_late_duplicate_start_does_not_reopen_a_sealed_run(ledger: Ledger) -> None:
    """C2: a RunStart of a Temporal run already seen, redelivered after the seal, changes nothing."""
    await ledger.start_run(run_start('r1', 't1'))
    await ledger.start_run(run_start('r1', 't2', started=30))
    await ledger.seal_run(run_seal('r1', 't2', ended=60))

    await ledger.start_run(run_start('r1', 't1'))
    await ledger.start_run(run_start('r1', 't2', started=30))

    run = await ledger.run('r1')
    assert run.status == 'completed'
    assert run.temporal_run_ids == ('t1', 't2')
    assert run.ended_at == at(60)


async def test_seal_from_an_older_temporal_run_does_not_overwrite_the_latest(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1', 't1'))
    await ledger.start_run(run_start('r1', 't2', started=30))
    await ledger.seal_run(run_seal('r1', 't1', status='failed', ended=40, error=ErrorInfo('X', 'stale', False)))

    run = await ledger.run('r1')
    assert run.status == 'running'
    assert run.error is None

    await ledger.seal_run(run_seal('r1', 't2', ended=60))
    await ledger.seal_run(run_seal('r1', 't1', status='cancelled', ended=70))
    run = await ledger.run('r1')
    assert (run.status, run.ended_at, run.temporal_run_id) == ('completed', at(60), 't2')


async def test_seal_of_a_temporal_run_reset_past_its_start_is_recorded(ledger: Ledger) -> None:
    """C14: a reset past `run_started` replays the start from history; the new Temporal run's seal still lands."""
    await ledger.start_run(run_start('r1', 't1'))
    await ledger.seal_run(run_seal('r1', 't1', ended=60))
    await ledger.seal_run(run_seal('r1', 't2', status='failed', ended=90, error=ErrorInfo('X', 'after reset', False)))

    run = await ledger.run('r1')
    assert (run.temporal_run_ids, run.status, run.ended_at) == (('t1', 't2'), 'failed', at(90))
    # A seal of a run the record does not know that ended before the recorded end is a late one: ignored.
    await ledger.seal_run(run_seal('r1', 't0', status='cancelled', ended=70))
    assert await ledger.run('r1') == run


async def test_rows_of_a_temporal_run_the_record_does_not_name_are_abandoned_once_the_run_ended(
    ledger: Ledger,
) -> None:
    await ledger.start_run(run_start('r1', 't1'))
    await ledger.record_events([event('1', 1, 'tool_call_started', temporal_run_id='t0')])
    assert [e.state for e in await ledger.events('r1')][-1] == 'provisional'
    await ledger.seal_run(run_seal('r1', 't1'))
    assert [(e.temporal_run_id, e.state) for e in await ledger.events('r1')][1] == ('t0', 'abandoned')
    [step] = await ledger.steps('r1')
    assert step.status == 'abandoned'


async def test_replace_events_overwrites_by_key_and_keeps_the_place(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1'))
    await ledger.record_events([event('1', 1, 'tool_call_started'), event('1', 1, 'tool_call_failed')])
    await ledger.record_events([event('2', 1, 'tool_call_started')])
    stored = await ledger.events('r1')
    failed = next(e for e in stored if e.kind == 'tool_call_failed')

    # A divergent row: its key changes (failed -> completed), its place in the causal order stays.
    fixed = event('1', 1, 'tool_call_completed', outcome='returned').with_seq(failed.seq)
    await ledger.replace_events('r1', [failed.seq], [fixed])
    # A row whose key is kept gets the new content (no second row).
    await ledger.replace_events('r1', [], [event('2', 1, 'tool_call_started', tool_name='again')])

    after = await ledger.events('r1')
    assert [(e.activity_id, e.kind) for e in after] == [
        ('-', 'run_started'),
        ('1', 'tool_call_started'),
        ('1', 'tool_call_completed'),
        ('2', 'tool_call_started'),
    ]
    assert next(e for e in after if e.kind == 'tool_call_completed').seq == failed.seq
    assert after[-1].tool_name == 'again'
    assert len({e.key for e in after}) == len(after)
    # A replaced row is as idempotent as any other: the original write delivered again changes nothing.
    await ledger.record_events([event('1', 1, 'tool_call_completed', outcome='returned')])
    assert len(await ledger.events('r1')) == 4


async def test_replace_acceptances_and_update_run(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1'))
    await ledger.accept([acceptance('1', 'failed')])
    await ledger.replace_acceptances([acceptance('1', 'completed')])
    assert await ledger.acceptances('r1') == [acceptance('1', 'completed')]

    await ledger.update_run('r1', lambda run: replace(run, degraded=('step 1: tool_call_started',)))
    assert (await ledger.run('r1')).degraded == ('step 1: tool_call_started',)
    await ledger.update_run('r1', lambda run: None)
    assert (await ledger.run('r1')).degraded == ('step 1: tool_call_started',)
    await ledger.update_run('r1', lambda run: replace(run, degraded=()))
    assert (await ledger.run('r1')).degraded == ()
    with pytest.raises(RunNotFoundError):
        await ledger.acceptances('nope')


async def test_retried_activity_accepts_the_last_attempt(ledger: Ledger) -> None:
    """Attempt 1 failed, attempt 2 completed, the workflow accepted: attempt 2 accepted, attempt 1 abandoned."""
    await ledger.start_run(run_start())
    error = ErrorInfo(type='ModelHTTPError', message='429', retryable=True)
    usage = Usage(requests=1, input_tokens=10, output_tokens=5)
    await ledger.record_events(
        [
            event('1', 1, 'model_request_started', when=1, step=1),
            event('1', 1, 'model_request_failed', when=1.5, step=1, error=error),
            event('1', 2, 'model_request_started', when=2, step=1),
            event('1', 2, 'model_request_completed', when=3, step=1, usage=usage, duration_s=1.0),
        ]
    )
    await ledger.accept([acceptance('1')])

    assert states((await ledger.events('r1'))[1:]) == [
        ('1', 1, 'model_request_started', 'abandoned'),
        ('1', 1, 'model_request_failed', 'abandoned'),
        ('1', 2, 'model_request_started', 'accepted'),
        ('1', 2, 'model_request_completed', 'accepted'),
    ]
    [step] = await ledger.steps('r1')
    assert step.kind == 'model_request'
    assert step.step == 1
    assert step.attempts == 2
    assert step.accepted_attempt == 2
    assert step.status == 'completed'
    assert step.usage == usage
    assert step.error is None
    assert step.duration_s == 1.0


async def test_zombie_attempt_writing_late_stays_abandoned(ledger: Ledger) -> None:
    """Attempt 1 timed out, attempt 2 completed and was accepted, then attempt 1 writes `completed`: ignored."""
    await ledger.start_run(run_start())
    await ledger.record_events(
        [
            event('2', 1, 'tool_call_started', when=1, tool_name='refund'),
            event('2', 2, 'tool_call_started', when=11, tool_name='refund'),
            event('2', 2, 'tool_call_completed', when=12, tool_name='refund', outcome='returned', detail='ok'),
        ]
    )
    await ledger.accept([acceptance('2')])
    await ledger.record_events(
        [event('2', 1, 'tool_call_completed', when=20, tool_name='refund', outcome='returned', detail='zombie')]
    )

    assert states((await ledger.events('r1'))[1:]) == [
        ('2', 1, 'tool_call_started', 'abandoned'),
        ('2', 2, 'tool_call_started', 'accepted'),
        ('2', 2, 'tool_call_completed', 'accepted'),
        ('2', 1, 'tool_call_completed', 'abandoned'),
    ]
    [step] = await ledger.steps('r1')
    assert (step.attempts, step.accepted_attempt, step.status) == (2, 2, 'completed')
    assert step.tool_name == 'refund'
    assert step.outcome == 'returned'

    await ledger.seal_run(run_seal())
    [step] = await ledger.steps('r1')
    assert (step.accepted_attempt, step.status) == (2, 'completed')


async def test_unaccepted_events_are_provisional_then_abandoned(ledger: Ledger) -> None:
    await ledger.start_run(run_start())
    await ledger.record_events([event('1', 1, 'model_request_started'), event('1', 1, 'model_request_completed')])
    await ledger.record_events([event('2', 1, 'tool_call_started')])
    await ledger.accept([acceptance('1')])

    assert states((await ledger.events('r1'))[1:]) == [
        ('1', 1, 'model_request_started', 'accepted'),
        ('1', 1, 'model_request_completed', 'accepted'),
        ('2', 1, 'tool_call_started', 'provisional'),
    ]
    steps = await ledger.steps('r1')
    assert [(s.activity_id, s.accepted_attempt, s.status) for s in steps] == [
        ('1', 1, 'completed'),
        ('2', None, 'running'),
    ]

    await ledger.seal_run(run_seal(status='cancelled'))
    assert states((await ledger.events('r1'))[1:-1]) == [
        ('1', 1, 'model_request_started', 'accepted'),
        ('1', 1, 'model_request_completed', 'accepted'),
        ('2', 1, 'tool_call_started', 'abandoned'),
    ]
    steps = await ledger.steps('r1')
    assert [(s.activity_id, s.accepted_attempt, s.status) for s in steps] == [
        ('1', 1, 'completed'),
        ('2', None, 'abandoned'),
    ]


async def test_reset_abandons_the_older_temporal_runs_unaccepted_events(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1', 't1'))
    await ledger.record_events([event('1', 1, 'model_request_started'), event('1', 1, 'model_request_completed')])
    await ledger.accept([acceptance('1')])
    await ledger.record_events([event('2', 1, 'tool_call_started')])

    # The workflow is reset: a new Temporal run of the same ledger run replays from the accepted step.
    await ledger.start_run(run_start('r1', 't2', started=30))
    await ledger.record_events([event('2', 1, 'tool_call_started', temporal_run_id='t2', when=31, scheduled=31)])

    run = await ledger.run('r1')
    assert run.temporal_run_ids == ('t1', 't2')
    assert run.temporal_run_id == 't2'
    assert run.status == 'running'
    events = await ledger.events('r1')
    assert [(e.temporal_run_id, e.activity_id, e.kind, e.state) for e in events] == [
        ('t1', '-', 'run_started', 'accepted'),
        ('t1', '1', 'model_request_started', 'accepted'),
        ('t1', '1', 'model_request_completed', 'accepted'),
        ('t1', '2', 'tool_call_started', 'abandoned'),
        ('t2', '-', 'run_started', 'accepted'),
        ('t2', '2', 'tool_call_started', 'provisional'),
    ]
    steps = await ledger.steps('r1')
    assert [(s.temporal_run_id, s.activity_id, s.status) for s in steps] == [
        ('t1', '1', 'completed'),
        ('t1', '2', 'abandoned'),
        ('t2', '2', 'running'),
    ]


async def test_reset_reopens_a_sealed_run(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1', 't1'))
    await ledger.seal_run(run_seal('r1', 't1', status='failed', error=ErrorInfo('X', 'boom', False)))
    await ledger.start_run(run_start('r1', 't2', started=90))

    run = await ledger.run('r1')
    assert (run.status, run.ended_at, run.error) == ('running', None, None)
    assert run.updated_at == at(90)


async def test_a_reset_supersedes_the_base_runs_acceptance_of_a_step_the_new_run_accepted_again(ledger: Ledger) -> None:
    """C14: after a `run_reset` event (new Temporal run t2 reset from t1), a step t2 ran and accepted again is
    accepted once, in t2; t1's attempt of it is `superseded`, and a step only t1 ran stays accepted."""
    await ledger.start_run(run_start())
    await ledger.record_events(
        [
            event('1', 1, 'model_request_started', step=1),
            event('1', 1, 'model_request_completed', step=1, when=2, usage=Usage(requests=1, input_tokens=5)),
            event('2', 1, 'model_request_started', step=2, when=3),
            event('2', 1, 'model_request_completed', step=2, when=4, usage=Usage(requests=1, input_tokens=7)),
        ]
    )
    await ledger.accept([acceptance('1'), acceptance('2')])
    await ledger.seal_run(run_seal(ended=5))
    reset = ResetPoint(temporal_run_id='t2', base_run_id='t1', event_id=10, reason='again', identity='ops', at=at(6))
    await ledger.record_events([run_event_for_reset('r1', 'wf-r1', reset)])
    await ledger.record_events(
        [
            event('2', 1, 'model_request_started', temporal_run_id='t2', step=2, when=7, scheduled=7),
            event('2', 1, 'model_request_completed', temporal_run_id='t2', step=2, when=8, scheduled=7),
        ]
    )
    await ledger.accept([acceptance('2', temporal_run_id='t2')])
    await ledger.seal_run(run_seal(temporal_run_id='t2', ended=9))

    steps = {(s.temporal_run_id, s.activity_id): s for s in await ledger.steps('r1')}
    assert (steps['t1', '1'].status, steps['t1', '1'].accepted_attempt) == ('completed', 1)
    assert (steps['t1', '2'].status, steps['t1', '2'].accepted_attempt) == ('superseded', None)
    assert (steps['t2', '2'].status, steps['t2', '2'].accepted_attempt) == ('completed', 1)
    events = await ledger.events('r1')
    assert {e.state for e in events if e.temporal_run_id == 't1' and e.activity_id == '2'} == {'superseded'}
    [recorded] = [ResetPoint.from_event(e) for e in events if e.kind == 'run_reset']
    assert recorded == reset
    # Recording the same reset again (another attempt of the new run saw it first) adds nothing.
    await ledger.record_events([run_event_for_reset('r1', 'wf-r1', reset)])
    assert sum(e.kind == 'run_reset' for e in await ledger.events('r1')) == 1
