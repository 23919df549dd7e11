"""The ledger's payload storage composed with the application's own `ExternalStorage` (no Temporal server).

Payloads go through a `DataConverter` bound to the contexts Temporal's worker binds: a target (the
workflow, or a standalone activity) and a serialization context (the activity a workflow's
activity payload is for), as `DataConverter._with_contexts` does it for every payload it stores.
"""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1 import ExternalStorageReference
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    ExternalStorage,
    JSONProtoPayloadConverter,
    PayloadCodec,
    SerializationContext,
    StorageDriver,
    StorageDriverActivityInfo,
    StorageDriverSelectContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
    WorkflowSerializationContext,
)

from agentledger import LedgerPlugin, MemoryLedger
from agentledger.payloads._driver import (
    DRIVER_NAME,
    LedgerExternalStorage,
    LedgerPayloads,
    LedgerStorageDriver,
    with_ledger_storage,
)

from .helpers.agents import calc_agent
from .helpers.own_setup import MemoryDriver

LEDGER_THRESHOLD = 4096
OWN_THRESHOLD = 1024
AGENT_ACTIVITY = 'agent__calc__model_request'
NAMESPACE = 'default'

AGENT_RUN = StorageDriverWorkflowInfo(namespace=NAMESPACE, id='run-1', type='AgentRunWorkflow')
OWN_WORKFLOW = StorageDriverWorkflowInfo(namespace=NAMESPACE, id='report-1', type='ReportWorkflow')


class Reversing(PayloadCodec):
    """A codec of the application's: reverses the bytes (and says so in the metadata)."""

    async def encode(self, payloads: list[Payload]) -> list[Payload]:
        return [Payload(metadata={**p.metadata, 'reversed': b'1'}, data=p.data[::-1]) for p in payloads]

    async def decode(self, payloads: list[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            metadata = dict(p.metadata)
            metadata.pop('reversed', None)
            out.append(Payload(metadata=metadata, data=p.data[::-1]))
        return out


def _activity(name: str, workflow_type: str = 'ReportWorkflow') -> ActivitySerializationContext:
    return ActivitySerializationContext(
        namespace=NAMESPACE,
        workflow_id='report-1',
        workflow_type=workflow_type,
        activity_type=name,
        activity_id='1',
        activity_task_queue='tq',
        is_local=False,
    )


def _workflow_context() -> WorkflowSerializationContext:
    return WorkflowSerializationContext(namespace=NAMESPACE, workflow_id='report-1')


async def _where(
    converter: DataConverter,
    target: StorageDriverWorkflowInfo | StorageDriverActivityInfo,
    context: SerializationContext,
    size: int,
) -> str:
    """Which driver stores `size` characters sent with these contexts (`inline`: none); checks the way back."""
    bound = converter._with_contexts(context, StorageDriverStoreContext(target=target))
    value = 'x' * size
    [payload] = await bound.encode([value])
    assert await bound.decode([payload], [str]) == [value]
    if payload.metadata.get('messageType') != ExternalStorageReference.DESCRIPTOR.full_name.encode():
        return 'inline'
    reference = JSONProtoPayloadConverter().from_payload(payload, ExternalStorageReference)
    assert isinstance(reference, ExternalStorageReference)
    return reference.driver_name


def _composed(own: ExternalStorage | None, **converter: Any) -> tuple[DataConverter, MemoryLedger]:
    ledger = MemoryLedger()
    driver = LedgerStorageDriver(ledger)
    payloads = LedgerPayloads(frozenset({AGENT_ACTIVITY}))
    base = DataConverter(external_storage=own, **converter)
    return with_ledger_storage(base, driver, LEDGER_THRESHOLD, payloads), ledger


async def test_the_ledger_takes_agent_run_payloads_and_the_application_storage_the_rest() -> None:
    own = MemoryDriver()
    converter, ledger = _composed(ExternalStorage(drivers=[own], payload_size_threshold=OWN_THRESHOLD))

    # An agent run's payloads: the ledger's from its threshold up, inline below it (never the application's).
    assert await _where(converter, AGENT_RUN, _workflow_context(), 5000) == DRIVER_NAME
    assert await _where(converter, AGENT_RUN, _activity(AGENT_ACTIVITY, 'AgentRunWorkflow'), 5000) == DRIVER_NAME
    assert await _where(converter, AGENT_RUN, _workflow_context(), 2000) == 'inline'
    # The agents' pydantic-ai activities and the ledger's own, scheduled from the application's workflow.
    assert await _where(converter, OWN_WORKFLOW, _activity(AGENT_ACTIVITY), 5000) == DRIVER_NAME
    assert await _where(converter, OWN_WORKFLOW, _activity('agentledger__seal_run'), 5000) == DRIVER_NAME
    assert await _where(converter, OWN_WORKFLOW, _activity(AGENT_ACTIVITY), 2000) == 'inline'
    # A standalone activity (or heartbeat details) names its type in the target.
    standalone = StorageDriverActivityInfo(namespace=NAMESPACE, id='a-1', type=AGENT_ACTIVITY)
    assert await _where(converter, standalone, _workflow_context(), 5000) == DRIVER_NAME

    # Everything else goes where the application's storage sends it, at its own threshold.
    assert await _where(converter, OWN_WORKFLOW, _activity('make_report'), 2000) == 'own-memory'
    assert await _where(converter, OWN_WORKFLOW, _activity('make_report'), 500) == 'inline'
    assert await _where(converter, OWN_WORKFLOW, _workflow_context(), 5000) == 'own-memory'
    other_agent = _activity('agent__someone_else__model_request')  # an agent the plugin does not serve
    assert await _where(converter, OWN_WORKFLOW, other_agent, 5000) == 'own-memory'
    own_standalone = StorageDriverActivityInfo(namespace=NAMESPACE, id='a-2', type='make_report')
    assert await _where(converter, own_standalone, _workflow_context(), 5000) == 'own-memory'

    assert len(own.stored) == 4 and own.retrieved == 4
    assert {reference.workflow_id for reference in await ledger.payload_references()} == {'run-1', 'report-1'}


async def test_the_application_selector_decides_for_its_payloads() -> None:
    small, large = MemoryDriver('small-things'), MemoryDriver('large-things')

    def select(context: StorageDriverSelectContext, payload: Payload) -> StorageDriver | None:
        assert context.target == OWN_WORKFLOW
        if payload.ByteSize() > 10_000:
            return large
        return small if payload.ByteSize() > 3000 else None

    converter, _ = _composed(ExternalStorage(drivers=[small, large], driver_selector=select, payload_size_threshold=0))
    assert await _where(converter, OWN_WORKFLOW, _activity('make_report'), 20_000) == 'large-things'
    assert await _where(converter, OWN_WORKFLOW, _activity('make_report'), 5000) == 'small-things'
    assert await _where(converter, OWN_WORKFLOW, _activity('make_report'), 2000) == 'inline'
    # The ledger's payloads never reach the application's selector (it asserts its target).
    assert await _where(converter, OWN_WORKFLOW, _activity(AGENT_ACTIVITY), 20_000) == DRIVER_NAME
    assert await _where(converter, AGENT_RUN, _workflow_context(), 20_000) == DRIVER_NAME


async def test_without_application_storage_other_payloads_stay_inline_and_the_codec_is_kept() -> None:
    codec = Reversing()
    converter, _ = _composed(None, payload_codec=codec)
    assert converter.payload_codec is codec
    assert isinstance(converter.external_storage, LedgerExternalStorage)
    assert await _where(converter, OWN_WORKFLOW, _activity('make_report'), 20_000) == 'inline'
    assert await _where(converter, OWN_WORKFLOW, _activity(AGENT_ACTIVITY), 20_000) == DRIVER_NAME
    assert await _where(converter, AGENT_RUN, _workflow_context(), 20_000) == DRIVER_NAME


def test_the_plugin_keeps_the_client_storage_and_codec_and_composes_once() -> None:
    own = MemoryDriver()
    storage = ExternalStorage(drivers=[own], payload_size_threshold=OWN_THRESHOLD)
    codec = Reversing()
    plugin = LedgerPlugin(MemoryLedger(), agents=[calc_agent])
    config = plugin.configure_client({'data_converter': DataConverter(external_storage=storage, payload_codec=codec)})
    converter = config['data_converter']
    assert converter.payload_codec is codec
    composed = converter.external_storage
    assert isinstance(composed, LedgerExternalStorage) and composed.own is storage
    assert [driver.name() for driver in composed.drivers] == [DRIVER_NAME, 'own-memory']
    assert composed.payload_size_threshold == OWN_THRESHOLD
    # A converter the plugin configured already (a client's, given to a replayer) is composed from its own part again.
    again = plugin.configure_client({'data_converter': converter})
    recomposed = again['data_converter'].external_storage
    assert isinstance(recomposed, LedgerExternalStorage) and recomposed.own is storage
    assert [driver.name() for driver in recomposed.drivers] == [DRIVER_NAME, 'own-memory']


def test_an_application_driver_named_like_the_ledger_s_is_refused() -> None:
    with pytest.raises(ValueError, match=f"already has a driver named '{DRIVER_NAME}'"):
        _composed(ExternalStorage(drivers=[MemoryDriver(DRIVER_NAME)]))


async def test_a_store_context_bound_before_the_serialization_context_is_kept() -> None:
    """Binding the activity after the target (the other order from Temporal's) still stores for that target."""
    converter, ledger = _composed(None)
    bound = converter._with_store_context(StorageDriverStoreContext(target=OWN_WORKFLOW)).with_context(
        _activity(AGENT_ACTIVITY)
    )
    [payload] = await bound.encode(['x' * 5000])
    assert payload.metadata.get('messageType') == ExternalStorageReference.DESCRIPTOR.full_name.encode()
    async with ledger:
        assert {(r.namespace, r.workflow_id) for r in await ledger.payload_references()} == {(NAMESPACE, 'report-1')}
