"""End-to-end: the command line's output cannot drive a terminal, and its failures are one line.

A prompt, a workflow id or a model's answer is text someone else wrote: printed raw, an ESC or BEL
sequence in it would act on the operator's terminal (clear it, retitle the window, hide lines).
`runs`, `show` and `run` print it with its control characters escaped. A Temporal server that goes
away while `run` waits for its result ends the command with one `agentledger:` line, not a traceback.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger import SqliteLedger
from agentledger.cli import main as cli
from agentledger.cli import start_dev_server

from ..conftest import serve
from ..helpers.agents import notes_agent

ROOT = Path(__file__).parents[2]
HOSTILE = 'save \x1b]0;pwned\x07 \x1b[2J\x9b31m tea'


async def test_stored_text_is_printed_with_its_control_characters_escaped(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f'sqlite:///{tmp_path / "runs.db"}'
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, serve(temporal_env, ledger, [notes_agent]) as served:
        result = await agentledger.run(
            served.client, notes_agent, HOSTILE, task_queue=served.task_queue, workflow_id='wf-\x1b[31mred'
        )
    capsys.readouterr()
    for argv in (['runs'], ['show', result.run_id], ['runs', '--json'], ['show', result.run_id, '--json']):
        assert await asyncio.to_thread(cli, [*argv, '--ledger', url]) == 0
        out = capsys.readouterr().out
        assert not set(out) & {'\x1b', '\x07', '\x9b'}, argv
        if '--json' in argv:
            # The JSON still holds the exact text, as escapes a JSON reader turns back into it.
            assert '"wf-\\u001b[31mred"' in out and json.loads(out)
        else:
            assert '\\x1b' in out
    assert await asyncio.to_thread(cli, ['show', 'run-\x1b[2Jnope', '--ledger', url]) == 1
    err = capsys.readouterr().err
    assert err.startswith('agentledger: ') and '\x1b' not in err and err.count('\n') == 1


async def test_a_server_that_goes_away_while_run_waits_ends_it_with_one_line(tmp_path: Path) -> None:
    env = await start_dev_server()
    try:
        address = env.client.service_client.config.target_host
        process = subprocess.Popen(
            [
                sys.executable,
                '-m',
                'agentledger',
                'run',
                'notes',
                'hello',
                *('--address', address, '--task-queue', 'q'),
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        started = await asyncio.to_thread(process.stderr.readline)
        assert started.startswith('started run '), started
    finally:
        await env.shutdown()
    code = await asyncio.to_thread(process.wait, 120)
    rest = process.stderr.read()
    assert code == 1, rest
    assert 'Traceback' not in rest
    lines = [line for line in rest.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith('agentledger: '), rest
