"""The comparison at the heart of `reconcile`: history facts + ledger rows -> findings. Pure, no I/O.

What Temporal's history proves, and so what the ledger must hold:

- every acceptance and workflow-side event the workflow sent in an `agentledger` header or in its
  seal's input (they are deterministic workflow state, recorded in the history before any worker wrote them);
- the `run_started` event of every Temporal run whose start activity completed, and the terminal run
  event of a run whose seal activity completed (else the close event gives the outcome);
- for an agent run inside a user's own workflow (`RunRecord.in_own_workflow`), only what the activities
  whose header names the run prove: the workflow's own activities and its other agent runs are not the
  run's rows. The run ends when its seal activity completes, whether or not the workflow goes on; one
  the workflow closed without sealing ends as the close says (a workflow that completed or continued as
  new left it unfinished: cancelled); one whose workflow still runs and that has not sealed is open.
- for a model-request or tool-call activity that Temporal closed as completed or failed, the
  `*_started` and the matching terminal event of its *last* attempt, the only one history keeps.

What it cannot prove: earlier attempts (the retry bill, zombies), the end of an attempt whose worker
died (a timed-out attempt stays in doubt rather than being given an end it may not have had),
durations, token counts of attempts Temporal did not accept. Those rows are neither confirmed nor refuted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, TypeAlias

from agentledger._compat import classify_activity, read_activity_args, tool_outcome, tool_result_detail
from agentledger.model._conversions import request_usage
from agentledger.model._records import (
    RUN_ACTIVITY_ID,
    Acceptance,
    ErrorInfo,
    EventKind,
    ForkRef,
    RunRecord,
    RunSeal,
    RunStart,
    RunStatus,
    StepEvent,
    Usage,
)
from agentledger.model._rules import apply_run_start, run_event_for_seal, run_event_for_start, settle_usage
from agentledger.reconcile._facts import ActivityFact, RunFacts
from agentledger.workflows._state import ledger_step
from agentledger.workflows._types import RUN_STARTED_ACTIVITY, SEAL_RUN_ACTIVITY

__all__ = ['Category', 'Comparison', 'Finding', 'RowKind', 'compare', 'rebuilt_record']

Category: TypeAlias = Literal['missing', 'divergent', 'orphan', 'duplicate']
"""What is wrong with a row: lost (in history, not in the ledger), disagreeing with history, not in
history at all, or stored more than once."""

RowKind: TypeAlias = Literal['event', 'acceptance', 'run']
"""Which kind of ledger row a finding is about."""

_CLOSED_STATUS: dict[str, RunStatus] = {
    'completed': 'completed',
    'failed': 'failed',
    'cancelled': 'cancelled',
    'terminated': 'terminated',
    'timed_out': 'failed',
}
"""The ledger status of a Temporal run by how it closed (a timeout is a failure with error type `TimeoutError`)."""

_UNFINISHED: dict[str, tuple[str, str]] = {
    'completed': ('WorkflowCompleted', 'completed'),
    'continued_as_new': ('WorkflowContinuedAsNew', 'continued as new'),
}
"""How a user's own workflow can close with one of its agent runs unsealed and not failed: the run was left
unfinished, so it ends `cancelled` with this error type and wording."""

_CHECKED_FIELDS = ('activity_type', 'step', 'tool_call_id', 'tool_name', 'outcome')
"""The fields of an activity event that the history's input and result prove."""


@dataclass(frozen=True)
class Finding:
    """One row of the ledger that disagrees with Temporal's history, and what a repair writes."""

    category: Category
    row: RowKind
    key: str
    """The row's key: an event or acceptance key, or the run id for the run record."""
    reason: str
    before: dict[str, Any] | None = None
    """The row as the ledger holds it (`None` when it is missing)."""
    after: dict[str, Any] | None = None
    """The row as history says it should be (`None` when history says nothing: orphans are kept for audit)."""
    stored_seqs: tuple[int, ...] = ()
    """The ledger order (`seq`) of every stored copy of an event row: what a repair replaces."""

    @property
    def repairable(self) -> bool:
        """Whether a repair writes anything for this finding."""
        return self.after is not None

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict."""
        return {
            'category': self.category,
            'row': self.row,
            'key': self.key,
            'reason': self.reason,
            'before': self.before,
            'after': self.after,
            'stored_seqs': list(self.stored_seqs),
        }


@dataclass(frozen=True)
class Comparison:
    """Every finding of one ledger run, and how many rows agreed with history."""

    findings: tuple[Finding, ...]
    ok: int
    open: bool
    """Whether the run's latest Temporal run is still running (reconcile then only reports)."""


def _parse_start(data: dict[str, Any]) -> RunStart:
    values = dict(data)
    values['started_at'] = datetime.fromisoformat(values['started_at'])
    values['forked_from'] = ForkRef.from_json(values.get('forked_from'))
    return RunStart(**values)


def _parse_seal(data: dict[str, Any]) -> RunSeal:
    values = dict(data)
    values['ended_at'] = datetime.fromisoformat(values['ended_at'])
    values['usage'] = Usage.from_json(values.get('usage')) or Usage()
    values['error'] = ErrorInfo.from_json(values.get('error'))
    return RunSeal(**values)


def _event_json(event: StepEvent) -> dict[str, Any]:
    """An event's content: what two rows of the same key must agree on (not where or when it was stored)."""
    data = event.to_json()
    del data['seq'], data['state']
    return data


def _model_usage(result: Any) -> Usage | None:
    usage = result.get('usage') if isinstance(result, dict) else None
    # History cannot tell a response the journal replayed from one the provider sent.
    return request_usage(usage, replayed=False) if isinstance(usage, dict) else None


def _activity_events(activity: ActivityFact, run_id: str, workflow_id: str) -> list[StepEvent]:
    """The started and terminal events of an activity's last attempt, as its history proves them."""
    kind = classify_activity(activity.activity_type)
    if kind is None or activity.close not in ('completed', 'failed') or activity.last_attempt is None:
        return []
    shape = read_activity_args(kind, activity.args)
    started_at = activity.started_at or activity.scheduled_at
    base = StepEvent(
        run_id=run_id,
        workflow_id=workflow_id,
        temporal_run_id=activity.temporal_run_id,
        activity_id=activity.activity_id,
        attempt=activity.last_attempt,
        kind=f'{kind}_started',  # type: ignore[arg-type]
        timestamp=started_at,
        step=ledger_step(shape.step, activity.header),
        activity_type=activity.activity_type,
        # History keeps when the last attempt started, not when it was scheduled: later than the real
        # fence, never earlier, so the attempt Temporal accepted keeps the highest fence.
        scheduled_at=started_at,
        tool_call_id=shape.tool_call_id,
        tool_name=shape.tool_name,
        model_name=shape.model_name,
    )
    closed_at = activity.closed_at or started_at
    duration = (closed_at - started_at).total_seconds()
    if activity.close == 'failed':
        failed: EventKind = 'model_request_failed' if kind == 'model_request' else 'tool_call_failed'
        end = replace(base, kind=failed, timestamp=closed_at, duration_s=duration, error=activity.failure)
    elif kind == 'model_request':
        result = activity.result
        model_name = result.get('model_name') if isinstance(result, dict) else None
        end = replace(
            base,
            kind='model_request_completed',
            timestamp=closed_at,
            duration_s=duration,
            usage=_model_usage(result),
            model_name=model_name if isinstance(model_name, str) else shape.model_name,
        )
    else:
        end = replace(
            base,
            kind='tool_call_completed',
            timestamp=closed_at,
            duration_s=duration,
            outcome=tool_outcome(activity.result),
            detail=tool_result_detail(activity.result),
        )
    return [base, end]


@dataclass
class _Expected:
    """The rows history proves, by key."""

    events: dict[str, StepEvent]
    acceptances: dict[str, Acceptance]
    activity_events: set[str]
    """Keys of `events` rebuilt from an activity's last attempt (only some of their fields are proven)."""
    seals: dict[str, RunSeal]
    """The seal input of every Temporal run whose seal activity completed."""
    seal_in: dict[str, RunSeal]
    """The seal input by the Temporal run whose history holds its completed seal activity (a reset past the
    seal holds the seal of the run it was reset from): how an agent run in a user's workflow ended."""
    event_id: str | None
    """The activity id of the run's own events, as its start or seal in history has it (`RunStart.event_id`)."""
    optional: set[str]
    """Keys of rows history proves right but that are not owed yet: the header of an activity still in flight."""


def _expected(run_id: str, chain: Sequence[RunFacts]) -> _Expected:
    expected = _Expected({}, {}, set(), {}, {}, None, set())

    def add_header_rows(
        accepted: Iterable[dict[str, Any]], events: Iterable[dict[str, Any]], *, owed: bool = True
    ) -> None:
        for data in accepted:
            acceptance = Acceptance.from_json(data)
            _add(expected.acceptances, acceptance.key, acceptance, owed)
        for data in events:
            event = StepEvent.from_json(data)
            _add(expected.events, event.key, event, owed)

    def _add(rows: dict[str, Any], key: str, row: Any, owed: bool) -> None:
        if key not in rows:
            rows[key] = row
            if not owed:
                expected.optional.add(key)
        elif owed:
            expected.optional.discard(key)

    for facts in chain:
        for activity in facts.activities:
            header = activity.header
            if header is None or header.get('run_id') != run_id:
                continue
            # Until an activity closed, its worker may not have written its header yet; once the run
            # closed, what the workflow observed is owed to the ledger whether or not it was written.
            owed = activity.close is not None or facts.close != 'running'
            add_header_rows(header.get('accepted', []), header.get('events', []), owed=owed)
            first = activity.args[0] if activity.args and isinstance(activity.args[0], dict) else {}
            if activity.activity_type == SEAL_RUN_ACTIVITY and first:
                add_header_rows(first.get('acceptances', []), first.get('workflow_events', []), owed=owed)
                if activity.close == 'completed':
                    seal = _parse_seal(first['seal'])
                    if isinstance(activity.result, dict):
                        # The seal activity returns the usage the ledger settled and recorded (see `Usage`).
                        seal = replace(seal, usage=Usage(**activity.result))
                    expected.seals[seal.temporal_run_id] = seal
                    expected.seal_in[facts.temporal_run_id] = seal
                    expected.event_id = seal.event_id
                    event = run_event_for_seal(seal)
                    expected.events.setdefault(event.key, event)
            elif activity.activity_type == RUN_STARTED_ACTIVITY and first and activity.close == 'completed':
                start = _parse_start(first['start'])
                event = run_event_for_start(start)
                expected.events.setdefault(event.key, event)
                expected.event_id = start.event_id
            elif not activity.inherited:
                for event in _activity_events(activity, run_id, facts.workflow_id):
                    expected.events.setdefault(event.key, event)
                    expected.activity_events.add(event.key)
    return expected


def _disagreement(stored: StepEvent, proven: StepEvent, *, activity_event: bool) -> list[str]:
    if not activity_event:
        stored_json, proven_json = _event_json(stored), _event_json(proven)
        return sorted(name for name in proven_json if stored_json.get(name) != proven_json[name])
    names = [name for name in _CHECKED_FIELDS if getattr(proven, name) is not None]
    differ = [name for name in names if getattr(stored, name) != getattr(proven, name)]
    if proven.error is not None and (stored.error is None or stored.error.type != proven.error.type):
        differ.append('error')
    return differ


def _merged(stored: StepEvent, proven: StepEvent, fields: Sequence[str]) -> StepEvent:
    """The stored row with the fields history proves set to history's values; the rest (timing, usage) kept."""
    return replace(stored, **{name: getattr(proven, name) for name in fields}, seq=0, state='provisional')


def _seal_for(
    record: RunRecord, latest: RunFacts, seal: RunSeal | None, usage: Usage, event_id: str = RUN_ACTIVITY_ID
) -> RunSeal:
    """How the run ended: its own seal when it completed, else what the close event says.

    An agent run in a user's own workflow that the workflow completed (or continued as new) without
    sealing was left unfinished there: it ends `cancelled`, with an error that says how the workflow closed.
    """
    if seal is not None:
        return seal
    status = _CLOSED_STATUS.get(latest.close, 'cancelled')
    error = latest.failure if status != 'completed' else None
    if record.in_own_workflow and latest.close in _UNFINISHED:
        error_type, closed = _UNFINISHED[latest.close]
        status = 'cancelled'
        message = (
            f'workflow {record.workflow_id} {closed} (Temporal run {latest.temporal_run_id}) before the agent run ended'
        )
        error = ErrorInfo(type=error_type, message=message, retryable=False)
    return RunSeal(
        run_id=record.run_id,
        workflow_id=record.workflow_id,
        temporal_run_id=latest.temporal_run_id,
        status=status,
        ended_at=latest.closed_at or latest.started_at,
        usage=usage,
        error=error,
        event_id=event_id,
    )


def _accepted_usage(events: Iterable[StepEvent], chain: Sequence[RunFacts]) -> Usage:
    """The usage of a run that closed without a seal, settled against every row as a seal's is (`settle_usage`).

    What it used: the model requests Temporal completed, from the rows of their last attempts.
    """
    last = {
        (a.temporal_run_id, a.activity_id): a.last_attempt
        for facts in chain
        for a in facts.activities
        if a.close == 'completed' and not a.inherited and classify_activity(a.activity_type) == 'model_request'
    }
    usage = Usage()
    states: list[StepEvent] = []
    for event in events:
        accepted = last.get((event.temporal_run_id, event.activity_id)) == event.attempt
        states.append(event.with_state('accepted' if accepted else 'abandoned'))
        if event.kind == 'model_request_completed' and event.usage is not None and accepted:
            usage = usage + event.usage
    return settle_usage(usage, states)


def rebuilt_record(run_id: str, chain: Sequence[RunFacts]) -> RunRecord | None:
    """The run record the run's starts wrote, rebuilt from history for a run whose record was lost.

    Every completed `run_started` activity of the run holds the `RunStart` the workflow sent (agent,
    task queue, conversation, parent, prompt) and its result the lineage the activity resolved; they are
    folded as the ledger folded them when they ran. How the run went on and ended is left to `compare`.
    `None` when history holds no start of the run (past retention, or never started).
    """
    record: RunRecord | None = None
    for facts in chain:
        for activity in facts.activities:
            header = activity.header or {}
            first = activity.args[0] if activity.args and isinstance(activity.args[0], dict) else {}
            if (
                activity.activity_type != RUN_STARTED_ACTIVITY
                or activity.close != 'completed'
                or header.get('run_id') != run_id
                or 'start' not in first
            ):
                continue
            start = _parse_start(first['start'])
            # The lineage is resolved by the activity (continue, fork, restart), so its result holds it.
            seeded = activity.result.get('forked_from') if isinstance(activity.result, dict) else None
            if isinstance(seeded, dict):
                start = replace(start, forked_from=ForkRef.from_json(seeded))
            record = apply_run_start(record, start) or record
    return record


def compare(
    record: RunRecord,
    events: Sequence[StepEvent],
    acceptances: Sequence[Acceptance],
    chain: Sequence[RunFacts],
    *,
    unknown_runs: Iterable[str] = (),
    record_lost: bool = False,
) -> Comparison:
    """Compare one ledger run (its record, stored events and acceptances) with its Temporal runs' facts.

    `chain` holds every Temporal run of the ledger run that Temporal still has, oldest first;
    `unknown_runs` the Temporal run ids the ledger names that Temporal does not know (their rows are orphans).
    Read the ledger before the history: a row written after history was read could look like an orphan.
    `record_lost`: the ledger has no run record, and `record` is the one `rebuilt_record` made; the
    record is then missing, whatever history says of how the run went on.
    """
    findings: list[Finding] = []
    ok = 0
    expected = _expected(record.run_id, chain)
    unknown = set(unknown_runs)
    facts_by_run = {facts.temporal_run_id: facts for facts in chain}
    activities = {(a.temporal_run_id, a.activity_id): a for facts in chain for a in facts.activities if not a.inherited}
    latest = chain[-1] if chain else None
    sealed: RunSeal | None = None
    if record.in_own_workflow:
        # The agent run ended when its seal ran, whatever its workflow did next; unsealed, it ends with the workflow.
        sealed = expected.seal_in.get(latest.temporal_run_id) if latest is not None else None
        is_open = latest is None or (sealed is None and latest.close == 'running')
    else:
        # A run that continued as new goes on in a run Temporal did not show us: still open, as far as we know.
        is_open = latest is None or latest.close in ('running', 'continued_as_new')
        sealed = expected.seals.get(latest.temporal_run_id) if latest is not None else None
    event_id = expected.event_id or next((e.activity_id for e in events if e.kind == 'run_started'), RUN_ACTIVITY_ID)

    # The run record and its terminal event: a closed run is sealed with how Temporal says it ended.
    target: RunRecord | None = None
    if latest is not None and not is_open:
        stored = {event.key for event in events}
        restored = [event for key, event in expected.events.items() if key not in stored]
        usage = _accepted_usage([*events, *restored], chain)
        seal = _seal_for(record, latest, sealed, usage, event_id)
        end = run_event_for_seal(seal)
        expected.events.setdefault(end.key, end)
        target = _sealed_record(record, _temporal_runs(record, chain, seal), seal)
    elif latest is not None:
        wanted = replace(record, temporal_run_ids=_temporal_runs(record, chain), status='running', ended_at=None)
        # Parked and awaiting approval are open statuses the workflow decides: an open run keeps them.
        kept = record.status in ('parked', 'awaiting_approval')
        target = replace(wanted, status=record.status) if kept else wanted
    if record_lost:
        rebuilt = target if target is not None else record
        ended = f', sealed {rebuilt.status} as Temporal says it ended' if rebuilt.ended_at is not None else ''
        reason = f'the run record is lost: rebuilt from its events and its start in history{ended}'
        findings.append(Finding('missing', 'run', record.run_id, reason, after=rebuilt.to_json()))
    elif target is not None and target != record:
        category: Category = 'missing' if record.status == 'running' and target.status != 'running' else 'divergent'
        changed = sorted(name for name, value in target.to_json().items() if record.to_json()[name] != value)
        findings.append(
            Finding(
                category,
                'run',
                record.run_id,
                f'the run record disagrees with Temporal on {", ".join(changed)}'
                if category == 'divergent'
                else f'Temporal run {target.temporal_run_id} closed ({target.status}) without a seal',
                before=record.to_json(),
                after=target.to_json(),
            )
        )
    elif target is not None:
        ok += 1

    # Events: duplicates, rows history contradicts or does not know, rows history proves and the ledger lacks.
    counts = Counter(event.key for event in events)
    seqs: dict[str, list[int]] = {}
    for event in events:
        seqs.setdefault(event.key, []).append(event.seq)
    covered: set[str] = set()
    seen: set[str] = set()
    for event in events:
        # The ledger's own notes: no activity or seal in history stands for them.
        if event.kind in ('ledger_repaired', 'input_repeated'):
            continue
        if event.key in seen:
            continue
        seen.add(event.key)
        if counts[event.key] > 1:
            findings.append(
                Finding(
                    'duplicate',
                    'event',
                    event.key,
                    f'stored {counts[event.key]} times',
                    before=_event_json(event),
                    after=_event_json(expected.events.get(event.key, event)),
                    stored_seqs=tuple(seqs[event.key]),
                )
            )
            covered.add(event.key)
            continue
        proven = expected.events.get(event.key)
        if proven is not None:
            covered.add(event.key)
            differ = _disagreement(event, proven, activity_event=event.key in expected.activity_events)
            if not differ:
                ok += 1
                continue
            repaired = _merged(event, proven, differ) if event.key in expected.activity_events else proven
            findings.append(
                Finding(
                    'divergent',
                    'event',
                    event.key,
                    f'history disagrees on {", ".join(differ)}',
                    before=_event_json(event),
                    after=_event_json(repaired),
                    stored_seqs=(event.seq,),
                )
            )
            continue
        finding = _unproven(event, expected, activities, facts_by_run, unknown, is_open=is_open)
        if finding is None:
            ok += 1
            continue
        if finding.after is not None:
            covered.add(finding.after_key)
        findings.append(replace(finding.finding, stored_seqs=(event.seq,)))
    for key, proven in expected.events.items():
        if key not in covered and key not in expected.optional:
            findings.append(
                Finding('missing', 'event', key, 'in history, not in the ledger', after=_event_json(proven))
            )

    # Acceptances: what the workflow observed, as it sent it.
    accepted_counts = Counter(acceptance.key for acceptance in acceptances)
    stored_acceptances: dict[str, Acceptance] = {}
    for acceptance in acceptances:
        if acceptance.key in stored_acceptances:
            continue
        stored_acceptances[acceptance.key] = acceptance
        proven_acceptance = expected.acceptances.get(acceptance.key)
        if accepted_counts[acceptance.key] > 1:
            findings.append(
                Finding(
                    'duplicate',
                    'acceptance',
                    acceptance.key,
                    f'stored {accepted_counts[acceptance.key]} times',
                    before=acceptance.to_json(),
                    after=(proven_acceptance or acceptance).to_json(),
                )
            )
        elif proven_acceptance is None:
            findings.append(
                Finding(
                    'orphan',
                    'acceptance',
                    acceptance.key,
                    'no header or seal in history carries this acceptance',
                    before=acceptance.to_json(),
                )
            )
        elif proven_acceptance != acceptance:
            findings.append(
                Finding(
                    'divergent',
                    'acceptance',
                    acceptance.key,
                    f'the workflow observed {proven_acceptance.outcome}, the ledger says {acceptance.outcome}',
                    before=acceptance.to_json(),
                    after=proven_acceptance.to_json(),
                )
            )
        else:
            ok += 1
    for key, proven_acceptance in expected.acceptances.items():
        if key not in stored_acceptances and key not in expected.optional:
            findings.append(
                Finding(
                    'missing',
                    'acceptance',
                    key,
                    'the workflow observed this activity end; the ledger lacks it',
                    after=proven_acceptance.to_json(),
                )
            )
    return Comparison(findings=tuple(findings), ok=ok, open=is_open)


@dataclass(frozen=True)
class _Unproven:
    finding: Finding
    after_key: str = ''

    @property
    def after(self) -> dict[str, Any] | None:
        return self.finding.after


def _unproven(
    event: StepEvent,
    expected: _Expected,
    activities: dict[tuple[str, str], ActivityFact],
    facts_by_run: dict[str, RunFacts],
    unknown: set[str],
    *,
    is_open: bool,
) -> _Unproven | None:
    """A stored event history does not prove: an orphan, a contradicted last attempt, or `None` (unprovable: fine)."""
    if event.temporal_run_id in unknown or event.temporal_run_id not in facts_by_run:
        return _Unproven(
            Finding(
                'orphan',
                'event',
                event.key,
                f'Temporal has no run {event.temporal_run_id} of workflow {event.workflow_id}',
                before=_event_json(event),
            )
        )
    if event.step_kind is None:
        # A start, and a reset read from the new run's own history, claim no end of the run.
        if event.kind in ('run_started', 'run_reset'):
            return None
        # A terminal run event the run's seal does not prove: the run ended otherwise.
        proven = next(
            (
                e
                for e in expected.events.values()
                if e.step_kind is None
                and e.kind != 'run_started'
                and e.temporal_run_id == event.temporal_run_id
                and e.kind != event.kind
            ),
            None,
        )
        if proven is None:
            if is_open:
                return None
            return _Unproven(
                Finding(
                    'orphan', 'event', event.key, 'no seal of this Temporal run in history', before=_event_json(event)
                )
            )
        return _Unproven(
            Finding(
                'divergent',
                'event',
                event.key,
                f'Temporal says the run ended with {proven.kind}',
                before=_event_json(event),
                after=_event_json(proven),
            ),
            after_key=proven.key,
        )
    activity = activities.get((event.temporal_run_id, event.activity_id))
    if activity is None:
        return _Unproven(
            Finding(
                'orphan',
                'event',
                event.key,
                f'no activity {event.activity_id} in the history of Temporal run {event.temporal_run_id}'
                if ':' not in event.activity_id
                else 'no header or seal in history carries this workflow-side event',
                before=_event_json(event),
            )
        )
    last = activity.last_attempt
    if activity.close in ('completed', 'failed') and last is not None:
        if event.attempt > last:
            return _Unproven(
                Finding(
                    'orphan',
                    'event',
                    event.key,
                    f'Temporal made {last} attempt(s) of activity {event.activity_id}, not {event.attempt}',
                    before=_event_json(event),
                )
            )
        if event.attempt == last and event.is_terminal:
            proven = next(
                (
                    e
                    for e in expected.events.values()
                    if e.temporal_run_id == event.temporal_run_id
                    and e.activity_id == event.activity_id
                    and e.attempt == last
                    and e.is_terminal
                ),
                None,
            )
            if proven is not None:
                return _Unproven(
                    Finding(
                        'divergent',
                        'event',
                        event.key,
                        f'Temporal {activity.close} attempt {last}; the ledger says {event.kind}',
                        before=_event_json(event),
                        after=_event_json(_merged(event, proven, ['kind', 'outcome', 'error'])),
                    ),
                    after_key=proven.key,
                )
    return None


def _temporal_runs(record: RunRecord, chain: Sequence[RunFacts], seal: RunSeal | None = None) -> tuple[str, ...]:
    """The Temporal runs the run record lists: those it names, and every run of its chain.

    An agent run in a user's own workflow lists only the Temporal runs it ran in (an activity of its own
    that was not inherited), and the one whose close ended it: a reset of the workflow after the agent
    run ended copies its activities into the new run, but the agent does not run there again.
    """
    if record.in_own_workflow:
        ran_in = [
            facts.temporal_run_id
            for facts in chain
            if any(not a.inherited and (a.header or {}).get('run_id') == record.run_id for a in facts.activities)
        ]
        ended_in = [seal.temporal_run_id] if seal is not None else []
        return tuple(dict.fromkeys([*record.temporal_run_ids, *ran_in, *ended_in]))
    return tuple(dict.fromkeys([*record.temporal_run_ids, *(facts.temporal_run_id for facts in chain)]))


def _sealed_record(record: RunRecord, ids: tuple[str, ...], seal: RunSeal) -> RunRecord:
    """The run record of a closed run: its Temporal runs (`_temporal_runs`), sealed with how the latest ended."""
    if record.status == seal.status and record.temporal_run_ids == ids and record.ended_at is not None:
        # Sealed as Temporal says: the seal's details (usage, previews) are the workflow's own, left as they are.
        return record
    return replace(
        record,
        temporal_run_ids=ids,
        status=seal.status,
        ended_at=seal.ended_at,
        updated_at=max(record.updated_at, seal.ended_at),
        usage=seal.usage,
        error=seal.error,
        output_preview=seal.output_preview if seal.output_preview is not None else record.output_preview,
    )


def audit_detail(finding: Finding) -> str:
    """The `detail` of the `ledger_repaired` event that records a repair: the finding as JSON."""
    return json.dumps(finding.to_json(), sort_keys=True, separators=(',', ':'), ensure_ascii=False)
