"""The Temporal search attributes an `AgentRunWorkflow` sets, so the Temporal UI and `list_workflows` find runs.

Pure: keys and the text that says how to register them. The worker checks which of them the namespace
has (`LedgerPlugin`), and the workflow sets only those, so a namespace without them costs nothing but
the search: never a failed workflow task.
"""

from __future__ import annotations

from collections.abc import Iterable

from temporalio.common import SearchAttributeKey

__all__ = [
    'SEARCH_AGENT',
    'SEARCH_ATTRIBUTES',
    'SEARCH_CONVERSATION_ID',
    'SEARCH_PARENT_RUN_ID',
    'SEARCH_RESTART_OF',
    'SEARCH_RUN_ID',
    'SEARCH_STATUS',
    'registration_commands',
]

SEARCH_AGENT = SearchAttributeKey.for_keyword('AgentLedgerAgent')
"""The agent's name."""
SEARCH_RUN_ID = SearchAttributeKey.for_keyword('AgentLedgerRunId')
"""The ledger run id (`agentledger show` takes it)."""
SEARCH_STATUS = SearchAttributeKey.for_keyword('AgentLedgerStatus')
"""The ledger run's status (`RunStatus`): `running`, `parked`, `awaiting_approval`, `completed`, `failed`,
`cancelled`; a parked run is `Running` to Temporal, `parked` here."""
SEARCH_CONVERSATION_ID = SearchAttributeKey.for_keyword('AgentLedgerConversationId')
"""The conversation the run belongs to, when it has one."""
SEARCH_PARENT_RUN_ID = SearchAttributeKey.for_keyword('AgentLedgerParentRunId')
"""For a delegate: the ledger run id of the run that delegated to it."""
SEARCH_RESTART_OF = SearchAttributeKey.for_keyword('AgentLedgerRestartOf')
"""For a restart of a failed run under the same workflow id: the ledger run id of the run it continues."""

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[str], ...] = (
    SEARCH_AGENT,
    SEARCH_RUN_ID,
    SEARCH_STATUS,
    SEARCH_CONVERSATION_ID,
    SEARCH_PARENT_RUN_ID,
    SEARCH_RESTART_OF,
)
"""Every search attribute agentledger sets, all of type Keyword."""


def registration_commands(namespace: str, names: Iterable[str]) -> str:
    """The commands that register `names` as Keyword search attributes: self-hosted (or dev server), then Cloud."""
    listed = sorted(names)
    create = ' '.join(f'--name {name} --type Keyword' for name in listed)
    add = ' '.join(f'--sa {name}=Keyword' for name in listed)
    return (
        f'temporal operator search-attribute create --namespace {namespace} {create}\n'
        f'tcld namespace search-attributes add --namespace {namespace} {add}'
    )
