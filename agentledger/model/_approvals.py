"""Approvals of deferred tool calls: the digest that binds a decision to the exact call, and what a decision must name.

A tool that needs approval (`requires_approval=True`, or one raising `ApprovalRequired`) makes the
run wait for a person's decision. The decision names the call by its `tool_call_id` and the digest
of the call's tool name and canonical arguments, so an approval given for the arguments someone
read cannot approve other ones. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias

from agentledger.model._canonical import canonical_json

__all__ = [
    'APPROVAL_DIGEST_LENGTH',
    'ApprovalDecision',
    'ApprovalTimeoutAction',
    'DecisionKind',
    'PendingApproval',
    'approval_digest',
    'decision_problem',
]

APPROVAL_DIGEST_LENGTH = 16
"""Hex digits of an approval digest: short enough to type, long enough that no other call matches by chance."""

DecisionKind: TypeAlias = Literal['approve', 'deny']
"""What a decision does to the call: run it, or answer the model that it was denied."""

ApprovalTimeoutAction: TypeAlias = Literal['deny', 'park', 'fail']
"""What happens to a run when an approval's deadline passes: deny the call, park the run, or fail it."""


def approval_digest(tool_name: str, args: Mapping[str, Any]) -> str:
    """The digest a decision on a call of `tool_name` with `args` must name: SHA-256 of their canonical JSON."""
    text = canonical_json({'tool_name': tool_name, 'args': dict(args)})
    return hashlib.sha256(text).hexdigest()[:APPROVAL_DIGEST_LENGTH]


@dataclass(frozen=True)
class PendingApproval:
    """A tool call waiting for a decision: what it would do, the digest a decision names, and its deadline."""

    tool_call_id: str
    tool_name: str
    args: dict[str, Any]
    digest: str
    requested_at: datetime
    deadline: datetime | None = None
    """When the run's `on_approval_timeout` applies to it, if it has a timeout."""


@dataclass
class ApprovalDecision:
    """A person's decision on one pending call: the input of the `approve` and `deny` updates and signals.

    In the Temporal UI's Update (or Signal) dialog, as JSON:
    `{"tool_call_id": "call_1", "digest": "3f2a...", "by": "alice"}`, with `"override_args": {...}`
    to approve other arguments, or `"reason": "..."` (the message the model reads for a denial).
    """

    tool_call_id: str
    digest: str
    """The pending call's digest (`approval_digest` of its tool name and arguments), as shown where it was read."""
    override_args: dict[str, Any] | None = None
    """Approve: run the tool with these arguments instead of the model's (validated by the tool as usual)."""
    reason: str | None = None
    """Deny: the message the model reads as the call's result; approve: a note kept in the ledger."""
    by: str | None = None
    """Who decided, as the ledger records it. Temporal does not tell workflow code who sent an update."""


def decision_problem(
    pending: Mapping[str, PendingApproval],
    decided: Mapping[str, DecisionKind],
    decision: ApprovalDecision,
    kind: DecisionKind,
) -> str | None:
    """Why `decision` (to `kind`) cannot be taken, or `None` if it can: it is used once, on the call it names."""
    call_id = decision.tool_call_id
    if call_id in decided:
        done = 'approved' if decided[call_id] == 'approve' else 'denied'
        return f'tool call {call_id!r} was already {done}: a decision is taken once'
    waiting = pending.get(call_id)
    if waiting is None:
        names = ', '.join(sorted(set(pending) - set(decided))) or 'none'
        return f'no approval is pending for tool call {call_id!r} (pending: {names})'
    if decision.digest != waiting.digest:
        return (
            f'digest {decision.digest!r} does not match tool call {call_id!r}: it is {waiting.digest!r} for '
            f'{waiting.tool_name}({_arguments(waiting.args)}); decide on the call as it is'
        )
    if kind == 'deny' and decision.override_args is not None:
        return 'a denial takes no override_args'
    return None


def _arguments(args: Mapping[str, Any]) -> str:
    text = ', '.join(f'{name}={value!r}' for name, value in args.items())
    return text if len(text) <= 200 else text[:197] + '...'
