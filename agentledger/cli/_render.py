"""Turn ledger records into the CLI's text and JSON: pure functions, no I/O.

Text is plain (no colour, no box drawing) and laid out in columns sized to their content, with long
free-form values (prompts, outputs, error messages) cut to one short line, so it reads in a narrow
terminal and survives copy-paste into an issue. The JSON shapes are built from the records' own
`to_json`, plus a `schema` key that names the shape and its version:

- `agentledger show --json`: `{"schema": "agentledger.show/1", "run": RunRecord, "steps": [StepRecord],
  "events": [StepEvent], "snapshots": [SnapshotRecord], "tool_effects": [ToolEffect],
  "continuations": [run id], "children": [RunRecord], "model_calls": Usage (accepted model requests,
  with the replayed ones counted apart), "effects": [EffectRecord], "workflow_runs": [run id] (the ledger
  runs of the user workflow an agent run ran in, oldest first; empty for an `AgentRunWorkflow` run),
  "pending_approvals": [AwaitingCall] (the calls a run awaiting approval waits on; else empty)}`
- `agentledger effects --json`: `{"schema": "agentledger.effects/1", "effects": [EffectRecord]}`
- `agentledger runs --json`: `{"schema": "agentledger.runs/1", "runs": [RunRecord]}`
- `agentledger run --json`: `{"schema": "agentledger.run/1", "output": ..., "run_id": ..., "workflow_id": ...,
  "usage": Usage}` (plus `"forked_from": ForkRef` from `continue` / `fork` with `--wait`)
- `agentledger continue --json` / `fork --json`: `{"schema": "agentledger.start/1", "run_id": ..., "workflow_id": ...,
  "forked_from": ForkRef}`
- `agentledger snapshots --json`: `{"schema": "agentledger.snapshots/1", "run_id": ..., "latest": snapshot id
  or null, "snapshots": [SnapshotRecord]}`
- `agentledger reconcile --json`: `{"schema": "agentledger.reconcile/1", "runs": [ReconcileReport]}`

A new key may be added to a shape without changing its version; renaming or removing one bumps it.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from agentledger.client import AgentRunResult
from agentledger.model._effects import EffectRecord
from agentledger.model._records import (
    ForkReason,
    ForkRef,
    RunRecord,
    RunTree,
    SnapshotRecord,
    StepEvent,
    StepRecord,
    ToolEffect,
    Usage,
)
from agentledger.model._resets import ResetPoint, reset_points
from agentledger.model._rules import total_usage
from agentledger.payloads._gc import GcReport
from agentledger.reconcile._repair import RECONCILE_SCHEMA, ReconcileReport

__all__ = [
    'EFFECTS_SCHEMA',
    'RECONCILE_SCHEMA',
    'RESULT_SCHEMA',
    'RUNS_SCHEMA',
    'SHOW_SCHEMA',
    'SNAPSHOTS_SCHEMA',
    'START_SCHEMA',
    'AwaitingCall',
    'RunView',
    'awaiting_calls',
    'effects_json',
    'json_safe',
    'json_text',
    'reconcile_json',
    'render_effects',
    'render_gc',
    'render_reconcile',
    'render_runs',
    'render_snapshots',
    'render_timeline',
    'result_json',
    'run_json',
    'runs_json',
    'snapshots_json',
    'start_json',
    'terminal_safe',
]

_CONTROL = re.compile('[\x00-\x08\x0b-\x1f\x7f-\x9f]')
_CONTROL_OR_NEWLINE = re.compile('[\x00-\x1f\x7f-\x9f]')
_C1 = re.compile('[\x7f-\x9f]')


def terminal_safe(text: str, *, lines: bool = True) -> str:
    """`text` with its control characters shown as escapes (ESC as backslash-x1b): stored text cannot drive a terminal.

    A prompt, an id or a model's answer may hold ESC or BEL sequences (colours, cursor moves, a
    window title, a hyperlink); printed raw they would act on the operator's terminal. Newlines and
    tabs are kept, unless `lines=False` (a one-line error message).
    """
    pattern = _CONTROL if lines else _CONTROL_OR_NEWLINE
    return pattern.sub(lambda match: repr(match.group())[1:-1], text)


def json_safe(text: str) -> str:
    """JSON text with DEL and the C1 controls (which JSON allows raw in strings) written as backslash-u escapes."""
    return _C1.sub(lambda match: f'\\u{ord(match.group()):04x}', text)


def json_text(value: Any) -> str:
    """`value` as the CLI prints JSON: indented, UTF-8 as is, and no raw control character."""
    return json_safe(json.dumps(value, indent=2, ensure_ascii=False))


SHOW_SCHEMA = 'agentledger.show/1'
"""The `schema` value of `run_json` (`agentledger show --json`)."""

RUNS_SCHEMA = 'agentledger.runs/1'
"""The `schema` value of `runs_json` (`agentledger runs --json`)."""

RESULT_SCHEMA = 'agentledger.run/1'
"""The `schema` value of `result_json` (`agentledger run --json`)."""

START_SCHEMA = 'agentledger.start/1'
"""The `schema` value of `start_json` (`agentledger continue --json` / `fork --json` without `--wait`)."""

EFFECTS_SCHEMA = 'agentledger.effects/1'
"""The `schema` value of `effects_json` (`agentledger effects --json`)."""

SNAPSHOTS_SCHEMA = 'agentledger.snapshots/1'
"""The `schema` value of `snapshots_json` (`agentledger snapshots --json`)."""

_PREVIEW_CHARS = 50
"""How much of a free-form value (prompt, output, error message) one line shows."""

_RUN_END_KINDS = frozenset({'run_completed', 'run_failed', 'run_cancelled', 'run_terminated'})

_LINEAGE_LABELS: dict[ForkReason, str] = {
    'continue': 'continued by',
    'fork': 'forked into',
    'restart': 'restarted as',
}
"""The header label of the runs seeded from a run, by why they were seeded."""

_Attempt = tuple[str, str, int]
"""One attempt of one activity: (temporal run id, activity id, attempt)."""

_REQUESTED = re.compile(r'digest (?P<digest>\S+): (?P<call>.*)', re.DOTALL)
"""An `approval_requested` event's detail: `digest 3f2a...: refund({"amount": 5, "order": 101})`."""

_DECIDED = re.compile(
    r'digest (?P<digest>\S+); by (?P<by>.*?)(?:; reason: (?P<reason>.*?))?'
    r'(?:; override_args: (?P<args>.*?))?(?:; rejected: (?P<problem>.*))?',
    re.DOTALL,
)
"""An `approval_granted` / `_denied` / `_rejected` event's detail: `digest ...; by alice; reason: ...`."""


@dataclass(frozen=True)
class RunView:
    """Everything `agentledger show` prints about one run, as read from the ledger."""

    run: RunRecord
    events: Sequence[StepEvent]
    steps: Sequence[StepRecord]
    snapshots: Sequence[SnapshotRecord] = ()
    tool_effects: Sequence[ToolEffect] = ()
    continuations: Sequence[RunRecord] = ()
    """The runs seeded from this one (continued, forked or restarted), oldest first."""
    delegates: RunTree | None = None
    """This run with the delegate runs it started below it, as deep as was read."""
    effects: Sequence[EffectRecord] = ()
    """The once-only effects (`agentledger.once`) this run's tool calls started."""
    workflow_runs: Sequence[RunRecord] = ()
    """For an agent run inside a user's own workflow: every ledger run of that workflow id (this one
    included), oldest first. Empty for an `AgentRunWorkflow` run."""


@dataclass(frozen=True)
class AwaitingCall:
    """A tool call a run awaiting approval waits on a decision for, as its `approval_requested` event recorded it."""

    tool_call_id: str
    tool_name: str
    digest: str
    """The digest a decision on it names (`agentledger approve` reads it from the workflow itself)."""
    arguments: str
    """Its arguments as JSON text, cut at 200 characters (ending in `…`) by the workflow."""
    requested_at: datetime

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible dict (an item of `show --json`'s `pending_approvals`)."""
        return {
            'tool_call_id': self.tool_call_id,
            'tool_name': self.tool_name,
            'digest': self.digest,
            'arguments': self.arguments,
            'requested_at': self.requested_at.isoformat(),
        }


def awaiting_calls(run: RunRecord, events: Sequence[StepEvent]) -> list[AwaitingCall]:
    """The calls `run` waits on a decision for, from its events (in ledger order); none unless it awaits approval.

    A call waits when its `approval_requested` event has no later `approval_granted` / `approval_denied`
    in the same Temporal run. Only the Temporal run that requested last counts: that is where the run
    waits (a reset or a new run of the workflow asks again, and an older request waits no more).
    """
    if run.status != 'awaiting_approval':
        return []
    requests = [event for event in events if event.kind == 'approval_requested']
    if not requests:
        return []
    temporal_run_id = requests[-1].temporal_run_id
    waiting: dict[str, StepEvent] = {}
    for event in events:
        if event.temporal_run_id != temporal_run_id or event.tool_call_id is None:
            continue
        if event.kind == 'approval_requested':
            waiting[event.tool_call_id] = event
        elif event.kind in ('approval_granted', 'approval_denied'):
            waiting.pop(event.tool_call_id, None)
    return [_awaiting_call(event) for event in waiting.values()]


def _awaiting_call(event: StepEvent) -> AwaitingCall:
    tool_name = event.tool_name or '?'
    match = _REQUESTED.fullmatch(event.detail or '')
    call = match['call'] if match else event.detail or ''
    arguments = call.removeprefix(f'{tool_name}(')
    if arguments != call:
        # `name(args)`; a preview cut short ends in `…`, without the closing parenthesis.
        arguments = arguments.removesuffix(')')
    return AwaitingCall(
        tool_call_id=event.tool_call_id or '?',
        tool_name=tool_name,
        digest=match['digest'] if match else '?',
        arguments=arguments,
        requested_at=event.timestamp,
    )


def runs_json(runs: Sequence[RunRecord]) -> dict[str, Any]:
    """The `agentledger runs --json` document: `{"schema": ..., "runs": [RunRecord.to_json(), ...]}`."""
    return {'schema': RUNS_SCHEMA, 'runs': [run.to_json() for run in runs]}


def run_json(view: RunView) -> dict[str, Any]:
    """The `agentledger show --json` document: the run record, its steps, events (with their state) and lineage.

    `continuations` are the ids of the runs seeded from this one; `children` the records of the delegate
    runs it started directly (each names its `parent_run_id` and `parent_tool_call_id`).
    """
    return {
        'schema': SHOW_SCHEMA,
        'run': view.run.to_json(),
        'steps': [step.to_json() for step in view.steps],
        'events': [event.to_json() for event in view.events],
        'snapshots': [snapshot.to_json() for snapshot in view.snapshots],
        'tool_effects': [effect.to_json() for effect in view.tool_effects],
        'continuations': [run.run_id for run in view.continuations],
        'children': [child.run.to_json() for child in view.delegates.children] if view.delegates is not None else [],
        'model_calls': asdict(total_usage(view.steps)),
        'effects': [effect.to_json() for effect in view.effects],
        'workflow_runs': [run.run_id for run in view.workflow_runs],
        'pending_approvals': [call.to_json() for call in awaiting_calls(view.run, view.events)],
    }


def effects_json(effects: Sequence[EffectRecord]) -> dict[str, Any]:
    """The `agentledger effects --json` document: `{"schema": ..., "effects": [EffectRecord.to_json(), ...]}`."""
    return {'schema': EFFECTS_SCHEMA, 'effects': [effect.to_json() for effect in effects]}


def render_effects(effects: Sequence[EffectRecord]) -> str:
    """Once-only effects, one per line: key, status, who decided it, attempts, result or error."""
    if not effects:
        return '(no once-only effects)'
    return '\n'.join(_effects_table(effects, indent=0))


def _effects_table(effects: Sequence[EffectRecord], *, indent: int) -> list[str]:
    rows = [
        [
            effect.key,
            effect.status,
            effect.resolution or '',
            str(effect.attempts),
            effect.run_id,
            _preview(json.dumps(effect.result)) if effect.status == 'done' else _preview(effect.error or ''),
        ]
        for effect in effects
    ]
    return _table(['KEY', 'STATUS', 'DECIDED BY', 'ATTEMPTS', 'RUN', 'RESULT / ERROR'], rows, right={3}, indent=indent)


def result_json(result: AgentRunResult[Any], *, forked_from: ForkRef | None = None) -> dict[str, Any]:
    """The `agentledger run --json` document: the output (as JSON data) and where the ledger keeps the run.

    A continued or forked run adds `forked_from`: the run and snapshot it was seeded from.
    """
    document = {
        'schema': RESULT_SCHEMA,
        'output': result.output,
        'run_id': result.run_id,
        'workflow_id': result.workflow_id,
        'usage': asdict(result.usage),
    }
    if forked_from is not None:
        document['forked_from'] = asdict(forked_from)
    return document


def start_json(run_id: str, workflow_id: str, forked_from: ForkRef) -> dict[str, Any]:
    """The `agentledger continue --json` / `fork --json` document of a run started and not waited for."""
    return {'schema': START_SCHEMA, 'run_id': run_id, 'workflow_id': workflow_id, 'forked_from': asdict(forked_from)}


def snapshots_json(run_id: str, snapshots: Sequence[SnapshotRecord], latest: SnapshotRecord | None) -> dict[str, Any]:
    """The `agentledger snapshots --json` document: the run's snapshots and the one `continue` would start from."""
    return {
        'schema': SNAPSHOTS_SCHEMA,
        'run_id': run_id,
        'latest': latest.snapshot_id if latest is not None else None,
        'snapshots': [snapshot.to_json() for snapshot in snapshots],
    }


def reconcile_json(reports: Sequence[ReconcileReport]) -> dict[str, Any]:
    """The `agentledger reconcile --json` document: one `ReconcileReport.to_json()` per run."""
    return {'schema': RECONCILE_SCHEMA, 'runs': [report.to_json() for report in reports]}


def render_reconcile(reports: Sequence[ReconcileReport]) -> str:
    """One line per run (its counts and what was done), then each finding under its run."""
    if not reports:
        return 'No runs.'
    lines: list[str] = []
    for report in reports:
        counts = report.counts
        if report.repaired:
            done = 'repaired'
        elif report.clean:
            done = 'agrees with history'
        elif report.open:
            done = 'the workflow is still running: reported only (--repair-open repairs it)'
        else:
            done = 'reported only (dry run)'
        figures = ', '.join(f'{counts[name]} {name}' for name in ('ok', 'missing', 'divergent', 'orphan', 'duplicate'))
        lines.append(f'{report.run_id}  {report.status}  {figures}: {done}')
        for finding in report.findings:
            lines.append(f'  {finding.category:<9}  {finding.row:<10}  {finding.key}  {finding.reason}')
        if report.unknown_temporal_runs:
            lines.append(f'  Temporal does not know: {", ".join(report.unknown_temporal_runs)}')
    return '\n'.join(lines)


def render_runs(runs: Sequence[RunRecord]) -> str:
    """A table of runs, one per line, in the order given (the ledger lists newest first).

    The last columns say where each ran: the workflow's type (`AgentRunWorkflow`, or the user's own
    workflow that ran the agent; `-` for a run recorded before the ledger kept the type) and its id.
    """
    if not runs:
        return 'No runs.'
    rows = [
        [
            run.run_id,
            run.agent_name,
            f'{run.status} (degraded)' if run.degraded else run.status,
            _timestamp(run.started_at),
            _duration(run.duration_s),
            str(run.usage.requests),
            str(run.usage.total_tokens),
            run.workflow_type or '-',
            run.workflow_id,
        ]
        for run in runs
    ]
    headers = [
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
    return '\n'.join(_table(headers, rows, right={4, 5, 6}))


def render_snapshots(snapshots: Sequence[SnapshotRecord]) -> str:
    """A table of a run's snapshots in the order given (oldest first): where `continue` and `fork` can start."""
    if not snapshots:
        return 'No snapshots.'
    rows = [
        [
            snapshot.snapshot_id,
            str(snapshot.step),
            snapshot.kind.replace('_', ' '),
            str(snapshot.message_count),
            _timestamp(snapshot.created_at),
            snapshot.parent_id or '-',
        ]
        for snapshot in snapshots
    ]
    headers = ['SNAPSHOT ID', 'STEP', 'KIND', 'MESSAGES', 'CREATED (UTC)', 'PARENT']
    return '\n'.join(_table(headers, rows, right={1, 3}))


def render_gc(report: GcReport) -> str:
    """What `agentledger gc` deleted (or would delete), what it kept and why, and what it could not decide."""
    verb = 'would delete' if report.dry_run else 'deleted'
    lines = [
        f'{verb} {len(report.deleted)} stored payload(s) and {report.chunks} chunk(s) ({report.bytes} bytes); '
        f'kept {len(report.kept)}'
    ]
    lines += [f'  {verb}  {manifest}' for manifest in report.deleted]
    for kept in report.kept:
        lines.append(f'  kept     {kept.manifest}')
        lines += [f'             {reason}' for reason in kept.reasons]
    if report.undecided:
        lines.append('Could not decide (their payloads were kept):')
        lines += [f'  {r.namespace}/{r.workflow_id}: {r.detail}' for r in report.undecided]
    return '\n'.join(lines)


def render_timeline(view: RunView, *, ledger_url: str | None = None) -> str:
    """A run's facts and lineage, one line per event (in ledger order), one line per step, then its delegates.

    Event lines carry the time since the run started, the step (model request number), the
    attempt (`-` for events recorded by workflow code, which has no attempts), the tool or model, the
    outcome or error, the attempt's duration, and `[abandoned]` / `[provisional]` for attempts whose
    result the run did not (or not yet) use, `[superseded]` for attempts of a Temporal run that a
    reset replaced and whose step the new run ran again, and `[in doubt]` for tool attempts that never
    recorded an end. A `run reset` line says which Temporal run was reset to which event, the reason
    and the identity; the steps of a run with several Temporal runs are listed under each one.
    A `snapshot` line follows the start of the model request it was taken for, and the
    `final snapshot` line the run's end. Tool calls in doubt get a section of their own, with the
    commands to go on from them (with `--ledger <ledger_url>` when `ledger_url` is given), and so do the
    tool calls a run awaiting approval waits on, with the `approve` / `deny` commands that decide each.
    """
    sections = [_header(view), 'Timeline', *_timeline(view), '', 'Steps', *_steps(view.run, view.events, view.steps)]
    if view.delegates is not None and view.delegates.children:
        sections += ['', 'Delegated runs', *_delegates(view.delegates)]
    if view.effects:
        sections += ['', 'Once-only effects', *_effects_table(view.effects, indent=2)]
        unknown = [effect for effect in view.effects if effect.status == 'unknown']
        suffix = f' --ledger {ledger_url}' if ledger_url is not None else ''
        sections += [
            f'  unknown: resolve with `agentledger resolve {effect.key} --outcome done --result JSON{suffix}` '
            'or `--outcome not-done`'
            for effect in unknown
        ]
    doubtful = [effect for effect in view.tool_effects if _is_in_doubt(effect)]
    if doubtful:
        sections += ['', 'In doubt', *_in_doubt(view, doubtful, ledger_url)]
    awaiting = awaiting_calls(view.run, view.events)
    if awaiting:
        sections += ['', 'Awaiting approval', *_awaiting(view.run, awaiting, ledger_url)]
    return '\n'.join(sections)


def _header(view: RunView) -> str:
    run = view.run
    facts: list[tuple[str, str]] = [
        ('run', run.run_id),
        ('agent', run.agent_name),
        ('status', run.status),
        ('workflow', f'{run.workflow_id} ({run.workflow_type})' if run.workflow_type else run.workflow_id),
        ('temporal runs' if len(run.temporal_run_ids) > 1 else 'temporal run', ', '.join(run.temporal_run_ids)),
        ('task queue', run.task_queue),
        ('started', f'{_timestamp(run.started_at)} UTC'),
    ]
    if run.ended_at is not None:
        facts.append(('ended', f'{_timestamp(run.ended_at)} UTC ({_duration(run.duration_s)})'))
    facts.append(('usage', _usage(run.usage)))
    # The run record's usage is the one the workflow reported; see `Usage` for what each count means.
    calls = run.usage
    if calls.requests or calls.billed_requests:
        facts.append(
            (
                'model calls',
                f'{calls.billed_requests} billed ({calls.billed_tokens} tokens), '
                f'{calls.replayed_requests} replayed from the journal ({calls.replayed_tokens} tokens not paid again)',
            )
        )
    if run.conversation_id is not None:
        facts.append(('conversation', run.conversation_id))
    if run.parent_run_id is not None:
        parent = run.parent_run_id
        if run.parent_tool_call_id is not None:
            parent += f' (tool call {run.parent_tool_call_id})'
        facts.append(('parent run', parent))
    if run.forked_from is not None:
        origin = run.forked_from
        facts.append(('seeded from', f'{origin.run_id} ({origin.reason}, snapshot {origin.snapshot_id})'))
    for reason, label in _LINEAGE_LABELS.items():
        seeded = [
            (later, later.forked_from)
            for later in view.continuations
            if later.forked_from is not None and later.forked_from.reason == reason
        ]
        # One run per line; the label only on the first.
        facts += [
            (label if index == 0 else '', f'{later.run_id} ({later.status}, from snapshot {origin.snapshot_id})')
            for index, (later, origin) in enumerate(seeded)
        ]
    # The agent runs of the user workflow this run ran in, one per line, in the order they started.
    facts += [
        (
            'workflow runs' if index == 0 else '',
            f'{other.run_id} ({other.agent_name}, {other.status}{", this run" if other.run_id == run.run_id else ""})',
        )
        for index, other in enumerate(view.workflow_runs)
    ]
    if run.prompt_preview is not None:
        facts.append(('prompt', _preview(run.prompt_preview)))
    if run.output_preview is not None:
        facts.append(('output', _preview(run.output_preview)))
    if run.error is not None:
        facts.append(('error', _preview(f'{run.error.type}: {run.error.message}')))
    if run.status == 'parked':
        facts.append(
            (
                'parked',
                f'waiting: `agentledger resume {run.run_id} [PROMPT]` goes on from the latest valid snapshot, '
                f'`agentledger abandon {run.run_id}` fails it',
            )
        )
    if run.status == 'awaiting_approval':
        waiting = len(awaiting_calls(run, view.events))
        facts.append(
            (
                'awaiting',
                f'a decision on {_count(waiting, "tool call")}: `agentledger approve` or `agentledger deny` each '
                '(see "Awaiting approval" below)'
                if waiting
                else 'a decision on tool calls the ledger holds no request for; '
                "the workflow's current details in the Temporal UI list them",
            )
        )
    if run.degraded:
        facts.append(
            (
                'degraded',
                f'{_count(len(run.degraded), "write")} missed a ledger outage; '
                f'`agentledger reconcile {run.run_id}` checks them against history and clears this',
            )
        )
        facts += [('', line) for line in run.degraded]
    width = max(len(label) for label, _ in facts)
    return '\n'.join(f'{label:<{width}}  {value}' for label, value in facts) + '\n'


def _timeline(view: RunView) -> list[str]:
    run = view.run
    doubtful = _in_doubt_attempts(view.events, view.tool_effects)
    after = _snapshot_places(view.events, view.snapshots)
    rows = [_snapshot_row(run, snapshot) for snapshot in after.get(-1, [])]
    for index, event in enumerate(view.events):
        rows.append(_event_row(run, event, in_doubt=_attempt_of(event) in doubtful))
        rows += [_snapshot_row(run, snapshot) for snapshot in after.get(index, [])]
    if not rows:
        return ['  (no events)']
    return _table(['TIME', 'STEP', 'EVENT', 'ATTEMPT', 'NAME', 'DETAILS'], rows, right={0, 1, 3}, indent=2)


def _event_row(run: RunRecord, event: StepEvent, *, in_doubt: bool) -> list[str]:
    return [
        _offset((event.timestamp - run.started_at).total_seconds()),
        '' if event.step is None else str(event.step),
        event.kind.replace('_', ' '),
        _attempt(event),
        event.tool_name or event.model_name or '',
        _event_details(event, in_doubt=in_doubt),
    ]


def _snapshot_row(run: RunRecord, snapshot: SnapshotRecord) -> list[str]:
    return [
        _offset((snapshot.created_at - run.started_at).total_seconds()),
        str(snapshot.step),
        'final snapshot' if snapshot.kind == 'final' else 'snapshot',
        '',
        '',
        f'{snapshot.snapshot_id} ({_count(snapshot.message_count, "message")})',
    ]


def _snapshot_places(
    events: Sequence[StepEvent], snapshots: Sequence[SnapshotRecord]
) -> dict[int, list[SnapshotRecord]]:
    """The index of the event each snapshot is shown after (-1: before all), in the snapshots' order.

    A model request's snapshot is the history that request was about to send, so it follows the
    request's first start in the same Temporal run (a reset repeats steps); a final snapshot follows
    the end of its Temporal run. A snapshot without such an event goes where its time puts it.
    """
    starts: dict[tuple[str, int], int] = {}
    ends: dict[str, int] = {}
    for index, event in enumerate(events):
        if event.kind == 'model_request_started' and event.step is not None:
            starts.setdefault((event.temporal_run_id, event.step), index)
        elif event.kind in _RUN_END_KINDS:
            ends[event.temporal_run_id] = index
    places: dict[int, list[SnapshotRecord]] = {}
    for snapshot in snapshots:
        if snapshot.kind == 'final':
            place = ends.get(snapshot.temporal_run_id)
        else:
            place = starts.get((snapshot.temporal_run_id, snapshot.step))
        if place is None:
            place = max((i for i, event in enumerate(events) if event.timestamp <= snapshot.created_at), default=-1)
        places.setdefault(place, []).append(snapshot)
    return places


def _is_in_doubt(effect: ToolEffect) -> bool:
    return bool(effect.in_doubt_attempts) or effect.status == 'unknown_after_crash'


def _attempt_of(event: StepEvent) -> _Attempt:
    return (event.temporal_run_id, event.activity_id, event.attempt)


def _in_doubt_attempts(events: Sequence[StepEvent], effects: Sequence[ToolEffect]) -> set[_Attempt]:
    """The tool call attempts in doubt: named by their call's `ToolEffect`, started and never ended."""
    numbers = {effect.tool_call_id: set(effect.in_doubt_attempts) for effect in effects if _is_in_doubt(effect)}
    # ToolEffect names attempts by number only, and numbers restart in a new Temporal run (a reset).
    ended = {_attempt_of(event) for event in events if event.is_terminal}
    return {
        _attempt_of(event)
        for event in events
        if event.kind == 'tool_call_started'
        and event.attempt in numbers.get(event.tool_call_id or '', set())
        and _attempt_of(event) not in ended
    }


def _attempt(event: StepEvent) -> str:
    # Run-level events and workflow-side events (a tool call rejected by argument validation) have no activity
    # attempt; an approval_rejected event's number only tells rejections apart.
    return str(event.attempt) if event.attempt > 0 and not event.kind.startswith('approval_') else '-'


def _event_details(event: StepEvent, *, in_doubt: bool) -> str:
    parts: list[str] = []
    if event.kind == 'run_started' and event.detail is not None:
        parts.append(f'prompt: {_preview(event.detail)}')
    elif event.kind == 'run_resumed' and event.detail is not None:
        parts.append(f'new prompt: {_preview(event.detail)}')
    elif event.kind == 'run_completed' and event.detail is not None:
        parts.append(f'output: {_preview(event.detail)}')
    elif event.kind == 'run_reset':
        parts.append(_reset_details(event))
    elif event.kind == 'input_repeated' and event.detail is not None:
        parts.append(event.detail)
    elif event.kind == 'ledger_repaired' and event.detail is not None:
        parts.append(_repair_details(event.detail))
    elif event.kind == 'request_ignored' and event.detail is not None:
        # Not cut short: which request, why it was ignored and its input (already bounded by the workflow).
        parts.append(' '.join(event.detail.split()))
    elif event.kind.startswith('approval_') and event.detail is not None:
        parts.append(_approval_details(event.kind, event.detail))
    elif event.outcome is not None:
        # A tool's retry prompt or validation error says why the model is asked again.
        parts.append(f'{event.outcome}: {_preview(event.detail)}' if event.detail else event.outcome)
    if event.error is not None:
        error = f'{event.error.type}: {_preview(event.error.message)}'
        parts.append(error if event.error.retryable else f'{error} (not retryable)')
    if event.usage is not None and event.step_kind == 'model_request':
        paid = 'replayed' if event.replayed else 'billed'
        parts.append(f'{event.usage.input_tokens}+{event.usage.output_tokens} tokens {paid}')
    if event.duration_s is not None and event.attempt > 0:
        parts.append(_duration(event.duration_s))
    details = ', '.join(parts)
    if event.state != 'accepted' and event.step_kind is not None:
        details = f'{details} [{event.state}]'.lstrip()
    if in_doubt:
        details = f'{details} [in doubt]'.lstrip()
    return details


def _reset_details(event: StepEvent) -> str:
    """What a `run_reset` event says: the run reset, the event it was reset to, the reason and who reset it."""
    reset = ResetPoint.from_event(event)
    if reset is None:
        return _preview(event.detail or '')
    return (
        f'Temporal run {_short(reset.base_run_id)} reset to event {reset.event_id}, '
        f'now {_short(reset.temporal_run_id)}: reason: {_preview(reset.reason) or "-"}, '
        f'by {_preview(reset.identity) or "-"}'
    )


def _short(temporal_run_id: str) -> str:
    """A Temporal run id's first 8 characters: enough to tell a run's Temporal runs apart."""
    return temporal_run_id[:8]


def _repair_details(detail: str) -> str:
    """What a `ledger_repaired` event repaired: its finding's category, row and reason."""
    try:
        finding = json.loads(detail)
        return f'{finding["category"]} {finding["row"]}: {finding["reason"]}'
    except (ValueError, KeyError, TypeError):
        return _preview(detail)


def _approval_details(kind: str, detail: str) -> str:
    """What an approval event says: the call and its digest (requested), or who decided, why and how."""
    if kind == 'approval_requested':
        requested = _REQUESTED.fullmatch(detail)
        return f'{_preview(requested["call"])}, digest {requested["digest"]}' if requested else _preview(detail)
    decided = _DECIDED.fullmatch(detail)
    if decided is None:
        return _preview(detail)
    parts = [f'by {_preview(decided["by"])}']
    if decided['args'] is not None:
        parts.append(f'with arguments {_preview(decided["args"])}')
    if decided['reason'] is not None:
        parts.append(f'reason: {_preview(decided["reason"])}')
    if decided['problem'] is not None:
        parts.append(f'rejected: {_preview(decided["problem"])}')
    return ', '.join(parts)


def _awaiting(run: RunRecord, calls: Sequence[AwaitingCall], ledger_url: str | None) -> list[str]:
    """The calls a run waits on a decision for, and the exact commands that take each decision."""
    rows = [
        [
            call.tool_call_id,
            call.tool_name,
            call.digest,
            _offset((call.requested_at - run.started_at).total_seconds()),
            call.arguments,
        ]
        for call in calls
    ]
    suffix = f' --ledger {ledger_url}' if ledger_url is not None else ''
    lines = [
        '  The run waits for a decision on each call below; it goes on once every one is decided.',
        *_table(['TOOL CALL ID', 'TOOL', 'DIGEST', 'REQUESTED', 'ARGUMENTS'], rows, right={3}, indent=2),
        '  To decide (approve takes --args JSON to run other arguments; --by NAME records who decided):',
    ]
    for call in calls:
        named = f'{shlex.quote(run.run_id)} {shlex.quote(call.tool_call_id)}'
        lines.append(f'    agentledger approve {named}{suffix}')
        lines.append(f'    agentledger deny {named} --reason "..."{suffix}')
    return lines


def _steps(run: RunRecord, events: Sequence[StepEvent], steps: Sequence[StepRecord]) -> list[str]:
    """One row per step; with more than one Temporal run, grouped under a line naming each run and its resets."""
    if not steps:
        return ['  (no steps)']
    order = list(dict.fromkeys([*run.temporal_run_ids, *(step.temporal_run_id for step in steps)]))
    steps = sorted(steps, key=lambda step: order.index(step.temporal_run_id))
    # StepRecord does not carry the model name; the completed model request event of the same activity does.
    models = {
        (event.temporal_run_id, event.activity_id): event.model_name for event in events if event.model_name is not None
    }
    rows = [
        [
            '' if step.step is None else str(step.step),
            step.kind.replace('_', ' '),
            step.tool_name or models.get((step.temporal_run_id, step.activity_id)) or '',
            str(step.attempts),
            _accepted(step.accepted_attempt),
            step.status,
            _step_result(step),
        ]
        for step in steps
    ]
    headers = ['STEP', 'KIND', 'NAME', 'ATTEMPTS', 'ACCEPTED', 'STATUS', 'RESULT']
    lines = _table(headers, rows, right={0, 3, 4}, indent=2)
    if len(order) < 2:
        return lines
    resets = reset_points(events)
    grouped = lines[:1]
    for index, step in enumerate(steps):
        if index == 0 or steps[index - 1].temporal_run_id != step.temporal_run_id:
            grouped.append(_temporal_run_label(step.temporal_run_id, resets))
        grouped.append(lines[index + 1])
    return grouped


def _temporal_run_label(temporal_run_id: str, resets: dict[str, ResetPoint]) -> str:
    """The line that heads a Temporal run's steps: its short id, the reset that started it, the reset that ended it."""
    notes: list[str] = []
    started = resets.get(temporal_run_id)
    if started is not None:
        notes.append(f'reset from {_short(started.base_run_id)} at event {started.event_id}')
    notes += [
        f'superseded after event {reset.event_id} by {_short(reset.temporal_run_id)}'
        for reset in resets.values()
        if reset.base_run_id == temporal_run_id
    ]
    return f'  Temporal run {_short(temporal_run_id)}' + (f' ({"; ".join(notes)})' if notes else '')


def _accepted(attempt: int | None) -> str:
    if attempt is None:
        return 'none'
    return 'workflow' if attempt == 0 else f'#{attempt}'


def _step_result(step: StepRecord) -> str:
    parts: list[str] = []
    if step.outcome is not None:
        parts.append(step.outcome)
    if step.error is not None:
        parts.append(f'{step.error.type}: {_preview(step.error.message)}')
    if step.usage is not None and step.kind == 'model_request':
        parts.append(f'{step.usage.total_tokens} tokens {"replayed" if step.replayed else "billed"}')
    return ', '.join(parts)


def _delegates(tree: RunTree) -> list[str]:
    """The delegate runs below the root, depth first, each indented under the run that started it."""
    rows = [
        [
            '  ' * (depth - 1) + node.run.run_id,
            node.run.agent_name,
            node.run.status,
            str(node.run.usage.requests),
            str(node.run.usage.total_tokens),
            _duration(node.run.duration_s),
            node.run.parent_tool_call_id or '-',
        ]
        for depth, node in tree.walk()
        if depth > 0
    ]
    headers = ['RUN ID', 'AGENT', 'STATUS', 'REQUESTS', 'TOKENS', 'DURATION', 'TOOL CALL']
    return _table(headers, rows, right={3, 4, 5}, indent=2)


def _in_doubt(view: RunView, effects: Sequence[ToolEffect], ledger_url: str | None) -> list[str]:
    """The tool calls in doubt, and what an operator can do about them."""
    call_steps = {
        event.tool_call_id: event.step
        for event in view.events
        if event.tool_call_id is not None and event.step is not None
    }
    rows = [
        [
            effect.tool_name or '?',
            effect.tool_call_id,
            str(call_steps.get(effect.tool_call_id, '')),
            effect.status,
            str(effect.attempts),
            ', '.join(f'#{attempt}' for attempt in effect.in_doubt_attempts),
            effect.idempotency_key,
        ]
        for effect in effects
    ]
    headers = ['TOOL', 'TOOL CALL ID', 'STEP', 'STATUS', 'ATTEMPTS', 'IN DOUBT', 'IDEMPOTENCY KEY']
    lines = [
        '  An attempt in doubt started and never recorded an end (its worker stopped mid-call):',
        '  the tool may or may not have acted. Look its idempotency key up where the tool acts before acting again.',
        *_table(headers, rows, right={2, 4}, indent=2),
    ]
    suffix = f' --ledger {ledger_url}' if ledger_url is not None else ''
    run_id = view.run.run_id
    unfinished = [effect for effect in effects if effect.status == 'unknown_after_crash']
    if unfinished:
        commands = [(f'agentledger continue {run_id}{suffix}', 'the latest valid snapshot: no call in doubt is in it')]
        by_step: dict[int, list[str]] = {}
        for effect in unfinished:
            step = call_steps.get(effect.tool_call_id)
            if step is not None:
                by_step.setdefault(step, []).append(effect.tool_name or effect.tool_call_id)
        commands += [
            (
                f'agentledger fork {run_id} --at-step {step}{suffix}',
                f'ask the model again from before it called {", ".join(sorted(set(names)))}',
            )
            for step, names in sorted(by_step.items())
        ]
        width = max(len(command) for command, _ in commands)
        lines.append('  To go on without the calls that never ended (a new run; add a prompt to say what to do):')
        lines += [f'    {command:<{width}}  {why}' for command, why in commands]
    if len(unfinished) < len(effects):
        lines.append(
            '  A completed or failed call ended on a later attempt, which the run used: check for a duplicate effect.'
        )
    return lines


def _table(headers: list[str], rows: list[list[str]], *, right: set[int], indent: int = 0) -> list[str]:
    """Lay `rows` out under `headers`, columns two spaces apart; the last column is never padded."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    last = len(headers) - 1

    def line(cells: list[str]) -> str:
        padded = [
            cell if i == last else cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return (' ' * indent + '  '.join(padded)).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def _preview(text: str) -> str:
    """`text` on one line, cut short; whitespace runs collapse (a validation error says what is wrong on line 3)."""
    flat = ' '.join(text.split())
    return flat if len(flat) <= _PREVIEW_CHARS else flat[: _PREVIEW_CHARS - 3].rstrip() + '...'


def _count(number: int, noun: str) -> str:
    return f'{number} {noun}{"s" if number != 1 else ""}'


def _usage(usage: Usage) -> str:
    return (
        f'{_count(usage.requests, "model request")}, '
        f'{usage.total_tokens} tokens ({usage.input_tokens} in, {usage.output_tokens} out), '
        f'{_count(usage.tool_calls, "tool call")}'
    )


def _timestamp(moment: datetime) -> str:
    # Shown in UTC, so the same ledger prints the same text on every machine.
    return moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return '-'
    if seconds < 1:
        return f'{seconds * 1000:.0f}ms'
    if seconds < 60:
        return f'{seconds:.2f}s'
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f'{minutes}m{rest:02d}s'
    hours, minutes = divmod(minutes, 60)
    return f'{hours}h{minutes:02d}m{rest:02d}s'


def _offset(seconds: float) -> str:
    # Activity events carry the worker's clock and run events the server's, so a small skew can make an offset negative.
    sign = '-' if seconds < 0 else '+'
    seconds = abs(seconds)
    if seconds < 60:
        return f'{sign}{seconds:.3f}s'
    minutes, rest = divmod(seconds, 60)
    return f'{sign}{int(minutes)}m{rest:06.3f}s'
