"""Worker side of bounded history: turn a workflow's history reference back into messages.

The workflow sends a model request (and the seal) only the messages the ledger does not hold,
plus a reference naming the rest (see `agentledger/workflows/_history.py`). This resolves the
reference from the ledger, hash-checked, keeping the latest histories this worker stored at hand
so that consecutive requests of a run read nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from pydantic_ai.messages import ModelMessage
from temporalio.exceptions import ApplicationError

from agentledger.activities._failures import ledger_failure
from agentledger.errors import (
    UNRESOLVABLE_HISTORY_REFERENCE,
    LedgerError,
    LedgerUnavailableError,
    SnapshotNotFoundError,
)
from agentledger.ledger._facade import Ledger
from agentledger.model._content import encode_messages
from agentledger.model._records import SnapshotRecord
from agentledger.model._snapshots import snapshot_id
from agentledger.model._validity import is_provider_valid

__all__ = ['HistoryResolver']

_History = tuple[list[ModelMessage], list[str]]


class HistoryResolver:
    """Resolves history references against one ledger, with a small cache of recent histories."""

    def __init__(self, ledger: Ledger, size: int = 64) -> None:
        self._ledger = ledger
        self._size = size
        self._recent: OrderedDict[str, _History] = OrderedDict()
        self._steps: OrderedDict[tuple[str, str, int, int], str] = OrderedDict()
        """(run, Temporal run, step, message count) -> the id of the model-request snapshot kept at hand."""

    def remember(
        self, record: SnapshotRecord, messages: Sequence[ModelMessage], base: tuple[str, Sequence[str]] | None
    ) -> None:
        """Keep a snapshot this worker just stored: the next request of its run names it as its base."""
        if base is not None and record.parent_id == base[0]:
            hashes = [*base[1], *record.new_hashes]
        elif record.parent_id is None:
            hashes = list(record.new_hashes)
        else:
            return
        self._keep(record.snapshot_id, list(messages), hashes)
        if record.kind == 'model_request':
            self._index(record.run_id, record.temporal_run_id, record.step, len(hashes), record.snapshot_id)

    def remember_unstored(self, run_id: str, temporal_run_id: str, step: int, messages: Sequence[ModelMessage]) -> None:
        """Keep a model request's history the ledger could not store (outage policy `warn`).

        The next request of the run names it as its base; this worker resolves it from memory under
        the id the ledger will give it once the snapshot is written.
        """
        if not is_provider_valid(messages):
            return
        hashes = [message.hash for message in encode_messages(messages)]
        stored_id = snapshot_id(run_id, step, 'model_request', hashes)
        self._keep(stored_id, list(messages), hashes)
        self._index(run_id, temporal_run_id, step, len(hashes), stored_id)

    def _keep(self, key: str, messages: list[ModelMessage], hashes: list[str]) -> None:
        self._recent[key] = (messages, hashes)
        self._recent.move_to_end(key)
        while len(self._recent) > self._size:
            self._recent.popitem(last=False)

    def _index(self, run_id: str, temporal_run_id: str, step: int, count: int, stored_id: str) -> None:
        self._steps[(run_id, temporal_run_id, step, count)] = stored_id
        while len(self._steps) > self._size:
            self._steps.popitem(last=False)

    async def resolve(self, run_id: str, reference: dict[str, Any]) -> tuple[str, list[ModelMessage], list[str]]:
        """The referenced snapshot's id, messages and hashes.

        The reference names a seed snapshot by id, or the snapshot this run stored for an earlier
        model request (its Temporal run and step): content that was stored, hash-checked and never
        changes, so a retried attempt or a replacement worker rebuilds the same history. A ledger
        that is down fails the attempt (retryable); a reference that cannot be resolved fails it for
        good, naming the reference.
        """
        try:
            return await self.lookup(run_id, reference)
        except LedgerUnavailableError as error:
            raise ledger_failure(error) from error

    async def lookup(self, run_id: str, reference: dict[str, Any]) -> tuple[str, list[ModelMessage], list[str]]:
        """`resolve`, except that a ledger that is down raises `LedgerUnavailableError` itself."""
        count = reference.get('count')
        try:
            found = reference.get('snapshot_id') or await self._stored_request(run_id, reference)
            cached = self._recent.get(found)
            if cached is None:
                snapshot = await self._ledger.snapshot(found)
                cached = (snapshot.messages, snapshot.hashes)
        except LedgerUnavailableError:
            raise
        except LedgerError as error:
            raise ApplicationError(
                f'agentledger: history reference {reference} of run {run_id} cannot be resolved: {error}',
                type=UNRESOLVABLE_HISTORY_REFERENCE,
                non_retryable=True,
            ) from error
        messages, hashes = cached
        if len(messages) != count:
            raise ApplicationError(
                f'agentledger: history reference {reference} of run {run_id} holds {len(messages)} messages, '
                f'not {count}',
                type=UNRESOLVABLE_HISTORY_REFERENCE,
                non_retryable=True,
            )
        return found, messages, hashes

    async def _stored_request(self, run_id: str, reference: dict[str, Any]) -> str:
        step, temporal_run_id, count = reference.get('step'), reference.get('temporal_run_id'), reference.get('count')
        at_hand = self._steps.get((run_id, str(temporal_run_id), int(step or 0), int(count or 0)))
        if at_hand is not None and at_hand in self._recent:
            return at_hand
        candidates = [
            s
            for s in await self._ledger.snapshots(run_id)
            if s.kind == 'model_request' and s.step == step and s.message_count == count
        ]
        if not candidates:
            raise SnapshotNotFoundError(f'run {run_id} stored no {count}-message snapshot for step {step}')
        # After a Temporal reset the request may have run in an earlier Temporal run (its completion was
        # copied into the new one); a step that ran again after the reset is the newest Temporal run's.
        runs = (await self._ledger.run(run_id)).temporal_run_ids
        return max(
            candidates,
            key=lambda s: (
                s.temporal_run_id == temporal_run_id,
                runs.index(s.temporal_run_id) if s.temporal_run_id in runs else -1,
            ),
        ).snapshot_id
