"""End-to-end: `agentledger demo --ui` serves the Temporal UI with the ledger's codec server behind it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

from .test_codec_server import assert_ui_reaches_codec_server, http


async def test_demo_ui_starts_the_codec_server_for_the_uis_origin(tmp_path: Path) -> None:
    """The printed UI and run pages answer; the UI names the codec server, which allows both forms of its origin."""
    env = {k: v for k, v in os.environ.items() if k not in ('OPENAI_API_KEY', 'AGENTLEDGER_DEMO_MODEL')}
    # The package of this checkout, whatever the current directory (the demo runs in `tmp_path`).
    env['PYTHONPATH'] = os.pathsep.join([str(Path(__file__).parents[2]), *filter(None, [env.get('PYTHONPATH')])])
    url = f'sqlite:///{tmp_path}/demo.db'
    with (tmp_path / 'stderr.txt').open('wb') as stderr:
        demo = await asyncio.create_subprocess_exec(
            *(sys.executable, '-m', 'agentledger', 'demo', '--ui', '--ledger', url),
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert demo.stdout is not None
        out = ''
        while not out.endswith(')\n') or 'codec server:' not in out:
            line = await asyncio.wait_for(demo.stdout.readline(), 180)
            assert line, (tmp_path / 'stderr.txt').read_text()
            out += line.decode()
        page = re.search(r'^Temporal UI: (http://127\.0\.0\.1:(\d+))(/namespaces/default/workflows/\S+)$', out, re.M)
        codec = re.search(r'^codec server: (http://127\.0\.0\.1:\d+) \(allows (\S+), (\S+)\)$', out, re.M)
        assert page is not None and codec is not None, out
        ui, port = page[1], page[2]
        assert (codec[2], codec[3]) == (ui, f'http://localhost:{port}')
        progress = (tmp_path / 'stderr.txt').read_text()
        assert f'Temporal UI: {ui}\n' in progress and f'allows {ui}, http://localhost:{port}' in progress

        for address in (ui, page[1] + page[3]):
            status, _, _ = await asyncio.to_thread(http, 'GET', address)
            assert status == 200, address
        await assert_ui_reaches_codec_server(ui, codec[1], [ui, f'http://localhost:{port}'])

        # A UI opened at another address is refused, and the demo's stderr says which origins are allowed.
        status, _, body = await asyncio.to_thread(http, 'OPTIONS', f'{codec[1]}/decode', Origin='http://localhost:1')
        assert status == 403 and f'allowed origins: {ui}, http://localhost:{port}' in json.loads(body)['error']
        logged = (tmp_path / 'stderr.txt').read_text()
        assert "WARNING agentledger.codec: codec server refused a request: the Origin 'http://localhost:1'" in logged

        demo.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(demo.wait(), 60) == 0
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
