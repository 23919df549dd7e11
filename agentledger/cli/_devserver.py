"""Find (or build) the Temporal CLI and start its dev server: for the demo, the tests and benchmarks.

Order: `$TEMPORAL_CLI`, then `temporal` on `PATH`, then `$(go env GOPATH)/bin/temporal`. When none
exists and Go is installed, `go install github.com/temporalio/cli/cmd/temporal@v1.5.1` builds it
once (later tags carry a `replace` directive `go install` refuses). Without Go either,
`WorkflowEnvironment.start_local()` downloads a dev server itself, where there is internet.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from temporalio.client import Plugin
from temporalio.testing import WorkflowEnvironment

from agentledger.model._search_attributes import SEARCH_ATTRIBUTES

__all__ = ['TEMPORAL_CLI_MODULE', 'find_temporal_cli', 'start_dev_server']

logger = logging.getLogger('agentledger.devserver')

TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli/cmd/temporal@v1.5.1'
"""The newest Temporal CLI that `go install` accepts."""


def _go_bin() -> Path | None:
    go = shutil.which('go')
    if go is None:
        return None
    gopath = subprocess.run([go, 'env', 'GOPATH'], capture_output=True, text=True, check=True).stdout.strip()
    return Path(gopath) / 'bin' if gopath else None


def find_temporal_cli(*, build: bool = True) -> str | None:
    """The path of a Temporal CLI binary, building it with Go when missing and `build` is true.

    Returns `None` only when there is no binary and no Go to build one.
    Raises `RuntimeError` when the build itself fails (with Go's output).
    """
    explicit = os.environ.get('TEMPORAL_CLI')
    if explicit:
        if not Path(explicit).is_file():
            raise RuntimeError(f'TEMPORAL_CLI={explicit!r} is not a file')
        return explicit
    on_path = shutil.which('temporal')
    if on_path:
        return on_path
    go_bin = _go_bin()
    if go_bin is None:
        return None
    candidate = go_bin / 'temporal'
    if candidate.is_file():
        return str(candidate)
    if not build:
        return None
    logger.warning('building the Temporal CLI with `go install %s` (once; takes a few minutes)', TEMPORAL_CLI_MODULE)
    done = subprocess.run(['go', 'install', TEMPORAL_CLI_MODULE], capture_output=True, text=True)
    if done.returncode != 0 or not candidate.is_file():
        raise RuntimeError(f'`go install {TEMPORAL_CLI_MODULE}` failed:\n{done.stderr[-4000:]}')
    return str(candidate)


async def start_dev_server(
    *,
    plugins: Sequence[Plugin] = (),
    ui: bool = False,
    ui_port: int | None = None,
    ui_codec_endpoint: str | None = None,
    port: int | None = None,
    database_filename: str | None = None,
    extra_args: Sequence[str] = (),
    search_attributes: bool = True,
) -> WorkflowEnvironment:
    """Start a local Temporal dev server (SQLite persistence in `database_filename`, or in memory).

    Its default namespace has the agentledger search attributes (`AgentLedgerAgent`, ...) unless
    `search_attributes` is false. The returned environment's `client` has `plugins` installed; call
    `shutdown()` (or use it as an async context manager) to stop the server. `ui_codec_endpoint` is
    the remote codec server the UI has the browser call to show payloads (e.g. a `CodecServer`'s
    `url`, which must allow the UI's origin).
    """
    path = find_temporal_cli()
    if search_attributes:
        extra_args = [*extra_args, *(f'--search-attribute={key.name}=Keyword' for key in SEARCH_ATTRIBUTES)]
    codec_args = ['--ui-codec-endpoint', ui_codec_endpoint] if ui_codec_endpoint is not None else []
    return await WorkflowEnvironment.start_local(
        plugins=plugins,
        ui=ui,
        ui_port=ui_port,
        port=port,
        dev_server_existing_path=path,
        dev_server_database_filename=database_filename,
        dev_server_log_level='error',
        dev_server_extra_args=[*codec_args, *extra_args],
    )
