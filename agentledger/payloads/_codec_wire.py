"""What the codec server reads off the wire, as pure functions: the JSON body of payloads and `Host` values.

Kept apart from the server so that they can be tested (and fuzzed) without one: every way a body
can be wrong ends in `MalformedPayloads`, which the server answers with 400.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from agentledger.errors import MalformedPayloads

__all__ = ['encode_payloads', 'parse_host', 'parse_payloads']

_OWN_FIELDS = frozenset({'metadata', 'data'})


def parse_payloads(body: bytes) -> list[Payload]:
    """The payloads of a codec request's body: protobuf JSON of `temporal.api.common.v1.Payloads`.

    Stricter than protobuf's JSON parser, which reads invalid base64 as empty bytes: `data` and the
    metadata values must be base64 (standard or URL-safe alphabet, padded or not, as protobuf JSON
    allows). Other fields of a payload are parsed by protobuf, unknown ones ignored. Raises
    `MalformedPayloads`, and nothing else, for any body that is not such a document.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:  # not UTF-8 or JSON (a ValueError), or nested too deep
        raise MalformedPayloads('the body is not JSON') from error
    if not isinstance(document, dict):
        raise MalformedPayloads('the body must be a JSON object: {"payloads": [...]}')
    items = document.get('payloads')
    if items is None:
        return []
    if not isinstance(items, list):
        raise MalformedPayloads('"payloads" must be a list')
    return [_payload(item, f'payloads[{index}]') for index, item in enumerate(items)]


def encode_payloads(payloads: Sequence[Payload]) -> bytes:
    """The body of a codec answer: protobuf JSON of `Payloads`, which `parse_payloads` reads back."""
    return json_format.MessageToJson(Payloads(payloads=payloads), indent=None).encode()


def parse_host(value: str) -> tuple[str, int | None]:
    """The lower-cased name (an IPv6 address without brackets) and the port of `HOST[:PORT]`.

    The syntax of an HTTP `Host` header and of `--allowed-host`; raises `ValueError` for anything else.
    """
    text = value.strip().lower()
    if text.startswith('['):
        name, bracket, rest = text[1:].partition(']')
        if not bracket or (rest and not rest.startswith(':')):
            raise ValueError(f'not HOST[:PORT]: {value!r}')
        port_text = rest[1:] if rest else None
    elif text.count(':') > 1:  # a bare IPv6 address has no port
        name, port_text = text, None
    else:
        name, colon, port_text_or_empty = text.partition(':')
        port_text = port_text_or_empty if colon else None
    if not name or any(c.isspace() or c in '/@?#[]' for c in name):
        raise ValueError(f'not HOST[:PORT]: {value!r}')
    if port_text is None:
        return name, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f'not a port in {value!r}')
    return name, int(port_text)


def _payload(item: Any, where: str) -> Payload:
    if not isinstance(item, dict):
        raise MalformedPayloads(f'{where} must be a JSON object')
    metadata = item.get('metadata')
    if not isinstance(metadata, dict | None):
        raise MalformedPayloads(f'{where}.metadata must be a JSON object')
    payload = Payload()
    others = {key: value for key, value in item.items() if key not in _OWN_FIELDS}
    try:
        if others:  # such as `externalPayloads`: passed on as protobuf reads them
            json_format.ParseDict(others, payload, ignore_unknown_fields=True)
        data = item.get('data')
        payload.data = b'' if data is None else _base64(data, f'{where}.data')
        for key, value in (metadata or {}).items():
            payload.metadata[key] = _base64(value, f'{where}.metadata')
    except MalformedPayloads:
        raise
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as error:
        raise MalformedPayloads(f'{where} is not a payload') from error
    return payload


def _base64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedPayloads(f'{where} must be a base64 string')
    text = value.replace('-', '+').replace('_', '/')
    try:
        return base64.b64decode(text + '=' * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as error:
        raise MalformedPayloads(f'{where} is not valid base64') from error
