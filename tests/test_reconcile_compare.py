"""The pure comparison of `reconcile`, on hand-built history facts: the cases a live run rarely produces."""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from agentledger.model import Acceptance, ErrorInfo, ForkRef, RunRecord, StepEvent, Usage
from agentledger.model._records import EventKind, RunSeal, RunStart
from agentledger.model._rules import run_event_for_seal, run_event_for_start
from agentledger.reconcile._compare import compare, rebuilt_record
from agentledger.reconcile._facts import ActivityFact, RunFacts
from agentledger.reconcile._repair import _belongs
from agentledger.workflows._types import RUN_STARTED_ACTIVITY, SEAL_RUN_ACTIVITY

T0 = datetime(2026, 5, 1, tzinfo=UTC)
TOOL = 'agent__toolset__call_tool'


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


RECORD = RunRecord(
    run_id='run-1',
    workflow_id='wf',
    temporal_run_ids=('t1',),
    agent_name='a',
    status='completed',
    started_at=T0,
    updated_at=at(9),
    task_queue='q',
    ended_at=at(9),
)


def tool_fact(activity_id: str, *, attempt: int, close: Any = 'completed', **fields: Any) -> ActivityFact:
    return ActivityFact(
        temporal_run_id=fields.pop('temporal_run_id', 't1'),
        activity_id=activity_id,
        activity_type=TOOL,
        scheduled_at=at(1),
        header={'run_id': 'run-1', 'accepted': [], 'events': []},
        args=({'name': 'add', 'serialized_run_context': {'run_step': 1, 'tool_call_id': 'c1', 'tool_name': 'add'}},),
        last_attempt=attempt,
        started_at=at(2),
        close=close,
        closed_at=at(3),
        result={'kind': 'tool_return', 'return_value': 3},
        **fields,
    )


def seal_fact(temporal_run_id: str = 't1') -> ActivityFact:
    seal = {
        'run_id': 'run-1',
        'workflow_id': 'wf',
        'temporal_run_id': temporal_run_id,
        'status': 'completed',
        'ended_at': at(9).isoformat(),
        'usage': {'requests': 0, 'input_tokens': 0, 'output_tokens': 0, 'tool_calls': 0},
        'error': None,
        'output_preview': 'ok',
    }
    return ActivityFact(
        temporal_run_id=temporal_run_id,
        activity_id='9',
        activity_type=SEAL_RUN_ACTIVITY,
        scheduled_at=at(8),
        header={'run_id': 'run-1', 'accepted': [], 'events': []},
        args=({'seal': seal, 'acceptances': [], 'workflow_events': []},),
        last_attempt=1,
        close='completed',
    )


def facts(*activities: ActivityFact, temporal_run_id: str = 't1', **fields: Any) -> RunFacts:
    return RunFacts(
        workflow_id='wf',
        temporal_run_id=temporal_run_id,
        first_execution_run_id='t1',
        started_at=fields.pop('started_at', T0),
        input={'agent': 'a'},
        activities=(*activities, seal_fact(temporal_run_id)),
        close='completed',
        closed_at=at(10),
        **fields,
    )


def stored(activity_id: str, attempt: int, kind: EventKind, seq: int, **fields: Any) -> StepEvent:
    return StepEvent(
        run_id='run-1',
        workflow_id='wf',
        temporal_run_id=fields.pop('temporal_run_id', 't1'),
        activity_id=activity_id,
        attempt=attempt,
        kind=kind,
        timestamp=at(2),
        seq=seq,
        **fields,
    )


def run_end(temporal_run_id: str = 't1') -> StepEvent:
    end = stored('-', 0, 'run_completed', 99, temporal_run_id=temporal_run_id)
    return replace(end, timestamp=at(9), detail='ok', usage=Usage())


TOOL_FIELDS: dict[str, Any] = {'step': 1, 'tool_call_id': 'c1', 'tool_name': 'add', 'activity_type': TOOL}


def categories(comparison: Any) -> list[tuple[str, str]]:
    return sorted((f.category, f.key.split('|', 2)[-1]) for f in comparison.findings)


def test_the_last_attempt_is_proven_and_earlier_ones_are_left_alone() -> None:
    events = [
        stored('2', 1, 'tool_call_started', 1, **TOOL_FIELDS),
        stored('2', 1, 'tool_call_failed', 2, **TOOL_FIELDS),
        stored('2', 2, 'tool_call_started', 3, **TOOL_FIELDS),
        stored('2', 2, 'tool_call_completed', 4, outcome='returned', **TOOL_FIELDS),
        run_end(),
    ]
    comparison = compare(RECORD, events, [], [facts(tool_fact('2', attempt=2))])
    assert comparison.findings == () and not comparison.open
    assert comparison.ok == len(events) + 1  # every row, and the run record


def test_an_attempt_beyond_the_last_is_an_orphan_and_a_contradicted_end_is_divergent() -> None:
    events = [
        stored('2', 1, 'tool_call_started', 1, **TOOL_FIELDS),
        stored('2', 1, 'tool_call_failed', 2, **TOOL_FIELDS),
        stored('2', 2, 'tool_call_started', 3, **TOOL_FIELDS),
        run_end(),
    ]
    comparison = compare(RECORD, events, [], [facts(tool_fact('2', attempt=1))])
    assert categories(comparison) == [('divergent', '2|1|tool_call_failed'), ('orphan', '2|2|tool_call_started')]
    divergent = next(f for f in comparison.findings if f.category == 'divergent')
    assert divergent.after is not None and divergent.after['kind'] == 'tool_call_completed'
    assert divergent.after['outcome'] == 'returned' and divergent.stored_seqs == (2,)


def test_a_timed_out_attempt_stays_in_doubt_instead_of_being_given_an_end() -> None:
    events = [stored('2', 1, 'tool_call_started', 1, **TOOL_FIELDS), run_end()]
    comparison = compare(RECORD, events, [], [facts(tool_fact('2', attempt=1, close='timed_out'))])
    assert comparison.findings == ()


def test_activities_inherited_by_a_reset_run_are_proven_by_the_run_that_ran_them() -> None:
    """After a reset the new run's history repeats the base run's closed activities; their rows stay the base run's."""
    base = facts(tool_fact('2', attempt=1))
    reset = facts(
        tool_fact('2', attempt=1, temporal_run_id='t2', inherited=True),
        temporal_run_id='t2',
        started_at=at(20),
        reset_from='t1',
    )
    record = replace(RECORD, temporal_run_ids=('t1', 't2'))
    events = [
        stored('2', 1, 'tool_call_started', 1, **TOOL_FIELDS),
        stored('2', 1, 'tool_call_completed', 2, outcome='returned', **TOOL_FIELDS),
        run_end(),
        run_end('t2'),
    ]
    assert compare(record, events, [], [base, reset]).findings == ()
    # The record must list the reset run: history says it is the run's latest.
    unlisted = compare(RECORD, events, [], [base, reset])
    [finding] = unlisted.findings
    assert (finding.category, finding.row) == ('divergent', 'run')
    assert finding.after is not None and finding.after['temporal_run_ids'] == ['t1', 't2']


def test_rows_of_a_temporal_run_that_temporal_does_not_know_are_orphans() -> None:
    ghost = stored('2', 1, 'tool_call_started', 1, temporal_run_id='t0', **TOOL_FIELDS)
    comparison = compare(RECORD, [ghost, run_end()], [], [facts()], unknown_runs=['t0'])
    assert categories(comparison) == [('orphan', '2|1|tool_call_started')]
    assert comparison.findings[0].after is None  # kept for audit: nothing to write


def test_duplicate_and_divergent_acceptances() -> None:
    header = {
        'run_id': 'run-1',
        'accepted': [
            {
                'run_id': 'run-1',
                'workflow_id': 'wf',
                'temporal_run_id': 't1',
                'activity_id': '2',
                'outcome': 'completed',
            }
        ],
        'events': [],
    }
    seal = replace(seal_fact(), header=header)
    chain = [replace(facts(), activities=(seal,))]
    wrong = Acceptance('run-1', 'wf', 't1', '2', 'failed')
    [finding] = compare(RECORD, [run_end()], [wrong], chain).findings
    assert (finding.category, finding.row, finding.after) == (
        'divergent',
        'acceptance',
        replace(wrong, outcome='completed').to_json(),
    )
    right = replace(wrong, outcome='completed')
    [twice] = compare(RECORD, [run_end()], [right, right], chain).findings
    assert (twice.category, twice.row) == ('duplicate', 'acceptance')


def test_a_run_that_continued_as_new_into_a_run_not_found_is_only_reported_as_open() -> None:
    continued = replace(facts(), activities=(), close='continued_as_new', continued_as='t9')
    comparison = compare(replace(RECORD, status='running', ended_at=None), [], [], [continued], unknown_runs=['t9'])
    assert comparison.open and comparison.findings == ()


def test_a_run_that_closed_without_a_seal_is_sealed_with_how_temporal_says_it_ended() -> None:
    open_record = replace(RECORD, status='running', ended_at=None)
    for close, status, error_type, kind in [
        ('timed_out', 'failed', 'TimeoutError', 'run_failed'),
        ('terminated', 'terminated', 'WorkflowTerminated', 'run_terminated'),
        ('cancelled', 'cancelled', None, 'run_cancelled'),
    ]:
        failure = None if error_type is None else ErrorInfo(error_type, 'why', False)
        closed = replace(facts(), activities=(), close=close, failure=failure)
        findings = {(f.category, f.row): f for f in compare(open_record, [], [], [closed]).findings}
        assert set(findings) == {('missing', 'run'), ('missing', 'event')}, close
        after = findings['missing', 'run'].after
        assert after is not None and after['status'] == status and after['ended_at'] == at(10).isoformat()
        assert (after['error'] or {}).get('type') == error_type
        end = findings['missing', 'event'].after
        assert end is not None and end['kind'] == kind


def start_fact(temporal_run_id: str, started: float, result: dict[str, Any]) -> ActivityFact:
    start = {
        'run_id': 'run-1',
        'workflow_id': 'wf',
        'temporal_run_id': temporal_run_id,
        'agent_name': 'a',
        'started_at': at(started).isoformat(),
        'task_queue': 'q',
        'conversation_id': 'c1',
        'parent_run_id': None,
        'parent_tool_call_id': None,
        'prompt_preview': 'hi',
        'forked_from': None,
    }
    return ActivityFact(
        temporal_run_id=temporal_run_id,
        activity_id='1',
        activity_type=RUN_STARTED_ACTIVITY,
        scheduled_at=at(started),
        header={'run_id': 'run-1', 'accepted': [], 'events': []},
        args=({'start': start},),
        last_attempt=1,
        close='completed',
        result=result,
    )


def test_a_lost_record_is_rebuilt_from_the_starts_in_history_and_sealed_c19() -> None:
    """C19: every Temporal run's start folds into the record, the lineage from the start's result; then the seal."""
    seed = {'run_id': 'run-0', 'snapshot_id': 'run-0:s1', 'reason': 'continue'}
    started = start_fact('t1', 0, {'forked_from': seed})
    first = replace(facts(), activities=(started,), close='continued_as_new', continued_as='t2')
    second = facts(start_fact('t2', 5, {}), temporal_run_id='t2', started_at=at(5))
    assert rebuilt_record('run-1', []) is None
    assert rebuilt_record('run-2', [first, second]) is None

    record = rebuilt_record('run-1', [first, second])
    assert record is not None
    assert (record.temporal_run_ids, record.status, record.started_at) == (('t1', 't2'), 'running', T0)
    assert (record.agent_name, record.task_queue, record.conversation_id, record.prompt_preview) == (
        'a',
        'q',
        'c1',
        'hi',
    )
    assert record.forked_from == ForkRef('run-0', 'run-0:s1', 'continue')

    comparison = compare(record, [run_end('t2')], [], [first, second], record_lost=True)
    [lost] = [f for f in comparison.findings if f.row == 'run']
    assert (lost.category, lost.key, lost.before) == ('missing', 'run-1', None)
    assert lost.after is not None
    assert RunRecord.from_json(lost.after) == replace(
        record, status='completed', ended_at=at(9), updated_at=at(9), output_preview='ok'
    )


# --- agent runs inside a user's own workflow ------------------------------------------------------------

OWN_START = RunStart(
    run_id='run-1',
    workflow_id='wf',
    temporal_run_id='t1',
    agent_name='a',
    started_at=at(1),
    task_queue='q',
    prompt_preview='hi',
    workflow_type='ReviewWorkflow',
    event_id='agent-1.run',
)
OWN_SEAL = RunSeal(
    run_id='run-1',
    workflow_id='wf',
    temporal_run_id='t1',
    status='completed',
    ended_at=at(5),
    output_preview='ok',
    event_id='agent-1.run',
)


def own_fact(activity_id: str, activity_type: str, first: dict[str, Any], *, run_id: str = 'run-1') -> ActivityFact:
    return ActivityFact(
        temporal_run_id='t1',
        activity_id=activity_id,
        activity_type=activity_type,
        scheduled_at=at(1),
        header={'run_id': run_id, 'accepted': [], 'events': []},
        args=(first,),
        last_attempt=1,
        started_at=at(2),
        close='completed',
        closed_at=at(3),
    )


def user_workflow(*, sealed: bool, close: Any = 'running', **fields: Any) -> RunFacts:
    """A user workflow's Temporal run: its own activity, agent run 1 (sealed or not) and agent run 2's tool call."""
    own = ActivityFact('t1', '1', 'prepare', at(0), None, ('topic',), 1, at(0), 'completed', at(1), 'topic!')
    start = own_fact('agent-1.1', RUN_STARTED_ACTIVITY, {'start': json_of(OWN_START)})
    tool = replace(tool_fact('agent-1.2', attempt=1), header={'run_id': 'run-1', 'accepted': [], 'events': []})
    other = replace(tool_fact('agent-2.2', attempt=1), header={'run_id': 'run-2', 'accepted': [], 'events': []})
    seal = own_fact(
        'agent-1.3', SEAL_RUN_ACTIVITY, {'seal': json_of(OWN_SEAL), 'acceptances': [], 'workflow_events': []}
    )
    return RunFacts(
        workflow_id='wf',
        temporal_run_id='t1',
        first_execution_run_id='t1',
        started_at=T0,
        input='topic',
        activities=(own, start, tool, other, *((seal,) if sealed else ())),
        close=close,
        closed_at=None if close == 'running' else at(10),
        workflow_type='ReviewWorkflow',
        **fields,
    )


def json_of(value: Any) -> dict[str, Any]:
    data = asdict(value)
    for name in ('started_at', 'ended_at'):
        if name in data:
            data[name] = data[name].isoformat()
    return data


def own_rows(*, sealed: bool) -> list[StepEvent]:
    rows = [
        replace(run_event_for_start(OWN_START), seq=1),
        stored('agent-1.2', 1, 'tool_call_started', 2, **TOOL_FIELDS),
        replace(stored('agent-1.2', 1, 'tool_call_completed', 3, **TOOL_FIELDS), outcome='returned'),
    ]
    return [*rows, replace(run_event_for_seal(OWN_SEAL), seq=4)] if sealed else rows


OWN_RECORD = replace(
    RECORD, started_at=at(1), updated_at=at(5), ended_at=at(5), output_preview='ok', workflow_type='ReviewWorkflow'
)


def test_an_agent_run_of_a_user_workflow_is_checked_against_its_own_activities_only() -> None:
    """Sealed while its workflow runs on: finished, and the workflow's own activity and other agent run's
    tool call are neither its rows nor missing from it."""
    comparison = compare(OWN_RECORD, own_rows(sealed=True), [], [user_workflow(sealed=True)])
    assert not comparison.open and comparison.findings == ()
    assert comparison.ok == 1 + 4

    lost = own_rows(sealed=True)[:-1]
    [missing] = compare(OWN_RECORD, lost, [], [user_workflow(sealed=True)]).findings
    assert (missing.category, missing.key) == ('missing', run_event_for_seal(OWN_SEAL).key)


def test_an_unsealed_agent_run_is_open_while_its_workflow_runs_and_ends_as_the_workflow_closed() -> None:
    running = replace(OWN_RECORD, status='running', ended_at=None, output_preview=None, updated_at=at(1))
    comparison = compare(running, own_rows(sealed=False), [], [user_workflow(sealed=False)])
    assert comparison.open and comparison.findings == ()

    for close, status, error_type in [
        ('completed', 'cancelled', 'WorkflowCompleted'),
        ('continued_as_new', 'cancelled', 'WorkflowContinuedAsNew'),
        ('terminated', 'terminated', 'WorkflowTerminated'),
        ('failed', 'failed', 'WorkflowFailed'),
    ]:
        failure = ErrorInfo(error_type, 'why', False) if close in ('terminated', 'failed') else None
        closed = user_workflow(sealed=False, close=close, failure=failure)
        comparison = compare(running, own_rows(sealed=False), [], [closed])
        assert not comparison.open, close
        findings = {(f.category, f.row): f for f in comparison.findings}
        assert set(findings) == {('missing', 'run'), ('missing', 'event')}, close
        after = findings['missing', 'run'].after or {}
        assert (after['status'], after['ended_at'], (after['error'] or {})['type']) == (
            status,
            at(10).isoformat(),
            error_type,
        )
        end = StepEvent.from_json(findings['missing', 'event'].after or {})
        assert (end.activity_id, end.temporal_run_id) == ('agent-1.run', 't1')


def test_the_temporal_runs_of_an_agent_run_in_a_user_workflow() -> None:
    """Named by a header, or a reset of a Temporal run that is (before it got as far): not a continue-as-new."""
    ran = user_workflow(sealed=True)
    assert _belongs(ran, 'run-1') and _belongs(ran, 'run-2') and not _belongs(ran, 'run-3')
    reset = replace(ran, temporal_run_id='t2', activities=())
    assert _belongs(reset, 'run-1', [ran]) and not _belongs(reset, 'run-1')
    continued = replace(reset, continued_from='t1')
    assert not _belongs(continued, 'run-1', [ran])
    # The reset run inherits the ended agent run's activities: the record keeps listing the run it ran in.
    inherited = replace(ran, temporal_run_id='t2', activities=tuple(replace(a, inherited=True) for a in ran.activities))
    comparison = compare(OWN_RECORD, own_rows(sealed=True), [], [ran, inherited])
    assert not comparison.open and comparison.findings == ()
