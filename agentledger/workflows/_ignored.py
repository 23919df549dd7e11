"""Signals a run could not take (a `resume` to a run that is not parked), recorded instead of silently dropped.

Workflow code only. A signal cannot be refused the way an update is (its sender gets no answer), so
a `resume` or `abandon` signal that finds the run not parked, or already decided, is noted as a
`request_ignored` run event, handed to the ledger at once by a ledger activity (the run may wait on
approvals, or be about to end, with no other activity to carry it), and shown in the workflow's
current details in the Temporal UI, where such a signal is usually sent from.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from temporalio import workflow

from agentledger.workflows._ledger_calls import ledger_activity, preview
from agentledger.workflows._state import LedgerRunState
from agentledger.workflows._types import RECORD_EVENTS_ACTIVITY, AbandonRequest, RecordEventsInput, ResumeRequest

__all__ = ['IGNORED_REQUESTS_PATCH', 'IgnoredRequests']

IGNORED_REQUESTS_PATCH = 'agentledger.ignored-requests'
"""The `workflow.patched` id that gates the ledger activity recording an ignored signal: a run that ignored
one before a worker recorded it replays without that activity, as it ran."""


@dataclass
class IgnoredRequests:
    """One Temporal run's ignored `resume` / `abandon` signals: each recorded in the ledger and the current details."""

    state: LedgerRunState
    count: int = 0

    async def record(self, action: str, request: ResumeRequest | AbandonRequest, why: str) -> None:
        """Record the `action` signal carrying `request` as ignored because the run `why` (`is not parked`, ...)."""
        state = self.state
        now = workflow.now()
        given = preview(json.dumps(dataclasses.asdict(request), sort_keys=True))
        workflow.logger.warning('agentledger: %s signal to run %s ignored: it %s', action, state.run_id, why)
        self.count += 1
        state.note_run_event(
            'request_ignored', f'request:{self.count}', now, detail=f'{action} signal: the run {why}; input {given}'
        )
        state.display.request_ignored(
            f'**Ignored** `{action}` signal at {now:%Y-%m-%d %H:%M:%S} UTC: the run {why} (input `{given}`)'
        )
        if workflow.patched(IGNORED_REQUESTS_PATCH):
            await ledger_activity(
                RECORD_EVENTS_ACTIVITY,
                RecordEventsInput(run_id=state.run_id),
                f'ignored {action} signal {state.run_id}',
            )
