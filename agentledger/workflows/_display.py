"""What the Temporal UI shows of a ledger run while it goes: its status search attribute and its current details.

Workflow code only. The search attributes are set only when the worker found them registered in the
namespace (the `run_started` activity's result says which), so a namespace without them never sees
an upsert it would refuse. Current details are workflow state the UI reads by query: setting them
adds nothing to history, so they follow every step and tool call.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributeUpdate

from agentledger.model._approvals import PendingApproval
from agentledger.model._records import ErrorInfo, RunStatus
from agentledger.model._search_attributes import (
    SEARCH_AGENT,
    SEARCH_CONVERSATION_ID,
    SEARCH_PARENT_RUN_ID,
    SEARCH_RESTART_OF,
    SEARCH_RUN_ID,
    SEARCH_STATUS,
)

__all__ = ['RunDisplay']

_PREVIEW = 200


def _short(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 1] + '…'


@dataclass
class RunDisplay:
    """One ledger run as the Temporal UI shows it: the status it is searchable by, and what its details say.

    `progress` is set for an `AgentRunWorkflow`, whose page is the run's own: its details follow the
    steps and tool calls. In a user's own workflow the page is the user's: only a wait for approvals
    is shown there (and cleared after), and no search attribute is set.
    """

    run_id: str
    progress: bool = False
    present: frozenset[str] = frozenset()
    """The agentledger search attributes the namespace has (empty: none are set)."""
    status: RunStatus = 'running'
    step: int = 0
    last_tool: str | None = None
    _parked: ErrorInfo | None = None
    _waiting: list[PendingApproval] = field(default_factory=list)
    _ignored: str | None = None

    def identify(
        self,
        present: Collection[str],
        *,
        agent: str,
        conversation_id: str | None,
        parent_run_id: str | None,
        restart_of: str | None,
    ) -> None:
        """Set the run's search attributes (those the namespace has) and show it running."""
        self.present = frozenset(present)
        values: list[tuple[SearchAttributeKey[str], str | None]] = [
            (SEARCH_AGENT, agent),
            (SEARCH_RUN_ID, self.run_id),
            (SEARCH_CONVERSATION_ID, conversation_id),
            (SEARCH_PARENT_RUN_ID, parent_run_id),
            (SEARCH_RESTART_OF, restart_of),
            (SEARCH_STATUS, 'running'),
        ]
        self._upsert([key.value_set(value) for key, value in values if value is not None and key.name in self.present])
        self.status = 'running'
        self._show()

    def running(self) -> None:
        """The run goes on (resumed, or its approvals decided)."""
        self._parked = None
        self._waiting = []
        self._set_status('running')

    def parked(self, error: ErrorInfo) -> None:
        """The run failed and waits for `resume` or `abandon`."""
        self._parked = error
        self._set_status('parked')

    def awaiting_approval(self, waiting: list[PendingApproval]) -> None:
        """The run waits for decisions on `waiting` (refreshed as each call is decided)."""
        self._waiting = waiting
        if self.status == 'awaiting_approval':
            self._show()
        else:
            self._set_status('awaiting_approval')

    def ended(self, status: RunStatus) -> None:
        """The run is sealed with `status`."""
        self._parked = None
        self._waiting = []
        self._set_status(status)

    def stepped(self, step: int) -> None:
        """The run is about to make the model request of ledger step `step`."""
        self.step = step
        if self.progress and self.status == 'running':
            self._show()

    def tool_ended(self, tool_name: str | None, outcome: str) -> None:
        """A tool call of the run ended with `outcome`."""
        self.last_tool = f'`{tool_name or "?"}` ({outcome})'
        if self.progress and self.status == 'running':
            self._show()

    def request_ignored(self, note: str) -> None:
        """A signal the run could not take: `note` stays under the status until the next ignored one replaces it."""
        self._ignored = note
        self._show()

    def details(self) -> str:
        """The current details for the run's status (Markdown), then the latest ignored signal, if any."""
        status = self._status_details()
        return '\n\n'.join(part for part in (status, self._ignored) if part)

    def _status_details(self) -> str:
        run = f'(agentledger run `{self.run_id}`)'
        if self.status == 'parked' and self._parked is not None:
            error = self._parked
            return (
                f'**Parked** {run}: {error.type}: {_short(error.message)}\n\n'
                'Send the `resume` signal or update (input `{"prompt": "..."}`, optional) to go on from the '
                'latest valid snapshot, or `abandon` (input `{"reason": "..."}`, optional) to fail the run.'
            )
        if self.status == 'awaiting_approval':
            lines = [f'**Awaiting approval** {run}:']
            for pending in self._waiting:
                decision: dict[str, Any] = {'tool_call_id': pending.tool_call_id, 'digest': pending.digest}
                lines.append(
                    f'- `{pending.tool_name}({_short(json.dumps(pending.args, sort_keys=True))})`: update `approve` '
                    f'or `deny` with `{json.dumps(decision)}` (add `"by"`, and `"reason"` to deny)'
                )
            return '\n'.join(lines)
        if not self.progress:
            return ''
        where = f'step {self.step}' if self.step else 'starting'
        tool = f', last tool {self.last_tool}' if self.last_tool is not None else ''
        return f'**{self.status.replace("_", " ").capitalize()}** {run}: {where}{tool}'

    def _set_status(self, status: RunStatus) -> None:
        if status == self.status:
            return
        was = self.status
        self.status = status
        if SEARCH_STATUS.name in self.present:
            self._upsert([SEARCH_STATUS.value_set(status)])
        if self.progress or 'awaiting_approval' in (was, status):
            self._show()

    def _upsert(self, updates: list[SearchAttributeUpdate[Any]]) -> None:
        if updates:
            workflow.upsert_search_attributes(updates)

    def _show(self) -> None:
        workflow.set_current_details(self.details())
