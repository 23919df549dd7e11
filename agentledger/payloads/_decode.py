"""Decoding payloads for people: what a Temporal history's references point at, read back from the ledger.

Temporal's history of an agent run holds two kinds of references into the ledger:

- an external-storage reference (`json/protobuf`, messageType
  `temporal.api.sdk.v1.ExternalStorageReference`, driver `agentledger`) in place of a large payload;
  decoding it gives back the original payload, verified chunk by chunk;
- the `history` reference in a model request's `agentledger` activity header (the part of the
  message history the ledger holds); decoding the header adds the referenced messages as
  `history_messages` (pydantic-ai message JSON) and their snapshot as `history_snapshot_id`, so an
  operator sees what the model saw.

Everything else passes through unchanged. A reference that cannot be resolved is never a crash: the
payload comes back as JSON saying what could not be resolved and why (`agentledger_error`, or
`history_error` beside the header's own fields).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic_ai.messages import ModelMessagesTypeAdapter
from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1 import ExternalStorageReference
from temporalio.converter import JSONProtoPayloadConverter, StorageDriverClaim, StorageDriverRetrieveContext
from temporalio.exceptions import ApplicationError

from agentledger.activities._history import HistoryResolver
from agentledger.errors import LedgerError
from agentledger.ledger._facade import Ledger
from agentledger.payloads._driver import DRIVER_NAME, LedgerStorageDriver

__all__ = ['PayloadDecoder']

_REFERENCE_TYPE = ExternalStorageReference.DESCRIPTOR.full_name.encode()
_JSON = b'json/plain'


class PayloadDecoder:
    """Turns the payloads of an agent run's Temporal history into what they stand for, from one ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._driver = LedgerStorageDriver(ledger)
        self._histories = HistoryResolver(ledger)
        self._references = JSONProtoPayloadConverter()

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each payload decoded (see the module docstring), in order; never raises for a bad reference."""
        return [await self._decode(payload) for payload in payloads]

    async def _decode(self, payload: Payload) -> Payload:
        reference = self._reference(payload)
        if reference is not None:
            payload = await self._retrieve(reference)
        return await self._with_history(payload)

    def _reference(self, payload: Payload) -> ExternalStorageReference | None:
        """The external-storage reference `payload` is, when our driver wrote it."""
        metadata = payload.metadata
        if metadata.get('encoding') != b'json/protobuf' or metadata.get('messageType') != _REFERENCE_TYPE:
            return None
        try:
            reference = self._references.from_payload(payload, ExternalStorageReference)
        except Exception:
            # Not a reference after all (malformed JSON): shown as it is, like any other payload.
            return None
        if not isinstance(reference, ExternalStorageReference) or reference.driver_name != DRIVER_NAME:
            return None
        return reference

    async def _retrieve(self, reference: ExternalStorageReference) -> Payload:
        claim = StorageDriverClaim(claim_data=dict(reference.claim_data))
        try:
            (payload,) = await self._driver.retrieve(StorageDriverRetrieveContext(), [claim])
        except (ApplicationError, LedgerError) as error:
            message = error.message if isinstance(error, ApplicationError) else f'{type(error).__name__}: {error}'
            return _json_payload(
                {
                    'agentledger_error': message,
                    'reference': {'driver_name': reference.driver_name, 'claim_data': dict(reference.claim_data)},
                }
            )
        return payload

    async def _with_history(self, payload: Payload) -> Payload:
        """The `agentledger` activity header with its history reference resolved; other payloads as they are."""
        header = _json_object(payload)
        if header is None or not isinstance(header.get('run_id'), str) or not isinstance(header.get('history'), dict):
            return payload
        try:
            snapshot_id, messages, _ = await self._histories.resolve(header['run_id'], header['history'])
        except ApplicationError as error:
            return _json_payload({**header, 'history_error': error.message}, like=payload)
        return _json_payload(
            {
                **header,
                'history_snapshot_id': snapshot_id,
                'history_messages': ModelMessagesTypeAdapter.dump_python(messages, mode='json'),
            },
            like=payload,
        )


def _json_object(payload: Payload) -> dict[str, Any] | None:
    if payload.metadata.get('encoding') != _JSON:
        return None
    try:
        value = json.loads(payload.data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _json_payload(value: dict[str, Any], like: Payload | None = None) -> Payload:
    payload = Payload()
    if like is not None:
        payload.metadata.update(like.metadata)
    payload.metadata['encoding'] = _JSON
    payload.data = json.dumps(value, ensure_ascii=False, separators=(',', ':')).encode()
    return payload
