"""The codec server's body parsing, fuzzed: any bytes end in a result or `MalformedPayloads`, never another error."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload, Payloads

from agentledger.errors import MalformedPayloads
from agentledger.payloads._codec_wire import encode_payloads, parse_host, parse_payloads

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
base64ish = st.text(alphabet='ABCabc019+/-_=!% ', max_size=12) | st.binary(max_size=9).map(
    lambda raw: base64.b64encode(raw).decode()
)
payload_like = st.dictionaries(
    st.sampled_from(['metadata', 'data', 'externalPayloads', 'other']),
    base64ish | json_values | st.dictionaries(st.text(max_size=5), base64ish | json_values, max_size=3),
    max_size=4,
)
payloads = st.lists(
    st.builds(
        lambda metadata, data: Payload(metadata=metadata, data=data),
        st.dictionaries(st.text(max_size=8), st.binary(max_size=16), max_size=3),
        st.binary(max_size=64),
    ),
    max_size=5,
)


def parsed_or_refused(body: bytes) -> list[Payload] | None:
    try:
        return parse_payloads(body)
    except MalformedPayloads:
        return None


@given(st.binary(max_size=256))
def test_any_bytes_parse_or_are_refused(body: bytes) -> None:
    parsed_or_refused(body)


@given(json_values)
def test_any_json_parses_or_is_refused(value: Any) -> None:
    parsed_or_refused(json.dumps(value).encode())


@given(st.lists(payload_like | json_values, max_size=4))
def test_near_payloads_parse_or_are_refused(items: list[Any]) -> None:
    parsed = parsed_or_refused(json.dumps({'payloads': items}).encode())
    if parsed is not None:
        assert len(parsed) == len(items)


@given(payloads)
def test_valid_encodings_round_trip(originals: list[Payload]) -> None:
    assert parse_payloads(encode_payloads(originals)) == originals
    # As the Temporal UI and CLI write them (protobuf JSON), and in protobuf's other base64 spelling.
    assert parse_payloads(json_format.MessageToJson(Payloads(payloads=originals)).encode()) == originals
    url_safe = {
        'payloads': [
            {
                'metadata': {
                    key: base64.urlsafe_b64encode(value).decode().rstrip('=') for key, value in p.metadata.items()
                },
                'data': base64.urlsafe_b64encode(p.data).decode().rstrip('='),
            }
            for p in originals
        ]
    }
    assert parse_payloads(json.dumps(url_safe).encode()) == originals


@pytest.mark.parametrize(
    'body',
    [b'', b'[' * 100_000, b'{"payloads": [' * 50_000, b'{"payloads": [{"externalPayloads": 7}]}', b'\x00\x00\x00\x00'],
)
def test_hostile_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedPayloads):
        parse_payloads(body)


@pytest.mark.parametrize(
    ('value', 'expected'),
    [
        ('LocalHost:8081', ('localhost', 8081)),
        ('codec.example.com', ('codec.example.com', None)),
        ('[::1]:8081', ('::1', 8081)),
        ('[::1]', ('::1', None)),
        ('::1', ('::1', None)),
    ],
)
def test_host_values(value: str, expected: tuple[str, int | None]) -> None:
    assert parse_host(value) == expected


@pytest.mark.parametrize(
    'value', ['', ':8081', 'host:', 'host:0', 'host:65536', 'host:80x', '[::1', '[::1]x', 'a b:1', 'u@h:1']
)
def test_bad_host_values(value: str) -> None:
    with pytest.raises(ValueError):
        parse_host(value)
