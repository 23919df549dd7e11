"""Conformance: run records on every backend: start, seal, park and resume, listing and paging."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agentledger.errors import RunNotFoundError, UnknownRunIdError
from agentledger.ledger import Ledger, resolve_run_id
from agentledger.model import ErrorInfo, RunStart, Usage
from agentledger.model._resets import ResetPoint

from ..helpers.records import T0, at, event, ids, run_seal, run_start


async def test_start_records_every_field(ledger: Ledger) -> None:
    await ledger.start_run(
        run_start(
            conversation_id='c1',
            parent_run_id='p1',
            parent_tool_call_id='call-9',
            prompt_preview='What is my balance?',
        )
    )

    run = await ledger.run('r1')
    assert run.run_id == 'r1'
    assert run.workflow_id == 'wf-r1'
    assert run.temporal_run_ids == ('t1',)
    assert run.temporal_run_id == 't1'
    assert run.agent_name == 'support'
    assert run.status == 'running'
    assert run.started_at == T0
    assert run.updated_at == T0
    assert run.task_queue == 'agents'
    assert run.conversation_id == 'c1'
    assert run.parent_run_id == 'p1'
    assert run.parent_tool_call_id == 'call-9'
    assert run.prompt_preview == 'What is my balance?'
    assert run.ended_at is None
    assert run.duration_s is None
    assert run.usage == Usage()
    assert run.error is None
    assert run.output_preview is None
    assert run.forked_from is None

    [started] = await ledger.events('r1')
    assert (started.kind, started.activity_id, started.attempt, started.state) == ('run_started', '-', 0, 'accepted')
    assert started.detail == 'What is my balance?'
    assert started.seq > 0


async def test_seal_records_how_the_run_ended(ledger: Ledger) -> None:
    await ledger.start_run(run_start())
    usage = Usage(requests=2, input_tokens=100, output_tokens=40, tool_calls=1)
    await ledger.seal_run(run_seal(ended=90, usage=usage, output_preview='Your balance is 12.'))

    run = await ledger.run('r1')
    assert run.status == 'completed'
    assert run.ended_at == at(90)
    assert run.updated_at == at(90)
    assert run.duration_s == 90
    assert run.usage == usage
    assert run.error is None
    assert run.output_preview == 'Your balance is 12.'

    kinds = [(e.kind, e.state) for e in await ledger.events('r1')]
    assert kinds == [('run_started', 'accepted'), ('run_completed', 'accepted')]
    completed = (await ledger.events('r1'))[-1]
    assert completed.usage == usage
    assert completed.detail == 'Your balance is 12.'


async def test_failed_seal_keeps_the_error(ledger: Ledger) -> None:
    await ledger.start_run(run_start())
    error = ErrorInfo(type='ModelHTTPError', message='503 from the provider', retryable=True)
    await ledger.seal_run(run_seal(status='failed', error=error))

    run = await ledger.run('r1')
    assert run.status == 'failed'
    assert run.error == error
    [_, failed] = await ledger.events('r1')
    assert failed.kind == 'run_failed'
    assert failed.error == error


async def test_park_and_resume_keep_the_run_open_c15(ledger: Ledger) -> None:
    """C15: a parked run is open (its steps stay undecided, not abandoned); resume makes it running again."""
    await ledger.start_run(run_start())
    await ledger.record_events([event('2', 1, 'tool_call_started')])
    error = ErrorInfo(type='RuntimeError', message='the downstream system is down', retryable=False)
    await ledger.park_run('r1', error, at(30))
    await ledger.park_run('r1', error, at(30))  # a repeated delivery changes nothing
    run = await ledger.run('r1')
    assert (run.status, run.error, run.updated_at, run.ended_at) == ('parked', error, at(30), None)
    assert [s.status for s in await ledger.steps('r1')] == ['running']

    await ledger.resume_run('r1', at(40))
    run = await ledger.run('r1')
    assert (run.status, run.error, run.updated_at) == ('running', None, at(40))
    await ledger.resume_run('r1', at(50))  # not parked: nothing changes
    assert (await ledger.run('r1')).updated_at == at(40)

    await ledger.seal_run(run_seal(ended=90))
    await ledger.park_run('r1', error, at(95))  # an ended run stays ended
    assert (await ledger.run('r1')).status == 'completed'
    with pytest.raises(RunNotFoundError, match='no-such-run'):
        await ledger.park_run('no-such-run', error, at(30))
    with pytest.raises(RunNotFoundError, match='no-such-run'):
        await ledger.resume_run('no-such-run', at(30))


async def test_datetimes_keep_their_utc_offset(ledger: Ledger) -> None:
    plus_two = timezone(timedelta(hours=2))
    start = RunStart(
        run_id='r1',
        workflow_id='wf-r1',
        temporal_run_id='t1',
        agent_name='support',
        started_at=datetime(2025, 3, 1, 14, 0, 0, 123456, tzinfo=plus_two),
        task_queue='agents',
    )
    await ledger.start_run(start)
    run = await ledger.run('r1')
    assert run.started_at == start.started_at
    assert run.started_at.utcoffset() == timedelta(hours=2)


async def seed_runs(ledger: Ledger) -> None:
    """Five runs, one second apart (r1 oldest), with different agents, statuses and relations."""
    await ledger.start_run(run_start('r1', started=1, agent='support', conversation_id='c1'))
    await ledger.start_run(run_start('r2', started=2, agent='billing', conversation_id='c1'))
    await ledger.start_run(run_start('r3', started=3, agent='support', parent_run_id='r1', workflow_id='wf-shared'))
    await ledger.start_run(run_start('r4', started=4, agent='support', conversation_id='c2'))
    await ledger.start_run(run_start('r5', started=5, agent='billing', parent_run_id='r1'))
    await ledger.seal_run(run_seal('r2', ended=10))
    await ledger.seal_run(run_seal('r4', status='failed', ended=10))


async def test_runs_are_listed_newest_first(ledger: Ledger) -> None:
    await seed_runs(ledger)
    assert ids(await ledger.runs()) == ['r5', 'r4', 'r3', 'r2', 'r1']


@pytest.mark.parametrize(
    ('filters', 'expected'),
    [
        ({'agent': 'support'}, ['r4', 'r3', 'r1']),
        ({'agent': 'billing'}, ['r5', 'r2']),
        ({'status': 'running'}, ['r5', 'r3', 'r1']),
        ({'status': 'completed'}, ['r2']),
        ({'status': 'failed'}, ['r4']),
        ({'conversation_id': 'c1'}, ['r2', 'r1']),
        ({'parent_run_id': 'r1'}, ['r5', 'r3']),
        ({'workflow_id': 'wf-shared'}, ['r3']),
        ({'agent': 'support', 'status': 'running'}, ['r3', 'r1']),
        ({'agent': 'billing', 'conversation_id': 'c2'}, []),
        ({'agent': 'nobody'}, []),
    ],
)
async def test_runs_filters(ledger: Ledger, filters: dict[str, Any], expected: list[str]) -> None:
    await seed_runs(ledger)
    assert ids(await ledger.runs(**filters)) == expected


async def test_runs_limit_and_before_paginate(ledger: Ledger) -> None:
    await seed_runs(ledger)
    assert ids(await ledger.runs(limit=2)) == ['r5', 'r4']
    assert ids(await ledger.runs(limit=2, before='r4')) == ['r3', 'r2']
    assert ids(await ledger.runs(limit=2, before='r2')) == ['r1']
    assert await ledger.runs(limit=2, before='r1') == []
    # `before` combines with filters: the cursor need not match the filter itself.
    assert ids(await ledger.runs(agent='support', before='r5')) == ['r4', 'r3', 'r1']
    assert ids(await ledger.runs(agent='support', limit=1, before='r3')) == ['r1']


async def test_paging_walks_every_run_once(ledger: Ledger) -> None:
    # Several runs share a start time: ties are broken by run id, so no page repeats or skips one.
    for index in range(7):
        await ledger.start_run(run_start(f'r{index}', started=index // 3))
    seen: list[str] = []
    before: str | None = None
    while page := await ledger.runs(limit=3, before=before):
        seen.extend(ids(page))
        before = page[-1].run_id
    assert seen == ['r6', 'r5', 'r4', 'r3', 'r2', 'r1', 'r0']


async def test_runs_order_by_instant_across_utc_offsets(ledger: Ledger) -> None:
    """10:30+02:00 is 08:30 UTC: older than 09:00 UTC although its text sorts later."""
    early = datetime(2025, 3, 1, 10, 30, tzinfo=timezone(timedelta(hours=2)))
    late = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    for run_id, started_at in (('early', early), ('late', late)):
        await ledger.start_run(
            RunStart(
                run_id=run_id,
                workflow_id=f'wf-{run_id}',
                temporal_run_id='t1',
                agent_name='support',
                started_at=started_at,
                task_queue='agents',
            )
        )
    assert ids(await ledger.runs()) == ['late', 'early']
    assert ids(await ledger.runs(before='late')) == ['early']


async def test_runs_rejects_a_limit_below_one(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match='limit'):
        await ledger.runs(limit=0)


async def test_runs_finds_the_run_a_temporal_run_belongs_to(ledger: Ledger) -> None:
    """`runs(temporal_run_id=...)` lists the run whose record names that Temporal run, matched whole."""
    first, second, reset = (str(uuid.UUID(int=n)) for n in (1, 2, 3))
    await ledger.start_run(run_start('r1', first, started=1))
    await ledger.start_run(run_start('r2', second, started=2))
    await ledger.start_run(run_start('r1', reset, started=3))
    assert [r.run_id for r in await ledger.runs(temporal_run_id=reset)] == ['r1']
    assert [r.run_id for r in await ledger.runs(temporal_run_id=second)] == ['r2']
    assert await ledger.runs(temporal_run_id=first[:8]) == []
    assert await ledger.runs(temporal_run_id=first, agent='other') == []


async def test_resolve_run_id_takes_a_ledger_run_id_a_workflow_id_or_a_temporal_run_id_c17(ledger: Ledger) -> None:
    """Every id the Temporal UI shows names the run; an id that names none fails naming the kinds tried (C17)."""
    temporal_run_id = str(uuid.UUID(int=7))
    await ledger.start_run(run_start('r1', temporal_run_id, started=1, workflow_id='orders-1'))
    await ledger.start_run(run_start('r2', str(uuid.UUID(int=8)), started=2, workflow_id='orders-1'))
    assert await resolve_run_id(ledger, 'r1') == 'r1'
    assert await resolve_run_id(ledger, 'orders-1') == 'r2'  # the workflow's latest run
    assert await resolve_run_id(ledger, temporal_run_id) == 'r1'
    # A ledger run id of the derived form names its run even when the record is lost (`reconcile` rebuilds it).
    assert await resolve_run_id(ledger, 'run-0123456789abcdef0123') == 'run-0123456789abcdef0123'
    # Any other `run-` id may be a user's workflow id.
    await ledger.start_run(run_start('r3', str(uuid.UUID(int=10)), started=3, workflow_id='run-42'))
    assert await resolve_run_id(ledger, 'run-42') == 'r3'
    for unknown, tried in (
        ('orders-2', ('ledger run id', 'workflow id')),
        ('run-43', ('ledger run id', 'workflow id')),
        (str(uuid.UUID(int=9)), ('ledger run id', 'workflow id', 'Temporal run id')),
    ):
        with pytest.raises(UnknownRunIdError) as raised:
            await resolve_run_id(ledger, unknown)
        assert raised.value.tried == tried and isinstance(raised.value, RunNotFoundError)
        assert (
            str(raised.value)
            == f'no ledger run goes by {unknown!r} (tried it as a {", ".join(tried[:-1])} or {tried[-1]})'
        )


async def test_a_reset_names_the_run_by_its_new_temporal_run_before_that_run_seals(ledger: Ledger) -> None:
    """Recording a reset lists its new Temporal run in the run record (once) and opens the run again, so the id
    the Temporal UI shows for the reset run names the ledger run while it parks; its seal then lands."""
    first, reset_run = str(uuid.UUID(int=11)), str(uuid.UUID(int=12))
    await ledger.start_run(run_start('r1', first, started=1))
    await ledger.seal_run(run_seal('r1', first, ended=2))
    point = ResetPoint(temporal_run_id=reset_run, base_run_id=first, event_id=4, reason='why', identity='who', at=at(3))
    for _ in range(2):
        await ledger.record_reset('r1', 'wf-r1', point)
    record = await ledger.run('r1')
    assert (record.temporal_run_ids, record.status, record.ended_at) == ((first, reset_run), 'running', None)
    assert await resolve_run_id(ledger, reset_run) == 'r1'
    assert [r.run_id for r in await ledger.runs(status='running')] == ['r1']
    assert [ResetPoint.from_event(e) for e in await ledger.events('r1') if e.kind == 'run_reset'] == [point]
    await ledger.park_run('r1', ErrorInfo(type='ModelHTTPError', message='down', retryable=True), at(4))
    assert (await ledger.run('r1')).status == 'parked'
    await ledger.seal_run(run_seal('r1', reset_run, ended=5))
    assert (await ledger.run('r1')).status == 'completed'
