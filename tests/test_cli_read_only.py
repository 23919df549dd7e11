"""The command line's reading commands open the ledger read-only; a worker refuses a ledger it cannot write.

Each command runs as its own process (`python -m agentledger`), as an operator runs it, so that what
it prints after its event loop has closed (the "Event loop is closed" of a thread that outlived it)
is seen too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agentledger import SqliteLedger

from .helpers.ledgers import directory_state, unwritable
from .helpers.records import event, run_seal, run_start

REPO = Path(__file__).resolve().parents[1]


def agentledger(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, '-m', 'agentledger', *argv], cwd=REPO, capture_output=True, text=True, timeout=120
    )


async def recorded_ledger(path: Path) -> None:
    async with SqliteLedger(path) as ledger:
        await ledger.start_run(run_start('r1', prompt_preview='hello'))
        await ledger.record_events([event('1', 1, 'tool_call_started'), event('1', 1, 'tool_call_completed')])
        await ledger.seal_run(run_seal('r1', output_preview='bye'))


async def test_runs_and_show_read_a_ledger_they_may_not_write_and_change_nothing(tmp_path: Path) -> None:
    path = tmp_path / 'ro' / 'runs.db'
    await recorded_ledger(path)
    with unwritable(path) as before:
        listed = agentledger('runs', '--ledger', f'sqlite:///{path}')
        shown = agentledger('show', 'r1', '--ledger', f'sqlite:///{path}')
        effects = agentledger('effects', '--ledger', str(path))
        after = directory_state(path.parent)
    assert listed.returncode == 0, listed.stderr
    assert 'r1' in listed.stdout and 'completed' in listed.stdout
    assert shown.returncode == 0, shown.stderr
    assert 'hello' in shown.stdout and 'tool call' in shown.stdout
    assert effects.returncode == 0, effects.stderr
    # No switch to WAL (no -wal or -shm), no migration, not a byte or an mtime changed.
    assert after == before


def refused_worker(path: Path) -> str:
    """Start `agentledger worker` on `path` read-only: it must exit 1 before serving; return its one line."""
    argv = ['worker', '--agent', 'tests.helpers.agents:calc_agent', '--ledger', f'sqlite:///{path}?mode=ro']
    done = agentledger(*argv, '--address', 'localhost:1')
    assert done.returncode == 1
    assert 'serving' not in done.stderr
    [line] = done.stderr.strip().splitlines()
    return line


def test_worker_refuses_a_read_only_ledger_before_it_serves(tmp_path: Path) -> None:
    path = tmp_path / 'runs.db'
    line = refused_worker(path)
    assert line.startswith('agentledger: ') and 'no SQLite ledger at' in line and 'does not exist' in line
    assert not path.exists()


async def test_worker_refuses_a_ledger_opened_read_only_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / 'runs.db'
    await recorded_ledger(path)
    before = directory_state(tmp_path)['runs.db']
    line = refused_worker(path)
    assert line.startswith('agentledger: cannot write a probe record'), line
    assert f'the ledger at sqlite:///{path} is open read-only' in line
    # The file is as it was; a WAL file's reader may add SQLite's -wal and -shm beside it where it can.
    assert directory_state(tmp_path)['runs.db'] == before


def test_a_failed_open_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    """SQLITE_CANTOPEN at connect: one line, at once, and no thread reporting to a closed event loop."""
    path = tmp_path / 'a-directory.db'
    path.mkdir()
    done = agentledger('resolve', 'some-key', '--outcome', 'not-done', '--ledger', f'sqlite:///{path}')
    assert done.returncode == 1
    assert 'Event loop is closed' not in done.stderr and 'Traceback' not in done.stderr, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith('agentledger: opening the SQLite ledger') and 'SQLITE_CANTOPEN' in line, line
