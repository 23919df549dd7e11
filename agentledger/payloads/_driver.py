"""Large payloads of agent runs leave Temporal's history for the ledger, through Temporal's `ExternalStorage`.

An `AgentRunWorkflow`'s payloads at or above a size threshold (tool results, the new messages of
a model request, a seed history, the workflow's input and output), and those of the served agents'
pydantic-ai activities and of the ledger's own activities in any workflow (`LedgerPayloads`), are
stored in the ledger as FastCDC chunks plus a manifest (see `agentledger/ledger/_chunks.py`), and
Temporal's history keeps only a reference:
`{"manifest": <sha256 of the manifest>, "size": ..., "metadata": ...}` (the payload's small
metadata, such as its encoding, stays in the reference). Content repeated
from payload to payload (a tool result, then the model request that carries it, then the stored
message) shares its chunks and manifest, so the ledger holds it once.

The driver runs where Temporal encodes and decodes payloads (client, worker, replayer), outside
the workflow sandbox. Replay needs exactly the referenced content, which is content-addressed and
never changes. A reference that cannot be resolved raises `UnresolvablePayloadReference` naming
it, and a ledger that is down `LedgerUnavailableError`: either fails the activity attempt or the
workflow task, which Temporal retries, so the run waits instead of failing or going on without it.
Stored payloads must outlive the namespace's history retention: `agentledger gc` deletes only what
no workflow inside it still references.

The ledger's storage is composed with the external storage the application configured on its
`DataConverter`, if any (`with_ledger_storage`): the ledger's driver takes only the payloads it
claims, at its own threshold, and every other payload goes where the application's own selector,
drivers and threshold send it; references name their driver, so each is read back by the driver
that wrote it.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    ExternalStorage,
    PayloadCodec,
    SerializationContext,
    StorageDriver,
    StorageDriverActivityInfo,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverSelectContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
    WithSerializationContext,
)

from agentledger._compat import keep_storage_contexts
from agentledger.errors import LedgerCorruptionError, LedgerUnavailableError, UnresolvablePayloadReference
from agentledger.ledger._facade import Ledger
from agentledger.model._records import AGENT_RUN_WORKFLOW_TYPE

__all__ = [
    'DRIVER_NAME',
    'LEDGER_ACTIVITY_PREFIX',
    'PAYLOAD_THRESHOLD',
    'LedgerExternalStorage',
    'LedgerPayloads',
    'LedgerStorageDriver',
    'ResultStorage',
    'referrers',
    'with_ledger_storage',
]

DRIVER_NAME = 'agentledger'
"""The driver name Temporal records in each external-storage reference."""

PAYLOAD_THRESHOLD = 4096
"""Payloads of agent runs at least this large (in bytes) are stored in the ledger by default."""

LEDGER_ACTIVITY_PREFIX = 'agentledger__'
"""The activity types of the ledger's own activities start with this (`agentledger.workflows._types`)."""

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
        try:
            # The ledger is open while a worker runs (or held while it is down: this opens it then);
            # a client or replayer opens it for the call.
            await self._ledger.open()
            try:
                keys = await asyncio.gather(*(self._store(p, found) for p in payloads))
            finally:
                await self._ledger.close()
        except LedgerUnavailableError:
            if self._inline_while_down:
                # The task fails and is retried; its retry keeps the payloads inline (see `with_ledger_storage`).
                self._down_until = time.monotonic() + _INLINE_FOR_S
            raise
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


@dataclass(frozen=True)
class LedgerPayloads:
    """Which payloads are the ledger's to store: those of agent runs, in whatever workflow they run.

    Temporal tells a storage selector the payload's target (`StorageDriverSelectContext.target`): for
    everything a workflow sends, including the input of an activity it schedules and that activity's
    result, it is the workflow (`StorageDriverWorkflowInfo`, with its type), and for an activity not
    started by a workflow (or its heartbeat details) the activity (`StorageDriverActivityInfo`, with
    its type). The activity type of a workflow's activity is not in the target; Temporal gives it to
    the storage through the serialization context (`ActivitySerializationContext.activity_type`),
    which `LedgerExternalStorage` passes on. So the ledger claims:

    - every payload whose target is an `AgentRunWorkflow` (its input, output, activities, children);
    - the payloads of an activity whose type is one of `activity_types` (the pydantic-ai activities
      of the agents `LedgerPlugin` serves) or starts with `agentledger__` (the ledger's own), from
      any workflow: an agent run inside an application's own workflow.
    """

    activity_types: frozenset[str] = frozenset()
    """The activity types of the served agents' pydantic-ai activities."""

    def claims(
        self, target: StorageDriverWorkflowInfo | StorageDriverActivityInfo | None, activity_type: str | None = None
    ) -> bool:
        """Whether a payload for `target`, sent for an activity of `activity_type` (if any), is the ledger's."""
        if isinstance(target, StorageDriverWorkflowInfo) and target.type == AGENT_RUN_WORKFLOW_TYPE:
            return True
        types = [activity_type]
        if isinstance(target, StorageDriverActivityInfo):
            types.append(target.type)
        return any(
            name is not None and (name.startswith(LEDGER_ACTIVITY_PREFIX) or name in self.activity_types)
            for name in types
        )


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
    payloads: LedgerPayloads = dataclasses.field(default_factory=LedgerPayloads)
    """Which payloads are the ledger's: the same rule as Temporal's external storage (`with_ledger_storage`)."""

    async def store_ahead(
        self, target: StorageDriverWorkflowInfo, payload: Payload, context: ActivitySerializationContext
    ) -> None:
        """Store `payload` (as the codec encodes it) for `target` now if Temporal's external storage will store it."""
        if not self.payloads.claims(target, context.activity_type) or not self.driver.storing:
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


@dataclass(frozen=True)
class _Selection:
    """The driver selector of `LedgerExternalStorage`: the ledger's payloads to the ledger, the rest as configured."""

    driver: LedgerStorageDriver
    threshold: int
    payloads: LedgerPayloads
    own: ExternalStorage | None
    """The external storage the application configured, which decides for every payload the ledger does not claim."""
    activity_type: str | None = None
    """The activity the payloads are for, from the serialization context (`with_context`)."""

    def __call__(self, context: StorageDriverSelectContext, payload: Payload) -> StorageDriver | None:
        if self.payloads.claims(context.target, self.activity_type):
            # The ledger's payload: in the ledger from its threshold up, else inline; never the application's storage.
            if payload.ByteSize() >= self.threshold and self.driver.storing:
                return self.driver
            return None
        own = self.own
        # Exactly what the application's own `ExternalStorage` does: its threshold, then its selector or its driver.
        if own is None or payload.ByteSize() < own.payload_size_threshold:
            return None
        if own.driver_selector is None:
            return own.drivers[0]
        return own.driver_selector(context, payload)

    def with_context(self, context: SerializationContext) -> _Selection:
        activity_type = context.activity_type if isinstance(context, ActivitySerializationContext) else None
        own = self.own.with_context(context) if isinstance(self.own, WithSerializationContext) else self.own
        return dataclasses.replace(self, activity_type=activity_type, own=own)


class LedgerExternalStorage(ExternalStorage, WithSerializationContext):
    """Temporal's `ExternalStorage` with the ledger's driver beside the application's own (`with_ledger_storage`).

    It takes Temporal's serialization context (as a payload codec can), so that its selector knows
    which activity a workflow's activity payload is for.
    """

    @property
    def own(self) -> ExternalStorage | None:
        """The external storage the application configured itself, if any."""
        selection = self.driver_selector
        return selection.own if isinstance(selection, _Selection) else None

    def with_context(self, context: SerializationContext) -> Self:
        """A copy whose selector knows the context (the activity a payload is for)."""
        selection = self.driver_selector
        if not isinstance(selection, _Selection):
            return self
        bound = dataclasses.replace(self, driver_selector=selection.with_context(context))
        # Temporal binds the store context after this; a context bound before must not be lost.
        keep_storage_contexts(self, bound)
        return bound


def with_ledger_storage(
    converter: DataConverter,
    driver: LedgerStorageDriver,
    threshold: int,
    payloads: LedgerPayloads | None = None,
) -> DataConverter:
    """`converter` with the ledger's payloads (`payloads`) of `threshold` bytes or more stored by `driver`.

    Composed with the converter's own `external_storage`, if it has one: every payload the ledger
    does not claim goes where that storage sends it (its selector, its drivers, its threshold), and
    references its drivers wrote are read back by them (Temporal picks the driver by the name in the
    reference). Without one, other payloads stay inline. The payload codec is kept as it is.

    With `inline_while_down` (the driver's, under the `warn` outage policy), a ledger that cannot
    store a payload makes the payloads of the next minute stay inline in Temporal's history (up to
    Temporal's own payload limit), so runs go on; under `fail` the task is retried until the ledger
    is back.
    """
    own = converter.external_storage
    if isinstance(own, LedgerExternalStorage):
        # A converter configured by the plugin before (a client's, given to a replayer): compose its own part again.
        own = own.own
    if own is not None and any(d.name() == DRIVER_NAME for d in own.drivers):
        raise ValueError(
            f"the DataConverter's external storage already has a driver named {DRIVER_NAME!r}, the name of the "
            "ledger's storage driver: give that driver another name"
        )
    storage = LedgerExternalStorage(
        drivers=[driver, *(own.drivers if own is not None else ())],
        driver_selector=_Selection(driver, threshold, payloads or LedgerPayloads(), own),
        # Temporal looks at a payload at all from the smaller threshold; the selector applies each.
        payload_size_threshold=min(threshold, own.payload_size_threshold) if own is not None else threshold,
    )
    return dataclasses.replace(converter, external_storage=storage)
