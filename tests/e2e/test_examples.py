"""The README's runnable examples run as they are: each starts its own dev server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize(
    'example',
    [
        'quickstart.py',
        'delegates.py',
        'once.py',
        'codec_server.py',
        'gc.py',
        'reconcile.py',
        'park.py',
        'approvals.py',
        'own_workflow.py',
    ],
)
def test_example_runs(example: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / 'examples' / example)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert 'run-' in done.stdout
