"""Large payloads of agent runs leave Temporal's history for the ledger, through Temporal's `ExternalStorage`.

An `AgentRunWorkflow`'s payloads at or above a size threshold (tool results, the new messages of
a model request, a seed history, the workflow's input and output) are stored in the ledger as
FastCDC chunks plus a manifest (see `agentledger/ledger/_chunks.py`), and Temporal's history
keeps only a reference: `{"manifest": <sha256 of the manifest>, "size": ..., "metadata": ...}`
(the payload's small metadata, such as its encoding, stays in the reference). Content repeated
from payload to payload (a tool result, then the model request that carries it, then the stored
message) shares its chunks and manifest, so the ledger holds it once.

The driver runs where Temporal encodes and decodes payloads (client, worker, replayer), outside
the workflow sandbox. Replay needs exactly the referenced content, which is content-addressed and
never changes. A reference that cannot be resolved raises `UnresolvablePayloadReference` naming
it, and a ledger that is down `LedgerUnavailableError`: either fails the activity attempt or the
workflow task, which Temporal retries, so the run waits instead of failing or going on without it.
Stored payloads must outlive the namespace's history retention: `agentledger gc` deletes only what
no workflow inside it still references.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    ExternalStorage,
    PayloadCodec,
    StorageDriver,
    StorageDriverActivityInfo,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverSelectContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
    WithSerializationContext,
)

from agentledger.errors import LedgerCorruptionError, LedgerUnavailableError, UnresolvablePayloadReference
from agentledger.ledger._facade import Ledger

__all__ = [
    'DRIVER_NAME',
    'PAYLOAD_THRESHOLD',
    'LedgerStorageDriver',
    'ResultStorage',
    'referrers',
    'with_ledger_storage',
]

DRIVER_NAME = 'agentledger'
"""The driver name Temporal records in each external-storage reference."""

PAYLOAD_THRESHOLD = 4096
"""Payloads of `AgentRunWorkflow` at least this large (in bytes) are stored in the ledger by default."""

_WORKFLOW_TYPE = 'AgentRunWorkflow'
_INLINE_FOR_S = 60.0
_RECENT = 1024
"""How many stored payloads a driver remembers, so storing one again (see `ResultStorage`) costs no ledger write."""
_DELEGATE_SEPARATOR = '/delegate/'


class LedgerStorageDriver(StorageDriver):
    """A Temporal `StorageDriver` that keeps payloads in a ledger, deduplicated by content."""

    def __init__(self, ledger: Ledger, *, inline_while_down: bool = False) -> None:
        self._ledger = ledger
        self._inline_while_down = inline_while_down
        self._down_until = 0.0
        self._recent: OrderedDict[tuple[str, bool, tuple[tuple[str, str], ...]], str] = OrderedDict()
        """(sha256 of a payload's data, whether it is JSON, its referrers) -> the manifest it was stored under."""

    @property
    def storing(self) -> bool:
        """Whether payloads go to the ledger now: not for a while after it failed, when inline while down."""
        return time.monotonic() >= self._down_until

    def name(self) -> str:
        """The driver's name in references."""
        return DRIVER_NAME

    def type(self) -> str:
        """The driver's type, the same in every process."""
        return 'agentledger.LedgerStorageDriver'

    async def store(self, context: StorageDriverStoreContext, payloads: Sequence[Payload]) -> list[StorageDriverClaim]:
        """Store each payload's bytes as chunks; the claim names its manifest.

        The workflows whose histories will hold the reference are recorded with it, for `agentledger gc`.
        """
        found = referrers(context.target)
        # The ledger is open while a worker runs; a client or replayer opens it for the call.
        await self._ledger.open()
        try:
            keys = await asyncio.gather(*(self._store(p, found) for p in payloads))
        except LedgerUnavailableError:
            if self._inline_while_down:
                # The task fails and is retried; its retry keeps the payloads inline (see `with_ledger_storage`).
                self._down_until = time.monotonic() + _INLINE_FOR_S
            raise
        finally:
            await self._ledger.close()
        return [
            StorageDriverClaim(
                claim_data={
                    'manifest': key,
                    'size': str(len(p.data)),
                    # The metadata (encoding) is small and stays in history, so the data is stored as is.
                    'metadata': base64.b64encode(Payload(metadata=p.metadata).SerializeToString()).decode(),
                }
            )
            for key, p in zip(keys, payloads, strict=True)
        ]

    async def _store(self, payload: Payload, found: list[tuple[str, str]]) -> str:
        # The same bytes for the same workflows, stored moments ago (an activity result stored ahead), are not
        # written again; the memory is spent on that one use, and a memo never stands in for other referrers.
        memo = (hashlib.sha256(payload.data).hexdigest(), _is_json(payload), tuple(found))
        known = self._recent.pop(memo, None)
        if known is not None:
            return known
        key = await self._ledger.store_chunked(payload.data, json_text=memo[1], referrers=found)
        self._recent[memo] = key
        while len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
        return key

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        """Rebuild each payload from its chunks, verified by hash."""
        await self._ledger.open()
        try:
            return list(await asyncio.gather(*(self._retrieve(claim) for claim in claims)))
        finally:
            await self._ledger.close()

    async def _retrieve(self, claim: StorageDriverClaim) -> Payload:
        key = claim.claim_data.get('manifest', '')
        try:
            data = await self._ledger.load_chunked(key)
        except LedgerCorruptionError as error:
            raise UnresolvablePayloadReference(
                f'agentledger: payload reference {dict(claim.claim_data)} cannot be resolved from the ledger at '
                f'{self._ledger.url}: {error}'
            ) from error
        payload = Payload()
        payload.ParseFromString(base64.b64decode(claim.claim_data.get('metadata', '')))
        payload.data = data
        return payload


@dataclass
class ResultStorage:
    """Stores an activity's result in the ledger before the attempt counts as completed.

    Temporal encodes and stores an activity's result after the activity returns, so a storage
    failure there would come after the ledger recorded the attempt `completed`. The activity
    interceptor stores the result ahead with this (the same driver, threshold, selection and payload
    codec as Temporal's own encoding), so a failure fails the attempt in both; Temporal's own store
    call then finds the payload in the driver's memory and writes nothing.
    """

    driver: LedgerStorageDriver
    threshold: int
    codec: PayloadCodec | None = None
    """The client's payload codec, which Temporal applies before external storage (set by `LedgerPlugin`)."""

    async def store_ahead(
        self, target: StorageDriverWorkflowInfo, payload: Payload, context: ActivitySerializationContext
    ) -> None:
        """Store `payload` (as the codec encodes it) for `target` now if Temporal's external storage will store it."""
        if target.type != _WORKFLOW_TYPE or not self.driver.storing:
            return
        codec = self.codec
        if codec is not None:
            if isinstance(codec, WithSerializationContext):
                codec = codec.with_context(context)
            [payload] = await codec.encode([payload])
        if payload.ByteSize() < self.threshold:
            return
        await self.driver.store(StorageDriverStoreContext(target=target), [payload])


def _is_json(payload: Payload) -> bool:
    return payload.metadata.get('encoding', b'').startswith(b'json/')


def referrers(target: StorageDriverWorkflowInfo | StorageDriverActivityInfo | None) -> list[tuple[str, str]]:
    """The (namespace, workflow id) of each workflow whose history holds a payload stored for `target`.

    Temporal stores a payload for its target: the workflow itself, or the child workflow it starts.
    A delegate child's input is also in its parent's history (the child-start event); delegate
    workflow ids are `<parent id>/delegate/<tool call id>`, so the parent is named too.
    """
    if not isinstance(target, StorageDriverWorkflowInfo) or not target.id:
        return []
    found = [(target.namespace, target.id)]
    parent, separator, _ = target.id.rpartition(_DELEGATE_SEPARATOR)
    if separator and parent:
        found.append((target.namespace, parent))
    return found


def _agent_runs_only(
    driver: LedgerStorageDriver,
) -> Callable[[StorageDriverSelectContext, Payload], StorageDriver | None]:
    def select(context: StorageDriverSelectContext, payload: Payload) -> StorageDriver | None:
        # Other workflows on the same client or worker keep their payloads inline, as they were.
        target = context.target
        if isinstance(target, StorageDriverWorkflowInfo) and target.type == _WORKFLOW_TYPE and driver.storing:
            return driver
        return None

    return select


def with_ledger_storage(converter: DataConverter, driver: LedgerStorageDriver, threshold: int) -> DataConverter:
    """`converter` with the payloads of agent runs of at least `threshold` bytes stored by `driver` in its ledger.

    With `inline_while_down` (the driver's, under the `warn` outage policy), a ledger that cannot
    store a payload makes the payloads of the next minute stay inline in Temporal's history (up to
    Temporal's own payload limit), so runs go on; under `fail` the task is retried until the ledger
    is back.
    """
    storage = ExternalStorage(
        drivers=[driver],
        driver_selector=_agent_runs_only(driver),
        payload_size_threshold=threshold,
    )
    return dataclasses.replace(converter, external_storage=storage)
