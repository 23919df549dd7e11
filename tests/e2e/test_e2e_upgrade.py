"""End-to-end: a fleet upgrades pydantic-ai, or agentledger, with runs in flight, and loses nothing.

Runs start on an old worker process: one of the oldest supported pydantic-ai (its own virtualenv,
named by `AGENTLEDGER_OLDEST_PYTHON`, `.venv-oldest` by default: `scripts/bootstrap.sh --oldest`
makes it), or one running agentledger 0.1.0 (`OLD_AGENTLEDGER`, taken from this repository's
history with `git archive`). That worker dies right after the provider answered one run's last
request (the journal holds the answer, Temporal never heard it), with the other runs mid-way. A
worker of this code on the newest release finishes them all against the same dev server and ledger:
no nondeterminism, the answer paid before the switch replayed from the journal (one request hash
under both releases; format 1's key for an activity agentledger 0.1.0 scheduled), every charge made
once, and `reconcile` finds the ledger matching history.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import agentledger
from agentledger import LedgerPlugin, SqliteLedger, reconcile_run
from agentledger.model._keyed import JOURNAL
from agentledger.model._rules import total_usage

from ..helpers import journal_agents
from ..helpers.journal_agents import PaymentDeps, payments_agent, performed, provider_calls

ROOT = Path(__file__).parents[2]
OLDEST_PYTHON = Path(os.environ.get('AGENTLEDGER_OLDEST_PYTHON', ROOT / '.venv-oldest' / 'bin' / 'python'))
OLD_AGENTLEDGER = '847b7ff893488d1ded1cf905861ad4e2c67b39a6'
"""The last commit of agentledger 0.1.0 (journal hash format 1, no request ordinal)."""
RUNS = 4


@dataclass
class OldWorker:
    """How to start the worker the fleet upgrades from: an interpreter and the directory it runs in."""

    python: Path
    cwd: Path


def _old_worker(upgrade: str, tmp_path: Path) -> OldWorker:
    if upgrade == 'pydantic-ai':
        if not OLDEST_PYTHON.exists():
            pytest.fail(
                f'no interpreter with the oldest supported pydantic-ai at {OLDEST_PYTHON}: run bootstrap.sh --oldest'
            )
        assert _release(OLDEST_PYTHON) != version('pydantic-ai-slim'), 'the two workers must run different releases'
        return OldWorker(OLDEST_PYTHON, ROOT)
    # agentledger 0.1.0 next to this checkout's tests (the worker helper and the agents), on this interpreter.
    old = tmp_path / 'agentledger-0.1.0'
    old.mkdir()
    archive = subprocess.run(['git', 'archive', OLD_AGENTLEDGER, 'agentledger'], cwd=ROOT, capture_output=True)
    assert archive.returncode == 0, f'agentledger 0.1.0 is not in this clone: {archive.stderr.decode()}'
    subprocess.run(['tar', '-x', '-C', str(old)], input=archive.stdout, check=True)
    (old / 'tests').symlink_to(ROOT / 'tests')
    return OldWorker(Path(sys.executable), old)


def _release(python: Path) -> str:
    done = subprocess.run(
        [str(python), '-c', 'from importlib.metadata import version; print(version("pydantic-ai-slim"))'],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture(autouse=True)
def counters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(journal_agents.CALLS_ENV, str(tmp_path / 'calls.txt'))
    monkeypatch.setenv(journal_agents.TARGET_ENV, str(tmp_path / 'target.jsonl'))


@pytest.mark.parametrize('upgrade', ['pydantic-ai', 'agentledger'])
async def test_runs_started_on_an_old_worker_finish_on_this_one(
    temporal_env: WorkflowEnvironment, tmp_path: Path, upgrade: str
) -> None:
    old = _old_worker(upgrade, tmp_path)

    host = temporal_env.client.service_client.config.target_host
    task_queue = f'upgrade-{uuid.uuid4().hex[:8]}'
    url = f'sqlite:///{tmp_path / "runs.db"}'
    old_worker = subprocess.Popen(
        [str(old.python), '-m', 'tests.helpers.worker_process', host, task_queue, url, 'payments'],
        cwd=old.cwd,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, journal_agents.CRASH_ENV: f'after_final_model_request:{tmp_path / "fired"}'},
    )
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        try:
            assert old_worker.stdout is not None
            assert old_worker.stdout.readline().strip() == 'ready'
            starter = await Client.connect(host, plugins=[LedgerPlugin(ledger, agents=[payments_agent])])
            workflow_ids = [f'upgrade-{uuid.uuid4().hex[:8]}' for _ in range(RUNS)]
            for workflow_id in workflow_ids:
                await agentledger.start(
                    starter, payments_agent, 'pay', task_queue=task_queue, workflow_id=workflow_id, deps=PaymentDeps()
                )
            assert await asyncio.to_thread(old_worker.wait, 60) == 1, (
                'the old worker should have died at its fault point'
            )
        finally:
            if old_worker.poll() is None:
                old_worker.kill()
                old_worker.wait()
        answered_before = provider_calls()
        assert answered_before >= 2, 'the old worker answered at least one whole run before it died'
        journaled_before = len(await ledger.records(JOURNAL))
        # An answer the provider gave in the moment between its reply and the journal write (another run's
        # request in flight when the worker died) was never journaled: the only answers that may be paid twice.
        unjournaled = answered_before - journaled_before

        client = await Client.connect(host, plugins=[LedgerPlugin(ledger, agents=[payments_agent])])
        async with Worker(client, task_queue=task_queue):
            await asyncio.wait_for(asyncio.gather(*(client.get_workflow_handle(w).result() for w in workflow_ids)), 120)

        # Each run asked the provider twice: every answer journaled before the switch and not yet reported to
        # Temporal (the one at the fault point, and any other in flight when the worker died) was replayed.
        assert unjournaled >= 0 and provider_calls() == 2 * RUNS + unjournaled
        assert sorted(c['amount'] for c in performed()) == [5] * RUNS
        replayed = 0
        for workflow_id in workflow_ids:
            handle = client.get_workflow_handle(workflow_id)
            history = await handle.fetch_history()
            assert not [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
            [run] = await ledger.runs(workflow_id=workflow_id)
            assert run.status == 'completed'
            usage = total_usage(await ledger.steps(run.run_id))
            assert usage.requests == 2
            replayed += usage.replayed_requests
            report = await reconcile_run(client, ledger, run.run_id)
            assert report.clean, report
        assert 1 <= replayed <= journaled_before
