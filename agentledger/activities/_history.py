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

from .._errors import LedgerError, LedgerUnavailableError
from ..ledger._base import Ledger
from ..ledger._records import SnapshotRecord
from ..ledger._snapshots import SnapshotNotFoundError
from ._failures import ledger_failure

__all__ = ['HistoryResolver']

_History = tuple[list[ModelMessage], list[str]]


class HistoryResolver:
    """Resolves history references against one ledger, with a small cache of recent histories."""

    def __init__(self, ledger: Ledger, size: int = 64) -> None:
        self._ledger = ledger
        self._size = size
        self._recent: OrderedDict[str, _History] = OrderedDict()

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
        self._recent[record.snapshot_id] = (list(messages), hashes)
        self._recent.move_to_end(record.snapshot_id)
        while len(self._recent) > self._size:
            self._recent.popitem(last=False)

    async def resolve(self, run_id: str, reference: dict[str, Any]) -> tuple[str, list[ModelMessage], list[str]]:
        """The referenced snapshot's id, messages and hashes.

        The reference names a seed snapshot by id, or the snapshot this run stored for an earlier
        model request (its Temporal run and step): content that was stored, hash-checked and never
        changes, so a retried attempt or a replacement worker rebuilds the same history. A ledger
        that is down fails the attempt (retryable); a reference that cannot be resolved fails it for
        good, naming the reference.
        """
        count = reference.get('count')
        try:
            snapshot_id = reference.get('snapshot_id') or await self._stored_request(run_id, reference)
            cached = self._recent.get(snapshot_id)
            if cached is None:
                snapshot = await self._ledger.snapshot(snapshot_id)
                cached = (snapshot.messages, snapshot.hashes)
        except LedgerUnavailableError as error:
            raise ledger_failure(error) from error
        except LedgerError as error:
            raise ApplicationError(
                f'agentledger: history reference {reference} of run {run_id} cannot be resolved: {error}',
                type='UnresolvableHistoryReference',
                non_retryable=True,
            ) from error
        messages, hashes = cached
        if len(messages) != count:
            raise ApplicationError(
                f'agentledger: history reference {reference} of run {run_id} holds {len(messages)} messages, '
                f'not {count}',
                type='UnresolvableHistoryReference',
                non_retryable=True,
            )
        return snapshot_id, messages, hashes

    async def _stored_request(self, run_id: str, reference: dict[str, Any]) -> str:
        step, temporal_run_id, count = reference.get('step'), reference.get('temporal_run_id'), reference.get('count')
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
