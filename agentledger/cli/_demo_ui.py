"""The Temporal web UI of `agentledger demo --ui`, with the ledger's codec server behind it.

The UI reads a run's payloads (its messages and tool results, stored in the ledger) through a
remote codec server that the browser calls itself. So the codec server must allow the UI's exact
origin: the demo picks the UI's port, allows both names of that address (`127.0.0.1` and
`localhost`, a browser sends whichever was typed), starts the codec server on a free port, and
the dev server's UI is pointed at it (`--ui-codec-endpoint`).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import quote

from agentledger.ledger import Ledger
from agentledger.payloads._codec_server import CodecServer

__all__ = ['DemoUI', 'demo_ui', 'free_port']

_UI_HOST = '127.0.0.1'
"""Where the dev server binds its UI (`WorkflowEnvironment.start_local`'s default `ip`), so the URL printed."""


def free_port() -> int:
    """A TCP port free on the loopback address now."""
    with socket.socket() as probe:
        probe.bind((_UI_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class DemoUI:
    """The demo's UI port and the codec server that allows that UI's origins."""

    port: int
    codec: CodecServer

    @property
    def url(self) -> str:
        """The UI's address to open in a browser: the address it listens on, the first allowed origin."""
        return _origins(self.port)[0]

    @property
    def origins(self) -> tuple[str, str]:
        """The UI's origins the codec server allows: the printed one and its `localhost` form."""
        return _origins(self.port)

    def workflow_url(self, namespace: str, workflow_id: str) -> str:
        """The UI's page of one workflow."""
        return f'{self.url}/namespaces/{quote(namespace, safe="")}/workflows/{quote(workflow_id, safe="")}'


@asynccontextmanager
async def demo_ui(ledger: Ledger) -> AsyncIterator[DemoUI]:
    """Pick the UI's port and serve `ledger`'s codec endpoint to that UI's origins until the block ends.

    `ledger` is opened by the codec server and closed with it.
    """
    port = free_port()
    async with CodecServer(ledger, ui_origins=_origins(port)) as codec:
        yield DemoUI(port=port, codec=codec)


def _origins(port: int) -> tuple[str, str]:
    return f'http://{_UI_HOST}:{port}', f'http://localhost:{port}'
