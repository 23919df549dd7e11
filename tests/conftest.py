"""Shared fixtures: one real Temporal dev server for the whole suite, a worker per test, and a final check.

Every ledger `serve()` runs a worker for is remembered, with its client. At the end of the session,
before the dev server stops, every run of every one of those ledgers is reconciled against Temporal's
history in report mode (`agentledger.reconcile_ledger(repair=False)`): the session fails if any row is
missing, divergent, orphan or duplicate, unless a test declared that discrepancy with
`expect_discrepancy` (a test that breaks the ledger on purpose) and it is exactly what was found.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from pydantic_ai.agent.abstract import AbstractAgent
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentledger import Ledger, LedgerPlugin, reconcile_ledger
from agentledger.cli import start_dev_server

# The shared helpers assert too: rewrite them before this module imports them, for readable failures.
pytest.register_assert_rewrite('tests.helpers')

from .helpers.ledgers import BACKENDS, make_ledger  # noqa: E402

pytest_plugins = ['tests.helpers.s3_server']

# Property tests judge behaviour, not speed: on a loaded machine (the suite shares it with dev servers and
# workers) Hypothesis' timing checks fail examples that are merely slow.
settings.register_profile('agentledger', deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile('agentledger')


@dataclass
class _Checked:
    """A ledger some test served, the client to read histories with, and the discrepancies declared for it."""

    ledger: Ledger
    client: Client
    expected: dict[tuple[str, str], str] = field(default_factory=dict)
    """(run id, category) -> why the test made it so."""
    done: bool = False


_served: dict[int, _Checked] = {}


def check_at_session_end(ledger: Ledger, client: Client) -> None:
    """Check a ledger that workers outside `serve()` wrote (worker processes) at the end of the session too."""
    _served.setdefault(id(ledger), _Checked(ledger, client))


def expect_discrepancy(ledger: Ledger, run_id: str, category: str, why: str) -> None:
    """Declare that `run_id` of `ledger` ends the session with `category` findings on purpose (and say why).

    Call it once the `serve()` that recorded the run has ended (that is when the ledger is remembered).

    The final check then requires exactly the declared categories for that run: a declared discrepancy
    that does not happen fails the session too, so a declaration cannot hide anything else.
    """
    _served[id(ledger)].expected[(run_id, category)] = why


async def check_served_ledgers(which: Callable[[Ledger], bool] = lambda ledger: True) -> None:
    """Reconcile (report only) every run of every served ledger `which` selects; fail on undeclared findings."""
    problems: list[str] = []
    for checked in _served.values():
        if checked.done or not which(checked.ledger):
            continue
        checked.done = True
        async with checked.ledger:
            # Histories are decoded with this ledger's payload storage, whatever client served the runs.
            client = await Client.connect(
                checked.client.service_client.config.target_host,
                namespace=checked.client.namespace,
                plugins=[LedgerPlugin(checked.ledger)],
            )
            reports = await reconcile_ledger(client, checked.ledger, repair=False)
        found = {(report.run_id, finding.category) for report in reports for finding in report.findings}
        for report in reports:
            for finding in report.findings:
                if (report.run_id, finding.category) not in checked.expected:
                    problems.append(
                        f'{checked.ledger.url} run {report.run_id}: {finding.category} {finding.row} '
                        f'{finding.key}: {finding.reason}'
                    )
        for (run_id, category), why in checked.expected.items():
            if (run_id, category) not in found:
                problems.append(f'{checked.ledger.url} run {run_id}: declared {category} ({why}) was not found')
    assert not problems, 'the ledger disagrees with Temporal history:\n' + '\n'.join(problems)


@pytest.fixture(params=BACKENDS)
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    """An open ledger of every backend in turn (`tests/helpers/ledgers.py` lists them)."""
    async with make_ledger(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture(scope='session')
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal CLI dev server (built from the Go module proxy when missing); checks served ledgers at the end."""
    env = await start_dev_server()
    try:
        yield env
        await check_served_ledgers()
    finally:
        await env.shutdown()


@dataclass
class Served:
    """A running worker: its client (with the plugin), task queue and ledger."""

    client: Client
    task_queue: str
    ledger: Ledger


@asynccontextmanager
async def serve(
    env: WorkflowEnvironment,
    ledger: Ledger,
    agents: Sequence[AbstractAgent[Any, Any]],
    *,
    plugin_options: dict[str, Any] | None = None,
    task_queue: str | None = None,
    **worker_options: Any,
) -> AsyncIterator[Served]:
    """Connect a client with `LedgerPlugin` and run a worker for `agents` on `task_queue` (by default a fresh one).

    The ledger is remembered for the end-of-session check against Temporal's history.
    """
    plugin = LedgerPlugin(ledger, agents=agents, **(plugin_options or {}))
    client = await Client.connect(env.client.service_client.config.target_host, plugins=[plugin])
    task_queue = task_queue or f'tq-{uuid.uuid4().hex[:8]}'
    async with Worker(client, task_queue=task_queue, **worker_options):
        yield Served(client, task_queue, ledger)
    # Only a worker that ran (its ledger opened) and a test that got through are checked.
    check_at_session_end(ledger, client)
