"""Waiting inside a run for people to approve or deny tool calls, decided through Temporal Updates or signals.

Workflow code only. When the agent asks for calls that need approval, pydantic-ai hands them to the
run's capabilities (`handle_deferred_tool_calls`) before ending the run; `LedgerObserver` hands them
here, and the run waits (no worker slot held: a workflow waiting on a condition holds none) until
every call has a decision, then answers pydantic-ai with `DeferredToolResults` and the same run goes
on from the same history: no model call is repeated. Decisions arrive in the workflow's history, so
a worker restart, a reset past the wait or a replay rebuilds the same wait and the same answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic_ai.messages import ToolCallPart
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, ToolApproved, ToolDenied
from temporalio import workflow
from temporalio.exceptions import ApplicationError

from agentledger.errors import APPROVAL_REJECTED, APPROVAL_TIMED_OUT
from agentledger.model._approvals import (
    ApprovalDecision,
    ApprovalTimeoutAction,
    DecisionKind,
    PendingApproval,
    approval_digest,
    decision_problem,
)
from agentledger.workflows._ledger_calls import ledger_activity, preview
from agentledger.workflows._state import LedgerRunState
from agentledger.workflows._types import APPROVAL_WAIT_ACTIVITY, ApprovalWaitInput

__all__ = ['APPROVALS_PATCH', 'ApprovalGate', 'ApprovalTimedOut', 'own_workflow_gate']

_DENIED = 'The tool call was denied.'
_GATES_ATTRIBUTE = '_agentledger_approval_gates'
_PENDING_QUERY = 'agentledger_pending_approvals'

APPROVALS_PATCH = 'agentledger.approvals'
"""The `workflow.patched` id that gates waiting for approvals in users' own workflows: a run that started
before a worker waited replays, and ends with `DeferredToolRequests`, as it did."""


class ApprovalTimedOut(ApplicationError):
    """A call's approval deadline passed and the run's `on_approval_timeout` is `park` or `fail`."""

    def __init__(self, message: str, *, park: bool) -> None:
        super().__init__(message, type=APPROVAL_TIMED_OUT, non_retryable=True)
        self.park = park


@dataclass
class ApprovalGate:
    """One ledger run's approvals: the calls waiting, the decisions taken, and how long a call may wait."""

    state: LedgerRunState
    timeout_s: float | None = None
    timeouts_s: dict[str, float] = field(default_factory=dict)
    on_timeout: ApprovalTimeoutAction = 'deny'
    pending: dict[str, PendingApproval] = field(default_factory=dict)
    """The calls of the current wait (decided or not)."""
    decided: dict[str, DecisionKind] = field(default_factory=dict)
    """Every decision taken in this run, by tool call id: a call is decided once."""
    _decisions: dict[str, ApprovalDecision] = field(default_factory=dict)
    _rejections: int = 0

    @property
    def waiting(self) -> list[PendingApproval]:
        """The calls still waiting for a decision, in the order the model asked for them."""
        return [pending for call_id, pending in self.pending.items() if call_id not in self.decided]

    def validate(self, decision: ApprovalDecision, kind: DecisionKind) -> None:
        """Refuse (an Update validator's way) a decision that names no waiting call or another digest."""
        problem = decision_problem(self.pending, self.decided, decision, kind)
        if problem is not None:
            raise ApplicationError(f'cannot {kind} in run {self.state.run_id}: {problem}', type=APPROVAL_REJECTED)

    async def decide(self, decision: ApprovalDecision, kind: DecisionKind, *, refuse: bool) -> str:
        """Take `decision`; return what it did. A refused one raises (`refuse`, an Update) or is recorded (a signal).

        Checked again here, not only by the validator: two approvers racing both pass validation before
        either handler runs, and only the first handler may decide.
        """
        state = self.state
        problem = decision_problem(self.pending, self.decided, decision, kind)
        now = workflow.now()
        if problem is not None:
            if refuse:
                raise ApplicationError(f'cannot {kind} in run {state.run_id}: {problem}', type=APPROVAL_REJECTED)
            # A signal cannot be refused: the ledger and the Temporal UI say it was not taken.
            workflow.logger.warning('agentledger: %s signal for run %s rejected: %s', kind, state.run_id, problem)
            self._rejections += 1
            state.note_run_event(
                'approval_rejected',
                f'approval:{decision.tool_call_id}',
                now,
                attempt=self._rejections,
                tool_call_id=decision.tool_call_id,
                detail=_detail(decision, kind, problem=problem),
            )
            await self._flush(None, now)
            return problem
        self.decided[decision.tool_call_id] = kind
        self._decisions[decision.tool_call_id] = decision
        pending = self.pending[decision.tool_call_id]
        state.note_run_event(
            'approval_granted' if kind == 'approve' else 'approval_denied',
            f'approval:{decision.tool_call_id}',
            now,
            tool_call_id=pending.tool_call_id,
            tool_name=pending.tool_name,
            detail=_detail(decision, kind),
        )
        left = len(self.waiting)
        if left:
            state.display.awaiting_approval(self.waiting)
            await self._flush(None, now)
        done = 'approved' if kind == 'approve' else 'denied'
        return f'{done} tool call {decision.tool_call_id} of run {state.run_id}; {left} still waiting'

    async def resolve(self, requests: DeferredToolRequests, step: int) -> DeferredToolResults:
        """Wait until every call of `requests.approvals` is decided (or its deadline passed); return the answers."""
        state = self.state
        now = workflow.now()
        self.pending = {}
        for call in requests.approvals:
            args = call.args_as_dict()
            limit = self.timeouts_s.get(call.tool_name, self.timeout_s)
            pending = PendingApproval(
                tool_call_id=call.tool_call_id,
                tool_name=call.tool_name,
                args=args,
                digest=approval_digest(call.tool_name, args),
                requested_at=now,
                deadline=now + timedelta(seconds=limit) if limit is not None else None,
            )
            self.pending[call.tool_call_id] = pending
            state.note_run_event(
                'approval_requested',
                f'approval:{call.tool_call_id}',
                now,
                step=step,
                tool_call_id=call.tool_call_id,
                tool_name=call.tool_name,
                detail=f'digest {pending.digest}: {call.tool_name}({preview(json.dumps(args, sort_keys=True))})',
            )
        await self._flush(True, now)
        state.display.awaiting_approval(self.waiting)
        while self.waiting:
            deadlines = [pending.deadline for pending in self.waiting if pending.deadline is not None]
            if not deadlines:
                await workflow.wait_condition(lambda: not self.waiting)
                continue
            left = (min(deadlines) - workflow.now()).total_seconds()
            try:
                await workflow.wait_condition(lambda: not self.waiting, timeout=max(left, 0.001))
            except TimeoutError:
                await self._expire()
        state.display.running()
        await self._flush(False, workflow.now())
        return DeferredToolResults(
            approvals={
                call_id: ToolApproved(override_args=self._decisions[call_id].override_args)
                if self.decided[call_id] == 'approve'
                else ToolDenied(self._decisions[call_id].reason or _DENIED)
                for call_id in self.pending
            }
        )

    def denied(self, calls: list[ToolCallPart]) -> list[tuple[ToolCallPart, str]]:
        """The calls among `calls` that were denied, each with the message the model reads."""
        return [
            (call, self._decisions[call.tool_call_id].reason or _DENIED)
            for call in calls
            if self.decided.get(call.tool_call_id) == 'deny'
        ]

    async def _expire(self) -> None:
        """Apply `on_timeout` to every waiting call whose deadline passed."""
        now = workflow.now()
        expired = [pending for pending in self.waiting if pending.deadline is not None and pending.deadline <= now]
        for pending in expired:
            waited = (now - pending.requested_at).total_seconds()
            reason = f'no decision within {waited:.0f} s'
            if self.on_timeout == 'deny':
                decision = ApprovalDecision(
                    pending.tool_call_id, pending.digest, reason=f'Denied: {reason}.', by='timeout'
                )
                await self.decide(decision, 'deny', refuse=True)
                continue
            self.state.display.running()
            await self._flush(False, now)
            raise ApprovalTimedOut(
                f'approval of tool call {pending.tool_call_id} ({pending.tool_name}) timed out: {reason}',
                park=self.on_timeout == 'park',
            )

    async def _flush(self, awaiting: bool | None, at: datetime) -> None:
        """Hand the noted approval events to the ledger now, marking the run's wait when `awaiting` is not `None`."""
        await ledger_activity(
            APPROVAL_WAIT_ACTIVITY,
            ApprovalWaitInput(run_id=self.state.run_id, awaiting=awaiting, at=at),
            f'approvals {self.state.run_id}',
        )


def _detail(decision: ApprovalDecision, kind: DecisionKind, *, problem: str | None = None) -> str:
    """The ledger's note of a decision: the digest it named, who decided, the reason, the arguments it set."""
    parts = [f'digest {decision.digest}', f'by {decision.by or "unknown"}']
    if decision.reason:
        parts.append(f'reason: {preview(decision.reason)}')
    if kind == 'approve' and decision.override_args is not None:
        parts.append(f'override_args: {preview(json.dumps(decision.override_args, sort_keys=True))}')
    if problem is not None:
        parts.append(f'rejected: {problem}')
    return '; '.join(parts)


def own_workflow_gate(state: LedgerRunState) -> ApprovalGate:
    """A gate for an agent run inside a user's workflow, whose `approve` / `deny` handlers route decisions to it.

    The handlers (updates and signals of those names, and the `agentledger_pending_approvals` query) are
    registered on the workflow with its first gate, each unless the workflow defines one of that name;
    a decision goes to the run whose call it names, so several agent runs of one workflow can wait at once.
    """
    gate = ApprovalGate(state)
    instance = workflow.instance()
    gates: list[ApprovalGate] | None = getattr(instance, _GATES_ATTRIBUTE, None)
    if gates is None:
        gates = []
        setattr(instance, _GATES_ATTRIBUTE, gates)
        _install_handlers(gates)
    gates.append(gate)
    return gate


def _install_handlers(gates: list[ApprovalGate]) -> None:
    def gate_for(call_id: str) -> ApprovalGate:
        waiting = [gate for gate in gates if call_id in gate.pending and call_id not in gate.decided]
        known = [gate for gate in gates if call_id in gate.pending or call_id in gate.decided]
        return (waiting or known or gates)[-1]

    async def approve(decision: ApprovalDecision) -> str:
        return await gate_for(decision.tool_call_id).decide(decision, 'approve', refuse=True)

    def validate_approve(decision: ApprovalDecision) -> None:
        gate_for(decision.tool_call_id).validate(decision, 'approve')

    async def deny(decision: ApprovalDecision) -> str:
        return await gate_for(decision.tool_call_id).decide(decision, 'deny', refuse=True)

    def validate_deny(decision: ApprovalDecision) -> None:
        gate_for(decision.tool_call_id).validate(decision, 'deny')

    async def approve_signal(decision: ApprovalDecision) -> None:
        await gate_for(decision.tool_call_id).decide(decision, 'approve', refuse=False)

    async def deny_signal(decision: ApprovalDecision) -> None:
        await gate_for(decision.tool_call_id).decide(decision, 'deny', refuse=False)

    def pending() -> list[PendingApproval]:
        return [call for gate in gates for call in gate.waiting]

    if workflow.get_update_handler('approve') is None:
        workflow.set_update_handler('approve', approve, validator=validate_approve)
    if workflow.get_update_handler('deny') is None:
        workflow.set_update_handler('deny', deny, validator=validate_deny)
    if workflow.get_signal_handler('approve') is None:
        workflow.set_signal_handler('approve', approve_signal)
    if workflow.get_signal_handler('deny') is None:
        workflow.set_signal_handler('deny', deny_signal)
    if workflow.get_query_handler(_PENDING_QUERY) is None:
        workflow.set_query_handler(_PENDING_QUERY, pending)
