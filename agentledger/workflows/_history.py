"""Bounded Temporal history: a model request carries a ledger reference plus only its new messages.

pydantic-ai passes the whole message history to every model-request activity, so Temporal's
history grows with the square of the number of steps. The ledger already stores each history a
model is about to see (the activity interceptor snapshots it before calling the model). So workflow
code replaces the part of the list the ledger holds (the previous request's history, or the run's
seed snapshot) by a reference and a message count, and the worker puts the messages back before
the activity runs.

Which messages the ledger holds is decided by object identity, not content: the same message
objects the previous request carried, in the same order. Identity is deterministic within one
execution and on replay, and it does not depend on serialising a message twice the same way (a
message rebuilt on replay may carry a new timestamp, which content hashes would see as a different
message). The worker resolves the reference to what it stored when that request ran: exactly what
the model was shown then. A request whose messages are not such a prefix carries its full history.

Workflow code only: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_ai.messages import ModelMessage

from agentledger.model._validity import is_provider_valid

__all__ = ['HistoryReferences']


@dataclass(frozen=True)
class _Held:
    messages: tuple[ModelMessage, ...]
    reference: dict[str, Any]


class HistoryReferences:
    """What history the ledger holds for this run, and so what a model request need not carry."""

    def __init__(self, temporal_run_id: str) -> None:
        self._temporal_run_id = temporal_run_id
        self._held: _Held | None = None

    def seed(self, snapshot_id: str, messages: Sequence[ModelMessage]) -> None:
        """The run starts from a stored snapshot (continue, fork, restart): the ledger holds these messages."""
        self._held = _Held(tuple(messages), {'snapshot_id': snapshot_id})

    def reference(
        self, messages: Sequence[ModelMessage], step: int, *, model_request: bool = True
    ) -> tuple[dict[str, Any], int] | None:
        """The header value naming the held prefix of `messages`, and its length; `None` when none is held.

        For a model request (`model_request=True`) it also notes that the worker stores `messages`
        as this step's snapshot (it does so for every provider-valid history before the model is
        called), the base of the next request.
        """
        held = self._held
        found = None
        if (
            held is not None
            and held.messages
            and len(messages) >= len(held.messages)
            and all(mine is theirs for mine, theirs in zip(held.messages, messages, strict=False))
        ):
            found = ({**held.reference, 'count': len(held.messages)}, len(held.messages))
        if model_request and is_provider_valid(messages):
            self._held = _Held(tuple(messages), {'temporal_run_id': self._temporal_run_id, 'step': step})
        return found
