"""Content addressing of messages and binary parts: canonical JSON, SHA-256, blobs. Pure functions.

A message is stored once under the SHA-256 of its canonical JSON (pydantic-ai's own JSON shape in
the canonical form of `agentledger.model._canonical`, keys sorted, no whitespace), so storage grows
with the number of distinct messages, not with the number of snapshots that contain them. Binary
parts (`BinaryContent.data`) of `BLOB_THRESHOLD` bytes or more are cut out into blobs stored once
under their own hash, and the message keeps a `{"$blob": <hash>}` reference, so an image sent in ten
snapshots (or ten runs) is stored once.

The canonical form leaves out the fields a pydantic-ai release dumps as empty, so a message stored by
a worker on one supported release has the address a worker on another computes, and is stored once.
Messages stored under hash format 1 (which hashed every field) are read and verified as such.

The stored bytes keep pydantic-ai's key order and every field (only the hash uses the canonical
form), so a rebuilt
history serialises byte for byte as the original did, and a continuation sends the provider the
same request bytes. Every field, text, byte and timestamp round-trips. (pydantic-ai itself
rebuilds `BinaryContent` of an image type as its `BinaryImage` subclass: its round trip, not a loss.)
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter

from agentledger.errors import LedgerCorruptionError
from agentledger.model._canonical import canonical_json, canonical_message

__all__ = [
    'BLOB_THRESHOLD',
    'EncodedMessage',
    'canonical_json',
    'content_hash',
    'decode_message',
    'encode_messages',
    'message_address',
]

BLOB_THRESHOLD = 4096
"""Binary parts at least this large (in bytes) are stored as separate blobs."""

_BLOB_KEY = '$blob'


def stored_json(value: Any) -> bytes:
    """The JSON encoding that is stored: pydantic-ai's own key order (tool arguments and returns keep theirs)."""
    return json.dumps(value, separators=(',', ':'), ensure_ascii=False).encode()


def content_hash(data: bytes) -> str:
    """The hex SHA-256 of `data`: the key content is stored under."""
    return hashlib.sha256(data).hexdigest()


def message_address(message: dict[str, Any]) -> str:
    """The content address of one dumped (blob-cut) message: the hash of its canonical form."""
    return content_hash(canonical_json(canonical_message(message)))


def _legacy_address(message: Any) -> str:
    """The address hash format 1 gave a message: the hash of every field."""
    return content_hash(canonical_json(message))


@dataclass(frozen=True)
class EncodedMessage:
    """One message ready to store: its hash, its canonical JSON, and the blobs it references."""

    hash: str
    data: bytes
    blobs: Mapping[str, bytes] = field(default_factory=dict)


def _cut_blobs(node: Any, blobs: dict[str, bytes]) -> Any:
    if isinstance(node, list):
        return [_cut_blobs(item, blobs) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get('kind') == 'binary' and isinstance(node.get('data'), str):
        raw = base64.urlsafe_b64decode(node['data'])
        if len(raw) >= BLOB_THRESHOLD:
            digest = content_hash(raw)
            blobs[digest] = raw
            return {**node, 'data': {_BLOB_KEY: digest}}
    return {key: _cut_blobs(value, blobs) for key, value in node.items()}


def _paste_blobs(node: Any, blobs: Mapping[str, bytes], where: str) -> Any:
    if isinstance(node, list):
        return [_paste_blobs(item, blobs, where) for item in node]
    if not isinstance(node, dict):
        return node
    data = node.get('data')
    if node.get('kind') == 'binary' and isinstance(data, dict) and _BLOB_KEY in data:
        digest = data[_BLOB_KEY]
        raw = blobs.get(digest)
        if raw is None:
            raise LedgerCorruptionError(f'blob {digest} referenced by {where} is missing from the ledger')
        if content_hash(raw) != digest:
            raise LedgerCorruptionError(f'blob {digest} referenced by {where} does not match its hash')
        return {**node, 'data': base64.urlsafe_b64encode(raw).decode()}
    return {key: _paste_blobs(value, blobs, where) for key, value in node.items()}


def encode_messages(messages: Sequence[ModelMessage]) -> list[EncodedMessage]:
    """Encode each message to canonical JSON (with large binary parts cut out as blobs) and hash it."""
    dumped = ModelMessagesTypeAdapter.dump_python(list(messages), mode='json')
    encoded: list[EncodedMessage] = []
    for message in dumped:
        blobs: dict[str, bytes] = {}
        stored = _cut_blobs(message, blobs)
        encoded.append(EncodedMessage(hash=message_address(stored), data=stored_json(stored), blobs=blobs))
    return encoded


def blob_refs(data: bytes) -> list[str]:
    """The blob hashes a stored message references."""
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            value = node.get('data')
            if node.get('kind') == 'binary' and isinstance(value, dict) and _BLOB_KEY in value:
                refs.append(value[_BLOB_KEY])
            for item in node.values():
                walk(item)

    walk(json.loads(data))
    return refs


def decode_message(digest: str, data: bytes, blobs: Mapping[str, bytes]) -> ModelMessage:
    """Rebuild one stored message, verifying its hash (and its blobs'); corruption raises, never returns."""
    try:
        node = json.loads(data)
    except ValueError as error:
        raise LedgerCorruptionError(f'stored message {digest} is not JSON: {error}') from error
    if not isinstance(node, dict) or digest not in (message_address(node), _legacy_address(node)):
        raise LedgerCorruptionError(f'stored message {digest} does not match its hash: the ledger row was altered')
    restored = _paste_blobs(node, blobs, f'message {digest}')
    return ModelMessagesTypeAdapter.validate_python([restored])[0]
