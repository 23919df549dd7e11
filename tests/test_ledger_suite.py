"""The ledger conformance suite: every backend must pass every test here.

Backend-independent tests take the `ledger` fixture, which is parametrised over all backends (add a
backend to `BACKENDS` and `make_ledger`). SQLite-specific behaviour (persistence, schema versions,
corruption, locking) is tested at the end against `SqliteLedger` directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import random
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import (
    BinaryContent,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.test import TestModel
from pydantic_ai.tools import RunContext
from pydantic_ai.usage import RequestUsage, RunUsage

import agentledger.tools._once
from agentledger import once
from agentledger.errors import (
    AgentLedgerError,
    EffectBusyError,
    EffectNotFoundError,
    EffectStateError,
    EffectUnknownError,
    LedgerConfigError,
    LedgerCorruptionError,
    LedgerError,
    LedgerUnavailableError,
    RunNotFoundError,
    SnapshotNotFoundError,
)
from agentledger.ledger import Ledger, MemoryLedger, RetryPolicy
from agentledger.ledger._chunks import Manifest, assemble, split
from agentledger.ledger._scopes import Scopes
from agentledger.ledger.backends.memory import MemoryStore
from agentledger.ledger.backends.s3 import S3Ledger
from agentledger.ledger.backends.sqlite import SCHEMA_VERSION, SqliteLedger
from agentledger.ledger.backends.sqlite._schema import MIGRATIONS as _MIGRATIONS
from agentledger.model import Acceptance, ErrorInfo, RunSeal, RunStart, StepEvent, Usage
from agentledger.model._content import content_hash, encode_messages
from agentledger.model._effects import EffectRecord
from agentledger.model._journal import JournalEntry
from agentledger.model._keyed import EFFECTS
from agentledger.model._records import (
    AcceptanceOutcome,
    EventKind,
    ForkRef,
    PayloadReference,
    RunStatus,
    SnapshotRecord,
    ToolEffect,
)
from agentledger.tools._context import ToolContext, tool_context

from .s3_server import s3_ledger, shared_s3_server
from .s3_server import stored_content as s3_stored_content
from .s3_server import tamper as s3_tamper

BACKENDS = ['memory', 'sqlite', 's3']

FAST_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def make_ledger(backend: str, tmp_path: Path) -> Ledger:
    """The one place that knows how to build each backend (unopened)."""
    if backend == 'memory':
        return MemoryLedger()
    if backend == 'sqlite':
        return SqliteLedger(tmp_path / 'ledger.db', retry=FAST_RETRY)
    if backend == 's3':
        return s3_ledger(retry=FAST_RETRY)
    raise ValueError(f'unknown backend {backend!r}')


@pytest.fixture(params=BACKENDS)
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    async with make_ledger(request.param, tmp_path) as opened:
        yield opened


# --- record builders --------------------------------------------------------------------------------


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run_start(
    run_id: str = 'r1',
    temporal_run_id: str = 't1',
    *,
    started: float = 0,
    agent: str = 'support',
    workflow_id: str | None = None,
    **fields: Any,
) -> RunStart:
    return RunStart(
        run_id=run_id,
        workflow_id=workflow_id or f'wf-{run_id}',
        temporal_run_id=temporal_run_id,
        agent_name=agent,
        started_at=at(started),
        task_queue='agents',
        **fields,
    )


def run_seal(
    run_id: str = 'r1',
    temporal_run_id: str = 't1',
    *,
    status: RunStatus = 'completed',
    ended: float = 60,
    workflow_id: str | None = None,
    **fields: Any,
) -> RunSeal:
    return RunSeal(
        run_id=run_id,
        workflow_id=workflow_id or f'wf-{run_id}',
        temporal_run_id=temporal_run_id,
        status=status,
        ended_at=at(ended),
        **fields,
    )


def event(
    activity_id: str,
    attempt: int,
    kind: EventKind,
    *,
    run_id: str = 'r1',
    temporal_run_id: str = 't1',
    when: float = 1,
    scheduled: float | None = None,
    **fields: Any,
) -> StepEvent:
    """An activity event; each attempt is scheduled at `scheduled` (by default: its attempt number in seconds)."""
    return StepEvent(
        run_id=run_id,
        workflow_id=f'wf-{run_id}',
        temporal_run_id=temporal_run_id,
        activity_id=activity_id,
        attempt=attempt,
        kind=kind,
        timestamp=at(when),
        scheduled_at=at(scheduled if scheduled is not None else attempt),
        **fields,
    )


def acceptance(
    activity_id: str, outcome: AcceptanceOutcome = 'completed', *, run_id: str = 'r1', temporal_run_id: str = 't1'
) -> Acceptance:
    return Acceptance(
        run_id=run_id,
        workflow_id=f'wf-{run_id}',
        temporal_run_id=temporal_run_id,
        activity_id=activity_id,
        outcome=outcome,
    )


def states(events: list[StepEvent]) -> list[tuple[str, int, str, str]]:
    return [(e.activity_id, e.attempt, e.kind, e.state) for e in events]


# --- runs -------------------------------------------------------------------------------------------


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


# --- listing ----------------------------------------------------------------------------------------


async def seed_runs(ledger: Ledger) -> None:
    """Five runs, one second apart (r1 oldest), with different agents, statuses and relations."""
    await ledger.start_run(run_start('r1', started=1, agent='support', conversation_id='c1'))
    await ledger.start_run(run_start('r2', started=2, agent='billing', conversation_id='c1'))
    await ledger.start_run(run_start('r3', started=3, agent='support', parent_run_id='r1', workflow_id='wf-shared'))
    await ledger.start_run(run_start('r4', started=4, agent='support', conversation_id='c2'))
    await ledger.start_run(run_start('r5', started=5, agent='billing', parent_run_id='r1'))
    await ledger.seal_run(run_seal('r2', ended=10))
    await ledger.seal_run(run_seal('r4', status='failed', ended=10))


def ids(runs: list[Any]) -> list[str]:
    return [run.run_id for run in runs]


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


# --- events -----------------------------------------------------------------------------------------


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


# --- idempotency ------------------------------------------------------------------------------------


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


# --- repairs (reconcile) --------------------------------------------------------------------------------


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


# --- accepted-attempt derivation --------------------------------------------------------------------


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


# --- failure reporting ------------------------------------------------------------------------------


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


# --- snapshots --------------------------------------------------------------------------------------
#
# Snapshot ids embed the run id and must parse back to it, so these runs are named `run-...`.


def conversation(steps: int) -> list[ModelMessage]:
    """A support agent's history over `steps` model requests: a prompt, then per step a tool round trip.

    Model request k (1-based) sees the first `prefix(k)` messages; the last response answers in text.
    Every message differs from every other (ids, arguments, timestamps), as in a real run.
    """
    messages: list[ModelMessage] = [
        ModelRequest(
            parts=[
                SystemPromptPart('You are a support agent for ACME. Look orders up before answering.', timestamp=at(0)),
                UserPromptPart(f'Where are my {steps - 1} orders?', timestamp=at(0)),
            ],
            timestamp=at(0),
        )
    ]
    for k in range(1, steps):
        messages.append(
            ModelResponse(
                parts=[
                    TextPart(f'Let me look up order {k}.'),
                    ToolCallPart('lookup_order', {'order_id': f'A-{k:04d}'}, tool_call_id=f'call-{k}'),
                ],
                usage=RequestUsage(input_tokens=100 + 40 * k, output_tokens=12),
                model_name='test-model',
                timestamp=at(k),
            )
        )
        messages.append(
            ModelRequest(
                parts=[
                    ToolReturnPart(
                        'lookup_order',
                        {'order_id': f'A-{k:04d}', 'status': 'shipped', 'eta_days': k % 5},
                        tool_call_id=f'call-{k}',
                        timestamp=at(k + 0.5),
                    )
                ],
                timestamp=at(k + 0.5),
            )
        )
    messages.append(
        ModelResponse(
            parts=[TextPart(f'All {steps - 1} orders have shipped.')],
            usage=RequestUsage(input_tokens=100 + 40 * steps, output_tokens=9),
            model_name='test-model',
            timestamp=at(steps),
        )
    )
    return messages


def prefix(step: int) -> int:
    """How many messages of `conversation()` model request `step` sees."""
    return 2 * step - 1


def dumped(messages: list[ModelMessage]) -> bytes:
    return ModelMessagesTypeAdapter.dump_json(messages)


async def snapshot_steps(
    ledger: Ledger, run_id: str, messages: list[ModelMessage], steps: range, *, final: bool = False
) -> list[SnapshotRecord]:
    """Snapshot `messages` at each model-request boundary in `steps` (and as `final` after the last)."""
    records: list[SnapshotRecord] = []
    for step in steps:
        record = await ledger.write_snapshot(
            run_id=run_id, temporal_run_id='t1', step=step, kind='model_request', messages=messages[: prefix(step)]
        )
        assert record is not None
        records.append(record)
    if final:
        record = await ledger.write_snapshot(
            run_id=run_id, temporal_run_id='t1', step=steps[-1], kind='final', messages=messages
        )
        assert record is not None
        records.append(record)
    return records


# Test-only views of what a backend stores, to check storage itself (C7, C8) and to corrupt it (C17).
# A new backend adds its branch here; the ledger's public API has no such reads on purpose.


def stored_content(ledger: Ledger) -> tuple[int, int]:
    """How many distinct messages and blobs the backend holds."""
    if isinstance(ledger, MemoryLedger):
        return len(ledger.store._messages), len(ledger.store._blobs)
    if isinstance(ledger, SqliteLedger):
        with closing(sqlite3.connect(ledger.store.path)) as raw:
            [(messages,)] = raw.execute('SELECT COUNT(*) FROM messages').fetchall()
            [(blobs,)] = raw.execute('SELECT COUNT(*) FROM blobs').fetchall()
        return messages, blobs
    if isinstance(ledger, S3Ledger):
        return s3_stored_content(ledger)
    raise NotImplementedError(f'no storage view for {type(ledger).__name__}: add one to stored_content')


def tamper(ledger: Ledger, table: str, digest: str, data: bytes | None) -> None:
    """Overwrite (or, with `None`, delete) one stored message or blob behind the ledger's back."""
    if isinstance(ledger, MemoryLedger):
        store = ledger.store._messages if table == 'messages' else ledger.store._blobs
        if data is None:
            del store[digest]
        else:
            store[digest] = data
        return
    if isinstance(ledger, SqliteLedger):
        if data is None:
            changed = raw_sql(Path(ledger.store.path), f'DELETE FROM {table} WHERE hash = ?', (digest,))
        else:
            changed = raw_sql(Path(ledger.store.path), f'UPDATE {table} SET data = ? WHERE hash = ?', (data, digest))
        assert changed == 1
        return
    if isinstance(ledger, S3Ledger):
        s3_tamper(ledger, table, digest, data)
        return
    raise NotImplementedError(f'no tampering for {type(ledger).__name__}: add it to tamper')


async def test_snapshots_rebuild_each_prefix_and_store_each_message_once(ledger: Ledger) -> None:
    """C7/C8: 30 steps, one snapshot per model request plus `final`; each rebuilds its exact history,
    each adds only what its parent lacks, and storage holds each distinct message once."""
    steps = 30
    messages = conversation(steps)
    encoded = [m.hash for m in encode_messages(messages)]
    assert len(set(encoded)) == len(messages)
    await ledger.start_run(run_start('run-a'))

    records = await snapshot_steps(ledger, 'run-a', messages, range(1, steps + 1), final=True)

    assert await ledger.snapshots('run-a') == records
    parent: SnapshotRecord | None = None
    for record in records:
        count = len(messages) if record.kind == 'final' else prefix(record.step)
        assert record.run_id == 'run-a'
        assert record.message_count == count
        assert record.parent_id == (parent.snapshot_id if parent is not None else None)
        start = parent.message_count if parent is not None else 0
        assert record.new_hashes == tuple(encoded[start:count])
        rebuilt = await ledger.snapshot(record.snapshot_id)
        assert rebuilt.record == record
        assert rebuilt.snapshot_id == record.snapshot_id
        assert dumped(rebuilt.messages) == dumped(messages[:count])
        parent = record
    assert stored_content(ledger) == (len(messages), 0)


async def test_snapshot_written_twice_is_stored_once(ledger: Ledger) -> None:
    """C7: a redelivered snapshot write (same run, step, kind and history) is the same snapshot, stored once."""
    messages = conversation(3)
    await ledger.start_run(run_start('run-a'))
    [first_step] = await snapshot_steps(ledger, 'run-a', messages, range(1, 2))
    [first] = await snapshot_steps(ledger, 'run-a', messages, range(2, 3))
    [again] = await snapshot_steps(ledger, 'run-a', messages, range(2, 3))

    assert again.snapshot_id == first.snapshot_id
    assert await ledger.snapshots('run-a') == [first_step, first]
    assert stored_content(ledger) == (prefix(2), 0)
    # What the repeated write returns describes the stored snapshot, not a link to itself.
    assert (again.parent_id, again.new_hashes, again.message_count) == (
        first.parent_id,
        first.new_hashes,
        first.message_count,
    )


async def test_history_with_an_unanswered_tool_call_is_not_stored(ledger: Ledger) -> None:
    """C5: a history ending in a tool call nobody answered is no continuation point: nothing is stored."""
    messages = conversation(3)
    await ledger.start_run(run_start('run-a'))
    dangling = messages[: prefix(2) + 1]
    assert isinstance(dangling[-1], ModelResponse)
    assert any(isinstance(part, ToolCallPart) for part in dangling[-1].parts)

    record = await ledger.write_snapshot(
        run_id='run-a', temporal_run_id='t1', step=2, kind='model_request', messages=dangling
    )

    assert record is None
    assert await ledger.snapshots('run-a') == []
    assert stored_content(ledger) == (0, 0)
    with pytest.raises(SnapshotNotFoundError):
        await ledger.latest_snapshot('run-a')


async def test_forked_run_chains_onto_its_seed_without_copying(ledger: Ledger) -> None:
    """C7/C9/C10: a run seeded from another run's snapshot stores only its new messages, linked to the seed."""
    messages = conversation(4)
    await ledger.start_run(run_start('run-a'))
    await snapshot_steps(ledger, 'run-a', messages, range(1, 5), final=True)
    seed = await ledger.snapshot_at_step('run-a', 2)
    fork = ForkRef(run_id='run-a', snapshot_id=seed.snapshot_id, reason='fork')
    await ledger.start_run(run_start('run-b', started=100, forked_from=fork))
    before = stored_content(ledger)

    prompt = ModelRequest(
        parts=[UserPromptPart('Actually, cancel order A-0001.', timestamp=at(101))], timestamp=at(101)
    )
    history = [*(await ledger.snapshot(seed.snapshot_id)).messages, prompt]
    record = await ledger.write_snapshot(
        run_id='run-b', temporal_run_id='t1', step=1, kind='model_request', messages=history
    )

    assert record is not None
    assert record.parent_id == seed.snapshot_id
    assert record.new_hashes == (encode_messages([prompt])[0].hash,)
    assert record.message_count == prefix(2) + 1
    assert stored_content(ledger) == (before[0] + 1, before[1])
    rebuilt = await ledger.snapshot(record.snapshot_id)
    assert dumped(rebuilt.messages) == dumped([*messages[: prefix(2)], prompt])

    assert (await ledger.run('run-b')).forked_from == fork
    assert (await ledger.run('run-a')).forked_from is None
    assert ids(await ledger.runs(forked_from_run_id='run-a')) == ['run-b']
    assert await ledger.runs(forked_from_run_id='run-b') == []


def image(size: int, seed: int) -> bytes:
    """Incompressible bytes, like a real PNG or JPEG."""
    return random.Random(seed).randbytes(size)


def multimodal_history(prompt: str, photo: bytes, chart: bytes, *, offset: float = 0) -> list[ModelMessage]:
    """A user sends a photo; the model calls a tool that returns a chart image alongside text."""
    return [
        ModelRequest(
            parts=[UserPromptPart([prompt, BinaryContent(data=photo, media_type='image/png')], timestamp=at(offset))],
            timestamp=at(offset),
        ),
        ModelResponse(
            parts=[
                TextPart('I will fetch the delivery chart.'),
                ToolCallPart('delivery_chart', {'order_id': 'A-0001'}, tool_call_id=f'call-chart-{offset}'),
            ],
            model_name='test-model',
            timestamp=at(offset + 1),
        ),
        ModelRequest(
            parts=[
                ToolReturnPart(
                    'delivery_chart',
                    ['Deliveries per day:', BinaryContent(data=chart, media_type='image/jpeg')],
                    tool_call_id=f'call-chart-{offset}',
                    timestamp=at(offset + 2),
                )
            ],
            timestamp=at(offset + 2),
        ),
    ]


def binary_parts(messages: list[ModelMessage]) -> list[bytes]:
    found: list[bytes] = []
    for message in messages:
        for part in message.parts:
            content = getattr(part, 'content', None)
            if isinstance(content, list):
                found.extend(item.data for item in content if isinstance(item, BinaryContent))
    return found


async def test_large_binary_content_round_trips_and_is_stored_once(ledger: Ledger) -> None:
    """C8: a 100 KB image in a prompt and a 50 KB one in a tool return come back byte-identical; the
    same image in two snapshots and two runs is one stored blob (C7)."""
    photo, chart = image(100 * 1024, seed=1), image(50 * 1024, seed=2)
    await ledger.start_run(run_start('run-a'))
    await ledger.start_run(run_start('run-b', started=10))
    first = multimodal_history('Is my parcel damaged?', photo, chart)
    second = multimodal_history('Same parcel, another question.', photo, chart, offset=10)

    [one, two] = await snapshot_steps(ledger, 'run-a', first, range(1, 3))
    [other] = await snapshot_steps(ledger, 'run-b', second, range(2, 3))

    for record, messages in ((one, first[:1]), (two, first), (other, second)):
        rebuilt = (await ledger.snapshot(record.snapshot_id)).messages
        assert dumped(rebuilt) == dumped(messages)
        assert binary_parts(rebuilt) == binary_parts(messages)
    assert binary_parts((await ledger.snapshot(two.snapshot_id)).messages) == [photo, chart]
    assert stored_content(ledger) == (len(first) + len(second), 2)


async def test_altered_message_is_reported_as_corruption(ledger: Ledger) -> None:
    """C17: a stored message that no longer matches its hash raises LedgerCorruptionError naming it."""
    messages = conversation(3)
    await ledger.start_run(run_start('run-a'))
    [_, record] = await snapshot_steps(ledger, 'run-a', messages, range(1, 3))
    digest = record.new_hashes[-1]
    [original] = (await ledger.store.read_messages([digest])).values()
    tamper(ledger, 'messages', digest, original.replace(b'shipped', b'lost!!!'))

    with pytest.raises(LedgerCorruptionError, match=digest):
        await ledger.snapshot(record.snapshot_id)


async def test_missing_message_is_reported_as_corruption(ledger: Ledger) -> None:
    """C17: a snapshot whose message is gone from storage raises LedgerCorruptionError naming it."""
    messages = conversation(3)
    await ledger.start_run(run_start('run-a'))
    [record] = await snapshot_steps(ledger, 'run-a', messages, range(1, 2))
    [digest] = record.new_hashes
    tamper(ledger, 'messages', digest, None)

    with pytest.raises(LedgerCorruptionError, match=digest):
        await ledger.snapshot(record.snapshot_id)


@pytest.mark.parametrize('damage', ['altered', 'missing'])
async def test_damaged_blob_is_reported_as_corruption(ledger: Ledger, damage: str) -> None:
    """C17: a blob altered or missing from storage raises LedgerCorruptionError naming its hash."""
    photo = image(100 * 1024, seed=1)
    await ledger.start_run(run_start('run-a'))
    [record] = await snapshot_steps(
        ledger, 'run-a', multimodal_history('Is my parcel damaged?', photo, image(5000, seed=3)), range(1, 2)
    )
    digest = content_hash(photo)
    tamper(ledger, 'blobs', digest, None if damage == 'missing' else photo[:-1] + b'\x00')

    with pytest.raises(LedgerCorruptionError, match=digest):
        await ledger.snapshot(record.snapshot_id)


@pytest.mark.parametrize('snapshot_id', ['nonsense', 'run-x', ''])
async def test_malformed_snapshot_id_is_not_found(ledger: Ledger, snapshot_id: str) -> None:
    """C17: a malformed snapshot id raises SnapshotNotFoundError explaining the expected shape."""
    with pytest.raises(SnapshotNotFoundError, match='malformed snapshot id') as info:
        await ledger.snapshot(snapshot_id)
    assert repr(snapshot_id) in str(info.value)
    assert '<run id>' in str(info.value)


async def test_unknown_snapshot_and_run_ids_are_not_found(ledger: Ledger) -> None:
    """C17: a well-formed id nobody stored, and the snapshots of an unknown run, raise specific errors."""
    await ledger.start_run(run_start('run-a'))
    [record] = await snapshot_steps(ledger, 'run-a', conversation(2), range(1, 2))
    unknown = record.snapshot_id.replace('run-a.', 'run-zz.')
    for snapshot_id in (unknown, 'run-a.s7.0123456789ab'):
        with pytest.raises(SnapshotNotFoundError, match='no snapshot with id') as info:
            await ledger.snapshot(snapshot_id)
        assert repr(snapshot_id) in str(info.value)
    for read in (ledger.snapshots, ledger.latest_snapshot):
        with pytest.raises(RunNotFoundError, match='unknown-run'):
            await read('unknown-run')
    with pytest.raises(RunNotFoundError, match='unknown-run'):
        await ledger.snapshot_at_step('unknown-run', 1)


async def test_latest_snapshot_and_snapshot_at_step(ledger: Ledger) -> None:
    """C9/C10: latest is the `final` snapshot; at step k, the latest model-request snapshot at or before k
    (forking redoes step k); steps outside the run are not found."""
    messages = conversation(3)
    await ledger.start_run(run_start('run-a'))
    [s1, s2, s3, final] = await snapshot_steps(ledger, 'run-a', messages, range(1, 4), final=True)

    assert await ledger.latest_snapshot('run-a') == final
    assert await ledger.snapshot_at_step('run-a', 1) == s1
    assert await ledger.snapshot_at_step('run-a', 2) == s2
    # Forking at the last step redoes it: the model-request snapshot, not the final history.
    assert await ledger.snapshot_at_step('run-a', 3) == s3
    assert s3.step == final.step == 3
    for step in (0, 4):
        with pytest.raises(SnapshotNotFoundError, match=f'no step {step}'):
            await ledger.snapshot_at_step('run-a', step)


async def test_snapshot_at_a_step_without_one_takes_the_one_before(ledger: Ledger) -> None:
    """C10: when step 2 left no valid snapshot, forking at step 2 seeds from step 1's."""
    messages = conversation(3)
    await ledger.start_run(run_start('run-a'))
    [s1] = await snapshot_steps(ledger, 'run-a', messages, range(1, 2))
    [s3] = await snapshot_steps(ledger, 'run-a', messages, range(3, 4))

    assert await ledger.snapshot_at_step('run-a', 2) == s1
    assert await ledger.snapshot_at_step('run-a', 3) == s3
    assert await ledger.latest_snapshot('run-a') == s3


async def test_run_without_snapshots_has_nothing_to_continue_or_fork_from(ledger: Ledger) -> None:
    """C10: a run with no valid snapshot raises SnapshotNotFoundError naming the run."""
    await ledger.start_run(run_start('run-a'))
    assert await ledger.snapshots('run-a') == []
    with pytest.raises(SnapshotNotFoundError, match='run-a'):
        await ledger.latest_snapshot('run-a')
    with pytest.raises(SnapshotNotFoundError, match='run-a'):
        await ledger.snapshot_at_step('run-a', 1)


async def test_read_content_returns_only_stored_hashes(ledger: Ledger) -> None:
    """The content primitives answer for more hashes than one backend query may bind, and omit unknown ones."""
    messages = {content_hash(f'message {i}'.encode()): f'message {i}'.encode() for i in range(1200)}
    blobs = {content_hash(b'blob'): b'blob'}
    await ledger.store.write_content(messages, blobs)
    await ledger.store.write_content({digest: b'ignored' for digest in list(messages)[:10]}, {})
    unknown = [content_hash(f'absent {i}'.encode()) for i in range(5)]

    assert await ledger.store.read_messages([*messages, *unknown]) == messages
    assert await ledger.store.read_blobs([*blobs, *unknown]) == blobs
    assert await ledger.store.read_messages([]) == {}


# --- stored payloads and their references ----------------------------------------------------------


def payload_bytes(seed: int, size: int = 40_000) -> bytes:
    """Incompressible payload content, different for every seed."""
    return random.Random(seed).randbytes(size)


async def test_payload_references_keep_the_latest_store_per_workflow(ledger: Ledger) -> None:
    """One reference per (manifest, namespace, workflow); storing again moves `stored_at` forward, never back."""
    manifest, other = content_hash(b'payload one'), content_hash(b'payload two')
    await ledger.record_payload_references(
        [
            PayloadReference(manifest, 'default', 'wf-a', at(10)),
            PayloadReference(manifest, 'default', 'wf-a', at(5)),
            PayloadReference(manifest, 'default', 'wf-b', at(7)),
            PayloadReference(other, 'other-ns', 'wf-a', at(1)),
        ]
    )
    await ledger.record_payload_references([PayloadReference(manifest, 'default', 'wf-a', at(3))])

    found = sorted(await ledger.payload_references(), key=lambda r: r.key)
    assert [(r.manifest, r.namespace, r.workflow_id, r.stored_at) for r in found] == sorted(
        [
            (manifest, 'default', 'wf-a', at(10)),
            (manifest, 'default', 'wf-b', at(7)),
            (other, 'other-ns', 'wf-a', at(1)),
        ]
    )
    assert {r.workflow_id for r in await ledger.payload_references([manifest])} == {'wf-a', 'wf-b'}
    assert await ledger.payload_references([content_hash(b'never stored')]) == []
    assert await ledger.payload_references([]) == []


async def test_store_chunked_records_its_referrers_before_content(ledger: Ledger) -> None:
    data = payload_bytes(1)
    key = await ledger.store_chunked(data, referrers=[('default', 'wf-a'), ('default', 'wf-parent')])
    assert await ledger.load_chunked(key) == data
    assert {(r.namespace, r.workflow_id) for r in await ledger.payload_references([key])} == {
        ('default', 'wf-a'),
        ('default', 'wf-parent'),
    }
    unreferenced = await ledger.store_chunked(payload_bytes(2))
    assert await ledger.payload_references([unreferenced]) == []


async def test_delete_payloads_keeps_chunks_others_still_use(ledger: Ledger) -> None:
    """Deleting a payload deletes its manifest, references and the chunks no other payload or message uses."""
    shared = payload_bytes(3)
    first = await ledger.store_chunked(shared + payload_bytes(4), referrers=[('default', 'wf-old')])
    second = await ledger.store_chunked(shared + payload_bytes(5), referrers=[('default', 'wf-live')])
    # A long message of a snapshot is stored as chunks too; a payload carrying exactly it shares them all.
    long_return = ToolReturnPart('lookup', 'x' * 20_000, tool_call_id='call-long', timestamp=at(2))
    history: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart('look it up', timestamp=at(0))], timestamp=at(0)),
        ModelResponse(parts=[ToolCallPart('lookup', {}, tool_call_id='call-long')], timestamp=at(1)),
        ModelRequest(parts=[long_return], timestamp=at(2)),
    ]
    await ledger.start_run(run_start('run-a'))
    record = await ledger.write_snapshot(
        run_id='run-a', temporal_run_id='t1', step=2, kind='model_request', messages=history
    )
    assert record is not None
    third = await ledger.store_chunked(encode_messages(history)[2].data, referrers=[('default', 'wf-old')])
    before = stored_content(ledger)

    planned = await ledger.delete_payloads([first, third, content_hash(b'not stored')], dry_run=True)
    assert stored_content(ledger) == before
    assert await ledger.load_chunked(first)
    done = await ledger.delete_payloads([first, third, content_hash(b'not stored')])

    assert done == planned
    assert set(done.manifests) == {first, third}
    assert done.chunks > 0 and done.bytes >= 30_000  # the chunks only `first` had
    assert stored_content(ledger) == (before[0], before[1] - 2 - done.chunks)
    for gone in (first, third):
        with pytest.raises(LedgerCorruptionError, match=gone):
            await ledger.load_chunked(gone)
        assert await ledger.payload_references([gone]) == []
    assert await ledger.load_chunked(second) == shared + payload_bytes(5)
    assert [r.workflow_id for r in await ledger.payload_references()] == ['wf-live']
    assert dumped((await ledger.snapshot(record.snapshot_id)).messages) == dumped(history)

    # Content stored again after a deletion is complete again.
    again = await ledger.store_chunked(shared + payload_bytes(4), referrers=[('default', 'wf-new')])
    assert again == first and await ledger.load_chunked(again) == shared + payload_bytes(4)
    assert (await ledger.delete_payloads([])).manifests == ()


# --- tool effects -----------------------------------------------------------------------------------


async def test_tool_effect_of_a_retried_call_lists_the_abandoned_attempt_in_doubt(ledger: Ledger) -> None:
    """C4/C11: attempt 1 started and never ended, attempt 2 completed and was accepted: the effect is
    completed, with attempt 1 in doubt, under the idempotency key `<workflow_id>/<tool_call_id>`."""
    await ledger.start_run(run_start('run-t'))
    call: dict[str, Any] = {'run_id': 'run-t', 'tool_name': 'refund', 'tool_call_id': 'call-7'}
    await ledger.record_events(
        [
            event('3', 1, 'tool_call_started', when=1, **call),
            event('3', 2, 'tool_call_started', when=11, **call),
            event('3', 2, 'tool_call_completed', when=12, outcome='returned', **call),
        ]
    )
    await ledger.accept([acceptance('3', run_id='run-t')])

    assert await ledger.tool_effects('run-t') == [
        ToolEffect(
            run_id='run-t',
            tool_call_id='call-7',
            tool_name='refund',
            status='completed',
            attempts=2,
            idempotency_key='wf-run-t/call-7',
            outcome='returned',
            in_doubt_attempts=(1,),
        )
    ]


async def test_tool_effect_started_and_never_ended_is_unknown_after_the_run_ends(ledger: Ledger) -> None:
    """C4: a tool call whose only attempt never ended is `started` while the run runs, then
    `unknown_after_crash` once the run is sealed."""
    await ledger.start_run(run_start('run-t'))
    await ledger.record_events(
        [event('3', 1, 'tool_call_started', run_id='run-t', tool_name='refund', tool_call_id='call-7')]
    )
    [running] = await ledger.tool_effects('run-t')
    assert (running.status, running.in_doubt_attempts) == ('started', ())

    await ledger.seal_run(run_seal('run-t', status='failed', error=ErrorInfo('WorkerCrash', 'killed', False)))

    [effect] = await ledger.tool_effects('run-t')
    assert effect.status == 'unknown_after_crash'
    assert (effect.attempts, effect.in_doubt_attempts, effect.outcome) == (1, (1,), None)
    assert effect.idempotency_key == 'wf-run-t/call-7'
    with pytest.raises(RunNotFoundError):
        await ledger.tool_effects('unknown-run')


# --- keyed records, model-call journal, once-only effects ---------------------------------------------


async def test_keyed_record_create_is_atomic_first_writer_wins(ledger: Ledger) -> None:
    """Of writers racing to create one key, exactly one gets the record; the others get None."""
    results = await asyncio.gather(
        *(ledger.create_record('journal', 'k1', {'writer': i}, scope='wf-1') for i in range(12))
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    stored = await ledger.record('journal', 'k1')
    assert stored is not None
    assert (stored.value, stored.scope, stored.version) == (winners[0].value, 'wf-1', winners[0].version)
    assert await ledger.record('journal', 'k2') is None
    assert await ledger.record('effects', 'k1') is None


async def test_keyed_record_replace_is_compare_and_swap(ledger: Ledger) -> None:
    """A replace names the version it read: a stale version stores nothing; the scope never changes."""
    created = await ledger.create_record('effects', 'wf-1/call-1/pay', {'status': 'started'}, scope='wf-1')
    assert created is not None
    first = await ledger.replace_record(created, {'status': 'done'})
    assert first is not None and first.version != created.version
    assert await ledger.replace_record(created, {'status': 'unknown'}) is None
    stored = await ledger.record('effects', 'wf-1/call-1/pay')
    assert stored is not None and stored.value == {'status': 'done'} and stored.scope == 'wf-1'
    racing = await asyncio.gather(*(ledger.replace_record(first, {'n': i}) for i in range(8)))
    assert sum(r is not None for r in racing) == 1
    with pytest.raises(ValueError, match='never stored'):
        await ledger.replace_record(dataclasses.replace(created, version=''), {})


async def test_keyed_records_list_by_namespace_and_scope(ledger: Ledger) -> None:
    for key, scope in [('a/1', 'a'), ('a/2', 'a'), ('a/delegate/x/1', 'a/delegate/x'), ('b/1', 'b')]:
        assert await ledger.create_record('effects', key, {'key': key}, scope=scope) is not None
    assert await ledger.create_record('journal', 'a|j', {}, scope='a') is not None
    assert [r.key for r in await ledger.records('effects', scope='a')] == ['a/1', 'a/2']
    assert [r.key for r in await ledger.records('effects')] == ['a/1', 'a/2', 'a/delegate/x/1', 'b/1']
    assert await ledger.records('effects', scope='nobody') == []
    with pytest.raises(ValueError, match='namespace'):
        await ledger.records('../runs')


def response(text: str) -> ModelResponse:
    return ModelResponse(parts=[TextPart(text)], usage=RequestUsage(input_tokens=7, output_tokens=3), model_name='m')


def journal_entry(key: str, text: str, attempt: int = 1) -> JournalEntry:
    return JournalEntry.of(
        response(text),
        key=key,
        workflow_id='wf-1',
        run_id='r1',
        activity_type='agent__model_request',
        request_hash='h',
        recorded_at=at(attempt),
        temporal_run_id='t1',
        activity_id='2',
        attempt=attempt,
    )


async def test_journal_keeps_the_first_response_recorded(ledger: Ledger) -> None:
    """The model-call journal: the first response recorded under a key is the one every attempt replays."""
    assert await ledger.journal_entry('wf-1|r1|agent__model_request|h') is None
    first = await ledger.record_journal(journal_entry('wf-1|r1|agent__model_request|h', 'first'))
    late = await ledger.record_journal(journal_entry('wf-1|r1|agent__model_request|h', 'zombie', attempt=2))
    assert late == first
    stored = await ledger.journal_entry('wf-1|r1|agent__model_request|h')
    assert stored is not None and stored.attempt == 1
    replayed = stored.model_response()
    assert replayed.parts == [TextPart('first')] and replayed.usage.input_tokens == 7


class Target:
    """A fake external system that counts the effects it performed, by idempotency key."""

    def __init__(self) -> None:
        self.performed: list[str] = []

    async def charge(self, key: str) -> dict[str, Any]:
        self.performed.append(key)
        await asyncio.sleep(0.01)
        return {'charge': f'ch-{len(self.performed)}', 'key': key}

    async def lookup(self, key: str) -> dict[str, Any] | None:
        return {'charge': 'found', 'key': key} if key in self.performed else None


def tool_ctx(ledger: Ledger, tool_call_id: str = 'call-1', *, attempt: int = 1) -> RunContext[None]:
    """Run `once` as the body of a tool-call attempt of run r1 would (the interceptor sets this context)."""
    tool_context.set(
        ToolContext(
            ledger=ledger,
            scopes=Scopes(ledger),
            run_id='r1',
            workflow_id='wf-r1',
            temporal_run_id='t1',
            activity_id='3',
            attempt=attempt,
            tool_name='charge',
        )
    )
    return RunContext(deps=None, model=TestModel(), usage=RunUsage(), tool_call_id=tool_call_id)


async def test_once_acts_once_and_replays_the_recorded_result(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1'))
    target = Target()
    first = await once(tool_ctx(ledger), 'charge', target.charge)
    again = await once(tool_ctx(ledger, attempt=2), 'charge', target.charge)
    assert first == again == {'charge': 'ch-1', 'key': 'wf-r1/call-1/charge'}
    assert target.performed == ['wf-r1/call-1/charge']
    other = await once(tool_ctx(ledger, 'call-2'), 'charge', target.charge)
    assert other['charge'] == 'ch-2'
    effect = await ledger.effect('wf-r1/call-1/charge')
    assert (effect.status, effect.resolution, effect.attempts, effect.run_id) == ('done', 'acted', 1, 'r1')
    assert [e.key for e in await ledger.effects(run_id='r1')] == ['wf-r1/call-1/charge', 'wf-r1/call-2/charge']


async def test_racing_attempts_never_both_act(ledger: Ledger) -> None:
    """A zombie attempt and its retry call `once` together: one acts; the other never acts on its own."""
    await ledger.start_run(run_start('r1'))
    target = Target()
    results = await asyncio.gather(
        *(once(tool_ctx(ledger, attempt=i), 'charge', target.charge) for i in range(1, 6)), return_exceptions=True
    )
    assert len(target.performed) == 1
    assert all(isinstance(r, dict | EffectUnknownError) for r in results)
    assert (await ledger.effect('wf-r1/call-1/charge')).status == 'done'


async def died_mid_effect(ledger: Ledger, target: Target, *, performed: bool) -> None:
    """Leave the effect `started` as an attempt killed inside `act` does (before or after the target acted)."""

    async def killed(key: str) -> None:
        if performed:
            target.performed.append(key)
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await once(tool_ctx(ledger), 'charge', killed)
    assert (await ledger.effect('wf-r1/call-1/charge')).status == 'started'


@pytest.mark.parametrize('performed', [True, False])
async def test_started_effect_is_reconciled_with_the_target(ledger: Ledger, performed: bool) -> None:
    await ledger.start_run(run_start('r1'))
    target = Target()
    await died_mid_effect(ledger, target, performed=performed)
    result = await once(tool_ctx(ledger, attempt=2), 'charge', target.charge, reconcile=target.lookup)
    assert target.performed == ['wf-r1/call-1/charge']
    effect = await ledger.effect('wf-r1/call-1/charge')
    assert effect.status == 'done' and effect.result == result
    assert effect.resolution == ('reconciled' if performed else 'acted')


async def test_started_effect_without_reconcile_waits_for_an_operator(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1'))
    target = Target()
    await died_mid_effect(ledger, target, performed=True)
    for attempt in (2, 3):
        with pytest.raises(EffectUnknownError, match=r'agentledger resolve wf-r1/call-1/charge'):
            await once(tool_ctx(ledger, attempt=attempt), 'charge', target.charge)
    [unknown] = await ledger.effects(status='unknown')
    assert unknown.key == 'wf-r1/call-1/charge' and unknown.error is not None
    resolved = await ledger.resolve_effect(unknown.key, 'done', {'charge': 'by-hand'})
    assert (resolved.status, resolved.resolution) == ('done', 'operator')
    assert await once(tool_ctx(ledger, attempt=4), 'charge', target.charge) == {'charge': 'by-hand'}
    assert target.performed == ['wf-r1/call-1/charge']
    with pytest.raises(EffectStateError, match='already done'):
        await ledger.resolve_effect(unknown.key, 'not-done')
    with pytest.raises(EffectNotFoundError, match='nope'):
        await ledger.resolve_effect('nope', 'done')


async def test_effect_resolved_not_done_acts_on_the_next_attempt(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1'))
    target = Target()
    await died_mid_effect(ledger, target, performed=False)
    with pytest.raises(EffectUnknownError):
        await once(tool_ctx(ledger, attempt=2), 'charge', target.charge)
    with pytest.raises(ValueError, match='only recorded with --outcome done'):
        await ledger.resolve_effect('wf-r1/call-1/charge', 'not-done', {'x': 1})
    assert (await ledger.resolve_effect('wf-r1/call-1/charge', 'not-done')).status == 'not_done'
    assert (await once(tool_ctx(ledger, attempt=3), 'charge', target.charge))['charge'] == 'ch-1'
    assert target.performed == ['wf-r1/call-1/charge']
    assert (await ledger.effect('wf-r1/call-1/charge')).attempts == 2


async def test_effect_that_raised_is_failed_and_acts_again(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1'))
    target = Target()

    async def declined(key: str) -> None:
        raise RuntimeError('card declined')

    with pytest.raises(RuntimeError, match='declined'):
        await once(tool_ctx(ledger), 'charge', declined)
    failed = await ledger.effect('wf-r1/call-1/charge')
    assert (failed.status, failed.error) == ('failed', 'RuntimeError: card declined')
    assert (await once(tool_ctx(ledger, attempt=2), 'charge', target.charge))['charge'] == 'ch-1'


async def test_continuation_keys_effects_on_its_lineage_root(ledger: Ledger) -> None:
    """A continuation (or fork) re-running an inherited call finds the effect its ancestor recorded."""
    await ledger.start_run(run_start('r0', workflow_id='wf-root'))
    seed = ForkRef(run_id='r0', snapshot_id='snapshot-of-r0', reason='continue')
    await ledger.start_run(run_start('r1', workflow_id='wf-r1', forked_from=seed))
    target = Target()
    result = await once(tool_ctx(ledger), 'charge', target.charge)
    assert result['key'] == 'wf-root/call-1/charge'
    assert [e.key for e in await ledger.effects(workflow_id='wf-root')] == ['wf-root/call-1/charge']


async def test_once_outside_a_tool_activity_is_an_error(ledger: Ledger) -> None:
    tool_context.set(None)
    with pytest.raises(AgentLedgerError, match='LedgerPlugin'):
        await once(RunContext(deps=None, model=TestModel(), usage=RunUsage(), tool_call_id='c'), 'x', Target().charge)


@pytest.mark.parametrize('backend', ['sqlite', 's3'])
async def test_two_workers_racing_on_one_effect_act_once(backend: str, tmp_path: Path) -> None:
    """Two ledgers on one store (two worker processes): the atomic create lets exactly one attempt act."""
    one, two = make_sharing_pair(backend, tmp_path)
    async with one as first, two as second:
        await first.start_run(run_start('r1'))
        target = Target()
        results = await asyncio.gather(
            *(
                once(tool_ctx(ledger, attempt=i), 'charge', target.charge)
                for i, ledger in enumerate([first, second] * 3)
            ),
            return_exceptions=True,
        )
        assert len(target.performed) == 1
        assert any(isinstance(r, dict) for r in results)
        assert (await second.effect('wf-r1/call-1/charge')).status == 'done'


# --- SQLite ---------------------------------------------------------------------------------------------


def raw_sql(path: Path, sql: str, parameters: tuple[Any, ...] = ()) -> int:
    """Run one statement with the plain sqlite3 module, as another program touching the file would."""
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        return raw.execute(sql, parameters).rowcount


async def write_a_full_run(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1', conversation_id='c1', prompt_preview='hi'))
    await ledger.record_events(
        [
            event('1', 1, 'model_request_started', step=1),
            event('1', 1, 'model_request_failed', step=1, error=ErrorInfo('ModelHTTPError', '500', True)),
            event('1', 2, 'model_request_started', step=1),
            event('1', 2, 'model_request_completed', step=1, usage=Usage(requests=1, input_tokens=3)),
        ]
    )
    await ledger.accept([acceptance('1')])
    await ledger.seal_run(run_seal('r1', usage=Usage(requests=1, input_tokens=3), output_preview='bye'))
    await ledger.start_run(run_start('r2', started=5, agent='billing'))


async def test_sqlite_reopened_file_reads_everything_back(tmp_path: Path) -> None:
    path = tmp_path / 'nested' / 'dir' / 'ledger.db'
    async with SqliteLedger(path) as ledger:
        await write_a_full_run(ledger)
        before = (await ledger.runs(), await ledger.events('r1'), await ledger.steps('r1'))

    async with SqliteLedger(path) as reopened:
        after = (await reopened.runs(), await reopened.events('r1'), await reopened.steps('r1'))
        assert after == before
        # New events continue the causal order after the stored ones.
        await reopened.record_events([event('9', 1, 'tool_call_started', run_id='r2')])
        [_, late] = await reopened.events('r2')
        assert late.seq > max(e.seq for e in before[1])

    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute('PRAGMA journal_mode').fetchone() == ('wal',)
        assert raw.execute('SELECT version FROM schema_version').fetchall() == [(SCHEMA_VERSION,)]


async def test_sqlite_url_is_the_path_as_given(tmp_path: Path) -> None:
    assert SqliteLedger('relative/ledger.db').url == 'sqlite:///relative/ledger.db'
    assert SqliteLedger(tmp_path / 'x.db').url == f'sqlite:///{tmp_path}/x.db'


async def test_sqlite_close_is_idempotent_and_later_writes_fail(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / 'ledger.db')
    await ledger.close()
    await ledger.open()
    await ledger.open()
    await ledger.start_run(run_start())
    await ledger.close()
    await ledger.close()
    with pytest.raises(LedgerError, match='not open'):
        await ledger.start_run(run_start('r2'))
    with pytest.raises(LedgerError, match='not open'):
        await ledger.run('r1')


async def test_sqlite_close_commits_queued_writes(tmp_path: Path) -> None:
    path = tmp_path / 'ledger.db'
    ledger = SqliteLedger(path)
    await ledger.open()
    await ledger.start_run(run_start())
    writes = [asyncio.create_task(ledger.record_events([event(str(i), 1, 'tool_call_started')])) for i in range(10)]
    await asyncio.sleep(0)
    await ledger.close()
    await asyncio.gather(*writes)

    async with SqliteLedger(path) as reopened:
        assert len(await reopened.events('r1')) == 11


async def test_sqlite_newer_schema_version_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / 'ledger.db'
    async with SqliteLedger(path):
        pass
    raw_sql(path, 'UPDATE schema_version SET version = ?', (SCHEMA_VERSION + 1,))

    ledger = SqliteLedger(path)
    with pytest.raises(LedgerConfigError, match=f'schema version {SCHEMA_VERSION + 1}') as info:
        await ledger.open()
    assert str(path) in str(info.value)
    assert 'upgrade agentledger' in str(info.value)
    await ledger.close()


async def test_sqlite_file_that_is_not_a_database_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / 'ledger.db'
    path.write_bytes(b'this is not a SQLite database, just some text' * 100)
    with pytest.raises(LedgerCorruptionError, match='not a database') as info:
        await SqliteLedger(path).open()
    assert str(path) in str(info.value)


async def test_sqlite_path_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / 'a-directory.db'
    path.mkdir()
    with pytest.raises(LedgerUnavailableError, match='unable to open') as info:
        await SqliteLedger(path).open()
    assert str(path) in str(info.value)


async def test_sqlite_directory_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / 'file'
    blocker.write_text('a file where a directory should be')
    path = blocker / 'ledger.db'
    with pytest.raises(LedgerUnavailableError, match='cannot create the directory') as info:
        await SqliteLedger(path).open()
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ('table', 'key_column', 'key', 'column', 'garbage'),
    [
        ('events', 'event_key', 'wf-r1|t1|1|1|tool_call_started', 'body', '{"run_id": "r1", trailing garbage'),
        ('events', 'event_key', 'wf-r1|t1|1|1|tool_call_started', 'body', '["a", "list"]'),
        ('acceptances', 'acceptance_key', 'wf-r1|t1|1', 'body', '{"run_id": "r1"}'),
        ('runs', 'run_id', 'r1', 'temporal_run_ids', 'not json'),
        ('runs', 'run_id', 'r1', 'temporal_run_ids', '"t1"'),
        ('runs', 'run_id', 'r1', 'usage', '{"requests": 1, "bogus": 2}'),
        ('runs', 'run_id', 'r1', 'status', 'exploded'),
        ('runs', 'run_id', 'r1', 'started_at', 'yesterday'),
    ],
)
async def test_sqlite_row_that_does_not_decode_is_corruption(
    tmp_path: Path, table: str, key_column: str, key: str, column: str, garbage: str
) -> None:
    path = tmp_path / 'ledger.db'
    async with SqliteLedger(path) as ledger:
        await ledger.start_run(run_start())
        await ledger.record_events([event('1', 1, 'tool_call_started')])
        await ledger.accept([acceptance('1')])
        changed = raw_sql(path, f'UPDATE {table} SET {column} = ? WHERE {key_column} = ?', (garbage, key))
        assert changed == 1

        with pytest.raises(LedgerCorruptionError) as info:
            await ledger.steps('r1')
        assert f'table {table}' in str(info.value)
        assert repr(key) in str(info.value)
        assert str(path) in str(info.value)


async def test_sqlite_corrupt_run_row_fails_its_write_but_not_the_others_in_its_batch(tmp_path: Path) -> None:
    path = tmp_path / 'ledger.db'
    async with SqliteLedger(path) as ledger:
        await ledger.start_run(run_start('bad'))
        await ledger.start_run(run_start('good'))
        raw_sql(path, "UPDATE runs SET usage = 'garbage' WHERE run_id = 'bad'")

        # Queued together, these land in one group commit; the seal of `bad` cannot read its run row.
        results = await asyncio.gather(
            ledger.record_events([event('1', 1, 'tool_call_started', run_id='good')]),
            ledger.seal_run(run_seal('bad')),
            ledger.seal_run(run_seal('good')),
            ledger.record_events([event('2', 1, 'tool_call_started', run_id='good')]),
            return_exceptions=True,
        )
        assert results[0] is None and results[2] is None and results[3] is None
        assert isinstance(results[1], LedgerCorruptionError)
        assert "'bad'" in str(results[1])

        assert (await ledger.run('good')).status == 'completed'
        kinds = [e.kind for e in await ledger.events('good')]
        assert kinds == ['run_started', 'tool_call_started', 'run_completed', 'tool_call_started']


def make_sharing_pair(backend: str, tmp_path: Path) -> tuple[Ledger, Ledger]:
    """Two ledgers on one store, as two worker processes have them (own connections or clients)."""
    if backend == 'sqlite':
        return SqliteLedger(tmp_path / 'ledger.db'), SqliteLedger(tmp_path / 'ledger.db')
    if backend == 's3':
        server = shared_s3_server()
        bucket = server.new_bucket()
        return server.ledger(bucket), server.ledger(bucket)
    raise ValueError(f'{backend!r} has no store two ledgers can share')


@pytest.mark.parametrize('backend', ['sqlite', 's3'])
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


V1_RUN_COLUMNS = (
    'run_id, workflow_id, agent_name, status, started_at, started_at_us, updated_at, ended_at, task_queue, '
    'conversation_id, parent_run_id, parent_tool_call_id, temporal_run_ids, usage, error, prompt_preview, '
    'output_preview'
)


def create_v1_ledger(path: Path) -> None:
    """A ledger file as agentledger wrote it at schema version 1, holding one sealed run."""
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.execute('CREATE TABLE schema_version (version INTEGER NOT NULL)')
        for statement in _MIGRATIONS[1]:
            raw.execute(statement)
        raw.execute('INSERT INTO schema_version (version) VALUES (1)')
        raw.execute(
            f'INSERT INTO runs ({V1_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
            (
                'run-old',
                'wf-run-old',
                'support',
                'completed',
                T0.isoformat(),
                int(T0.timestamp() * 1_000_000),
                at(60).isoformat(),
                at(60).isoformat(),
                'agents',
                'c1',
                None,
                None,
                '["t1"]',
                '{"requests": 1, "input_tokens": 3, "output_tokens": 4, "tool_calls": 0}',
                None,
                'hi',
                'bye',
            ),
        )


async def test_sqlite_version_1_file_migrates_to_the_current_version(tmp_path: Path) -> None:
    """A file written before snapshots migrates in place, keeps its runs, then takes snapshots, forks and payloads."""
    path = tmp_path / 'ledger.db'
    create_v1_ledger(path)

    async with SqliteLedger(path) as ledger:
        old = await ledger.run('run-old')
        assert (old.run_id, old.status, old.ended_at, old.forked_from) == ('run-old', 'completed', at(60), None)
        assert old.usage == Usage(requests=1, input_tokens=3, output_tokens=4)
        assert ids(await ledger.runs()) == ['run-old']

        [seed] = await snapshot_steps(ledger, 'run-old', conversation(2), range(1, 2))
        fork = ForkRef(run_id='run-old', snapshot_id=seed.snapshot_id, reason='continue')
        await ledger.start_run(run_start('run-new', started=100, forked_from=fork))
        assert ids(await ledger.runs(forked_from_run_id='run-old')) == ['run-new']
        key = await ledger.store_chunked(b'payload' * 1000, referrers=[('default', 'wf-a')])
        assert [r.workflow_id for r in await ledger.payload_references([key])] == ['wf-a']

    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute('SELECT version FROM schema_version').fetchall() == [(SCHEMA_VERSION,)] == [(3,)]
        indexes = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {'runs_forked_from', 'snapshots_run', 'records_scope'} <= indexes

    async with SqliteLedger(path) as reopened:
        assert (await reopened.run('run-new')).forked_from == fork
        assert (await reopened.snapshot(seed.snapshot_id)).record == seed


async def test_sqlite_version_2_file_migrates_to_version_3(tmp_path: Path) -> None:
    """Version 3 adds the `degraded` mark of runs recorded under the `warn` outage policy; older runs have none."""
    path = tmp_path / 'ledger.db'
    create_v1_ledger(path)
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        for statement in _MIGRATIONS[2]:
            raw.execute(statement)
        raw.execute('UPDATE schema_version SET version = 2')
    async with SqliteLedger(path) as ledger:
        assert (await ledger.run('run-old')).degraded == ()
        await ledger.update_run('run-old', lambda run: replace(run, degraded=('lost',)))
    async with SqliteLedger(path) as reopened:
        assert (await reopened.run('run-old')).degraded == ('lost',)
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute('SELECT version FROM schema_version').fetchall() == [(3,)]


async def test_sqlite_snapshot_row_that_does_not_decode_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / 'ledger.db'
    async with SqliteLedger(path) as ledger:
        await ledger.start_run(run_start('run-a'))
        [record] = await snapshot_steps(ledger, 'run-a', conversation(2), range(1, 2))
        raw_sql(path, 'UPDATE snapshots SET body = ? WHERE snapshot_id = ?', ('{"step": 1}', record.snapshot_id))

        with pytest.raises(LedgerCorruptionError, match='table snapshots') as info:
            await ledger.snapshots('run-a')
        assert repr(record.snapshot_id) in str(info.value)


def lock_exclusively(path: Path) -> sqlite3.Connection:
    """Another process's connection holding the write lock of the database."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute('BEGIN EXCLUSIVE')
    return connection


async def test_sqlite_locked_database_retries_then_raises_unavailable(tmp_path: Path) -> None:
    """C16: a write that cannot get the lock is retried, then reported with what was not written."""
    path = tmp_path / 'ledger.db'
    async with SqliteLedger(path, retry=FAST_RETRY, busy_timeout_s=0.05) as ledger:
        await ledger.start_run(run_start())
        blocker = lock_exclusively(path)
        try:
            with pytest.raises(LedgerUnavailableError) as info:
                await ledger.record_events([event('1', 1, 'tool_call_started')])
            # Reads do not wait for the writer (WAL).
            assert len(await ledger.events('r1')) == 1
        finally:
            blocker.rollback()
            blocker.close()

        message = str(info.value)
        assert '1 event(s) of run r1' in message
        assert f'after {FAST_RETRY.attempts} attempts' in message
        assert 'database is locked' in message
        assert str(path) in message
        assert len(await ledger.events('r1')) == 1


async def test_sqlite_lock_released_mid_retry_loses_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / 'ledger.db'
    retry = RetryPolicy(attempts=20, initial_backoff_s=0.02, max_backoff_s=0.05)
    async with SqliteLedger(path, retry=retry, busy_timeout_s=0.02) as ledger:
        await ledger.start_run(run_start())
        blocker = lock_exclusively(path)
        with caplog.at_level(logging.WARNING, logger='agentledger.ledger'):
            writes = asyncio.gather(
                ledger.record_events([event('1', 1, 'tool_call_started')]),
                ledger.accept([acceptance('1')]),
                ledger.seal_run(run_seal()),
            )
            for _ in range(500):
                if any('ledger write failed' in record.getMessage() for record in caplog.records):
                    break
                await asyncio.sleep(0.01)
            blocker.rollback()
            blocker.close()
            await writes

        assert any('database is locked' in record.getMessage() for record in caplog.records)
        assert (await ledger.run('r1')).status == 'completed'
        # The three writes retried independently, so their relative order is not part of the contract.
        assert sorted(states(await ledger.events('r1'))) == [
            ('-', 0, 'run_completed', 'accepted'),
            ('-', 0, 'run_started', 'accepted'),
            ('1', 1, 'tool_call_started', 'accepted'),
        ]


# --- deduplicated payloads ----------------------------------------------------------------------------


def long_text(size: int, seed: int) -> str:
    """`size` characters that repeat nothing, so only real duplication is deduplicated."""
    blocks, block = [], hashlib.sha256(str(seed).encode()).digest()
    while 64 * len(blocks) < size:
        block = hashlib.sha256(block).digest()
        blocks.append(block.hex() + block.hex()[::-1])
    return ''.join(blocks)[:size]


async def unstored_bytes(ledger: Ledger, data: bytes, *, json_text: bool = True) -> int:
    """What storing `data` would add: the bytes of its pieces the ledger does not hold yet."""
    manifest, pieces = split(data, json_text=json_text)
    pieces[manifest.key] = manifest.to_bytes()
    held = await ledger.store.read_blobs(list(pieces))
    return sum(len(piece) for key, piece in pieces.items() if key not in held)


async def test_long_tool_result_is_stored_once_across_snapshot_and_payloads(ledger: Ledger) -> None:
    """Issue 4 part 5: a 100 KB tool result stored in a snapshot costs next to nothing again inside the JSON
    payloads that carry it (other surroundings, other offsets), and every copy comes back byte for byte."""
    text = long_text(100 * 1024, seed=1)
    messages: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart('look it up', timestamp=at(0))]),
        ModelResponse(parts=[ToolCallPart('lookup', {'q': 'x'}, tool_call_id='c1')], timestamp=at(1)),
        ModelRequest(parts=[ToolReturnPart('lookup', text, tool_call_id='c1', timestamp=at(2))]),
    ]
    await ledger.start_run(run_start('run-a'))
    [record] = await snapshot_steps(ledger, 'run-a', messages, range(2, 3))
    assert dumped((await ledger.snapshot(record.snapshot_id)).messages) == dumped(messages)

    tool_result = json.dumps({'kind': 'return', 'result': text}).encode()
    model_request = json.dumps({'model': 'm', 'messages': [{'parts': [{'content': text, 'id': 'c1'}]}]}).encode()
    for payload in (tool_result, model_request):
        assert await unstored_bytes(ledger, payload) < 2048
        key = await ledger.store_chunked(payload, json_text=True)
        assert await ledger.load_chunked(key) == payload


async def test_repeated_json_structure_is_stored_once_in_new_surroundings(ledger: Ledger) -> None:
    """Each model request of a run carries the same tool definitions beside new messages: the repeated
    object costs next to nothing after the first request, wherever it sits."""
    tools = [
        {'name': f'tool_{i}', 'description': long_text(300, seed=i), 'parameters': {'type': 'object'}} for i in range(8)
    ]

    def request(step: int) -> bytes:
        messages = [{'tool_call_id': f'call-{step}', 'content': long_text(200, seed=100 + step), 'args': {'i': step}}]
        body = {'messages': messages * (1 + step % 3), 'parameters': {'function_tools': tools}, 'model_id': None}
        return json.dumps(body).encode()

    first = request(1)
    assert await ledger.load_chunked(await ledger.store_chunked(first, json_text=True)) == first
    for step in range(2, 6):
        payload = request(step)
        new_content = len(payload) - len(json.dumps({'function_tools': tools}))
        assert await unstored_bytes(ledger, payload) < new_content + 1024, step
        assert await ledger.load_chunked(await ledger.store_chunked(payload, json_text=True)) == payload


def test_unbalanced_brackets_and_brackets_in_strings_only_move_cut_points() -> None:
    """Bytes that look like JSON but are not still split and rebuild exactly."""
    odd = (b'}' * 50 + b'{"a": "' + b'[' * 3000 + b'"' + b'[1, 2' * 900 + b']]]]' * 10).replace(b'"', b'"', 1)
    manifest, pieces = split(odd)
    nested = {key: Manifest.parse(piece, 'test') for key, piece in pieces.items() if Manifest.is_manifest(piece)}
    assert assemble(manifest, pieces, nested, 'test') == odd


async def test_growing_content_shares_the_chunks_of_its_unchanged_part(ledger: Ledger) -> None:
    """Issue 4 part 5: content-defined chunks: a document that grows by 10% stores about that much again."""
    document = long_text(200 * 1024, seed=2).encode()
    await ledger.load_chunked(await ledger.store_chunked(document, json_text=False))
    grown = document[: len(document) // 2] + long_text(20 * 1024, seed=3).encode() + document[len(document) // 2 :]
    assert await unstored_bytes(ledger, grown, json_text=False) < 60 * 1024
    assert await ledger.load_chunked(await ledger.store_chunked(grown)) == grown


@pytest.mark.parametrize('damage', ['altered', 'missing'])
async def test_damaged_payload_chunk_is_reported_as_corruption(ledger: Ledger, damage: str) -> None:
    """Issue 4 part 2: a stored payload whose chunk is altered or gone raises LedgerCorruptionError naming it."""
    payload = json.dumps({'result': long_text(50 * 1024, seed=4)}).encode()
    key = await ledger.store_chunked(payload, json_text=True)
    manifest, pieces = split(payload, json_text=True)
    nested = Manifest.parse(pieces[manifest.nested()[0]], 'test')
    chunk = nested.chunks()[1]
    tamper(ledger, 'blobs', chunk, None if damage == 'missing' else pieces[chunk][:-1] + b'!')

    with pytest.raises(LedgerCorruptionError, match=chunk):
        await ledger.load_chunked(key)


async def test_unknown_payload_key_is_reported(ledger: Ledger) -> None:
    """Issue 4 part 2: a payload reference the ledger never stored names itself in the error."""
    with pytest.raises(LedgerCorruptionError, match=r'stored payload 0{64} is missing'):
        await ledger.load_chunked('0' * 64)


class SlowTarget(Target):
    """A target whose effect takes `seconds` before it is recorded there: a holder that is alive but slow."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def charge(self, key: str) -> dict[str, Any]:
        await asyncio.sleep(self.seconds)
        return await super().charge(key)


async def test_an_attempt_waits_for_a_live_holder_instead_of_reconciling(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow holder renews its lease past its first term; its successor neither asks the target nor acts."""
    monkeypatch.setattr(agentledger.tools._once, 'LEASE_S', 1.0)
    monkeypatch.setattr(agentledger.tools._once, '_POLL_S', 0.05)
    await ledger.start_run(run_start('r1'))
    target = SlowTarget(2.5)
    asked: list[str] = []

    async def lookup(key: str) -> dict[str, Any] | None:
        asked.append(key)
        return await target.lookup(key)

    holder = asyncio.create_task(once(tool_ctx(ledger), 'charge', target.charge, reconcile=lookup))
    while (await ledger.record(EFFECTS, 'wf-r1/call-1/charge')) is None:
        await asyncio.sleep(0.01)
    successor = await once(tool_ctx(ledger, attempt=2), 'charge', target.charge, reconcile=lookup)
    assert successor == await holder
    assert target.performed == ['wf-r1/call-1/charge'] and asked == []
    effect = await ledger.effect('wf-r1/call-1/charge')
    assert (effect.status, effect.resolution, effect.attempts, effect.lease_until) == ('done', 'acted', 1, None)


async def test_a_holder_that_stopped_renewing_is_reconciled_once_its_lease_runs_out(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agentledger.tools._once, '_POLL_S', 0.05)
    await ledger.start_run(run_start('r1'))
    target = Target()
    now = datetime.now(UTC)
    dead = EffectRecord(
        key='wf-r1/call-1/charge',
        workflow_id='wf-r1',
        tool_call_id='call-1',
        name='charge',
        run_id='r1',
        status='started',
        created_at=now,
        updated_at=now,
        owner='a-worker-that-died',
        lease_until=now + timedelta(seconds=0.4),
        attempts=1,
    )
    await ledger.create_record(EFFECTS, dead.key, dead.to_value(), scope='wf-r1')
    result = await once(tool_ctx(ledger, attempt=2), 'charge', target.charge, reconcile=target.lookup)
    assert datetime.now(UTC) >= dead.lease_until  # it waited for the lease, not for the holder
    assert result['charge'] == 'ch-1' and target.performed == ['wf-r1/call-1/charge']
    assert (await ledger.effect(dead.key)).attempts == 2


async def test_an_attempt_that_outlasts_its_own_deadline_waiting_fails_busy(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ledger.start_run(run_start('r1'))
    target = SlowTarget(1.0)
    holder = asyncio.create_task(once(tool_ctx(ledger), 'charge', target.charge))
    while (await ledger.record(EFFECTS, 'wf-r1/call-1/charge')) is None:
        await asyncio.sleep(0.01)
    monkeypatch.setattr(
        agentledger.tools._once, '_attempt_deadline', lambda: datetime.now(UTC) + timedelta(seconds=0.2)
    )
    with pytest.raises(EffectBusyError, match=r"'wf-r1/call-1/charge' is held by attempt \w+ that is still acting"):
        await once(tool_ctx(ledger, attempt=2), 'charge', target.charge)
    await holder
    assert target.performed == ['wf-r1/call-1/charge']
