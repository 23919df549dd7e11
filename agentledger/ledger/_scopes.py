"""Which ledger run and workflow id the journal and once-only effects key on, read from run lineage.

- The journal keys on the ledger run the current execution chain of a workflow id began with: a
  restart of a failed run (same workflow id, `forked_from.reason == 'restart'`) resumes that chain
  and replays its answers; a new run that merely reuses the workflow id does not.
- Once-only effects key on the workflow id at the root of the run's lineage (following
  `forked_from` through continue, fork and restart): a continuation or fork that re-runs a tool
  call it inherited (same tool_call_id) finds the effect its ancestor recorded, while calls of its
  own carry new tool_call_ids and so new keys.

Lineage never changes once a run is recorded, so answers are kept for the worker's lifetime.
"""

from __future__ import annotations

from agentledger.ledger._facade import Ledger
from agentledger.model._records import RunRecord

__all__ = ['Scopes']

_MAX_DEPTH = 1000


class Scopes:
    """Lineage lookups against one ledger, cached per run id."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._journal: dict[str, str] = {}
        self._effects: dict[str, str] = {}

    async def _lineage(self, run_id: str) -> list[RunRecord]:
        chain = [await self._ledger.run(run_id)]
        while chain[-1].forked_from is not None and len(chain) < _MAX_DEPTH:
            chain.append(await self._ledger.run(chain[-1].forked_from.run_id))
        return chain

    async def journal_run(self, run_id: str) -> str:
        """The ledger run id the journal of `run_id` keys on (the first of its restart chain)."""
        if run_id not in self._journal:
            chain = await self._lineage(run_id)
            root = chain[0]
            for record in chain[1:]:
                previous = root.forked_from
                if previous is None or previous.reason != 'restart' or record.workflow_id != root.workflow_id:
                    break
                root = record
            self._journal[run_id] = root.run_id
        return self._journal[run_id]

    async def effect_scope(self, run_id: str) -> str:
        """The workflow id the once-only effects of `run_id` key on (the root of its lineage)."""
        if run_id not in self._effects:
            self._effects[run_id] = (await self._lineage(run_id))[-1].workflow_id
        return self._effects[run_id]
