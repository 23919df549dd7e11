"""The usage rule (`settle_usage`): replayed and billed counts through resets, retries and delegates."""

from __future__ import annotations

from collections.abc import Sequence

from agentledger.model._records import StepEvent, Usage
from agentledger.model._resets import ResetPoint, run_event_for_reset
from agentledger.model._rules import derive_event_states, settle_usage

from .helpers.records import acceptance, at, event

ANSWER = Usage(requests=1, input_tokens=10, output_tokens=5)


def reset(new: str, base: str) -> StepEvent:
    point = ResetPoint(temporal_run_id=new, base_run_id=base, event_id=4, reason='why', identity='who', at=at(5))
    return run_event_for_reset('r1', 'wf-r1', point)


def request(temporal_run_id: str, *, replayed: bool, activity_id: str = '1', attempt: int = 1) -> list[StepEvent]:
    """One attempt of a model request answered by the provider, or by the journal (`replayed`)."""
    return [
        event(activity_id, attempt, 'model_request_started', temporal_run_id=temporal_run_id),
        event(
            activity_id, attempt, 'model_request_completed',
            temporal_run_id=temporal_run_id, usage=ANSWER, replayed=replayed,
        ),
    ]  # fmt: skip


def settled(
    events: list[StepEvent], accepted_in: str, used: Usage = ANSWER, *, activities: Sequence[str] = ('1',)
) -> Usage:
    """`used` settled against `events`, `activities` accepted in each Temporal run up to `accepted_in`."""
    runs = sorted({e.temporal_run_id for e in events})
    acceptances = [acceptance(a, temporal_run_id=t) for t in runs[: runs.index(accepted_in) + 1] for a in activities]
    return settle_usage(used, derive_event_states(events, acceptances, sealed_temporal_run_ids=runs))


def counts(usage: Usage) -> tuple[int, int, int, int]:
    return usage.requests, usage.replayed_requests, usage.extra_billed_requests, usage.billed_requests


def test_a_request_replayed_through_chained_resets_is_replayed_once_and_billed_once() -> None:
    # Answered in t1; the reset to t2 replays it, the reset to t3 replays it again: the run went on with t3's.
    events = [*request('t1', replayed=False), reset('t2', 't1'), *request('t2', replayed=True)]
    events += [reset('t3', 't2'), *request('t3', replayed=True)]
    usage = settled(events, 't3')
    assert counts(usage) == (1, 1, 1, 1)
    assert (usage.replayed_tokens, usage.billed_tokens) == (15, 15)


def test_a_superseded_billed_answer_is_extra_billed_when_the_reset_asks_the_provider_again() -> None:
    # t1 and t2 each paid for the answer (t2 had no journal entry); t3 replays t2's.
    events = [*request('t1', replayed=False), reset('t2', 't1'), *request('t2', replayed=False)]
    events += [reset('t3', 't2'), *request('t3', replayed=True)]
    assert counts(settled(events, 't3')) == (1, 1, 2, 2)
    # The last run asks the provider once more: three answers billed, none replayed.
    events = [*events[:-2], *request('t3', replayed=False)]
    assert counts(settled(events, 't3')) == (1, 0, 2, 3)


def test_a_replay_by_an_abandoned_attempt_is_not_replayed() -> None:
    # Attempt 1 is answered by the journal and lost; attempt 2 asks the provider.
    events = [*request('t1', replayed=True), *request('t1', replayed=False, attempt=2)]
    assert counts(settled(events, 't1')) == (1, 0, 0, 1)


def delegation(
    temporal_run_id: str, child_run_id: str, usage: Usage, *, attempt: int = 1, failed: bool = False
) -> list[StepEvent]:
    """One attempt of a delegate call reaching child run `child_run_id`, which settled at `usage`."""
    fields = {'temporal_run_id': temporal_run_id, 'child_run_id': child_run_id, 'scheduled': float(attempt)}
    return [
        event('delegate:c1', attempt, 'tool_call_started', **fields),
        event('delegate:c1', attempt, 'tool_call_failed' if failed else 'tool_call_completed', usage=usage, **fields),
    ]


CHILD = Usage(requests=2, input_tokens=20, output_tokens=8, replayed_requests=1, replayed_input_tokens=10,
              replayed_output_tokens=4, extra_billed_requests=1, extra_billed_input_tokens=10,
              extra_billed_output_tokens=4)  # fmt: skip
"""A delegate's settled usage: 2 requests used, 1 of them replayed, 1 answer lost: 2 billed."""


def test_an_orchestrator_adds_its_delegates_replayed_and_billed_answers_to_its_own() -> None:
    # Its own request, billed, and one delegate call: `used` counts the delegate's requests (pydantic-ai's count).
    events = [*request('t1', replayed=False), *delegation('t1', 'child-1', CHILD)]
    usage = settled(events, 't1', ANSWER + Usage(requests=2, input_tokens=20, output_tokens=8),
                    activities=['1', 'delegate:c1'])  # fmt: skip
    assert counts(usage) == (3, 1, 1, 1 + CHILD.billed_requests)
    assert usage.billed_tokens == ANSWER.total_tokens + CHILD.billed_tokens
    assert usage.replayed_tokens == CHILD.replayed_tokens


def test_an_orchestrators_own_lost_answer_is_still_extra_billed_beside_its_delegates() -> None:
    # Its own request: attempt 1 answered and lost, attempt 2 answered again; the delegate replayed one.
    own = [*request('t1', replayed=False), *request('t1', replayed=False, attempt=2)]
    events = [*own, *delegation('t1', 'child-1', CHILD)]
    usage = settled(events, 't1', ANSWER + Usage(requests=2, input_tokens=20, output_tokens=8),
                    activities=['1', 'delegate:c1'])  # fmt: skip
    assert counts(usage) == (3, 1, 2, 2 + CHILD.billed_requests)


def test_each_delegate_run_counts_once_and_one_a_reset_left_behind_is_extra_billed() -> None:
    child_used = Usage(requests=2, input_tokens=20, output_tokens=8)
    used = ANSWER + child_used + child_used
    # Attempt 1 reached child-1, which failed (retried); attempt 2 reached child-2. A reset to t2 replays
    # the orchestrator's request and finds child-2 again: each child run is counted once.
    t1 = [
        *request('t1', replayed=False),
        *delegation('t1', 'child-1', child_used, failed=True),
        *delegation('t1', 'child-2', child_used, attempt=2),
    ]
    t2 = [*request('t2', replayed=True), *delegation('t2', 'child-1', child_used, failed=True)]
    t2 += delegation('t2', 'child-2', child_used, attempt=2)
    usage = settled([*t1, reset('t2', 't1'), *t2], 't2', used, activities=['1', 'delegate:c1'])
    assert counts(usage) == (5, 1, 1, 5)
    # Had the new run's retry started a third child, the second one's answers were billed outside `used`.
    t2 = [*t2[:-2], *delegation('t2', 'child-3', child_used, attempt=2)]
    usage = settled([*t1, reset('t2', 't1'), *t2], 't2', used, activities=['1', 'delegate:c1'])
    assert counts(usage) == (5, 1, 3, 7)


def test_without_requests_or_delegates_there_is_nothing_to_settle() -> None:
    assert settle_usage(ANSWER, []) == ANSWER
