"""Find the ledger run an id names: a ledger run id, a workflow id or a Temporal run id (any id the UI shows)."""

from __future__ import annotations

from agentledger.errors import RunNotFoundError, UnknownRunIdError
from agentledger.ledger._facade import Ledger
from agentledger.model._ids import is_derived_run_id, run_id_kinds

__all__ = ['resolve_run_id']


async def resolve_run_id(ledger: Ledger, run_ref: str) -> str:
    """The ledger run id of the run `run_ref` names, trying each kind of id it may be (`run_id_kinds`).

    - a ledger run id names its run; one the ledger lacks, of the form the workflows derive (`run-`
      and 20 hex digits) and no workflow id either, is returned as it is: reading it reports a run the
      ledger lacks, and `reconcile` rebuilds a run whose record was lost;
    - a workflow id names the run of its latest execution: the newest ledger run with that workflow id
      (in a user's own workflow, the agent run that started last);
    - a Temporal run id names the ledger run that lists it in `temporal_run_ids` (the run's start, a
      reset or its seal records it). The ledger answers that itself (`Ledger.runs(temporal_run_id=...)`),
      so the lookup needs no Temporal server and works read-only: SQLite with one query; S3, whose run
      indexes do not hold Temporal run ids, by reading run records newest first, which finds the
      recent runs an operator looks up after a few reads. It is tried last for that reason.

    Raises `UnknownRunIdError`, naming the kinds tried, when no run goes by `run_ref`.
    """
    kinds = run_id_kinds(run_ref)
    for kind in kinds:
        if kind == 'ledger run id':
            try:
                return (await ledger.run(run_ref)).run_id
            except RunNotFoundError:
                continue
        runs = await (
            ledger.runs(workflow_id=run_ref, limit=1)
            if kind == 'workflow id'
            else ledger.runs(temporal_run_id=run_ref, limit=1)
        )
        if runs:
            return runs[0].run_id
    if is_derived_run_id(run_ref):
        return run_ref
    raise UnknownRunIdError(run_ref, kinds)
