"""The `agentledger` command line: rendering, reads of a real ledger, `run`, `continue` / `fork`, `worker`, the demo."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic_ai.messages import ModelMessagesTypeAdapter, ModelRequest, ModelResponse, TextPart, UserPromptPart
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger import SqliteLedger, cli
from agentledger.cli._render import RunView, render_runs, render_timeline, run_json, runs_json
from agentledger.model import (
    Acceptance,
    ErrorInfo,
    ForkRef,
    RunRecord,
    RunSeal,
    RunStart,
    SnapshotRecord,
    StepEvent,
    StepRecord,
    ToolEffect,
    Usage,
)
from agentledger.workflows import AgentRunWorkflow

from ..conftest import check_at_session_end, serve
from ..helpers import agents
from ..helpers.agents import calc_agent, notes_agent

REPO = Path(__file__).resolve().parents[2]


async def invoke(*argv: str) -> int:
    """`cli.main` in a thread: it runs its own event loop, which cannot nest in the test's."""
    return await asyncio.to_thread(cli.main, list(argv))


# --- rendering ---------------------------------------------------------------------------------------

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


RUN = RunRecord(
    run_id='run-abc',
    workflow_id='demo-123',
    temporal_run_ids=('t1',),
    agent_name='demo',
    status='completed',
    started_at=T0,
    updated_at=at(2.5),
    task_queue='tq',
    ended_at=at(2.5),
    usage=Usage(requests=2, input_tokens=100, output_tokens=20, tool_calls=1),
    prompt_preview='order widgets',
    output_preview='ordered\n3 widgets',
)


def event(kind: str, seconds: float, **fields: object) -> StepEvent:
    values: dict[str, object] = {
        'run_id': 'run-abc',
        'workflow_id': 'demo-123',
        'temporal_run_id': 't1',
        'activity_id': '-',
        'attempt': 0,
        'kind': kind,
        'timestamp': at(seconds),
        'state': 'accepted',
    }
    values.update(fields)
    return StepEvent(**values)  # type: ignore[arg-type]


EVENTS = [
    event('run_started', 0, detail='order widgets', seq=1),
    event('model_request_started', 0.1, activity_id='1', attempt=1, step=1, seq=2),
    event(
        'model_request_completed',
        0.2,
        activity_id='1',
        attempt=1,
        step=1,
        model_name='gpt-test',
        usage=Usage(requests=1, input_tokens=50, output_tokens=10),
        duration_s=0.1,
        seq=3,
    ),
    event('tool_call_started', 0.3, activity_id='2', attempt=1, step=1, tool_name='place_order', state='abandoned'),
    event(
        'tool_call_failed',
        0.31,
        activity_id='2',
        attempt=1,
        step=1,
        tool_name='place_order',
        error=ErrorInfo('ConnectionError', 'order service unavailable', retryable=True),
        duration_s=0.01,
        state='abandoned',
    ),
    event('tool_call_started', 1.3, activity_id='2', attempt=2, step=1, tool_name='place_order'),
    event(
        'tool_call_completed',
        1.31,
        activity_id='2',
        attempt=2,
        step=1,
        tool_name='place_order',
        outcome='returned',
        duration_s=0.012,
    ),
    event('tool_call_started', 1.4, activity_id='3', attempt=1, step=1, tool_name='slow', state='provisional'),
    event(
        'tool_call_completed',
        1.5,
        activity_id='validate:x',
        step=1,
        tool_name='add',
        outcome='validation_error',
        detail='1 validation error for add\na\n  Input should be a valid integer',
    ),
    event('run_completed', 2.5, detail='ordered 3 widgets'),
]

STEPS = [
    StepRecord('run-abc', 't1', '1', 'model_request', 1, 1, 1, 'completed', usage=Usage(1, 50, 10)),
    StepRecord('run-abc', 't1', '2', 'tool_call', 1, 2, 2, 'completed', tool_name='place_order', outcome='returned'),
    StepRecord('run-abc', 't1', '3', 'tool_call', 1, 1, None, 'running', tool_name='slow'),
]


def line_with(text: str, *needles: str) -> str:
    matches = [line for line in text.splitlines() if all(needle in line for needle in needles)]
    assert len(matches) == 1, (needles, text)
    return matches[0]


def fact(text: str, label: str) -> str:
    """The value of a header line `label  value`."""
    return next(line for line in text.splitlines() if re.match(rf'{label}\s\s', line)).removeprefix(label).strip()


def test_render_runs_table() -> None:
    running = RunRecord(
        run_id='run-new',
        workflow_id='wf-new',
        temporal_run_ids=('t2',),
        agent_name='calc',
        status='running',
        started_at=at(60),
        updated_at=at(60),
        task_queue='tq',
        workflow_type='ReviewWorkflow',
    )
    table = render_runs([running, RUN])
    header, first, second = table.splitlines()
    assert re.split(r'\s{2,}', header) == [
        'RUN ID',
        'AGENT',
        'STATUS',
        'STARTED (UTC)',
        'DURATION',
        'REQUESTS',
        'TOKENS',
        'WORKFLOW TYPE',
        'WORKFLOW ID',
    ]
    assert first.split() == [
        'run-new',
        'calc',
        'running',
        '2026-01-02',
        '03:05:05',
        '-',
        '0',
        '0',
        'ReviewWorkflow',
        'wf-new',
    ]
    assert second.split() == [
        'run-abc',
        'demo',
        'completed',
        '2026-01-02',
        '03:04:05',
        '2.50s',
        '2',
        '120',
        '-',
        'demo-123',
    ]
    assert render_runs([]) == 'No runs.'


def test_render_timeline_facts_events_and_steps() -> None:
    text = render_timeline(RunView(RUN, EVENTS, STEPS))
    assert fact(text, 'run') == 'run-abc'
    assert fact(text, 'status') == 'completed'
    assert fact(text, 'ended') == '2026-01-02 03:04:07 UTC (2.50s)'
    assert fact(text, 'usage') == '2 model requests, 120 tokens (100 in, 20 out), 1 tool call'
    # Multi-line values are shown on one line.
    assert fact(text, 'output') == 'ordered 3 widgets'

    failed = line_with(text, 'tool call failed')
    assert failed.split()[:6] == ['+0.310s', '1', 'tool', 'call', 'failed', '1']
    assert 'place_order' in failed and 'ConnectionError: order service unavailable' in failed
    assert failed.endswith('10ms [abandoned]')
    assert line_with(text, 'tool call started', '+0.300s').endswith('[abandoned]')
    retried = line_with(text, 'tool call completed', '+1.310s')
    assert retried.split()[5] == '2' and retried.endswith('returned, 12ms')
    assert line_with(text, 'model request completed').split()[-5:] == [
        'gpt-test',
        '50+10',
        'tokens',
        'billed,',
        '100ms',
    ]
    assert line_with(text, '+1.400s').split()[-2:] == ['slow', '[provisional]']
    # Workflow-side events have no attempt; a validation error shows what is wrong, on one line.
    validation = line_with(text, '+1.500s')
    assert validation.split()[5] == '-'
    assert 'validation_error: 1 validation error for add a Input should be a...' in validation
    assert line_with(text, 'run completed').endswith('output: ordered 3 widgets')

    steps = text.split('\nSteps\n', 1)[1].splitlines()
    assert steps[0].split() == ['STEP', 'KIND', 'NAME', 'ATTEMPTS', 'ACCEPTED', 'STATUS', 'RESULT']
    assert steps[1].split() == ['1', 'model', 'request', 'gpt-test', '1', '#1', 'completed', '60', 'tokens', 'billed']
    assert steps[2].split() == ['1', 'tool', 'call', 'place_order', '2', '#2', 'completed', 'returned']
    assert steps[3].split() == ['1', 'tool', 'call', 'slow', '1', 'none', 'running']


def test_render_timeline_of_a_failed_run_without_events() -> None:
    failed = RunRecord(
        run_id='run-f',
        workflow_id='wf',
        temporal_run_ids=('t1', 't2'),
        agent_name='typed',
        status='failed',
        started_at=T0,
        updated_at=at(90),
        task_queue='tq',
        ended_at=at(3725),
        error=ErrorInfo('UnknownAgent', "no agent named 'nope'", retryable=False),
        parent_run_id='run-parent',
        parent_tool_call_id='call-1',
        forked_from=ForkRef(run_id='run-origin', snapshot_id='snap-1', reason='restart'),
    )
    text = render_timeline(RunView(failed, [], []))
    assert fact(text, 'seeded from') == 'run-origin (restart, snapshot snap-1)'
    assert fact(text, 'temporal runs') == 't1, t2'
    assert fact(text, 'ended').endswith('(1h02m05s)')
    assert fact(text, 'parent run') == 'run-parent (tool call call-1)'
    assert fact(text, 'error') == "UnknownAgent: no agent named 'nope'"
    assert '(no events)' in text and '(no steps)' in text


def snapshot_record(step: int, kind: str, seconds: float, *, temporal_run_id: str = 't1') -> SnapshotRecord:
    return SnapshotRecord(
        snapshot_id=f'run-abc.{"final" if kind == "final" else f"s{step}"}.{step:012d}',
        run_id='run-abc',
        temporal_run_id=temporal_run_id,
        step=step,
        kind=kind,  # type: ignore[arg-type]
        parent_id=None,
        new_hashes=('h',),
        message_count=step * 2 - 1,
        created_at=at(seconds),
    )


def test_render_timeline_places_snapshots_and_lineage() -> None:
    later = replace(RUN, started_at=at(10), updated_at=at(12), ended_at=at(12), status='completed')
    continued = replace(later, run_id='run-next', forked_from=ForkRef('run-abc', 'run-abc.final.x', 'continue'))
    forks = [
        replace(later, run_id=f'run-fork{i}', status='running', forked_from=ForkRef('run-abc', 'run-abc.s1.x', 'fork'))
        for i in (1, 2)
    ]
    snapshots = [
        snapshot_record(1, 'model_request', 0.15),
        snapshot_record(1, 'final', 2.6),
        # No event of its Temporal run was recorded: it goes where its time puts it.
        snapshot_record(2, 'model_request', 1.35, temporal_run_id='t0'),
    ]
    view = RunView(RUN, EVENTS, STEPS, snapshots=snapshots, continuations=[continued, *forks])
    text = render_timeline(view)
    timeline = text.split('\nTimeline\n', 1)[1].split('\n\nSteps\n', 1)[0].splitlines()
    marker = timeline.index(line_with(text, 'model request started')) + 1
    assert timeline[marker].split() == ['+0.150s', '1', 'snapshot', 'run-abc.s1.000000000001', '(1', 'message)']
    assert timeline[-1].split() == ['+2.600s', '1', 'final', 'snapshot', 'run-abc.final.000000000001', '(1', 'message)']
    assert 'run completed' in timeline[-2]
    late = timeline.index(line_with(text, 'run-abc.s2.'))
    assert '+1.310s' in timeline[late - 1] and '(3 messages)' in timeline[late]

    assert fact(text, 'continued by') == 'run-next (completed, from snapshot run-abc.final.x)'
    forked = text.splitlines()[text.splitlines().index(line_with(text, 'forked into')) :][:2]
    assert [line.split() for line in forked] == [
        ['forked', 'into', 'run-fork1', '(running,', 'from', 'snapshot', 'run-abc.s1.x)'],
        ['run-fork2', '(running,', 'from', 'snapshot', 'run-abc.s1.x)'],
    ]
    assert 'In doubt' not in text and 'Delegated runs' not in text


def test_render_in_doubt_attempt_of_a_call_that_a_retry_completed() -> None:
    # `slow` attempt 1 never ended; say attempt 2 (not recorded here) completed and the run used it.
    events = [replace(e, tool_call_id='call-slow') if e.tool_name == 'slow' else e for e in EVENTS]
    effect = ToolEffect('run-abc', 'call-slow', 'slow', 'completed', 2, 'demo-123/call-slow', 'returned', (1,))
    text = render_timeline(RunView(RUN, events, STEPS, tool_effects=[effect]))
    assert re.split(r'\s{2,}', line_with(text, '+1.400s'))[-2:] == ['slow', '[provisional] [in doubt]']
    assert line_with(text, 'call-slow').split() == [
        'slow',
        'call-slow',
        '1',
        'completed',
        '2',
        '#1',
        'demo-123/call-slow',
    ]
    assert 'check for a duplicate effect' in text
    # Nothing to go on from: the run used the retry.
    assert 'agentledger continue' not in text and 'agentledger fork' not in text


def test_json_shapes_round_trip() -> None:
    shown = json.loads(json.dumps(run_json(RunView(RUN, EVENTS, STEPS))))
    assert list(shown) == [
        'schema',
        'run',
        'steps',
        'events',
        'snapshots',
        'tool_effects',
        'continuations',
        'children',
        'model_calls',
        'effects',
        'workflow_runs',
        'pending_approvals',
    ]
    assert shown['schema'] == 'agentledger.show/1'
    assert [shown[key] for key in ('snapshots', 'tool_effects', 'continuations', 'children')] == [[], [], [], []]
    assert RunRecord.from_json(shown['run']) == RUN
    assert [StepEvent.from_json(e) for e in shown['events']] == EVENTS
    assert shown['steps'][1]['accepted_attempt'] == 2
    assert shown['events'][4]['state'] == 'abandoned'

    listed = json.loads(json.dumps(runs_json([RUN])))
    assert listed == {'schema': 'agentledger.runs/1', 'runs': [RUN.to_json()]}
    assert RunRecord.from_json(listed['runs'][0]) == RUN


# --- reads of a ledger filled by a real run ----------------------------------------------------------


@dataclass
class Recorded:
    ledger_url: str
    run_id: str
    workflow_id: str


@pytest.fixture(scope='module')
async def recorded(temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    path = tmp_path_factory.mktemp('cli') / 'runs.db'
    async with SqliteLedger(path) as ledger, serve(temporal_env, ledger, [calc_agent]) as served:
        result = await agentledger.run(served.client, calc_agent, 'compute', task_queue=served.task_queue)
    return Recorded(f'sqlite:///{path}', result.run_id, result.workflow_id)


async def test_runs_lists_the_run(recorded: Recorded, capsys: pytest.CaptureFixture[str]) -> None:
    assert await invoke('runs', '--ledger', recorded.ledger_url) == 0
    out = capsys.readouterr().out
    row = line_with(out, recorded.run_id)
    assert row.split()[1:3] == ['calc', 'completed'] and row.endswith(recorded.workflow_id)

    assert await invoke('runs', '--ledger', recorded.ledger_url, '--json', '--agent', 'calc', '--limit', '1') == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed['schema'] == 'agentledger.runs/1'
    assert [run['run_id'] for run in listed['runs']] == [recorded.run_id]

    for filters in (['--agent', 'nope'], ['--status', 'failed'], ['--before', recorded.run_id]):
        assert await invoke('runs', '--ledger', recorded.ledger_url, *filters) == 0
        assert capsys.readouterr().out.strip() == 'No runs.'


async def test_runs_skips_a_corrupt_run_record_and_reports_it_c19(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """C19: `runs` lists the good runs and says on stderr which record it skipped; `show` of it fails naming it."""
    path = tmp_path / 'runs.db'
    async with SqliteLedger(path) as ledger:
        for index, run_id in enumerate(['run-old', 'run-bad', 'run-new']):
            await ledger.start_run(RunStart(run_id, f'wf-{run_id}', 't1', 'demo', at(index), 'tq'))
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.execute("UPDATE runs SET usage = 'not json' WHERE run_id = 'run-bad'")
    url = f'sqlite:///{path}'

    for argv in (['runs', '--ledger', url], ['runs', '--ledger', url, '--json']):
        assert await invoke(*argv) == 0
        captured = capsys.readouterr()
        assert 'run-new' in captured.out and 'run-old' in captured.out and 'run-bad' not in captured.out
        [line] = captured.err.splitlines()
        assert line.startswith("agentledger: skipped 1 corrupt run record: run-bad: row 'run-bad' of table runs")
        assert line.endswith('does not decode: Expecting value: line 1 column 1 (char 0)')

    assert await invoke('show', 'run-bad', '--ledger', url) == 1
    err = capsys.readouterr().err
    assert err.startswith("agentledger: row 'run-bad' of table runs") and 'does not decode' in err


async def test_runs_reads_the_ledger_from_the_environment(
    recorded: Recorded, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('AGENTLEDGER_LEDGER', recorded.ledger_url)
    assert await invoke('runs') == 0
    assert recorded.run_id in capsys.readouterr().out


async def test_show_prints_the_timeline(recorded: Recorded, capsys: pytest.CaptureFixture[str]) -> None:
    assert await invoke('show', recorded.run_id, '--ledger', recorded.ledger_url) == 0
    out = capsys.readouterr().out
    assert fact(out, 'run') == recorded.run_id
    assert fact(out, 'agent') == 'calc'
    failed = line_with(out, 'tool call failed')
    assert failed.split()[5:7] == ['1', 'flaky']
    assert 'RuntimeError: transient failure' in failed and failed.endswith('[abandoned]')
    retried = line_with(out, 'tool call completed', ' 2  flaky')
    assert 'returned, ' in retried and '[' not in retried
    assert 'retry_requested: say it in upper case' in out
    assert 'validation_error' in out
    flaky_step = line_with(out, 'tool call', 'flaky', 'completed  returned')
    assert flaky_step.split()[4:6] == ['2', '#2']
    # Each model request's snapshot follows its start; the final snapshot follows the run's end.
    timeline = out.split('\nTimeline\n', 1)[1].split('\n\nSteps\n', 1)[0].splitlines()
    starts = [i for i, line in enumerate(timeline) if 'model request started' in line]
    assert len(starts) == 5
    for number, index in enumerate(starts, start=1):
        marker = timeline[index + 1].split()
        assert marker[1:3] == [str(number), 'snapshot'] and marker[3].startswith(f'{recorded.run_id}.s{number}.')
        assert marker[4:] == ['(1', 'message)'] if number == 1 else [f'({2 * number - 1}', 'messages)']
    assert 'run completed' in timeline[-2]
    assert timeline[-1].split()[1:4] == ['5', 'final', 'snapshot'] and timeline[-1].endswith('(10 messages)')
    assert 'In doubt' not in out and 'Delegated runs' not in out and 'continued by' not in out

    assert await invoke('show', recorded.run_id, '--ledger', recorded.ledger_url, '--json') == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown['schema'] == 'agentledger.show/1'
    assert [(s['step'], s['kind'], s['message_count']) for s in shown['snapshots']] == [
        (1, 'model_request', 1),
        (2, 'model_request', 3),
        (3, 'model_request', 5),
        (4, 'model_request', 7),
        (5, 'model_request', 9),
        (5, 'final', 10),
    ]
    effects = {(e['tool_name'], e['outcome']): e for e in shown['tool_effects']}
    assert len(effects) == 5 and effects['flaky', 'returned']['attempts'] == 2
    assert all(e['status'] == 'completed' and e['in_doubt_attempts'] == [] for e in effects.values())
    assert shown['continuations'] == [] and shown['children'] == []
    assert shown['run']['run_id'] == recorded.run_id and shown['run']['status'] == 'completed'
    flaky = [(e['kind'], e['attempt'], e['state']) for e in shown['events'] if e['tool_name'] == 'flaky']
    assert flaky == [
        ('tool_call_started', 1, 'abandoned'),
        ('tool_call_failed', 1, 'abandoned'),
        ('tool_call_started', 2, 'accepted'),
        ('tool_call_completed', 2, 'accepted'),
    ]
    assert len(shown['steps']) == 10


async def test_snapshots_lists_and_prints_messages(recorded: Recorded, capsys: pytest.CaptureFixture[str]) -> None:
    assert await invoke('snapshots', recorded.run_id, '--ledger', recorded.ledger_url) == 0
    captured = capsys.readouterr()
    header, *lines = captured.out.splitlines()
    assert re.split(r'\s{2,}', header) == ['SNAPSHOT ID', 'STEP', 'KIND', 'MESSAGES', 'CREATED (UTC)', 'PARENT']
    rows = [line.split() for line in lines]
    ids = [row[0] for row in rows]
    assert [(row[1], ' '.join(row[2:-4]), row[-4]) for row in rows] == [
        ('1', 'model request', '1'),
        ('2', 'model request', '3'),
        ('3', 'model request', '5'),
        ('4', 'model request', '7'),
        ('5', 'model request', '9'),
        ('5', 'final', '10'),
    ]
    # A chain: each snapshot's parent is the one before it.
    assert [row[-1] for row in rows] == ['-', *ids[:-1]]
    assert f'continue starts from the latest, {ids[-1]}' in captured.err

    assert await invoke('snapshots', recorded.run_id, '--ledger', recorded.ledger_url, '--json') == 0
    listed = json.loads(capsys.readouterr().out)
    assert (listed['schema'], listed['run_id'], listed['latest']) == (
        'agentledger.snapshots/1',
        recorded.run_id,
        ids[-1],
    )
    assert [SnapshotRecord.from_json(s).snapshot_id for s in listed['snapshots']] == ids

    assert await invoke('snapshots', recorded.run_id, '--ledger', recorded.ledger_url, '--messages', ids[-1]) == 0
    messages = ModelMessagesTypeAdapter.validate_json(capsys.readouterr().out)
    assert len(messages) == 10
    assert isinstance(messages[0], ModelRequest) and isinstance(messages[0].parts[0], UserPromptPart)
    assert messages[0].parts[0].content == 'compute'
    assert isinstance(messages[-1], ModelResponse) and messages[-1].parts == [TextPart('done')]

    cases = [
        (['--messages', 'garbage'], 'malformed snapshot id'),
        (['--messages', f'{recorded.run_id}.s9.000000000000'], 'no snapshot with id'),
    ]
    for argv, message in cases:
        assert await invoke('snapshots', recorded.run_id, '--ledger', recorded.ledger_url, *argv) == 1
        err = capsys.readouterr().err
        assert err.startswith('agentledger: ') and message in err and len(err.strip().splitlines()) == 1, err


async def in_doubt_ledger(path: Path) -> str:
    """A run whose worker died inside `long_task` (attempt 1 started, never ended) and that then failed.

    With what `show` links to it: a delegate run with a delegate of its own, and a continuation.
    Returns the id of the run's snapshot.
    """
    async with SqliteLedger(path) as ledger:
        # Written first: a snapshot's time is when it is written, and the run's events are placed around it.
        snapshot = await ledger.write_snapshot(
            run_id='run-crashed',
            temporal_run_id='t1',
            step=1,
            kind='model_request',
            messages=[ModelRequest(parts=[UserPromptPart('go')])],
        )
        assert snapshot is not None
        start = snapshot.created_at - timedelta(seconds=0.15)

        def after(seconds: float) -> datetime:
            return start + timedelta(seconds=seconds)

        base = {'run_id': 'run-crashed', 'workflow_id': 'wf-crashed', 'temporal_run_id': 't1'}
        await ledger.start_run(
            RunStart('run-crashed', 'wf-crashed', 't1', agent_name='crashy', started_at=start, task_queue='tq')
        )
        await ledger.record_events(
            [
                event('model_request_started', 0, **base, timestamp=after(0.1), activity_id='1', attempt=1, step=1),
                event(
                    'model_request_completed',
                    0,
                    **base,
                    timestamp=after(0.2),
                    activity_id='1',
                    attempt=1,
                    step=1,
                    duration_s=0.1,
                ),
                event(
                    'tool_call_started',
                    0,
                    **base,
                    timestamp=after(0.3),
                    activity_id='2',
                    attempt=1,
                    step=1,
                    tool_call_id='call-1',
                    tool_name='long_task',
                ),
            ]
        )
        await ledger.accept([Acceptance(**base, activity_id='1', outcome='completed')])
        await ledger.seal_run(
            RunSeal(
                'run-crashed',
                'wf-crashed',
                't1',
                status='failed',
                ended_at=after(60),
                error=ErrorInfo('ActivityError', 'activity timed out', retryable=False),
            )
        )
        delegates = [
            ('run-child', 'run-crashed', 'call-0', 'researcher', 0.05),
            ('run-grandchild', 'run-child', 'call-9', 'writer', 0.07),
        ]
        for run_id, parent, call, agent, started in delegates:
            await ledger.start_run(
                RunStart(
                    run_id=run_id,
                    workflow_id=f'wf-{run_id}',
                    temporal_run_id='c1',
                    agent_name=agent,
                    started_at=after(started),
                    task_queue='tq',
                    parent_run_id=parent,
                    parent_tool_call_id=call,
                )
            )
        await ledger.seal_run(
            RunSeal('run-child', 'wf-run-child', 'c1', 'completed', ended_at=after(1.25), usage=Usage(2, 100, 20))
        )
        await ledger.start_run(
            RunStart(
                run_id='run-next',
                workflow_id='wf-next',
                temporal_run_id='n1',
                agent_name='crashy',
                started_at=after(120),
                task_queue='tq',
                forked_from=ForkRef('run-crashed', snapshot.snapshot_id, 'continue'),
            )
        )
    return snapshot.snapshot_id


async def test_show_marks_tool_calls_in_doubt_delegates_and_continuations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / 'crashed.db'
    snapshot_id = await in_doubt_ledger(path)
    url = f'sqlite:///{path}'
    assert await invoke('show', 'run-crashed', '--ledger', url) == 0
    out = capsys.readouterr().out
    assert fact(out, 'status') == 'failed'
    assert fact(out, 'continued by') == f'run-next (running, from snapshot {snapshot_id})'
    started = line_with(out, 'tool call started')
    assert 'long_task' in started and started.endswith('[abandoned] [in doubt]')
    assert line_with(out, '  snapshot  ').split()[1:4] == ['1', 'snapshot', snapshot_id]

    delegated = out.split('\nDelegated runs\n', 1)[1].split('\n\n', 1)[0].splitlines()
    assert re.split(r'\s{2,}', delegated[0].strip()) == [
        'RUN ID',
        'AGENT',
        'STATUS',
        'REQUESTS',
        'TOKENS',
        'DURATION',
        'TOOL CALL',
    ]
    assert delegated[1].split() == ['run-child', 'researcher', 'completed', '2', '120', '1.20s', 'call-0']
    # The grandchild is indented under the child that started it.
    assert delegated[2].startswith('    run-grandchild ')
    assert delegated[2].split() == ['run-grandchild', 'writer', 'running', '0', '0', '-', 'call-9']

    doubt = out.split('\nIn doubt\n', 1)[1].splitlines()
    assert 'may or may not have acted' in '\n'.join(doubt)
    row = line_with(out, 'call-1', 'long_task').split()
    assert row == ['long_task', 'call-1', '1', 'unknown_after_crash', '1', '#1', 'wf-crashed/call-1']
    assert line_with(out, 'agentledger continue').split()[:5] == [
        'agentledger',
        'continue',
        'run-crashed',
        '--ledger',
        url,
    ]
    fork = line_with(out, 'agentledger fork')
    assert fork.split()[:7] == ['agentledger', 'fork', 'run-crashed', '--at-step', '1', '--ledger', url]
    assert fork.endswith('called long_task')

    assert await invoke('show', 'run-crashed', '--ledger', url, '--json') == 0
    shown = json.loads(capsys.readouterr().out)
    (effect,) = shown['tool_effects']
    assert (effect['tool_call_id'], effect['status'], effect['in_doubt_attempts']) == (
        'call-1',
        'unknown_after_crash',
        [1],
    )
    assert effect['idempotency_key'] == 'wf-crashed/call-1'
    assert [s['snapshot_id'] for s in shown['snapshots']] == [snapshot_id]
    assert shown['continuations'] == ['run-next']
    assert [RunRecord.from_json(child).run_id for child in shown['children']] == ['run-child']

    # From the other end: the continuation names its source, the child its parent.
    assert await invoke('show', 'run-next', '--ledger', url) == 0
    assert fact(capsys.readouterr().out, 'seeded from') == f'run-crashed (continue, snapshot {snapshot_id})'
    assert await invoke('show', 'run-child', '--ledger', url) == 0
    out = capsys.readouterr().out
    assert fact(out, 'parent run') == 'run-crashed (tool call call-0)'
    assert line_with(out, 'run-grandchild').split()[1] == 'writer'


async def test_read_errors_are_one_line(recorded: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (
            ['show', 'run-nope', '--ledger', recorded.ledger_url],
            "no ledger run goes by 'run-nope' (tried it as a ledger run id or workflow id)",
        ),
        (['runs', '--before', 'run-nope', '--ledger', recorded.ledger_url], "no ledger run with id 'run-nope'"),
        (['show', 'run-x', '--ledger', 'postgres://user:secret@host/db'], "unsupported ledger scheme 'postgres'"),
        (['runs', '--ledger', f'sqlite:///{tmp_path}/missing.db'], 'missing.db does not exist'),
    ]
    for argv, message in cases:
        assert await invoke(*argv) == 1
        err = capsys.readouterr().err
        assert err.startswith('agentledger: ') and message in err, err
        assert len(err.strip().splitlines()) == 1 and 'secret' not in err
    # A read never creates the ledger it did not find.
    assert not (tmp_path / 'missing.db').exists()


async def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert await invoke() == 2
    assert await invoke('runs', '--limit', '0') == 2
    assert await invoke('runs', '--status', 'weird') == 2
    assert await invoke('run', 'calc', 'hi', '--deps', '{not json') == 2
    assert 'not valid JSON' in capsys.readouterr().err
    assert await invoke('fork', 'run-x') == 2
    assert 'one of the arguments --at-step --snapshot is required' in capsys.readouterr().err
    assert await invoke('fork', 'run-x', '--at-step', '1', '--snapshot', 'run-x.s1.0') == 2
    assert await invoke('fork', 'run-x', '--at-step', 'two') == 2
    assert await invoke('worker', '--agent', 'tests.helpers.agents:calc_agent', '--outage', 'ignore') == 2
    assert "invalid choice: 'ignore'" in capsys.readouterr().err
    assert await invoke('--version') == 0
    assert capsys.readouterr().out.strip() == f'agentledger {agentledger.__version__}'


# --- run and worker ------------------------------------------------------------------------------------


async def test_run_prints_the_output(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = temporal_env.client.service_client.config.target_host
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [calc_agent]) as served:
        common = ['--address', address, '--task-queue', served.task_queue]
        assert await invoke('run', 'calc', 'compute', *common) == 0
        captured = capsys.readouterr()
        assert captured.out == 'done\n'
        assert 'agentledger show run-' in captured.err

        assert await invoke('run', 'calc', 'compute', *common, '--json', '--workflow-id', 'cli-run-1') == 0
        result = json.loads(capsys.readouterr().out)
        assert result['schema'] == 'agentledger.run/1'
        assert (result['output'], result['workflow_id']) == ('done', 'cli-run-1')
        assert result['usage']['requests'] == 5
        assert (await ledger.run(result['run_id'])).status == 'completed'

        # Nothing serves this task queue, so the workflow stays running and its id stays taken.
        busy = await agentledger.start(served.client, calc_agent, 'wait', task_queue='nobody', workflow_id='cli-busy')
        assert await invoke('run', 'calc', 'again', *common, '--workflow-id', 'cli-busy') == 1
        assert "a workflow with id 'cli-busy' is already running" in capsys.readouterr().err
        await busy.workflow_handle.terminate()

        assert await invoke('run', 'nope', 'hi', *common) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith('agentledger: run run-') and "UnknownAgent: no agent named 'nope'" in err


# --- continue and fork --------------------------------------------------------------------------------


async def test_continue_from_the_command_line_and_lineage_in_show(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = temporal_env.client.service_client.config.target_host
    path = tmp_path / 'runs.db'
    common = ['--ledger', f'sqlite:///{path}', '--address', address]
    async with SqliteLedger(path) as ledger, serve(temporal_env, ledger, [notes_agent]) as served:
        first = await agentledger.run(served.client, notes_agent, 'save milk', task_queue=served.task_queue)
        latest = await ledger.latest_snapshot(first.run_id)
        milk = agents.saved_notes.count('milk')

        # No --task-queue: the continuation goes to the source run's, where the worker is.
        assert await invoke('continue', first.run_id, 'how many?', *common, '--wait') == 0
        captured = capsys.readouterr()
        assert captured.out == f'{len(agents.saved_notes)} notes\n'
        assert agents.saved_notes.count('milk') == milk  # the completed tool call is not run again
        (continued,) = await ledger.runs(forked_from_run_id=first.run_id)
        assert continued.forked_from == ForkRef(first.run_id, latest.snapshot_id, 'continue')
        assert (continued.status, continued.task_queue, continued.prompt_preview) == (
            'completed',
            served.task_queue,
            'how many?',
        )
        assert f'started run {continued.run_id} (workflow notes-continue-' in captured.err
        assert f'seeded from {first.run_id} (continue, snapshot {latest.snapshot_id})' in captured.err
        assert f'agentledger show {continued.run_id}' in captured.err

        # --json without --wait: what was started, and from where.
        workflow_id = f'cli-continue-{uuid.uuid4().hex[:8]}'
        argv = ['continue', continued.run_id, 'save eggs', *common, '--json', '--workflow-id', workflow_id]
        assert await invoke(*argv) == 0
        started = json.loads(capsys.readouterr().out)
        continued_latest = await ledger.latest_snapshot(continued.run_id)
        assert started == {
            'schema': 'agentledger.start/1',
            'run_id': started['run_id'],
            'workflow_id': workflow_id,
            'forked_from': {
                'run_id': continued.run_id,
                'snapshot_id': continued_latest.snapshot_id,
                'reason': 'continue',
            },
        }
        output = await served.client.get_workflow_handle_for(AgentRunWorkflow.run, workflow_id).result()
        assert output.run_id == started['run_id'] and agents.saved_notes.count('eggs') >= 1

    # Lineage from both ends: the middle run was seeded from the first and continued by the third.
    assert await invoke('show', continued.run_id, *common[:2]) == 0
    out = capsys.readouterr().out
    assert fact(out, 'seeded from') == f'{first.run_id} (continue, snapshot {latest.snapshot_id})'
    assert fact(out, 'continued by') == f'{output.run_id} (completed, from snapshot {continued_latest.snapshot_id})'
    assert await invoke('show', first.run_id, *common[:2]) == 0
    assert fact(capsys.readouterr().out, 'continued by') == (
        f'{continued.run_id} (completed, from snapshot {latest.snapshot_id})'
    )


async def test_fork_from_the_command_line_and_bad_seeds_start_nothing(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = temporal_env.client.service_client.config.target_host
    path = tmp_path / 'runs.db'
    url = f'sqlite:///{path}'
    common = ['--ledger', url, '--address', address]
    async with SqliteLedger(path) as ledger, serve(temporal_env, ledger, [calc_agent]) as served:
        source = await agentledger.run(served.client, calc_agent, 'compute', task_queue=served.task_queue)
        at_two = await ledger.snapshot_at_step(source.run_id, 2)

        workflow_id = f'cli-fork-{uuid.uuid4().hex[:8]}'
        assert await invoke('fork', source.run_id, '--at-step', '2', *common, '--workflow-id', workflow_id) == 0
        out = capsys.readouterr().out
        assert fact(out, 'workflow') == workflow_id and fact(out, 'task queue') == served.task_queue
        assert fact(out, 'seeded from') == f'{source.run_id} (fork, snapshot {at_two.snapshot_id})'
        output = await served.client.get_workflow_handle_for(AgentRunWorkflow.run, workflow_id).result()
        assert output.run_id == fact(out, 'run')
        # Step 2's history replays steps 2 to 5 of the script: four model requests.
        assert (output.output, output.usage.requests) == ('done', 4)
        assert (await ledger.run(output.run_id)).forked_from == ForkRef(source.run_id, at_two.snapshot_id, 'fork')

        final = await ledger.latest_snapshot(source.run_id)
        argv = ['fork', source.run_id, '--snapshot', final.snapshot_id, '--prompt', 'once more', *common]
        assert await invoke(*argv, '--wait', '--json') == 0
        result = json.loads(capsys.readouterr().out)
        assert result['schema'] == 'agentledger.run/1'
        assert (result['output'], result['usage']['requests']) == ('done', 1)
        assert result['forked_from'] == {'run_id': source.run_id, 'snapshot_id': final.snapshot_id, 'reason': 'fork'}
        assert (await ledger.run(result['run_id'])).prompt_preview == 'once more'

        runs_before = await ledger.runs(limit=100)
        cases = [
            (['fork', source.run_id, '--at-step', '99', *common], f'run {source.run_id} has no step 99'),
            (['continue', 'run-missing', 'hi', *common], "no ledger run goes by 'run-missing'"),
            (['fork', source.run_id, '--snapshot', 'garbage', *common], 'malformed snapshot id'),
            (
                ['fork', output.run_id, '--snapshot', at_two.snapshot_id, *common],
                f'does not belong to run {output.run_id!r}',
            ),
            # The seed is checked before Temporal is: an unreachable server does not hide a bad run id.
            (['continue', 'run-missing', '--ledger', url, '--address', 'localhost:1'], "'run-missing'"),
        ]
        for argv, message in cases:
            workflow_id = f'cli-bad-{uuid.uuid4().hex[:8]}'
            assert await invoke(*argv, '--workflow-id', workflow_id) == 1
            err = capsys.readouterr().err
            assert err.startswith('agentledger: ') and message in err and len(err.strip().splitlines()) == 1, err
            with pytest.raises(RPCError, match='not found'):
                await served.client.get_workflow_handle(workflow_id).describe()
        assert await ledger.runs(limit=100) == runs_before

        assert await invoke('snapshots', output.run_id, '--ledger', url, '--messages', at_two.snapshot_id) == 1
        assert f'does not belong to run {output.run_id!r}' in capsys.readouterr().err


async def test_reconcile_from_the_command_line(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`reconcile`: a dry run reports (exit 3), a plain one repairs (exit 0); `show` and `runs` mark a degraded run."""
    path = tmp_path / 'runs.db'
    address = temporal_env.client.service_client.config.target_host
    async with SqliteLedger(path) as ledger, serve(temporal_env, ledger, [calc_agent]) as served:
        result = await agentledger.run(served.client, calc_agent, 'compute', task_queue=served.task_queue)
        events = await ledger.events(result.run_id)
    lost = next(e for e in events if e.kind == 'model_request_completed' and e.step == 2)
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.execute('DELETE FROM events WHERE event_key = ?', (lost.key,))
    common = ['--ledger', f'sqlite:///{path}', '--address', address]

    assert await invoke('reconcile', result.run_id, *common, '--dry-run', '--json') == 3
    document = json.loads(capsys.readouterr().out)
    assert document['schema'] == 'agentledger.reconcile/1'
    [report] = document['runs']
    assert (report['run_id'], report['open'], report['repaired']) == (result.run_id, False, False)
    assert report['counts']['missing'] == 1 and report['counts']['ok'] > 20
    assert [(f['category'], f['row'], f['key']) for f in report['findings']] == [('missing', 'event', lost.key)]

    assert await invoke('reconcile', result.run_id, *common) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f'{result.run_id}  completed') and out.splitlines()[0].endswith('repaired')
    assert f'missing    event       {lost.key}  in history, not in the ledger' in out
    assert await invoke('reconcile', '--all', *common) == 0
    assert 'agrees with history' in capsys.readouterr().out

    assert await invoke('show', result.run_id, '--ledger', f'sqlite:///{path}') == 0
    assert 'ledger repaired' in line_with(capsys.readouterr().out, 'missing event: in history, not in the ledger')

    async with SqliteLedger(path) as ledger:
        await ledger.update_run(result.run_id, lambda run: replace(run, degraded=('step 2 tool_call_started',)))
    assert await invoke('runs', '--ledger', f'sqlite:///{path}') == 0
    assert 'completed (degraded)' in line_with(capsys.readouterr().out, result.run_id)
    assert await invoke('show', result.run_id, '--ledger', f'sqlite:///{path}') == 0
    shown = capsys.readouterr().out
    assert fact(shown, 'degraded').startswith('1 write missed a ledger outage')
    assert 'step 2 tool_call_started' in shown
    assert await invoke('reconcile', result.run_id, *common) == 0
    async with SqliteLedger(path) as ledger:
        assert (await ledger.run(result.run_id)).degraded == ()

    assert await invoke('reconcile', *common) == 1
    assert 'give a RUN_ID or --all' in capsys.readouterr().err
    assert await invoke('reconcile', 'run-nope', *common) == 1
    assert "no ledger run goes by 'run-nope'" in capsys.readouterr().err


async def test_run_without_a_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert await invoke('run', 'calc', 'hi', '--address', 'localhost:1') == 1
    err = capsys.readouterr().err
    assert err.startswith('agentledger: cannot connect to Temporal at localhost:1')
    assert len(err.strip().splitlines()) == 1


async def test_worker_rejects_agents_it_cannot_serve(capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        ('nope.module:agent', "cannot import agent 'nope.module:agent': ModuleNotFoundError"),
        ('tests.helpers.agents:missing', "cannot import agent 'tests.helpers.agents:missing': AttributeError"),
        ('tests.helpers.agents', "cannot import agent 'tests.helpers.agents': expected module:attribute"),
        ('tests.helpers.agents:Account', "cannot import agent 'tests.helpers.agents:Account': TypeError"),
        ('tests.helpers.agents:calc_script', "cannot import agent 'tests.helpers.agents:calc_script': TypeError"),
        ('tests.helpers.agents:ZOMBIE_DELAY_S', 'it is a float, not a pydantic-ai agent'),
        ('tests.helpers.agents:plain_agent', 'TemporalDurability'),
    ]
    for spec, message in cases:
        assert await invoke('worker', '--agent', spec, '--address', 'localhost:1') == 1
        err = capsys.readouterr().err
        assert err.startswith('agentledger: ') and message in err, err


async def test_worker_and_demo_report_a_bad_ledger_or_namespace(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = temporal_env.client.service_client.config.target_host
    (tmp_path / 'a-file').write_text('')
    unopenable = f'sqlite:///{tmp_path}/a-file/runs.db'
    agent = ['--agent', 'tests.helpers.agents:calc_agent']
    cases = [
        (['worker', *agent, '--ledger', unopenable, '--address', address], 'cannot create the directory'),
        (['demo', '--ledger', unopenable], 'cannot create the directory'),
        (
            ['worker', *agent, '--ledger', f'sqlite:///{tmp_path}/ok.db', '--address', address, '--namespace', 'nope'],
            "cannot use namespace 'nope'",
        ),
    ]
    for argv, message in cases:
        assert await invoke(*argv) == 1
        err = capsys.readouterr().err
        assert err.startswith('agentledger: ') and message in err and len(err.strip().splitlines()) == 1, err


async def test_worker_serves_until_sigterm(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = temporal_env.client.service_client.config.target_host
    ledger_url = f'sqlite:///{tmp_path}/worker.db'
    log = tmp_path / 'worker.log'
    argv = ['worker', '--agent', 'tests.helpers.agents:calc_agent', '--ledger', ledger_url, '--address', address]
    with log.open('w') as stderr:
        worker = subprocess.Popen(
            [sys.executable, '-m', 'agentledger', *argv, '--task-queue', 'cli-worker'],
            cwd=REPO,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 60
        while 'worker: serving' not in log.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
        assert "serving 'calc' on task queue 'cli-worker'" in log.read_text()

        assert await invoke('run', 'calc', 'compute', '--address', address, '--task-queue', 'cli-worker', '--json') == 0
        run_id = json.loads(capsys.readouterr().out)['run_id']
    finally:
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 30)
    assert code == 0, log.read_text()
    assert 'worker: stopping' in log.read_text()

    assert await invoke('show', run_id, '--ledger', ledger_url) == 0
    assert fact(capsys.readouterr().out, 'status') == 'completed'
    worker_ledger = SqliteLedger(tmp_path / 'worker.db')
    check_at_session_end(
        worker_ledger, await Client.connect(address, plugins=[agentledger.LedgerPlugin(worker_ledger)])
    )


# --- the demo --------------------------------------------------------------------------------------------


def test_demo_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ('OPENAI_API_KEY', 'AGENTLEDGER_DEMO_MODEL')}
    url = f'sqlite:///{tmp_path}/demo.db'
    done = subprocess.run(
        [sys.executable, '-m', 'agentledger', 'demo', '--ledger', url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith('We had 12 widgets in stock, so I placed the order: order confirmed: 3 x widget.\n')
    failed = line_with(out, 'tool call failed')
    assert failed.split()[5:7] == ['1', 'place_order']
    assert 'ConnectionError: order service unavailable (simulated)' in failed and failed.endswith('[abandoned]')
    completed = line_with(out, 'tool call completed', 'place_order')
    assert completed.split()[5] == '2' and '[' not in completed
    assert line_with(out, 'tool call', 'place_order', 'completed  returned').split()[4:6] == ['2', '#2']
    run_id = fact(out, 'run')
    assert out.rstrip().splitlines()[-1] == f'agentledger show {run_id} --ledger {url}'
    # Progress (and the dev server's banner) go to stderr; no traceback for the planned failure.
    assert 'starting a Temporal dev server' in done.stderr
    assert 'Traceback' not in done.stderr and 'Server:' not in out
    assert (tmp_path / 'demo.db').exists()
