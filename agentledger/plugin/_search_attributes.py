"""Checks (and registers) the agentledger search attributes of a Temporal namespace. Worker and CLI I/O.

A worker checks its namespace when it starts; the `run_started` activity tells each run which
attributes were found, and the run sets only those (see `workflows/_display.py`), so a namespace
without them never fails a workflow task. Registering works on the dev server and self-hosted
Temporal; Temporal Cloud refuses it through this API (use `tcld`), and so may a server that limits
who may change a namespace: then one error names each missing attribute and the commands to run.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError

from agentledger.model._search_attributes import SEARCH_ATTRIBUTES, registration_commands

__all__ = ['NamespaceSearchAttributes', 'SearchAttributeCheck', 'check_search_attributes']

logger = logging.getLogger('agentledger.worker')

_NAMES = tuple(key.name for key in SEARCH_ATTRIBUTES)
_KEYWORD = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD


@dataclass(frozen=True)
class SearchAttributeCheck:
    """What a namespace has of the agentledger search attributes, after registering the missing ones if asked."""

    namespace: str
    present: frozenset[str]
    """Registered, as Keyword: runs set these."""
    added: tuple[str, ...] = ()
    """Registered by this check."""
    wrong_type: dict[str, str] = field(default_factory=dict)
    """Registered under an agentledger name with another type than Keyword (name -> type): not set."""
    error: str | None = None
    """Why they could not be listed or registered (Temporal's refusal)."""

    @property
    def missing(self) -> tuple[str, ...]:
        """The agentledger search attributes runs cannot set in this namespace."""
        return tuple(name for name in _NAMES if name not in self.present)

    def problem(self) -> str | None:
        """One message naming each missing attribute and how to register it, or `None` when every one is there."""
        if not self.missing:
            return None
        why = f' ({self.error})' if self.error else ''
        wrong = ''.join(f'; {name} exists with type {kind}, not Keyword' for name, kind in self.wrong_type.items())
        absent = [name for name in self.missing if name not in self.wrong_type]
        return (
            f'agentledger: namespace {self.namespace!r} lacks the search attributes '
            f'{", ".join(self.missing)}{why}{wrong}; '
            'agent runs go on but are not searchable by them in the Temporal UI. Register them with '
            '`agentledger search-attributes --register`, or:\n'
            f'{registration_commands(self.namespace, absent or self.missing)}'
        )


async def _listed(client: Client) -> tuple[frozenset[str], dict[str, str]]:
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    attributes = dict(response.custom_attributes)
    present = frozenset(name for name in _NAMES if attributes.get(name) == _KEYWORD)
    wrong = {
        name: IndexedValueType.Name(attributes[name]).removeprefix('INDEXED_VALUE_TYPE_').title()
        for name in _NAMES
        if name in attributes and attributes[name] != _KEYWORD
    }
    return present, wrong


async def check_search_attributes(client: Client, *, register: bool) -> SearchAttributeCheck:
    """Which agentledger search attributes `client`'s namespace has; with `register`, add the missing ones first.

    Never raises for Temporal's refusals: they are the check's `error`, and what was not confirmed is
    missing.
    """
    namespace = client.namespace
    try:
        present, wrong = await _listed(client)
    except RPCError as error:
        return SearchAttributeCheck(namespace, frozenset(), error=f'listing them was refused: {error.message}')
    absent = [name for name in _NAMES if name not in present and name not in wrong]
    if not register or not absent:
        return SearchAttributeCheck(namespace, present, wrong_type=wrong)
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=dict.fromkeys(absent, _KEYWORD))
        )
        now, wrong = await _listed(client)
    except RPCError as error:
        return SearchAttributeCheck(
            namespace, present, wrong_type=wrong, error=f'registering them was refused: {error.message}'
        )
    return SearchAttributeCheck(namespace, now, added=tuple(name for name in absent if name in now), wrong_type=wrong)


class NamespaceSearchAttributes:
    """The agentledger search attributes each namespace a worker serves was found to have, for its runs to set."""

    def __init__(self) -> None:
        self._present: dict[str, frozenset[str]] = {}

    def confirm(self, check: SearchAttributeCheck) -> None:
        """Keep what a worker's start found, and say what is missing (once, as an error) or was added."""
        self._present[check.namespace] = check.present
        if check.added:
            logger.warning(
                'agentledger: registered the search attributes %s in namespace %r',
                ', '.join(check.added),
                check.namespace,
            )
        problem = check.problem()
        if problem is not None:
            logger.error('%s', problem)

    def present(self, namespace: str) -> Collection[str]:
        """The attributes the runs of `namespace` may set (none when no worker of this plugin checked it)."""
        return self._present.get(namespace, frozenset())
