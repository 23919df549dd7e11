"""A Temporal remote codec server backed by the ledger, for the Temporal UI and CLI.

Temporal's remote codec protocol: `POST <endpoint>/decode` (and `/encode`) with a JSON body
`{"payloads": [{"metadata": {key: base64}, "data": base64}, ...]}` (protobuf JSON of
`temporal.api.common.v1.Payloads`) and the namespace in the `X-Namespace` header; the answer is the
same shape with as many payloads. The Temporal UI calls it from the browser, so every answer carries
CORS headers for the UI's origin and `OPTIONS` answers the preflight; the Temporal CLI calls it with
`--codec-endpoint`. The endpoint may have a path prefix (`http://host:port/{namespace}` is common):
any path ending in `/decode` or `/encode` is served.

Decode shows what an agent run's references point at (see `agentledger/payloads/_decode.py`). Encode passes
payloads through: agentledger stores payloads with Temporal's external storage, not with a payload
codec, so what the UI sends (a signal, a workflow input) is already what a worker reads.

Stdlib only (asyncio streams): the server answers a handful of requests from one operator's UI.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from agentledger.ledger._facade import Ledger
from agentledger.payloads._decode import PayloadDecoder

__all__ = ['DEFAULT_UI_ORIGINS', 'CodecServer']

logger = logging.getLogger('agentledger.codec')

DEFAULT_UI_ORIGINS = ('http://localhost:8233', 'http://127.0.0.1:8233')
"""The origins of the dev server's web UI (`temporal server start-dev`), allowed when none are given."""

_MAX_BODY = 64 * 1024 * 1024
_ALLOWED_HEADERS = 'X-Namespace, Content-Type, Authorization'
_REASONS = {
    200: 'OK',
    204: 'No Content',
    400: 'Bad Request',
    401: 'Unauthorized',
    404: 'Not Found',
    405: 'Method Not Allowed',
    411: 'Length Required',
    413: 'Content Too Large',
    500: 'Internal Server Error',
}


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes = b''
    content_type: str = 'application/json'


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class CodecServer:
    """An HTTP codec endpoint that decodes agent runs' payloads from `ledger`.

    Use it as an async context manager (or `start()` / `close()`); `url` is what to pass as
    `--ui-codec-endpoint` or `--codec-endpoint`. `port=0` picks a free port. `ui_origins` are the
    browser origins allowed to call it (the Temporal UI's address, e.g. `http://localhost:8233`);
    `'*'` allows any origin.

    `auth_token`: when given, every decode and encode request must carry `Authorization: Bearer
    <auth_token>` (the Temporal CLI's `--codec-auth`, the UI's "pass access token" setting) or gets
    401; the browser's preflight needs none. Decoded payloads are the run's messages and tool
    results, so serve them beyond loopback only with a token (and TLS in front).
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        host: str = '127.0.0.1',
        port: int = 0,
        ui_origins: Sequence[str] = DEFAULT_UI_ORIGINS,
        auth_token: str | None = None,
    ) -> None:
        if auth_token is not None and not auth_token.strip():
            raise ValueError('auth_token must be a non-empty string (or None for no authentication)')
        self._ledger = ledger
        self._decoder = PayloadDecoder(ledger)
        self._host = host
        self._port = port
        self._origins = frozenset(origin.rstrip('/') for origin in ui_origins)
        self._authorization = f'Bearer {auth_token}'.encode() if auth_token is not None else None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """The endpoint's base URL (the port is known once started)."""
        host = f'[{self._host}]' if ':' in self._host else self._host
        return f'http://{host}:{self._port}'

    async def start(self) -> None:
        """Open the ledger and listen; raises `OSError` when the address is taken."""
        await self._ledger.open()
        try:
            self._server = await asyncio.start_server(self._connection, self._host, self._port)
        except OSError:
            await self._ledger.close()
            raise
        self._port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, end open connections and release the ledger."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # Idle keep-alive connections would hold `wait_closed` open.
        for writer in list(self._writers):
            writer.close()
        await server.wait_closed()
        await self._ledger.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except _BadRequest as error:
                    await _write(writer, _error(error.status, str(error)), cors=(), keep_alive=False)
                    return
                if request is None:
                    return
                response = await self._handle(request)
                keep_alive = request.headers.get('connection', '').lower() != 'close'
                await _write(writer, response, cors=self._cors(request), keep_alive=keep_alive)
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    def _cors(self, request: _Request) -> tuple[tuple[str, str], ...]:
        origin = request.headers.get('origin')
        if origin is None or not (origin in self._origins or '*' in self._origins):
            return ()
        # The UI may send credentials (an Authorization header), and then `*` is not accepted: echo the origin.
        return (
            ('Access-Control-Allow-Origin', origin),
            ('Access-Control-Allow-Credentials', 'true'),
            ('Access-Control-Allow-Headers', _ALLOWED_HEADERS),
            ('Access-Control-Allow-Methods', 'POST, OPTIONS'),
            ('Vary', 'Origin'),
        )

    async def _handle(self, request: _Request) -> _Response:
        if request.method == 'OPTIONS':
            return _Response(204, content_type='')
        operation = request.path.split('?', 1)[0].rstrip('/').rsplit('/', 1)[-1]
        if operation not in ('decode', 'encode'):
            return _error(404, f'no such endpoint {request.path!r}: POST .../decode or .../encode')
        if request.method != 'POST':
            return _error(405, f'{request.method} is not allowed here: POST a JSON body of payloads')
        if self._authorization is not None and not hmac.compare_digest(
            request.headers.get('authorization', '').encode(), self._authorization
        ):
            given = 'a wrong' if 'authorization' in request.headers else 'no'
            return _error(401, f'{given} Authorization header: this codec server wants "Bearer <its token>"')
        payloads = Payloads()
        try:
            json_format.Parse(request.body or b'{}', payloads, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError) as error:
            return _error(400, f'the body is not a JSON object of payloads ({{"payloads": [...]}}): {error}')
        if operation == 'decode':
            try:
                decoded = await self._decoder.decode(payloads.payloads)
            except Exception as error:
                logger.exception('decoding %d payload(s) failed', len(payloads.payloads))
                return _error(500, f'decoding failed: {type(error).__name__}: {error}')
            payloads = Payloads(payloads=decoded)
        return _Response(200, json_format.MessageToJson(payloads, indent=None).encode())


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """The next request on the connection, or `None` when the client closed it."""
    try:
        head = await reader.readuntil(b'\r\n\r\n')
    except asyncio.IncompleteReadError as error:
        if error.partial.strip():
            raise _BadRequest(400, 'the request ended before its headers did') from error
        return None
    except asyncio.LimitOverrunError as error:
        raise _BadRequest(400, 'the request headers are too long') from error
    lines = head.decode('latin-1').split('\r\n')
    parts = lines[0].split(' ')
    if len(parts) != 3 or not parts[2].startswith('HTTP/1.'):
        raise _BadRequest(400, f'not an HTTP/1.1 request line: {lines[0]!r}')
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(':')
            headers[name.strip().lower()] = value.strip()
    if headers.get('transfer-encoding', '').lower() not in ('', 'identity'):
        raise _BadRequest(411, 'send the body with a Content-Length, not chunked')
    try:
        length = int(headers.get('content-length', '0'))
    except ValueError as error:
        raise _BadRequest(400, f'bad Content-Length {headers["content-length"]!r}') from error
    if length > _MAX_BODY:
        raise _BadRequest(413, f'the body is {length} bytes; at most {_MAX_BODY} are accepted')
    body = await reader.readexactly(length) if length > 0 else b''
    return _Request(method=parts[0].upper(), path=parts[1], headers=headers, body=body)


def _error(status: int, message: str) -> _Response:
    return _Response(status, json.dumps({'error': message}).encode())


async def _write(
    writer: asyncio.StreamWriter, response: _Response, *, cors: tuple[tuple[str, str], ...], keep_alive: bool
) -> None:
    headers = [
        *((('Content-Type', response.content_type),) if response.content_type else ()),
        ('Content-Length', str(len(response.body))),
        ('Connection', 'keep-alive' if keep_alive else 'close'),
        *cors,
    ]
    if response.status == 405:
        headers.append(('Allow', 'POST, OPTIONS'))
    if response.status == 401:
        headers.append(('WWW-Authenticate', 'Bearer'))
    head = f'HTTP/1.1 {response.status} {_REASONS.get(response.status, "")}\r\n'
    head += ''.join(f'{name}: {value}\r\n' for name, value in headers)
    writer.write(head.encode('latin-1') + b'\r\n' + response.body)
    await writer.drain()
