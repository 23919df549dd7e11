"""`reconcile_run` / `reconcile_ledger`: compare ledger runs with Temporal's history and repair them, audited.

The I/O edges only: read the ledger, fetch and decode the history of every Temporal run of the ledger
run, hand both to the pure `compare`, and (for closed runs, unless told not to) write what it found.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from agentledger.errors import LedgerCorruptionError, RunNotFoundError
from agentledger.ledger._facade import Ledger
from agentledger.model._ids import ledger_run_id
from agentledger.model._records import AGENT_RUN_WORKFLOW_TYPE, Acceptance, RunRecord, RunStatus, StepEvent
from agentledger.reconcile._compare import Category, Comparison, Finding, audit_detail, compare, rebuilt_record
from agentledger.reconcile._facts import RunFacts, fetch_run_facts
from agentledger.workflows._types import RUN_STARTED_ACTIVITY

__all__ = ['RECONCILE_SCHEMA', 'ReconcileReport', 'reconcile_ledger', 'reconcile_run']

RECONCILE_SCHEMA = 'agentledger.reconcile/1'
"""The `schema` value of `agentledger reconcile --json` (`reconcile_json` in the command line's rendering)."""

_CATEGORIES: tuple[Category, ...] = ('missing', 'divergent', 'orphan', 'duplicate')


@dataclass(frozen=True)
class ReconcileReport:
    """What `reconcile_run` found for one ledger run, and whether it repaired it."""

    run_id: str
    workflow_id: str
    status: RunStatus
    """The run's status in the ledger after reconcile (repaired, or as it was in report mode; for a lost
    record left as it is, the status its rebuild would have)."""
    open: bool
    """Whether the run's workflow is still running; open runs are only reported unless `repair=True`."""
    repaired: bool
    """Whether the findings were written to the ledger (each with a `ledger_repaired` audit event)."""
    ok: int
    """How many rows history confirms."""
    findings: tuple[Finding, ...]
    unknown_temporal_runs: tuple[str, ...] = ()
    """Temporal run ids the ledger names that Temporal does not know (never existed, or past retention)."""

    @property
    def counts(self) -> dict[str, int]:
        """Rows per category: `ok`, `missing`, `divergent`, `orphan`, `duplicate`."""
        counts = {'ok': self.ok} | {category: 0 for category in _CATEGORIES}
        for finding in self.findings:
            counts[finding.category] += 1
        return counts

    @property
    def clean(self) -> bool:
        """Whether history confirms every row: nothing missing, divergent, orphan or duplicate."""
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict (one run of `agentledger reconcile --json`)."""
        return {
            'run_id': self.run_id,
            'workflow_id': self.workflow_id,
            'status': self.status,
            'open': self.open,
            'repaired': self.repaired,
            'counts': self.counts,
            'findings': [finding.to_json() for finding in self.findings],
            'unknown_temporal_runs': list(self.unknown_temporal_runs),
        }


async def _latest_run_id(client: Client, workflow_id: str) -> str | None:
    try:
        return (await client.get_workflow_handle(workflow_id).describe()).run_id
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def _names(facts: RunFacts, run_id: str) -> bool:
    """Whether one of the Temporal run's activities belongs to the ledger run: its header, or its start, names it."""
    for activity in facts.activities:
        if (activity.header or {}).get('run_id') == run_id:
            return True
        first = activity.args[0] if activity.args and isinstance(activity.args[0], dict) else {}
        start = first.get('start') if activity.activity_type == RUN_STARTED_ACTIVITY else None
        if isinstance(start, dict) and start.get('run_id') == run_id:
            return True
    return False


def _own_identity(facts: RunFacts) -> tuple[str, str | None]:
    """What the ledger run ids of a user workflow's agent runs are made of, besides their ordinal.

    A reset keeps both (the new run's start copies them), continue-as-new does not: the agent runs of a
    reset Temporal run are those of the run it was reset from (`own_workflow_run_id`).
    """
    return facts.first_execution_run_id, facts.continued_from


def _belongs(facts: RunFacts, run_id: str, found: Sequence[RunFacts] = ()) -> bool:
    """Whether a Temporal run of the workflow id is one of this ledger run's (same execution chain).

    An `AgentRunWorkflow` run says so in its input (or its id derives from the chain's first run). In a
    user's own workflow, whose input is the user's and whose Temporal runs hold several agent runs, a
    Temporal run belongs when one of its activities names the ledger run (its header, its start), or when
    it is a reset of a Temporal run that does (`found`: the ledger run's Temporal runs found so far), even
    before the reset run got as far as the agent run.
    """
    if facts.workflow_type not in (None, AGENT_RUN_WORKFLOW_TYPE):
        identity = _own_identity(facts)
        return _names(facts, run_id) or any(
            other.workflow_type == facts.workflow_type and _own_identity(other) == identity for other in found
        )
    explicit = facts.input.get('ledger_run_id') if isinstance(facts.input, dict) else None
    if explicit is not None:
        return bool(explicit == run_id)
    return ledger_run_id(facts.workflow_id, facts.first_execution_run_id) == run_id


async def _chain(
    client: Client, run_id: str, workflow_id: str, recorded: Sequence[str], events: Sequence[StepEvent]
) -> tuple[list[RunFacts], list[str]]:
    """Every Temporal run of the ledger run that Temporal has, oldest first, and the ids it does not know.

    The ledger names some (the `recorded` ones of its record, its events); resets and continue-as-new
    past what the ledger saw are found from the workflow's latest run and the links between runs.
    """
    wanted = list(dict.fromkeys([*recorded, *(e.temporal_run_id for e in events)]))
    latest = await _latest_run_id(client, workflow_id)
    if latest is not None and latest not in wanted:
        wanted.append(latest)
    found: dict[str, RunFacts] = {}
    # Fetched Temporal runs not (yet) known to belong: a reset of one found later belongs too.
    others: dict[str, RunFacts] = {}
    unknown: list[str] = []

    def add(facts: RunFacts) -> None:
        found[facts.temporal_run_id] = facts
        wanted.extend(link for link in (facts.reset_from, facts.continued_as) if link)

    while wanted:
        temporal_run_id = wanted.pop(0)
        if temporal_run_id in found or temporal_run_id in others or temporal_run_id in unknown:
            continue
        fetched = await fetch_run_facts(client, workflow_id, temporal_run_id)
        if fetched is None:
            unknown.append(temporal_run_id)
            continue
        if temporal_run_id not in recorded and not _belongs(fetched, run_id, list(found.values())):
            others[temporal_run_id] = fetched
            continue
        add(fetched)
        while belonging := [f for f in others.values() if _belongs(f, run_id, list(found.values()))]:
            for facts in belonging:
                del others[facts.temporal_run_id]
                add(facts)
    chain = sorted(found.values(), key=lambda facts: facts.started_at)
    return chain, unknown


async def reconcile_run(client: Client, ledger: Ledger, run_id: str, *, repair: bool | None = None) -> ReconcileReport:
    """Compare one ledger run with Temporal's history; repair it when it is closed (or `repair=True`).

    `client` reads the history and decodes it with its data converter: connect it with the same
    `LedgerPlugin` (or at least pydantic-ai's plugin) the workers use. `repair=None` repairs closed runs
    and only reports open ones; `False` only reports; `True` repairs open runs too. Every repair is
    recorded as a `ledger_repaired` event holding the finding (row before, row after, why), and a run
    marked degraded by a ledger outage is cleared once its rows match history again.

    A run whose record is lost (its events are stored, its record is not) has the record rebuilt: the
    workflow id its events name leads to its Temporal runs, whose `run_started` activities hold what
    the record was made of and whose end says how the run ended; the rebuild is a `missing` run finding,
    repaired and audited like the others. Raises `RunNotFoundError` for a run id with neither record
    nor events, and `LedgerCorruptionError` for a lost record that history no longer holds the start of.
    """
    # The ledger first: a row written after the history was read would otherwise look like an orphan.
    stored: RunRecord | None
    try:
        stored = await ledger.run(run_id)
        events = await ledger.events(run_id)
        acceptances = await ledger.acceptances(run_id)
    except RunNotFoundError:
        stored = None
        events, acceptances = await ledger.stored_rows(run_id)
    workflow_id = stored.workflow_id if stored is not None else events[0].workflow_id
    recorded = stored.temporal_run_ids if stored is not None else ()
    chain, unknown = await _chain(client, run_id, workflow_id, recorded, events)
    record = stored if stored is not None else rebuilt_record(run_id, chain)
    if record is None:
        raise LedgerCorruptionError(
            f'run {run_id!r} has {len(events)} stored event(s) but no run record, and Temporal has no start of it '
            f'in the history of workflow {workflow_id!r} to rebuild the record from',
            run_id=run_id,
        )
    comparison = compare(record, events, acceptances, chain, unknown_runs=unknown, record_lost=stored is None)
    do_repair = (not comparison.open) if repair is None else repair
    repaired = False
    if do_repair and (any(f.repairable for f in comparison.findings) or record.degraded):
        await _repair(ledger, record, comparison, lost=stored is None)
        repaired = True
        record = await ledger.run(run_id)
    elif stored is None:
        record = next(RunRecord.from_json(f.after) for f in comparison.findings if f.row == 'run' and f.after)
    return ReconcileReport(
        run_id=run_id,
        workflow_id=record.workflow_id,
        status=record.status,
        open=comparison.open,
        repaired=repaired,
        ok=comparison.ok,
        findings=comparison.findings,
        unknown_temporal_runs=tuple(unknown),
    )


async def reconcile_ledger(
    client: Client, ledger: Ledger, *, repair: bool | None = None, page_size: int = 100
) -> list[ReconcileReport]:
    """`reconcile_run` for every run of the ledger, newest first."""
    reports: list[ReconcileReport] = []
    before: str | None = None
    while True:
        page = await ledger.runs(limit=page_size, before=before)
        for record in page:
            reports.append(await reconcile_run(client, ledger, record.run_id, repair=repair))
        if len(page) < page_size:
            return reports
        before = page[-1].run_id


def _audit(record: RunRecord, finding: Finding, now: datetime) -> StepEvent:
    """The `ledger_repaired` event of one repair; its key is the finding's, so repeating a repair records it once."""
    digest = hashlib.sha256(audit_detail(finding).encode()).hexdigest()[:20]
    return StepEvent(
        run_id=record.run_id,
        workflow_id=record.workflow_id,
        temporal_run_id=record.temporal_run_id,
        activity_id=f'reconcile:{digest}',
        attempt=0,
        kind='ledger_repaired',
        timestamp=now,
        detail=audit_detail(finding),
    )


async def _repair(ledger: Ledger, record: RunRecord, comparison: Comparison, *, lost: bool) -> None:
    """Write what the comparison found: replacements first, then what is missing, the record, and the audit.

    `lost`: the ledger has no run record and `record` is the rebuilt one.
    """
    now = datetime.now(UTC)
    repairs = [f for f in comparison.findings if f.repairable]
    for finding in repairs:
        if finding.row == 'event' and finding.stored_seqs and finding.after is not None:
            # The repaired row takes the place of the one it replaces when the key is the same.
            event = StepEvent.from_json(finding.after)
            event = event.with_seq(finding.stored_seqs[0] if finding.key == event.key else 0)
            await ledger.replace_events(record.run_id, finding.stored_seqs, [event])
    missing_events = [
        StepEvent.from_json(f.after) for f in repairs if f.row == 'event' and not f.stored_seqs and f.after is not None
    ]
    await ledger.record_events(missing_events)
    await ledger.accept(
        [
            Acceptance.from_json(f.after)
            for f in repairs
            if f.row == 'acceptance' and f.category == 'missing' and f.after
        ]
    )
    await ledger.replace_acceptances(
        [
            Acceptance.from_json(f.after)
            for f in repairs
            if f.row == 'acceptance' and f.category != 'missing' and f.after
        ]
    )
    target = next((f.after for f in repairs if f.row == 'run'), None)
    expected = record

    def fold(stored: RunRecord) -> RunRecord | None:
        if stored != expected:
            # Changed since it was read (a live seal, another reconcile): leave it to the next reconcile.
            return None
        updated = RunRecord.from_json(target) if target is not None else stored
        return replace(updated, degraded=())

    if lost and target is not None:
        await ledger.restore_run(RunRecord.from_json(target))
    elif target is not None or record.degraded:
        await ledger.update_run(record.run_id, fold)
    audits = [_audit(record, finding, now) for finding in repairs]
    if record.degraded and not any(f.row == 'run' for f in repairs):
        audits.append(
            _audit(
                record,
                Finding(
                    'missing',
                    'run',
                    record.run_id,
                    'the ledger outage is repaired from history: the run is no longer degraded',
                    before={'degraded': list(record.degraded)},
                    after={'degraded': []},
                ),
                now,
            )
        )
    await ledger.record_events(audits)
