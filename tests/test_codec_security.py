"""The codec server as an attacker meets it: what it refuses, what it never reveals, what it never holds open.

Each test speaks raw HTTP/1.1 over a socket, so that it can send what no well-behaved client sends
(a body that never arrives, a forged Host, a silent connection) and see exactly what comes back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1 import ExternalStorageReference
from temporalio.converter import JSONProtoPayloadConverter

from agentledger import Ledger, SqliteLedger
from agentledger.model import ForkRef
from agentledger.payloads import CodecServer

from .helpers.records import conversation, prefix, run_start

UI = 'http://localhost:8233'
TOKEN = 's3cret-token'
SECRET = 'Where are my 4 orders?'  # only in run-b's messages


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    async with SqliteLedger(tmp_path / 'runs.db') as opened:
        yield opened


async def exchange(server: CodecServer, head: str, body: bytes = b'', *, timeout: float = 5) -> tuple[int, bytes]:
    """Send `head` (request line and headers, without the blank line) and `body`; the answer's status and body."""
    port = int(server.url.rsplit(':', 1)[1])
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    try:
        writer.write(head.encode('latin-1') + b'\r\n\r\n' + body)
        await writer.drain()
        async with asyncio.timeout(timeout):
            answer = await reader.readuntil(b'\r\n\r\n')
            lines = answer.decode('latin-1').split('\r\n')
            headers = {name.lower(): value.strip() for name, _, value in (line.partition(':') for line in lines[1:])}
            length = int(headers.get('content-length', '0'))
            return int(lines[0].split(' ')[1]), await reader.readexactly(length)
    finally:
        writer.close()


def post(server: CodecServer, body: bytes, *extra: str, host: str | None = None) -> tuple[str, bytes]:
    """A POST to /decode as the Temporal CLI sends it, with `extra` header lines."""
    port = server.url.rsplit(':', 1)[1]
    lines = [
        'POST /decode HTTP/1.1',
        f'Host: {host or f"127.0.0.1:{port}"}',
        'Content-Type: application/json',
        f'Content-Length: {len(body)}',
        *extra,
    ]
    return '\r\n'.join(lines), body


def body_of(*payloads: Payload) -> bytes:
    return json.dumps({'payloads': [json_format.MessageToDict(p) for p in payloads]}).encode()


def decoded(answer: bytes) -> list[Any]:
    return [json.loads(json_format.ParseDict(p, Payload()).data) for p in json.loads(answer)['payloads']]


def header(run_id: str, **history: Any) -> Payload:
    """An `agentledger` activity header carrying a history reference."""
    value = {'run_id': run_id, 'history': history}
    return Payload(metadata={'encoding': b'json/plain'}, data=json.dumps(value).encode())


def reference(manifest: str, **claim: str) -> Payload:
    """A stored payload's reference, as the storage driver leaves it in Temporal's history."""
    metadata = base64.b64encode(Payload(metadata={'encoding': b'json/plain'}).SerializeToString()).decode()
    claim_data = {'manifest': manifest, 'size': '9', 'metadata': metadata, **claim}
    payload = JSONProtoPayloadConverter().to_payload(
        ExternalStorageReference(driver_name='agentledger', claim_data=claim_data)
    )
    assert payload is not None
    return payload


async def runs(ledger: Ledger) -> dict[str, str]:
    """Runs a, b and c (forked from b's snapshot), each with one snapshot: run id -> its snapshot id."""
    snapshots = {}
    for run_id, steps in (('run-a', 3), ('run-b', 5)):
        await ledger.start_run(run_start(run_id))
        record = await ledger.write_snapshot(
            run_id=run_id, temporal_run_id='t1', step=2, kind='model_request', messages=conversation(steps)[: prefix(2)]
        )
        assert record is not None
        snapshots[run_id] = record.snapshot_id
    await ledger.start_run(run_start('run-c', forked_from=ForkRef('run-b', snapshots['run-b'], 'fork')))
    return snapshots


async def test_the_token_is_checked_before_the_body_is_read(ledger: Ledger) -> None:
    """A request without the token is refused at once, though its declared 1 MB body never arrives."""
    async with CodecServer(ledger, auth_token=TOKEN) as server:
        head, _ = post(server, b'')
        status, answer = await exchange(server, head.replace('Content-Length: 0', 'Content-Length: 1000000'))
        assert status == 401 and 'Authorization' in json.loads(answer)['error']
        head, _ = post(server, b'', f'Authorization: Bearer {TOKEN[:-1]}X')
        status, _ = await exchange(server, head.replace('Content-Length: 0', 'Content-Length: 1000000'))
        assert status == 401
        # A non-ASCII token is a wrong token, not a crash.
        status, _ = await exchange(server, *post(server, body_of(), 'Authorization: Bearer s3cr\xe9t'))
        assert status == 401
        status, _ = await exchange(server, *post(server, body_of(), f'Authorization: Bearer {TOKEN}'))
        assert status == 200


async def test_a_client_that_asks_leave_to_send_its_body_gets_it_only_past_the_checks(ledger: Ledger) -> None:
    """`Expect: 100-continue`: the headers are checked first; a refused request is answered, never invited."""
    async with CodecServer(ledger, auth_token=TOKEN) as server:
        head, _ = post(server, b'', 'Expect: 100-continue')
        status, _ = await exchange(server, head.replace('Content-Length: 0', 'Content-Length: 1000000'))
        assert status == 401
        head, _ = post(server, b'', 'Expect: 100-continue', host='evil.test')
        status, _ = await exchange(server, head.replace('Content-Length: 0', 'Content-Length: 10'))
        assert status == 403
        head, _ = post(server, b'', 'Expect: 100-continue', f'Authorization: Bearer {TOKEN}')
        status, _ = await exchange(server, head.replace('Content-Length: 0', 'Content-Length: 10'))
        assert status == 100


async def test_bodies_and_headers_are_bounded(ledger: Ledger) -> None:
    """A body declared too large is 413 before it is read, a chunked one once it passes the limit; huge headers 4xx."""
    async with CodecServer(ledger) as server:
        head, _ = post(server, b'')
        status, _ = await exchange(server, head.replace('Content-Length: 0', f'Content-Length: {16 * 1024 * 1024}'))
        assert status == 413
        status, _ = await exchange(server, *post(server, body_of(), 'X-Padding: ' + 'a' * 16 * 1024))
        assert status in (400, 431)
        status, _ = await exchange(server, *post(server, body_of(), *(f'X-Many-{i}: 1' for i in range(200))))
        assert status in (400, 431)

    async with CodecServer(ledger, max_body_size=64 * 1024) as server:
        head, _ = post(server, b'', 'Transfer-Encoding: chunked')
        head = head.replace('Content-Length: 0\r\n', '')
        chunk = b'x' * 16 * 1024
        chunks = (b'%x\r\n' % len(chunk) + chunk + b'\r\n') * 8 + b'0\r\n\r\n'
        status, answer = await exchange(server, head, chunks)
        assert status == 413 and 'larger than' in json.loads(answer)['error']


async def test_a_refused_origin_is_named_with_the_allowed_ones_in_the_log_and_the_answer(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    """A page of another origin (a UI at an address not allowed) learns, and the log says, what to fix."""
    origins = [UI, 'http://127.0.0.1:8233']
    async with CodecServer(ledger, ui_origins=origins) as server:
        with caplog.at_level(logging.WARNING, logger='agentledger.codec'):
            status, answer = await exchange(server, *post(server, body_of(), 'Origin: http://localhost:9999'))
    expected = (
        "the Origin 'http://localhost:9999' is not allowed (allowed origins: http://127.0.0.1:8233, "
        'http://localhost:8233); the Temporal UI must be opened at an allowed origin, or its origin added '
        '(`agentledger codec-server --ui-origin ORIGIN`, `CodecServer(ui_origins=...)`)'
    )
    assert status == 403 and json.loads(answer) == {'error': expected}
    assert [record.getMessage() for record in caplog.records] == [f'codec server refused a request: {expected}']


async def test_only_allowed_hosts_and_origins_are_served(ledger: Ledger) -> None:
    """A forged Host (DNS rebinding) or a foreign Origin is refused with 403, the preflight too."""
    async with CodecServer(ledger, ui_origins=[UI]) as server:
        port = server.url.rsplit(':', 1)[1]
        for host in (f'127.0.0.1:{port}', f'localhost:{port}', f'[::1]:{port}'):
            status, _ = await exchange(server, *post(server, body_of(), host=host))
            assert status == 200, host
        for host in (f'evil.test:{port}', 'localhost:1', 'evil.test', '127.0.0.1'):
            status, answer = await exchange(server, *post(server, body_of(), host=host))
            assert status == 403 and json.loads(answer) == {'error': 'this Host is not allowed'}, host

        status, _ = await exchange(server, *post(server, body_of(), f'Origin: {UI}'))
        assert status == 200
        status, answer = await exchange(server, *post(server, body_of(), 'Origin: http://evil.test'))
        assert status == 403 and "the Origin 'http://evil.test' is not allowed" in json.loads(answer)['error']
        preflight = (
            f'OPTIONS /decode HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://evil.test\r\nContent-Length: 0'
        )
        status, _ = await exchange(server, preflight)
        assert status == 403

    async with CodecServer(ledger, host='0.0.0.0', allowed_hosts=['codec.example.com', 'other.test:9']) as server:
        assert server.url.startswith('http://127.0.0.1:')  # what a local UI or CLI is given, and allowed
        port = server.url.rsplit(':', 1)[1]
        for host, allowed in (
            ('codec.example.com', True),  # named without a port: any port
            ('codec.example.com:8443', True),
            ('other.test:9', True),
            ('other.test:10', False),
            (f'0.0.0.0:{port}', False),  # a wildcard address is not a name anyone reaches it by
        ):
            status, _ = await exchange(server, *post(server, body_of(), host=host))
            assert status == (200 if allowed else 403), host


async def test_a_header_shows_only_its_own_runs_messages(ledger: Ledger) -> None:
    """A header naming another run's snapshot is refused; its own run's, or the snapshot it was seeded from, shown."""
    snapshots = await runs(ledger)
    count = prefix(2)
    forged = header('run-a', snapshot_id=snapshots['run-b'], count=count)
    own = header('run-b', snapshot_id=snapshots['run-b'], count=count)
    seeded = header('run-c', snapshot_id=snapshots['run-b'], count=count)
    by_step = header('run-a', temporal_run_id='t1', step=2, count=count)
    async with CodecServer(ledger) as server:
        status, answer = await exchange(server, *post(server, body_of(forged, own, seeded, by_step)))
    assert status == 200
    refused, *shown = decoded(answer)
    assert 'history_messages' not in refused and 'history_error' in refused
    assert SECRET not in json.dumps(refused)
    assert [len(value['history_messages']) for value in shown] == [count, count, count]
    assert SECRET in json.dumps(shown[0]) and SECRET in json.dumps(shown[1]) and SECRET not in json.dumps(shown[2])


async def test_namespaces_scope_what_is_decoded(ledger: Ledger) -> None:
    """A stored payload decodes only for a namespace that references it; `namespaces` refuses the others (403)."""
    stored = await ledger.store_chunked(b'"stored"', json_text=True, referrers=[('prod', 'wf-1')])
    async with CodecServer(ledger) as server:
        status, answer = await exchange(server, *post(server, body_of(reference(stored)), 'X-Namespace: dev'))
        assert status == 200 and decoded(answer) == [
            {'agentledger_error': 'the stored payload cannot be resolved', 'reference': ANY}
        ]
        status, answer = await exchange(server, *post(server, body_of(reference(stored)), 'X-Namespace: prod'))
        assert status == 200 and decoded(answer) == ['stored']

    async with CodecServer(ledger, namespaces=['prod']) as server:
        for extra in ((), ('X-Namespace: dev',)):
            status, answer = await exchange(server, *post(server, body_of(), *extra))
            assert status == 403 and 'namespace' in json.loads(answer)['error']
        status, answer = await exchange(server, *post(server, body_of(reference(stored)), 'X-Namespace: prod'))
        assert status == 200 and decoded(answer) == ['stored']


async def test_errors_name_no_path_or_count(ledger: Ledger, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A wrong message count or a missing payload gets a fixed message; the detail goes to the debug log only."""
    snapshots = await runs(ledger)
    caplog.set_level(logging.DEBUG, logger='agentledger.codec')
    async with CodecServer(ledger, auth_token=TOKEN) as server:
        wrong = header('run-a', snapshot_id=snapshots['run-a'], count=2)
        missing = reference('f' * 64)
        status, answer = await exchange(
            server, *post(server, body_of(wrong, missing), f'Authorization: Bearer {TOKEN}')
        )
    assert status == 200
    counted, gone = decoded(answer)
    assert counted['history_error'] == 'the history reference cannot be resolved'
    assert gone['agentledger_error'] == 'the stored payload cannot be resolved'
    assert str(tmp_path).encode() not in answer and b'holds' not in answer and b'not 2' not in answer
    logged = caplog.text
    assert f'holds {prefix(2)} messages' in logged and 'f' * 64 in logged
    assert TOKEN not in logged


async def test_idle_and_slow_connections_are_closed(ledger: Ledger) -> None:
    """A connection that sends nothing, or nothing more after a request, is closed; a stalled body is 408."""
    async with CodecServer(ledger, idle_timeout=0.5, read_timeout=0.5) as server:
        port = int(server.url.rsplit(':', 1)[1])
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        try:
            async with asyncio.timeout(5):
                assert await reader.read() == b''  # closed by the server
        finally:
            writer.close()

        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        try:
            head, body = post(server, body_of())
            writer.write(head.encode() + b'\r\n\r\n' + body)
            async with asyncio.timeout(5):
                answer = await reader.read()  # the answer, then the end of the idle keep-alive connection
            assert answer.startswith(b'HTTP/1.1 200')
        finally:
            writer.close()

        head, _ = post(server, b'')
        status, _ = await exchange(server, head.replace('Content-Length: 0', 'Content-Length: 100'), b'{"payloads"')
        assert status == 408


async def test_malformed_fields_are_400(ledger: Ledger) -> None:
    """A header's or reference's field of the wrong type, or a body of the wrong shape, is 400 with a short message."""
    await runs(ledger)
    cases = [
        (body_of(header('run-a', temporal_run_id='t1', step='abc', count=3)), 'history.step'),
        (body_of(header('run-a', snapshot_id='run-a.s2.x', count='3')), 'history.count'),
        (body_of(header('run-a', temporal_run_id=7, step=2, count=3)), 'history.temporal_run_id'),
        (body_of(reference('../../etc/passwd')), 'manifest'),
        (body_of(reference('a' * 64, metadata='%%%')), 'metadata'),
        (b'{"payloads": [{"data": 7}]}', 'payloads[0].data'),
        (b'{"payloads": 7}', 'payloads'),
        (b'\xff\xfe not text', 'JSON'),
    ]
    async with CodecServer(ledger) as server:
        for body, named in cases:
            status, answer = await exchange(server, *post(server, body))
            error = json.loads(answer)['error']
            assert status == 400 and named in error and len(error) < 120, (body, error)


async def test_invalid_base64_is_400(ledger: Ledger) -> None:
    """Data or metadata that is not base64 is 400, not decoded as empty bytes."""
    async with CodecServer(ledger) as server:
        for body, named in (
            (b'{"payloads": [{"data": "not base64!"}]}', 'payloads[0].data'),
            (b'{"payloads": [{"data": "QQ=="}, {"data": "QQ=Q"}]}', 'payloads[1].data'),
            (b'{"payloads": [{"metadata": {"encoding": "%%%"}, "data": ""}]}', 'payloads[0].metadata'),
        ):
            status, answer = await exchange(server, *post(server, body))
            assert status == 400 and json.loads(answer) == {'error': f'{named} is not valid base64'}
        # Protobuf JSON's other spellings of base64 stay valid: URL-safe, unpadded.
        status, answer = await exchange(server, *post(server, b'{"payloads": [{"data": "-_8"}]}'))
        assert status == 200 and json.loads(answer) == {'payloads': [{'data': '+/8='}]}
