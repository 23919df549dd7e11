"""Deterministic identifiers, derived only from values Temporal keeps stable.

Pure functions: workflow code calls them during replay and must get the same answer.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal, TypeAlias

__all__ = [
    'RunIdKind',
    'delegate_workflow_id',
    'is_derived_run_id',
    'ledger_run_id',
    'own_workflow_run_id',
    'run_id_kinds',
]

RunIdKind: TypeAlias = Literal['ledger run id', 'workflow id', 'Temporal run id']
"""What an id that names a run may be: one the ledger gave it, its workflow's, or one of its Temporal runs'."""

_UUID = re.compile(r'[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}')
_DERIVED_RUN_ID = re.compile(r'run-[0-9a-f]{20}')


def ledger_run_id(workflow_id: str, first_execution_run_id: str) -> str:
    """The ledger run id of a workflow execution chain.

    `first_execution_run_id` survives continue-as-new and resets (the copied start event keeps it),
    so every Temporal run of one `Agent.run` maps to one ledger run, while starting the same
    workflow id again after it closed is a new chain and a new ledger run.
    """
    digest = hashlib.sha256(f'{workflow_id}\x00{first_execution_run_id}'.encode()).hexdigest()
    return f'run-{digest[:20]}'


def own_workflow_run_id(
    workflow_id: str, first_execution_run_id: str, continued_run_id: str | None, ordinal: int
) -> str:
    """The ledger run id of the `ordinal`-th agent run (from 1) inside a user's own workflow run.

    Like `ledger_run_id`, it survives resets (the copied start event keeps both run ids) and differs
    when the same workflow id is started again. A user workflow that continues as new numbers its
    agent runs from 1 again, so the Temporal run it continued from is part of the id too.
    """
    parts = [workflow_id, first_execution_run_id, continued_run_id or '', str(ordinal)]
    digest = hashlib.sha256('\x00'.join(parts).encode()).hexdigest()
    return f'run-{digest[:20]}'


def delegate_workflow_id(parent_workflow_id: str, tool_call_id: str) -> str:
    """The workflow id of the child run a delegate tool call starts.

    Both parts are recorded in the parent's history (the tool call id comes with the model response),
    so a replay, a reset or a restart of the parent that reaches the same call derives the same id and
    finds the child that already ran instead of starting another.
    """
    return f'{parent_workflow_id}/delegate/{tool_call_id}'


def run_id_kinds(text: str) -> tuple[RunIdKind, ...]:
    """The kinds of id `text` may be, in the order to try them: the `agentledger` CLI takes any id the UI shows.

    Every id is tried as a ledger run id first (a ledger may hold runs whose ids were given another way),
    then as a workflow id, then, when it is a UUID, as a Temporal run id: a workflow id is looked up by an
    index on every backend, a Temporal run id by reading run records on S3. An id of the form of
    `ledger_run_id` (`run-...`) is still tried as a workflow id (a user may name a workflow `run-42`).
    """
    if _UUID.fullmatch(text):
        return ('ledger run id', 'workflow id', 'Temporal run id')
    return ('ledger run id', 'workflow id')


def is_derived_run_id(text: str) -> bool:
    """Whether `text` has the form of the ids `ledger_run_id` and `own_workflow_run_id` derive: `run-`, 20 hex digits.

    Such an id names a ledger run even when the ledger lacks its record: `reconcile` rebuilds a lost one.
    """
    return _DERIVED_RUN_ID.fullmatch(text) is not None
