"""End-to-end on a real dev server: the model-call journal and once-only effects across worker kills and resets.

The fake provider and the fake payment system count what they do in files (see `journal_agents`),
so calls made by a worker subprocess that is killed count too.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import agentledger
from agentledger import Ledger, LedgerPlugin, RetryPolicy, SqliteLedger
from agentledger.cli import main as cli
from agentledger.errors import LedgerUnavailableError
from agentledger.ledger.backends.memory import MemoryStore
from agentledger.model import KeyedRecord
from agentledger.model._rules import total_usage

from ..helpers import journal_agents
from ..helpers.checks import temporal_reset
from ..helpers.journal_agents import PaymentDeps, payments_agent, performed, provider_calls
from ..helpers.own_workflows import PaymentsWorkflow
from ..helpers.s3_server import shared_s3_server

ROOT = Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def counters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(journal_agents.CALLS_ENV, str(tmp_path / 'calls.txt'))
    monkeypatch.setenv(journal_agents.TARGET_ENV, str(tmp_path / 'target.jsonl'))


@dataclass
class Store:
    """An open ledger, the URL a worker subprocess opens it by, and the environment that subprocess needs."""

    ledger: Ledger
    url: str
    env: dict[str, str]


@asynccontextmanager
async def store(backend: str, tmp_path: Path) -> AsyncIterator[Store]:
    if backend == 'sqlite':
        async with SqliteLedger(tmp_path / 'runs.db') as ledger:
            yield Store(ledger, f'sqlite:///{tmp_path / "runs.db"}', {})
        return
    server = shared_s3_server()
    bucket = server.new_bucket()
    async with server.ledger(bucket) as ledger:
        yield Store(ledger, f's3://{bucket}/agentledger', server.environment())


@contextmanager
def doomed_worker(
    host: str,
    task_queue: str,
    ledger_url: str,
    crash: str,
    *,
    journal: bool = True,
    env: dict[str, str] | None = None,
    agent: str = 'payments',
) -> Iterator[None]:
    """A worker subprocess serving `agent` that exits (`os._exit`) at fault point `crash`; it must have exited when
    the block ends."""
    env = {**os.environ, **(env or {}), journal_agents.CRASH_ENV: crash}
    if not journal:
        env[journal_agents.NO_JOURNAL_ENV] = '1'
    process = subprocess.Popen(
        [sys.executable, '-m', 'tests.helpers.worker_process', host, task_queue, ledger_url, agent],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == 'ready'
        yield
        assert process.wait(timeout=60) == 1, 'the worker should have died at its fault point'
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@asynccontextmanager
async def worker(
    env: WorkflowEnvironment, ledger: Ledger, task_queue: str, *, journal: bool = True
) -> AsyncIterator[Client]:
    plugin = LedgerPlugin(ledger, agents=[payments_agent], model_journal=journal)
    client = await Client.connect(env.client.service_client.config.target_host, plugins=[plugin])
    async with Worker(
        client, task_queue=task_queue, workflows=[PaymentsWorkflow], interceptors=[journal_agents.CrashPoints()]
    ):
        yield client


async def start_payment(
    env: WorkflowEnvironment,
    ledger: Ledger,
    task_queue: str,
    *,
    deps: PaymentDeps | None = None,
    workflow_id: str | None = None,
    via: str = 'AgentRunWorkflow',
) -> str:
    """Start a `payments` run (the worker that serves it may be a subprocess); return its workflow id.

    `via='PaymentsWorkflow'` runs the agent inside that user workflow instead of an `AgentRunWorkflow`.
    """
    client = await Client.connect(
        env.client.service_client.config.target_host, plugins=[LedgerPlugin(ledger, agents=[payments_agent])]
    )
    workflow_id = workflow_id or f'payments-{uuid.uuid4().hex[:8]}'
    if via == 'PaymentsWorkflow':
        await client.start_workflow(PaymentsWorkflow.run, deps or PaymentDeps(), id=workflow_id, task_queue=task_queue)
        return workflow_id
    await agentledger.start(
        client, payments_agent, 'pay', task_queue=task_queue, workflow_id=workflow_id, deps=deps or PaymentDeps()
    )
    return workflow_id


async def finished_run_id(client: Client, ledger: Ledger, workflow_id: str) -> str:
    await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), 60)
    [run] = await ledger.runs(workflow_id=workflow_id)
    assert run.status == 'completed'
    return run.run_id


@pytest.mark.parametrize(
    ('backend', 'journal', 'via'),
    [
        ('sqlite', True, 'AgentRunWorkflow'),
        ('sqlite', False, 'AgentRunWorkflow'),
        ('s3', True, 'AgentRunWorkflow'),
        ('sqlite', True, 'PaymentsWorkflow'),
    ],
    ids=['sqlite', 'no-journal', 's3', 'own-workflow'],
)
async def test_worker_killed_after_the_provider_answered_replays_the_journaled_response(
    temporal_env: WorkflowEnvironment,
    tmp_path: Path,
    backend: str,
    journal: bool,
    via: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The worker dies after the provider answered and the journal holds the response, before Temporal
    hears of it: the retry replays the response (the provider is called once per step); without the
    journal it calls the provider again."""
    host = temporal_env.client.service_client.config.target_host
    task_queue = f'journal-{uuid.uuid4().hex[:8]}'
    async with store(backend, tmp_path) as stored:
        ledger = stored.ledger
        with doomed_worker(
            host, task_queue, stored.url, f'after_model_request:{tmp_path / "fired"}', journal=journal, env=stored.env
        ):
            workflow_id = await start_payment(temporal_env, ledger, task_queue, via=via)
        assert provider_calls() == 1
        async with worker(temporal_env, ledger, task_queue, journal=journal) as client:
            run_id = await finished_run_id(client, ledger, workflow_id)

        assert provider_calls() == (2 if journal else 3)
        assert len(performed()) == 1
        first = [e for e in await ledger.events(run_id) if e.step == 1 and e.kind.startswith('model_request')]
        # Attempt 1 recorded its end (the worker died after that, before reporting it): abandoned, billed.
        assert [(e.kind, e.attempt, e.state, e.replayed) for e in first] == [
            ('model_request_started', 1, 'abandoned', False),
            ('model_request_completed', 1, 'abandoned', False),
            ('model_request_started', 2, 'accepted', False),
            ('model_request_completed', 2, 'accepted', journal),
        ]
        calls = total_usage(await ledger.steps(run_id))
        assert (calls.requests, calls.replayed_requests, calls.billed_requests) == (2, 1, 1) if journal else (2, 0, 2)

        with pytest.MonkeyPatch.context() as patch:
            for name, value in stored.env.items():
                patch.setenv(name, value)
            assert await asyncio.to_thread(cli, ['show', run_id, '--ledger', stored.url]) == 0
        shown = capsys.readouterr().out
        # Billed: every answer the provider gave, the one of the killed attempt too (the journal replayed it).
        if journal:
            assert '2 billed' in shown and '1 replayed from the journal' in shown and 'tokens replayed' in shown
        else:
            assert '3 billed' in shown and '0 replayed' in shown and 'tokens replayed' not in shown


async def test_attempt_that_raised_after_the_answer_replays_it(
    temporal_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attempt that fails after the provider answered (and the journal recorded it) is retried from the journal."""
    monkeypatch.setenv(journal_agents.CRASH_ENV, f'raise_after_model_request:{tmp_path / "fired"}')
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        task_queue = f'raise-{uuid.uuid4().hex[:8]}'
        async with worker(temporal_env, ledger, task_queue) as client:
            run_id = await finished_run_id(client, ledger, await start_payment(temporal_env, ledger, task_queue))
        assert (provider_calls(), len(performed())) == (2, 1)
        [step] = [s for s in await ledger.steps(run_id) if s.kind == 'model_request' and s.step == 1]
        assert (step.attempts, step.accepted_attempt, step.replayed) == (2, 2, True)


@pytest.mark.parametrize(
    ('backend', 'via'),
    [('sqlite', 'AgentRunWorkflow'), ('s3', 'AgentRunWorkflow'), ('sqlite', 'PaymentsWorkflow')],
    ids=['sqlite', 's3', 'own-workflow'],
)
async def test_once_effect_across_a_worker_killed_inside_it_reconciles_with_the_target(
    temporal_env: WorkflowEnvironment, tmp_path: Path, backend: str, via: str
) -> None:
    """The worker dies right after the target charged: the retry asks the target and does not charge again."""
    host = temporal_env.client.service_client.config.target_host
    task_queue = f'effects-{uuid.uuid4().hex[:8]}'
    async with store(backend, tmp_path) as stored:
        ledger = stored.ledger
        with doomed_worker(host, task_queue, stored.url, f'inside_effect:{tmp_path / "fired"}', env=stored.env):
            workflow_id = await start_payment(temporal_env, ledger, task_queue, via=via)
        [started] = await ledger.effects(workflow_id=workflow_id)
        assert started.status == 'started' and len(performed()) == 1
        async with worker(temporal_env, ledger, task_queue) as client:
            run_id = await finished_run_id(client, ledger, workflow_id)
        assert [c['key'] for c in performed()] == [started.key]
        [effect] = await ledger.effects(run_id=run_id, workflow_id=workflow_id)
        assert (effect.status, effect.resolution, effect.result) == (
            'done',
            'reconciled',
            {'charge_id': 'ch-reconciled', 'amount': 5},
        )
        assert effect.key == f'{workflow_id}/{effect.tool_call_id}/charge'


async def test_once_effect_without_reconcile_waits_for_agentledger_resolve(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without reconcile the effect becomes unknown and the tool call fails until an operator resolves it."""
    path = tmp_path / 'runs.db'
    url = f'sqlite:///{path}'
    host = temporal_env.client.service_client.config.target_host
    task_queue = f'effects-{uuid.uuid4().hex[:8]}'
    async with SqliteLedger(path) as ledger:
        with doomed_worker(host, task_queue, url, f'inside_effect:{tmp_path / "fired"}'):
            workflow_id = await start_payment(temporal_env, ledger, task_queue, deps=PaymentDeps(reconcile=False))
        async with worker(temporal_env, ledger, task_queue) as client:

            async def unknown() -> str:
                while not (found := await ledger.effects(workflow_id=workflow_id, status='unknown')):
                    await asyncio.sleep(0.2)
                return found[0].key

            key = await asyncio.wait_for(unknown(), 30)
            assert await asyncio.to_thread(cli, ['effects', '--unknown', '--ledger', url]) == 0
            assert key in capsys.readouterr().out
            # The tool call keeps failing with EffectUnknownError (retryable) and never charges again.
            await asyncio.sleep(1.5)
            assert len(performed()) == 1
            assert (
                await asyncio.to_thread(
                    cli, ['resolve', key, '--outcome', 'not-done', '--result', '{}', '--ledger', url]
                )
                == 1
            )
            assert '--result goes with --outcome done' in capsys.readouterr().err
            result = json.dumps({'charge_id': 'ch-by-hand', 'amount': 5})
            assert (
                await asyncio.to_thread(cli, ['resolve', key, '--outcome', 'done', '--result', result, '--ledger', url])
                == 0
            )
            run_id = await finished_run_id(client, ledger, workflow_id)

        assert len(performed()) == 1
        effect = await ledger.effect(key)
        assert (effect.status, effect.resolution, effect.result) == ('done', 'operator', json.loads(result))
        failures = [
            e.error.type for e in await ledger.events(run_id) if e.kind == 'tool_call_failed' and e.error is not None
        ]
        # An attempt that starts while the dead holder's lease is still live waits for it and, when its own
        # deadline comes first, fails EffectBusyError; once the lease has run out every attempt fails
        # EffectUnknownError. Which of the two the first retry meets depends on when Temporal retries it.
        busy = failures.count('EffectBusyError')
        assert failures[busy:] and set(failures[busy:]) == {'EffectUnknownError'}
        assert failures[:busy] == ['EffectBusyError'] * busy
        assert await asyncio.to_thread(cli, ['show', run_id, '--ledger', url]) == 0
        shown = capsys.readouterr().out
        assert 'Once-only effects' in shown and 'operator' in shown
        assert await asyncio.to_thread(cli, ['resolve', key, '--outcome', 'done', '--ledger', url]) == 1
        assert 'already done' in capsys.readouterr().err


@pytest.mark.parametrize(
    ('journal', 'via'),
    [(True, 'AgentRunWorkflow'), (False, 'AgentRunWorkflow'), (True, 'PaymentsWorkflow')],
    ids=['journal', 'no-journal', 'own-workflow'],
)
async def test_reset_to_the_first_workflow_task_repeats_no_effect(
    temporal_env: WorkflowEnvironment, tmp_path: Path, journal: bool, via: str
) -> None:
    """C11/C14: a completed run reset to its first workflow task runs again, as one ledger run naming both
    Temporal runs. With the journal the model requests replay (same tool_call_id), and so does the tool
    call's result: the effect is not performed again and nothing is billed again. Without it the provider
    makes up a new tool_call_id and the effect is repeated: the reason the journal exists."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        task_queue = f'reset-{uuid.uuid4().hex[:8]}'
        async with worker(temporal_env, ledger, task_queue, journal=journal) as client:
            workflow_id = await start_payment(temporal_env, ledger, task_queue, via=via)
            run_id = await finished_run_id(client, ledger, workflow_id)
            first_run = (await ledger.run(run_id)).temporal_run_id
            assert (provider_calls(), len(performed())) == (2, 1)

            await temporal_reset(temporal_env, workflow_id, ['--type', 'FirstWorkflowTask'], 'reset attack')
            description = await client.get_workflow_handle(workflow_id).describe()
            assert description.run_id != first_run
            await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), 60)

        record = await ledger.run(run_id)
        assert record.temporal_run_ids == (first_run, description.run_id)
        if journal:
            assert (provider_calls(), len(performed())) == (2, 1)
            replayed = [e for e in await ledger.events(run_id) if e.replayed and e.kind.endswith('_completed')]
            assert [e.temporal_run_id for e in replayed] == [description.run_id] * 3
            # Both model requests, and the charge between them: its result comes from the tool-call journal.
            assert sorted(e.kind for e in replayed) == ['model_request_completed'] * 2 + ['tool_call_completed']
        else:
            assert (provider_calls(), len(performed())) == (4, 2)


@pytest.mark.parametrize('journal', [True, False], ids=['journal', 'no-journal'])
async def test_restart_of_a_failed_workflow_id_replays_its_answers_and_repeats_no_effect(
    temporal_env: WorkflowEnvironment, tmp_path: Path, journal: bool
) -> None:
    """The tool fails for good after charging; starting the workflow id again resumes from the snapshot before
    the model response that made the call. With the journal that response is replayed (same tool_call_id), so
    the charge is found done and the provider is not paid again; without it the charge is repeated."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        task_queue = f'restart-{uuid.uuid4().hex[:8]}'
        async with worker(temporal_env, ledger, task_queue, journal=journal) as client:
            workflow_id = await start_payment(
                temporal_env, ledger, task_queue, deps=PaymentDeps(fail_after_charge=True)
            )
            with pytest.raises(WorkflowFailureError):
                await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), 60)
            assert (provider_calls(), len(performed())) == (1, 1)

            await start_payment(temporal_env, ledger, task_queue, workflow_id=workflow_id)
            await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), 60)

        resumed, failed = await ledger.runs(workflow_id=workflow_id)
        assert resumed.forked_from is not None and resumed.forked_from.reason == 'restart'
        assert resumed.forked_from.run_id == failed.run_id
        if journal:
            assert (provider_calls(), len(performed())) == (2, 1)
            [replayed] = [s for s in await ledger.steps(resumed.run_id) if s.replayed]
            assert replayed.step == 1
        else:
            assert (provider_calls(), len(performed())) == (3, 2)


async def test_a_new_run_reusing_a_workflow_id_never_replays_an_older_runs_answers(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The same prompt under the same workflow id, after the first run completed, is a new run: it is answered
    by the provider again (the journal keys on the execution chain's ledger run, not on the workflow id alone)."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        task_queue = f'again-{uuid.uuid4().hex[:8]}'
        async with worker(temporal_env, ledger, task_queue) as client:
            workflow_id = await start_payment(temporal_env, ledger, task_queue)
            await finished_run_id(client, ledger, workflow_id)
            await start_payment(temporal_env, ledger, task_queue, workflow_id=workflow_id)
            await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), 60)
        second, first = await ledger.runs(workflow_id=workflow_id)
        assert second.forked_from is None and second.run_id != first.run_id
        assert provider_calls() == 4
        assert not any(s.replayed for s in await ledger.steps(second.run_id))


class FlakyJournalStore(MemoryStore):
    """A memory store whose first journal writes fail as an unreachable backend's would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def put_record(self, record: KeyedRecord, expected_version: str | None) -> str | None:
        if record.namespace == 'journal' and self.failures > 0:
            self.failures -= 1
            raise LedgerUnavailableError('journal backend unreachable')
        return await super().put_record(record, expected_version)


class FlakyJournal(Ledger):
    def __init__(self, failures: int) -> None:
        super().__init__(
            FlakyJournalStore(failures), retry=RetryPolicy(attempts=2, initial_backoff_s=0.01, max_backoff_s=0.01)
        )


async def test_journal_write_that_fails_fails_the_attempt_retryably(temporal_env: WorkflowEnvironment) -> None:
    """A journal write that fails after the ledger's own retries fails the attempt with the retryable
    LedgerUnavailableError, like any other ledger write; Temporal's retry then succeeds (and pays again)."""
    ledger = FlakyJournal(failures=2)
    task_queue = f'flaky-{uuid.uuid4().hex[:8]}'
    async with worker(temporal_env, ledger, task_queue) as client:
        run_id = await finished_run_id(client, ledger, await start_payment(temporal_env, ledger, task_queue))
    assert provider_calls() == 3
    [failed] = [e for e in await ledger.events(run_id) if e.step == 1 and e.kind == 'model_request_failed']
    assert failed.attempt == 1 and failed.error is not None
    assert (failed.error.type, failed.error.retryable) == ('LedgerUnavailableError', True)
    assert 'journal backend unreachable' in failed.error.message
    assert len(await ledger.records('journal')) == 2


async def test_zombie_attempt_and_its_retry_do_not_both_act(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """Attempt 1 outlives its timeout inside the effect, renewing its lease; attempt 2 finds it held by a live
    attempt and waits instead of acting or guessing (no reconcile here); the zombie lands and records done, and
    attempt 2 returns its result: one charge, and no attempt failed."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        task_queue = f'zombie-{uuid.uuid4().hex[:8]}'
        async with worker(temporal_env, ledger, task_queue) as client:
            deps = PaymentDeps(reconcile=False, zombie=True)
            workflow_id = await start_payment(temporal_env, ledger, task_queue, deps=deps)
            run_id = await finished_run_id(client, ledger, workflow_id)
        assert len(performed()) == 1
        [effect] = await ledger.effects(workflow_id=workflow_id)
        assert (effect.status, effect.resolution, effect.attempts) == ('done', 'acted', 1)
        tool = [e for e in await ledger.events(run_id) if e.tool_name == 'charge']
        # The zombie's own end lands late and is abandoned; attempt 2 waited for it and returned its result.
        assert [(e.attempt, e.state) for e in tool if e.kind == 'tool_call_completed' and e.attempt == 1] == [
            (1, 'abandoned')
        ]
        assert not [e for e in tool if e.kind == 'tool_call_failed']
        [accepted] = [e for e in tool if e.kind == 'tool_call_completed' and e.state == 'accepted']
        assert accepted.attempt == 2
