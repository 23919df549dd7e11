"""The pure rules of resets and run ids: which acceptances a reset supersedes, what kinds of id a text may be."""

from __future__ import annotations

import uuid
from dataclasses import replace

from agentledger.model._ids import is_derived_run_id, run_id_kinds
from agentledger.model._records import Usage
from agentledger.model._resets import ResetPoint, reset_points, run_event_for_reset, superseded_activities
from agentledger.model._rules import (
    apply_reset,
    apply_run_start,
    apply_seal,
    derive_event_states,
    derive_steps,
    total_usage,
)

from .helpers.records import acceptance, at, event, run_seal, run_start


def reset(new: str, base: str, event_id: int = 10) -> ResetPoint:
    return ResetPoint(temporal_run_id=new, base_run_id=base, event_id=event_id, reason='why', identity='who', at=at(5))


def test_run_id_kinds_try_the_indexed_workflow_id_before_a_temporal_run_id() -> None:
    uuid_kinds = ('ledger run id', 'workflow id', 'Temporal run id')
    assert run_id_kinds(str(uuid.uuid4())) == uuid_kinds
    assert run_id_kinds('01a24d7e-2ca8-78b8-a58c-b92adb0c02ef') == uuid_kinds
    assert run_id_kinds('payments-e795b9ac') == ('ledger run id', 'workflow id')
    assert run_id_kinds(f'{uuid.uuid4()}x') == ('ledger run id', 'workflow id')
    # The ledger run id form does not stop a lookup by workflow id: a user's workflow may be named `run-42`.
    assert run_id_kinds('run-0123456789abcdef0123') == ('ledger run id', 'workflow id')
    assert run_id_kinds('run-42') == ('ledger run id', 'workflow id')
    assert is_derived_run_id('run-0123456789abcdef0123')
    assert not is_derived_run_id('run-42') and not is_derived_run_id('run-0123456789ABCDEF0123')


def test_a_reset_lists_its_new_run_and_opens_the_run_unless_listed_or_older_than_its_end() -> None:
    started = apply_run_start(None, run_start('r1', 't1'))
    assert started is not None
    sealed = apply_seal(started, run_seal('r1', 't1', ended=3))
    assert sealed is not None and sealed.status == 'completed'
    point = reset('t2', 't1')  # at 5, after the end
    reopened = apply_reset(sealed, point)
    assert reopened is not None
    assert (reopened.temporal_run_ids, reopened.status, reopened.ended_at) == (('t1', 't2'), 'running', None)
    assert reopened.updated_at == point.at and reopened.temporal_run_id == 't2'
    assert apply_reset(reopened, point) is None
    # The new run's own start (a reset to the first workflow task) then changes nothing, and its seal lands.
    assert apply_run_start(reopened, run_start('r1', 't2')) is None
    ended = apply_seal(reopened, run_seal('r1', 't2', ended=9))
    assert ended is not None and ended.status == 'completed'
    # A reset recorded late, after a later run ended, changes nothing.
    assert apply_reset(ended, reset('t3', 't1')) is None


def test_a_reset_point_round_trips_through_its_event_and_a_bad_detail_is_none() -> None:
    point = reset('t2', 't1')
    recorded = run_event_for_reset('r1', 'wf-r1', point)
    assert (recorded.kind, recorded.activity_id, recorded.temporal_run_id) == ('run_reset', 'reset:r1', 't2')
    assert not recorded.is_terminal and recorded.step_kind is None
    assert ResetPoint.from_event(recorded) == point
    assert ResetPoint.from_event(replace(recorded, detail='{"event_id": "x"}')) is None
    assert ResetPoint.from_event(replace(recorded, kind='run_started')) is None
    assert reset_points([recorded, recorded]) == {'t2': point}


def test_only_steps_the_new_run_accepted_again_are_superseded_through_a_chain_of_resets() -> None:
    events = [
        event('1', 1, 'model_request_started', temporal_run_id='t1'),
        event('2', 1, 'model_request_started', temporal_run_id='t1'),
        event('3', 1, 'model_request_started', temporal_run_id='t1'),
        event('2', 1, 'model_request_started', temporal_run_id='t2'),
        event('3', 1, 'model_request_started', temporal_run_id='t3'),
    ]
    accepted = [
        acceptance('1', temporal_run_id='t1'),
        acceptance('2', temporal_run_id='t1'),
        acceptance('3', temporal_run_id='t1'),
        acceptance('2', temporal_run_id='t2'),
        acceptance('3', temporal_run_id='t3'),
        # A new run sends acceptances of activities it only replayed: no attempt of its own, no supersession.
        acceptance('1', temporal_run_id='t2'),
    ]
    resets = {'t2': reset('t2', 't1'), 't3': reset('t3', 't2')}
    assert superseded_activities(events, accepted, resets) == {('t1', '2'), ('t1', '3')}
    # Without the reset events (a continue-as-new reuses activity ids too) nothing is superseded.
    assert superseded_activities(events, accepted, {}) == set()
    # A reset cycle (a corrupt ledger) ends the walk instead of looping.
    assert superseded_activities(events, accepted, {'t1': reset('t1', 't2'), 't2': reset('t2', 't1')}) == {
        ('t1', '2'),
        ('t2', '1'),
        ('t2', '2'),
    }


def test_steps_keep_one_accepted_attempt_per_step_and_superseded_usage_still_counts() -> None:
    usage = Usage(requests=1, input_tokens=3)
    events = [
        event('1', 1, 'model_request_started', temporal_run_id='t1', step=1),
        event('1', 1, 'model_request_completed', temporal_run_id='t1', step=1, usage=usage),
        run_event_for_reset('r1', 'wf-r1', reset('t2', 't1')),
        event('1', 1, 'model_request_started', temporal_run_id='t2', step=1, when=6, scheduled=6),
        event('1', 1, 'model_request_completed', temporal_run_id='t2', step=1, when=7, scheduled=6, usage=usage),
    ]
    accepted = [acceptance('1', temporal_run_id='t1'), acceptance('1', temporal_run_id='t2')]
    states = derive_event_states(events, accepted, sealed_temporal_run_ids=['t1'])
    assert [e.state for e in states] == ['superseded', 'superseded', 'accepted', 'accepted', 'accepted']
    steps = derive_steps(states, accepted)
    assert [(s.temporal_run_id, s.status, s.accepted_attempt) for s in steps] == [
        ('t1', 'superseded', None),
        ('t2', 'completed', 1),
    ]
    assert steps[0].usage == usage
    assert total_usage(steps).input_tokens == 6


def test_a_step_whose_activity_id_shifted_after_a_reset_is_superseded_by_its_step() -> None:
    """After a reset an orchestrator schedules one more activity (its delegate finds the child it started),
    so the same model request step and tool call carry the next activity ids: they still supersede theirs."""
    events = [
        event('2', 1, 'tool_call_started', temporal_run_id='t1', step=1, tool_call_id='call-a', tool_name='ask'),
        event('3', 1, 'model_request_started', temporal_run_id='t1', step=2),
        event('3', 1, 'tool_call_started', temporal_run_id='t2', step=1, tool_call_id='call-a', tool_name='ask'),
        event('4', 1, 'model_request_started', temporal_run_id='t2', step=2),
    ]
    accepted = [
        acceptance('2', temporal_run_id='t1'),
        acceptance('3', temporal_run_id='t1'),
        acceptance('3', temporal_run_id='t2'),
        acceptance('4', temporal_run_id='t2'),
    ]
    assert superseded_activities(events, accepted, {'t2': reset('t2', 't1')}) == {('t1', '2'), ('t1', '3')}
