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
`history_error` beside the header's own fields). A reference or header whose fields have the wrong
type is the caller's mistake, not the ledger's: `MalformedPayloads`, before anything is decoded.

A header resolves only what its own run's model saw: its run's snapshots, or the snapshot its run
was seeded from (continue, fork, restart). A header that names another run's snapshot is not
something a workflow writes, and would show that run's messages under this run's header. It is
refused as an error result, like a reference the ledger cannot resolve, rather than by failing the
whole request: the other payloads of the same history page still decode, and a caller cannot tell a
refused reference from a missing one (with `detailed_errors=False`, the messages are the same).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.message import DecodeError
from pydantic_ai.messages import ModelMessagesTypeAdapter
from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1 import ExternalStorageReference
from temporalio.converter import JSONProtoPayloadConverter, StorageDriverClaim, StorageDriverRetrieveContext
from temporalio.exceptions import ApplicationError

from agentledger.activities._history import HistoryResolver
from agentledger.errors import LedgerError, MalformedPayloads
from agentledger.ledger._facade import Ledger
from agentledger.model._snapshots import run_id_of
from agentledger.payloads._driver import DRIVER_NAME, LedgerStorageDriver

__all__ = ['PayloadDecoder']

logger = logging.getLogger('agentledger.codec')

_REFERENCE_TYPE = ExternalStorageReference.DESCRIPTOR.full_name.encode()
_JSON = b'json/plain'
_MANIFEST = re.compile('[0-9a-f]{64}')
_UNRESOLVED_PAYLOAD = 'the stored payload cannot be resolved'
_UNRESOLVED_HISTORY = 'the history reference cannot be resolved'


class PayloadDecoder:
    """Turns the payloads of an agent run's Temporal history into what they stand for, from one ledger.

    `detailed_errors=False` (the codec server's choice) puts a fixed message in each error result
    and logs the detail at debug level: the detail names the ledger's location and what it holds
    (such as a snapshot's true message count), which is not for whoever can reach an HTTP endpoint.
    """

    def __init__(self, ledger: Ledger, *, detailed_errors: bool = True) -> None:
        self._ledger = ledger
        self._detailed = detailed_errors
        self._driver = LedgerStorageDriver(ledger)
        self._histories = HistoryResolver(ledger)
        self._references = JSONProtoPayloadConverter()

    async def decode(self, payloads: Sequence[Payload], *, namespace: str | None = None) -> list[Payload]:
        """Each payload decoded (see the module docstring), in order; an unresolvable reference is an error result.

        Raises `MalformedPayloads`, before decoding any, when a reference or header has fields of the
        wrong type. With `namespace` (a codec request's `X-Namespace`), a stored payload is resolved
        only when the ledger records a workflow of that namespace referencing it (the storage driver
        records each workflow it stores a payload for); otherwise it decodes to the same error result
        as one the ledger does not hold, so its existence is not revealed either.
        """
        references = [self._reference(payload) for payload in payloads]
        for payload, reference in zip(payloads, references, strict=True):
            if reference is not None:
                _check_claim(reference.claim_data)
            elif (header := _header(payload)) is not None:
                _check_history(header['history'])
        return [
            await self._decode(payload, reference, namespace)
            for payload, reference in zip(payloads, references, strict=True)
        ]

    async def _decode(
        self, payload: Payload, reference: ExternalStorageReference | None, namespace: str | None
    ) -> Payload:
        if reference is not None:
            payload = await self._retrieve(reference, namespace)
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

    async def _retrieve(self, reference: ExternalStorageReference, namespace: str | None) -> Payload:
        claim = StorageDriverClaim(claim_data=dict(reference.claim_data))
        manifest = claim.claim_data['manifest']
        try:
            if namespace is not None and namespace not in {
                found.namespace for found in await self._ledger.payload_references([manifest])
            }:
                return self._unresolved(reference, f'no workflow of namespace {namespace!r} references it')
            (payload,) = await self._driver.retrieve(StorageDriverRetrieveContext(), [claim])
        except ApplicationError as error:
            return self._unresolved(reference, error.message)
        except LedgerError as error:
            return self._unresolved(reference, f'{type(error).__name__}: {error}')
        return payload

    def _unresolved(self, reference: ExternalStorageReference, detail: str) -> Payload:
        logger.debug('stored payload %s not decoded: %s', reference.claim_data['manifest'], detail)
        return _json_payload(
            {
                'agentledger_error': detail if self._detailed else _UNRESOLVED_PAYLOAD,
                'reference': {'driver_name': reference.driver_name, 'claim_data': dict(reference.claim_data)},
            }
        )

    async def _with_history(self, payload: Payload) -> Payload:
        """The `agentledger` activity header with its history reference resolved; other payloads as they are."""
        header = _header(payload)
        if header is None:
            return payload
        run_id, history = header['run_id'], header['history']
        try:
            _check_history(history)  # a stored payload's header was not checked before decoding
        except MalformedPayloads as error:
            return self._history_unresolved(header, payload, str(error))
        snapshot = history.get('snapshot_id')
        if snapshot is not None and not await self._seen_by(run_id, snapshot):
            return self._history_unresolved(
                header, payload, f'snapshot {snapshot!r} is not of run {run_id!r} or its seed'
            )
        try:
            snapshot_id, messages, _ = await self._histories.resolve(run_id, history)
        except ApplicationError as error:
            return self._history_unresolved(header, payload, error.message)
        return _json_payload(
            {
                **header,
                'history_snapshot_id': snapshot_id,
                'history_messages': ModelMessagesTypeAdapter.dump_python(messages, mode='json'),
            },
            like=payload,
        )

    def _history_unresolved(self, header: dict[str, Any], payload: Payload, detail: str) -> Payload:
        logger.debug('history reference of run %s not decoded: %s', header['run_id'], detail)
        return _json_payload(
            {**header, 'history_error': detail if self._detailed else _UNRESOLVED_HISTORY}, like=payload
        )

    async def _seen_by(self, run_id: str, snapshot_id: str) -> bool:
        """Whether run `run_id`'s model requests may have a history reference to `snapshot_id`."""
        try:
            if run_id_of(snapshot_id) == run_id:
                return True
            seed = (await self._ledger.run(run_id)).forked_from
        except LedgerError:
            return False
        return seed is not None and seed.snapshot_id == snapshot_id


def _check_claim(claim: Mapping[str, str]) -> None:
    """Raise `MalformedPayloads` unless `claim` has the shape the storage driver writes."""
    if not _MANIFEST.fullmatch(claim.get('manifest', '')):
        raise MalformedPayloads('a stored payload reference\'s "manifest" must be 64 lower-case hex digits')
    if not claim.get('size', '').isdigit():
        raise MalformedPayloads('a stored payload reference\'s "size" must be a number')
    try:
        Payload.FromString(base64.b64decode(claim.get('metadata', ''), validate=True))
    except (binascii.Error, ValueError, DecodeError) as error:
        raise MalformedPayloads('a stored payload reference\'s "metadata" must be a base64 Payload') from error


def _check_history(history: dict[str, Any]) -> None:
    """Raise `MalformedPayloads` unless `history` has the shape a workflow's history reference has."""
    if not _is_count(history.get('count')):
        raise MalformedPayloads('the agentledger header\'s "history.count" must be a non-negative integer')
    if 'snapshot_id' in history:
        if not isinstance(history['snapshot_id'], str) or not history['snapshot_id']:
            raise MalformedPayloads('the agentledger header\'s "history.snapshot_id" must be a snapshot id')
        return
    if not _is_count(history.get('step')):
        raise MalformedPayloads('the agentledger header\'s "history.step" must be a non-negative integer')
    if not isinstance(history.get('temporal_run_id'), str):
        raise MalformedPayloads('the agentledger header\'s "history.temporal_run_id" must be a string')


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _header(payload: Payload) -> dict[str, Any] | None:
    """The `agentledger` activity header `payload` is, when it carries a history reference."""
    header = _json_object(payload)
    if header is None or not isinstance(header.get('run_id'), str) or not isinstance(header.get('history'), dict):
        return None
    return header


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
