"""Pure rules every ledger backend shares: run-record transitions and accepted-attempt derivation.

Backends store raw facts only (run starts, events, acceptances, seals). Which attempt's result a
run used, and what state every event is in, is derived here on read, so no backend can disagree
with another and no stored row is ever overwritten to change its meaning.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime

from agentledger.model._records import (
    OPEN_STATUSES,
    Acceptance,
    ErrorInfo,
    EventState,
    RunRecord,
    RunSeal,
    RunStart,
    RunStatus,
    StepEvent,
    StepRecord,
    StepStatus,
    ToolEffect,
    ToolEffectStatus,
    ToolOutcome,
    Usage,
)
from agentledger.model._resets import ResetPoint, reset_points, superseded_activities

__all__ = [
    'apply_approval_wait',
    'apply_park',
    'apply_reset',
    'apply_resume',
    'apply_run_start',
    'apply_seal',
    'derive_event_states',
    'derive_steps',
    'derive_tool_effects',
    'idempotency_key_for',
    'run_event_for_seal',
    'run_event_for_start',
    'settle_usage',
    'total_usage',
]


def apply_run_start(existing: RunRecord | None, start: RunStart) -> RunRecord | None:
    """Fold a `RunStart` into the run record; `None` means nothing changes (a repeated delivery).

    A new Temporal run of the same ledger run (reset, restart, continue-as-new) is appended to
    `temporal_run_ids` and makes the run `running` again; a start already seen is a no-op, so a late
    duplicate can never re-open a sealed run.
    """
    if existing is None:
        return RunRecord(
            run_id=start.run_id,
            workflow_id=start.workflow_id,
            temporal_run_ids=(start.temporal_run_id,),
            agent_name=start.agent_name,
            status='running',
            started_at=start.started_at,
            updated_at=start.started_at,
            task_queue=start.task_queue,
            conversation_id=start.conversation_id,
            parent_run_id=start.parent_run_id,
            parent_tool_call_id=start.parent_tool_call_id,
            prompt_preview=start.prompt_preview,
            forked_from=start.forked_from,
            workflow_type=start.workflow_type,
        )
    if start.temporal_run_id in existing.temporal_run_ids:
        return None
    return _running_again(existing, start.temporal_run_id, start.started_at)


def apply_reset(existing: RunRecord, reset: ResetPoint) -> RunRecord | None:
    """Fold a reset into the run record: its new Temporal run is appended and the run is `running` again.

    Recorded when a worker first sees the new run (before it parks, awaits approval or seals), so every
    id the Temporal UI shows for it names the ledger run at once. `None` (nothing changes) for a run
    already listed (its start or seal came first), or a reset older than the run's recorded end (a late
    record of a run that was reset again since).
    """
    if reset.temporal_run_id in existing.temporal_run_ids:
        return None
    if existing.ended_at is not None and reset.at < existing.ended_at:
        return None
    return _running_again(existing, reset.temporal_run_id, reset.at)


def _running_again(existing: RunRecord, temporal_run_id: str, at: datetime) -> RunRecord:
    """The run with one more Temporal run, running (again): whatever ended it before, the new run goes on."""
    return replace(
        existing,
        temporal_run_ids=(*existing.temporal_run_ids, temporal_run_id),
        status='running',
        updated_at=max(existing.updated_at, at),
        ended_at=None,
        error=None,
    )


def apply_park(existing: RunRecord, error: ErrorInfo, at: datetime, usage: Usage | None = None) -> RunRecord | None:
    """Fold a park into the run record: an open run becomes `parked` with the error it waits on.

    `usage`, when given, is what the run spent so far (settled against its events): the record shows it
    while the run is parked. `None` (nothing changes) for a run that already ended, or a repeated delivery.
    """
    if existing.status not in OPEN_STATUSES:
        return None
    updated = replace(
        existing, status='parked', error=error, updated_at=max(existing.updated_at, at), usage=usage or existing.usage
    )
    return None if updated == existing else updated


def apply_resume(existing: RunRecord, at: datetime) -> RunRecord | None:
    """Fold a resume into the run record: a `parked` run is `running` again; `None` for any other."""
    if existing.status != 'parked':
        return None
    return replace(existing, status='running', error=None, updated_at=max(existing.updated_at, at))


def apply_approval_wait(existing: RunRecord, awaiting: bool, at: datetime) -> RunRecord | None:
    """Fold the start (`awaiting`) or the end of a wait for approvals: `running` <-> `awaiting_approval`.

    `None` (nothing changes) for a run in any other status, or a repeated delivery.
    """
    before: RunStatus = 'running' if awaiting else 'awaiting_approval'
    after: RunStatus = 'awaiting_approval' if awaiting else 'running'
    if existing.status != before:
        return None
    return replace(existing, status=after, updated_at=max(existing.updated_at, at))


def apply_seal(existing: RunRecord, seal: RunSeal) -> RunRecord | None:
    """Fold a `RunSeal` into the run record; `None` when the seal is stale or already applied.

    Only the latest Temporal run may seal: a seal delivered late by a run that was since reset
    must not overwrite the live run's status. A Temporal run the record does not list is a reset
    past the `run_started` activity (the new run replays that start from history and never records
    it): it is added, unless it ended before the run's recorded end (a late seal of an older run).
    """
    if seal.temporal_run_id not in existing.temporal_run_ids:
        if existing.ended_at is not None and seal.ended_at < existing.ended_at:
            return None
        existing = replace(existing, temporal_run_ids=(*existing.temporal_run_ids, seal.temporal_run_id))
    elif seal.temporal_run_id != existing.temporal_run_id:
        return None
    if existing.status == seal.status and existing.ended_at == seal.ended_at:
        return None
    return replace(
        existing,
        status=seal.status,
        ended_at=seal.ended_at,
        updated_at=max(existing.updated_at, seal.ended_at),
        usage=seal.usage,
        error=seal.error,
        output_preview=seal.output_preview,
    )


def run_event_for_start(start: RunStart) -> StepEvent:
    """Return the `run_started` event a `RunStart` records."""
    return StepEvent(
        run_id=start.run_id,
        workflow_id=start.workflow_id,
        temporal_run_id=start.temporal_run_id,
        activity_id=start.event_id,
        attempt=0,
        kind='run_started',
        timestamp=start.started_at,
        detail=start.prompt_preview,
        state='accepted',
    )


def run_event_for_seal(seal: RunSeal) -> StepEvent:
    """The terminal run event of a `RunSeal`: `run_completed`, `run_failed`, `run_cancelled` or `run_terminated`."""
    kind = {'completed': 'run_completed', 'cancelled': 'run_cancelled', 'terminated': 'run_terminated'}.get(
        seal.status, 'run_failed'
    )
    return StepEvent(
        run_id=seal.run_id,
        workflow_id=seal.workflow_id,
        temporal_run_id=seal.temporal_run_id,
        activity_id=seal.event_id,
        attempt=0,
        kind=kind,  # type: ignore[arg-type]
        timestamp=seal.ended_at,
        usage=seal.usage,
        error=seal.error,
        detail=seal.output_preview,
        state='accepted',
    )


def _attempt_key(event: StepEvent) -> tuple[str, str, int]:
    return (event.temporal_run_id, event.activity_id, event.attempt)


def derive_event_states(
    events: Sequence[StepEvent],
    acceptances: Iterable[Acceptance],
    *,
    sealed_temporal_run_ids: Iterable[str],
) -> list[StepEvent]:
    """Set each event's `state` from the acceptances, keeping the input (causal) order.

    Temporal accepts exactly one result per activity: the one of its current attempt, which is the
    attempt with the highest fence `(scheduled_at, attempt)`. So for an accepted activity the events
    of its highest-fenced attempt are `accepted` and every other attempt's are `abandoned` (a zombie
    attempt that wrote late has a lower fence and can never take its place). An activity that was
    never accepted is `provisional` while its Temporal run is open and `abandoned` once it is sealed.
    An accepted activity of a Temporal run that was reset, which the new run ran and accepted again,
    is `superseded` (the `run_reset` events among `events` say which runs were reset from which, see
    `agentledger.model._resets`): each step has one accepted attempt across the ledger run.
    Run-level events are facts of the run and always `accepted`.
    """
    acceptances = list(acceptances)
    accepted = {(a.temporal_run_id, a.activity_id) for a in acceptances}
    superseded = superseded_activities(events, acceptances, reset_points(events))
    sealed = set(sealed_temporal_run_ids)
    best: dict[tuple[str, str], StepEvent] = {}
    for event in events:
        if event.step_kind is None:
            continue
        activity = (event.temporal_run_id, event.activity_id)
        current = best.get(activity)
        if current is None or event.fence > current.fence:
            best[activity] = event
    result: list[StepEvent] = []
    for event in events:
        state: EventState
        activity = (event.temporal_run_id, event.activity_id)
        if event.step_kind is None:
            state = 'accepted'
        elif activity in superseded:
            state = 'superseded'
        elif activity in accepted:
            state = 'accepted' if _attempt_key(best[activity]) == _attempt_key(event) else 'abandoned'
        elif event.temporal_run_id in sealed:
            state = 'abandoned'
        else:
            state = 'provisional'
        result.append(event.with_state(state))
    return result


def derive_steps(events: Sequence[StepEvent], acceptances: Iterable[Acceptance]) -> list[StepRecord]:
    """Summarise state-derived events into one `StepRecord` per activity, in order of first event.

    The accepted attempt's terminal event gives the step its outcome, usage and error; a step with
    no accepted attempt reports its latest attempt's status (`running`, or `abandoned` once sealed),
    and a step a reset superseded is `superseded` (no accepted attempt: the new run's step counts).
    """
    outcomes = {(a.temporal_run_id, a.activity_id): a.outcome for a in acceptances}
    by_activity: dict[tuple[str, str], list[StepEvent]] = defaultdict(list)
    for event in events:
        if event.step_kind is not None:
            by_activity[(event.temporal_run_id, event.activity_id)].append(event)
    steps: list[StepRecord] = []
    for (temporal_run_id, activity_id), activity_events in by_activity.items():
        first = activity_events[0]
        attempts = {e.attempt for e in activity_events}
        accepted = [e for e in activity_events if e.state == 'accepted']
        terminal = next((e for e in reversed(accepted) if e.is_terminal), None)
        outcome = outcomes.get((temporal_run_id, activity_id))
        status: StepStatus
        if any(e.state == 'superseded' for e in activity_events):
            status = 'superseded'
        elif outcome is not None:
            status = outcome
        elif any(e.state == 'abandoned' for e in activity_events):
            status = 'abandoned'
        else:
            status = 'running'
        if status == 'superseded':
            terminal = next((e for e in reversed(activity_events) if e.state == 'superseded' and e.is_terminal), None)
        described = terminal or max(activity_events, key=lambda e: (e.fence, e.is_terminal))
        child_run_id = described.child_run_id or next(
            (e.child_run_id for e in reversed(activity_events) if e.child_run_id is not None), None
        )
        steps.append(
            StepRecord(
                run_id=first.run_id,
                temporal_run_id=temporal_run_id,
                activity_id=activity_id,
                kind=first.step_kind or 'tool_call',
                step=first.step,
                attempts=len(attempts),
                accepted_attempt=accepted[0].attempt if accepted else None,
                status=status,
                tool_call_id=first.tool_call_id,
                tool_name=first.tool_name,
                outcome=described.outcome if described.is_terminal else None,
                usage=described.usage,
                error=described.error if described.is_terminal else None,
                duration_s=described.duration_s,
                child_run_id=child_run_id,
                replayed=described.replayed and described.is_terminal,
            )
        )
    return steps


def total_usage(steps: Iterable[StepRecord]) -> Usage:
    """Add up the usage of the accepted model requests of a run, and of those a reset superseded.

    A superseded request was accepted (and paid, or replayed) in its Temporal run before the reset:
    what the run spent includes it, though the new run's acceptance is the one that counts for the step.
    """
    usage = Usage()
    for step in steps:
        counted = step.accepted_attempt is not None or step.status == 'superseded'
        if step.kind == 'model_request' and counted and step.usage is not None:
            usage = usage + step.usage
    return usage


def settle_usage(used: Usage, events: Iterable[StepEvent]) -> Usage:
    """A run's usage: what its conversation `used` (pydantic-ai's count), with what the provider billed for it.

    `events` are the run's own events with their derived states, across all its Temporal runs.

    - Its own model requests: an answer the journal gave is replayed when it is the answer the run went
      on with (`accepted` or `provisional`); one a reset superseded, or an abandoned attempt's, is not
      counted (the new run's answer is). Every answer the provider gave (a completed request not
      replayed, in any attempt and any Temporal run) is billed, and what the billed answers exceed the
      requests not replayed by is `extra_billed_*`.
    - Its delegates (tool events naming a `child_run_id`): each child run's settled usage is counted once.
      A child whose result the conversation went on with is in `used` already (the delegate tool adds it),
      so its replayed and extra-billed figures are added to the run's; a child only a superseded call
      reached is outside `used`, so all it billed is extra billed. The run's `billed_*` is then its own
      billed answers plus its delegates' billed ones.

    With no completed model request and no delegate result among `events` (none recorded, or lost) `used`
    is kept as it is: nothing to settle. The one rule for the ledger's run records and the workflow
    result; see `Usage`.
    """
    replayed = answered = None
    delegates: dict[str, tuple[Usage, bool]] = {}
    for event in events:
        if event.usage is None or not event.is_terminal:
            continue
        if event.kind == 'model_request_completed':
            if not event.replayed:
                answered = event.usage if answered is None else answered + event.usage
            elif event.state in ('accepted', 'provisional'):
                replayed = event.usage if replayed is None else replayed + event.usage
        elif event.step_kind == 'tool_call' and event.child_run_id is not None:
            _, used_before = delegates.get(event.child_run_id, (event.usage, False))
            delegates[event.child_run_id] = (event.usage, used_before or event.state != 'superseded')
    if replayed is None and answered is None and not delegates:
        return used
    replayed, answered = replayed or Usage(), answered or Usage()
    in_used = sum((usage for usage, went_on in delegates.values() if went_on), Usage())
    outside = [usage for usage, went_on in delegates.values() if not went_on]
    settled: dict[str, int] = {}
    for name in ('requests', 'input_tokens', 'output_tokens'):
        own_used = getattr(used, name) - getattr(in_used, name)
        own_extra = max(getattr(answered, name) - (own_used - getattr(replayed, name)), 0)
        outside_billed = sum(getattr(usage, f'billed_{name}') for usage in outside)
        settled[f'replayed_{name}'] = getattr(replayed, name) + getattr(in_used, f'replayed_{name}')
        settled[f'extra_billed_{name}'] = own_extra + getattr(in_used, f'extra_billed_{name}') + outside_billed
    return replace(used, **settled)


def idempotency_key_for(workflow_id: str, tool_call_id: str) -> str:
    """The idempotency key of a tool call's effect: stable across activity retries and worker crashes."""
    return f'{workflow_id}/{tool_call_id}'


_DEFERRALS: tuple[ToolOutcome, ...] = ('approval_required', 'deferred')
"""Outcomes of a call handed back to pydantic-ai undecided: the run may still decide it, and run it."""


def derive_tool_effects(events: Sequence[StepEvent], *, sealed: bool) -> list[ToolEffect]:
    """One `ToolEffect` per tool call, from its state-derived events.

    An attempt that started and recorded no end is *in doubt*: the tool may or may not have acted
    (a worker killed mid-body). The effect is `completed` / `failed` when the accepted attempt
    ended so; with no accepted end it is `unknown_after_crash` once the run moved on (the attempt
    was abandoned, or the run ended), and `started` while an attempt may still be running. A call
    whose tool raised `ApprovalRequired` ends twice: deferred, then once decided, run or denied;
    the effect is the second end.
    """
    by_call: dict[str, list[StepEvent]] = defaultdict(list)
    for event in events:
        if event.step_kind == 'tool_call' and event.tool_call_id is not None:
            by_call[event.tool_call_id].append(event)
    effects: list[ToolEffect] = []
    for tool_call_id, call_events in by_call.items():
        ended = {(e.temporal_run_id, e.activity_id, e.attempt) for e in call_events if e.is_terminal}
        started = [e for e in call_events if not e.is_terminal]
        in_doubt = [
            e
            for e in started
            if (e.temporal_run_id, e.activity_id, e.attempt) not in ended and (sealed or e.state == 'abandoned')
        ]
        accepted_ends = [e for e in call_events if e.is_terminal and e.state == 'accepted']
        # A call deferred for approval ends again when it was decided: run (`returned`, ...) or `denied`.
        accepted_end = next(
            (e for e in accepted_ends if e.outcome not in _DEFERRALS), accepted_ends[0] if accepted_ends else None
        )
        status: ToolEffectStatus
        if accepted_end is not None:
            status = 'completed' if accepted_end.kind == 'tool_call_completed' else 'failed'
        elif in_doubt:
            status = 'unknown_after_crash'
        else:
            status = 'started'
        first = call_events[0]
        effects.append(
            ToolEffect(
                run_id=first.run_id,
                tool_call_id=tool_call_id,
                tool_name=first.tool_name,
                status=status,
                attempts=len({(e.temporal_run_id, e.activity_id, e.attempt) for e in call_events}),
                idempotency_key=idempotency_key_for(first.workflow_id, tool_call_id),
                outcome=accepted_end.outcome if accepted_end is not None else None,
                in_doubt_attempts=tuple(e.attempt for e in in_doubt),
            )
        )
    return effects
