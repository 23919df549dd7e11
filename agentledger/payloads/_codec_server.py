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

Decoded payloads are the runs' messages and tool results, so a request is checked before its body
is read, cheapest first: the `Host` (against DNS rebinding), the `Origin` (a browser page the UI's
origins do not include is refused, not just left without CORS headers), the bearer token, the
namespace, then the body's size. Errors name no ledger location and nothing the ledger holds.

Built on `aiohttp.web`: one dependency that brings HTTP/1.1 keep-alive, chunked bodies, a body size
limit (`client_max_size`), header size limits and idle timeouts, all of which a hand-made parser
gets wrong one by one (Starlette would need an ASGI server, uvicorn, beside it).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

from aiohttp import HttpVersion11, web

from agentledger.errors import MalformedPayloads
from agentledger.ledger._facade import Ledger
from agentledger.payloads._codec_wire import encode_payloads, parse_host, parse_payloads
from agentledger.payloads._decode import PayloadDecoder

__all__ = ['DEFAULT_MAX_BODY_SIZE', 'DEFAULT_UI_ORIGINS', 'CodecServer']

logger = logging.getLogger('agentledger.codec')

DEFAULT_UI_ORIGINS = ('http://localhost:8233', 'http://127.0.0.1:8233')
"""The origins of the dev server's web UI (`temporal server start-dev`), allowed when none are given."""

DEFAULT_MAX_BODY_SIZE = 8 * 1024 * 1024
"""The largest request body accepted, in bytes: a few of Temporal's 2 MB payloads, base64-encoded."""

_LOOPBACK_NAMES = frozenset({'127.0.0.1', 'localhost', '::1'})
_WILDCARD_HOSTS = {'': '127.0.0.1', '0.0.0.0': '127.0.0.1', '::': '::1'}
"""Addresses that listen on every interface, and the loopback address to reach each by."""
_ALLOWED_HEADERS = 'X-Namespace, Content-Type, Authorization'
# Request line and each header line: enough for a long bearer token (a JWT), far from a flood.
_MAX_LINE_SIZE = 8190
_MAX_HEADERS = 64
# After an answer sent before the body was read (401, 413, ...), how long the rest is read and dropped.
_LINGERING_S = 2.0
_SHUTDOWN_S = 5.0


class CodecServer:
    """An HTTP codec endpoint that decodes agent runs' payloads from `ledger`.

    Use it as an async context manager (or `start()` / `close()`); `url` is what to pass as
    `--ui-codec-endpoint` or `--codec-endpoint`. `port=0` picks a free port. `ui_origins` are the
    browser origins allowed to call it (the Temporal UI's address, e.g. `http://localhost:8233`);
    `'*'` allows any origin. A request from another origin is refused (403).

    `auth_token`: when given, every decode and encode request must carry `Authorization: Bearer
    <auth_token>` (the Temporal CLI's `--codec-auth`, the UI's "pass access token" setting) or gets
    401 before its body is read; the browser's preflight needs none. Decoded payloads are the run's
    messages and tool results, so serve them beyond loopback only with a token (and TLS in front).

    `allowed_hosts` (`HOST[:PORT]`, without a port any port; `'*'` for any host): the `Host` header
    values accepted besides the loopback names (`127.0.0.1`, `localhost`, `[::1]`) and `host` on the
    server's own port. A browser tricked by DNS rebinding sends the attacker's name, which is refused
    (403); behind a proxy, or listening beyond loopback, name the host clients use.

    `namespaces`: when given, a request whose `X-Namespace` is not one of them is refused (403), and
    a stored payload is decoded only when a workflow of the request's namespace references it.

    `max_body_size` bounds a request's body (413 beyond it, before it is read when its length is
    declared); `idle_timeout` closes a connection that sends no complete request for that long (one
    that was just opened, or idle between requests); `read_timeout` bounds reading a request's body.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        host: str = '127.0.0.1',
        port: int = 0,
        ui_origins: Sequence[str] = DEFAULT_UI_ORIGINS,
        auth_token: str | None = None,
        allowed_hosts: Sequence[str] = (),
        namespaces: Sequence[str] | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        idle_timeout: float = 15.0,
        read_timeout: float = 30.0,
    ) -> None:
        if auth_token is not None and not auth_token.strip():
            raise ValueError('auth_token must be a non-empty string (or None for no authentication)')
        if namespaces is not None and not namespaces:
            raise ValueError('namespaces must name at least one namespace (or be None for any)')
        if max_body_size <= 0 or idle_timeout <= 0 or read_timeout <= 0:
            raise ValueError('max_body_size, idle_timeout and read_timeout must be positive')
        self._ledger = ledger
        self._decoder = PayloadDecoder(ledger, detailed_errors=False)
        self._host = host
        self._port = port
        self._origins = frozenset(origin.rstrip('/') for origin in ui_origins)
        self._authorization = f'Bearer {auth_token}'.encode() if auth_token is not None else None
        self._any_host = '*' in allowed_hosts
        self._hosts = [parse_host(allowed) for allowed in allowed_hosts if allowed != '*']
        self._own_names = _LOOPBACK_NAMES | ({host.lower()} if host not in _WILDCARD_HOSTS else set())
        self._namespaces = frozenset(namespaces) if namespaces is not None else None
        self._max_body_size = max_body_size
        self._idle_timeout = idle_timeout
        self._read_timeout = read_timeout
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The endpoint's base URL (the port is known once started); a loopback address for a wildcard host."""
        host = _WILDCARD_HOSTS.get(self._host, self._host)
        host = f'[{host}]' if ':' in host else host
        return f'http://{host}:{self._port}'

    async def start(self) -> None:
        """Open the ledger and listen; raises `OSError` when the address is taken."""
        app = web.Application(client_max_size=self._max_body_size)
        app.router.add_route('*', '/{path:.*}', self._handle, expect_handler=self._expect)
        app.on_response_prepare.append(self._cors)
        runner = web.AppRunner(
            app,
            access_log=None,
            keepalive_timeout=self._idle_timeout,
            max_line_size=_MAX_LINE_SIZE,
            max_field_size=_MAX_LINE_SIZE,
            max_headers=_MAX_HEADERS,
            lingering_time=_LINGERING_S,
            shutdown_timeout=_SHUTDOWN_S,
        )
        await self._ledger.open()
        try:
            await runner.setup()
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except OSError:
            await runner.cleanup()
            await self._ledger.close()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def close(self) -> None:
        """Stop listening, end open connections and release the ledger."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await runner.cleanup()
        await self._ledger.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _refusal(self, request: web.Request) -> web.Response | None:
        """The answer that refuses `request` from its headers alone, cheapest check first; `None` to go on."""
        if not self._host_allowed(request.headers.get('Host')):
            return _error(403, 'this Host is not allowed')
        origin = request.headers.get('Origin')
        if origin is not None and not self._origin_allowed(origin):
            return self._origin_refusal(origin)
        if request.method == 'OPTIONS':
            return web.Response(status=204)
        operation = request.path.rstrip('/').rsplit('/', 1)[-1]
        if operation not in ('decode', 'encode'):
            return _error(404, 'no such endpoint: POST .../decode or .../encode')
        if request.method != 'POST':
            return _error(405, 'POST a JSON body of payloads', headers={'Allow': 'POST, OPTIONS'})
        if self._authorization is not None:
            given = request.headers.get('Authorization')
            # Bytes, since `compare_digest` refuses non-ASCII text; aiohttp keeps undecodable bytes as surrogates.
            if given is None or not hmac.compare_digest(given.encode('utf-8', 'surrogateescape'), self._authorization):
                which = 'no' if given is None else 'a wrong'
                message = f'{which} Authorization header: send "Bearer <token>"'
                return _error(401, message, headers={'WWW-Authenticate': 'Bearer'})
        # The Temporal CLI sends an empty X-Namespace unless it is given --namespace: the same as none.
        namespace = request.headers.get('X-Namespace') or None
        if self._namespaces is not None and namespace not in self._namespaces:
            return _error(403, 'this namespace is not served here')
        if request.content_length is not None and request.content_length > self._max_body_size:
            return _error(413, f'the body is larger than {self._max_body_size} bytes', close=True)
        return None

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue`: the client waits for leave to send its body, given only if the headers pass."""
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        if request.headers.get('Expect', '').lower() != '100-continue':
            return _error(417, 'only Expect: 100-continue is understood')
        if request.version == HttpVersion11:
            await request.writer.write(b'HTTP/1.1 100 Continue\r\n\r\n')
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Check the request cheapest first, everything before its body is read; then decode or encode."""
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        operation = request.path.rstrip('/').rsplit('/', 1)[-1]
        namespace = request.headers.get('X-Namespace') or None
        try:
            async with asyncio.timeout(self._read_timeout):
                body = await request.read()
        except TimeoutError:
            return _error(408, 'the body did not arrive in time', close=True)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f'the body is larger than {self._max_body_size} bytes', close=True)
        try:
            payloads = parse_payloads(body)
            if operation == 'decode':
                payloads = await self._decoder.decode(payloads, namespace=namespace)
        except MalformedPayloads as error:
            return _error(400, str(error))
        except Exception as error:
            # The exception may quote what the ledger holds: its detail goes to the debug log only.
            logger.warning('decoding failed (%s); the traceback is logged at debug level', type(error).__name__)
            logger.debug('decoding failed', exc_info=True)
            return _error(500, 'decoding failed')
        return web.Response(body=encode_payloads(payloads), content_type='application/json')

    async def _cors(self, request: web.Request, response: web.StreamResponse) -> None:
        """Add CORS headers to each answer to an allowed browser origin, errors too, so that the UI can read them."""
        origin = request.headers.get('Origin')
        if origin is None or not self._origin_allowed(origin):
            return
        # The UI may send credentials (an Authorization header), and then `*` is not accepted: echo the origin.
        response.headers.update(
            {
                'Access-Control-Allow-Origin': origin,
                'Access-Control-Allow-Credentials': 'true',
                'Access-Control-Allow-Headers': _ALLOWED_HEADERS,
                'Access-Control-Allow-Methods': 'POST, OPTIONS',
                'Vary': 'Origin',
            }
        )

    def _origin_refusal(self, origin: str) -> web.Response:
        """403 for a browser page of `origin`, logged: the usual cause is a UI address the server was not told of."""
        allowed = ', '.join(sorted(self._origins)) or 'none'
        message = (
            f'the Origin {origin!r} is not allowed (allowed origins: {allowed}); the Temporal UI must be opened at '
            'an allowed origin, or its origin added (`agentledger codec-server --ui-origin ORIGIN`, '
            '`CodecServer(ui_origins=...)`)'
        )
        logger.warning('codec server refused a request: %s', message)
        return _error(403, message)

    def _origin_allowed(self, origin: str) -> bool:
        return origin in self._origins or '*' in self._origins

    def _host_allowed(self, value: str | None) -> bool:
        if self._any_host:
            return True
        if value is None:
            return False
        try:
            name, port = parse_host(value)
        except ValueError:
            return False
        port = 80 if port is None else port
        if port == self._port and name in self._own_names:
            return True
        return any(name == allowed and allowed_port in (None, port) for allowed, allowed_port in self._hosts)


def _error(status: int, message: str, *, close: bool = False, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON error answer; `close` ends the connection, whose body was not read to its end."""
    response = web.Response(status=status, text=json.dumps({'error': message}), content_type='application/json')
    response.headers.update(headers or {})
    if close:
        response.force_close()
    return response
