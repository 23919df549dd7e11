"""End-to-end: one usage per run, whichever way it went (parked, replayed, restarted, continued as new).

On every path the workflow's result (or failure details), the ledger's run record, the sum of its
step events, `agentledger show` and `agentledger runs` report the same usage, and what it says was
billed is what the scripted provider was asked (its calls and tokens are counted in a file).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger import Ledger, SqliteLedger
from agentledger.cli import main as cli
from agentledger.model import Usage
from agentledger.workflows import AbandonRequest, ResumeRequest
from agentledger.workflows._types import AgentRunOutput, RunFailureDetails

from ..conftest import Served, serve
from ..helpers import journal_agents
from ..helpers.checks import temporal_reset
from ..helpers.journal_agents import MeteredDeps, metered_agent, metered_boss, metered_calls
from .test_cli import fact, line_with
from .test_e2e_journal import doomed_worker


@pytest.fixture(autouse=True)
def counters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(journal_agents.CALLS_ENV, str(tmp_path / 'calls.txt'))


@dataclass
class Reported:
    """A run whose usage is checked: its ledger run id, what its workflow reported, what the provider billed it."""

    run_id: str
    usage: Usage | None
    """The workflow result's usage or its failure details' (`None` while the run is parked)."""
    calls: list[tuple[int, int]]
    """The provider calls billed to the run (and to its delegates): input and output tokens of each."""
    delegates: tuple[str, ...] = ()
    """The ledger run ids of the run's delegates, whose usage its own includes."""


Checked = Callable[[Reported], Awaitable[None]]
"""Checks a run's usage on the way (a parked run, before it goes on)."""


def failure_usage(error: WorkflowFailureError) -> Usage:
    assert isinstance(error.cause, ApplicationError)
    details = RunFailureDetails.from_details(error.cause.details)
    assert details is not None
    return details.usage


async def until_parked(ledger: Ledger, workflow_id: str) -> str:
    async def poll() -> str:
        while True:
            runs = await ledger.runs(workflow_id=workflow_id)
            if runs and runs[0].status == 'parked':
                return runs[0].run_id
            await asyncio.sleep(0.1)

    return await asyncio.wait_for(poll(), 30)


async def parked(served: Served, tmp_path: Path, workflow_id: str) -> agentledger.AgentRunHandle[str]:
    """A 3-step run whose tool breaks at step 2: it parks after two billed model requests."""
    return await agentledger.start(
        served.client, metered_agent, '3', task_queue=served.task_queue, workflow_id=workflow_id,
        deps=MeteredDeps(fail_once_at=2, marker=str(tmp_path / 'broke')), park_on_failure=True,
    )  # fmt: skip


async def parked_still(env: WorkflowEnvironment, ledger: Ledger, tmp_path: Path, checked: Checked) -> list[Reported]:
    workflow_id = f'usage-{uuid.uuid4().hex[:8]}'
    async with serve(env, ledger, [metered_agent]) as served:
        handle = await parked(served, tmp_path, workflow_id)
        run_id = await until_parked(ledger, workflow_id)
        assert len(metered_calls()) == 2
        still = Reported(run_id, None, metered_calls())
        # Checked while parked; abandoned, it fails with the same usage.
        await checked(still)
        await handle.workflow_handle.execute_update('abandon', AbandonRequest())
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    return [Reported(run_id, failure_usage(failed.value), metered_calls())]


async def parked_resumed(env: WorkflowEnvironment, ledger: Ledger, tmp_path: Path, checked: Checked) -> list[Reported]:
    workflow_id = f'usage-{uuid.uuid4().hex[:8]}'
    async with serve(env, ledger, [metered_agent]) as served:
        handle = await parked(served, tmp_path, workflow_id)
        await checked(Reported(await until_parked(ledger, workflow_id), None, metered_calls()))
        await handle.workflow_handle.execute_update('resume', ResumeRequest())
        result = await asyncio.wait_for(handle.result(), 60)
    return [Reported(result.run_id, result.usage, metered_calls())]


async def replayed(env: WorkflowEnvironment, ledger: Ledger, tmp_path: Path, checked: Checked) -> list[Reported]:
    """The worker dies after the provider answered step 1 and the journal kept the answer: the retry replays it."""
    host = env.client.service_client.config.target_host
    task_queue = f'usage-{uuid.uuid4().hex[:8]}'
    url = f'sqlite:///{tmp_path / "runs.db"}'
    with doomed_worker(host, task_queue, url, f'after_model_request:{tmp_path / "fired"}', agent='metered'):
        async with serve(env, ledger, [], task_queue=f'{task_queue}-client') as served:
            handle = await agentledger.start(
                served.client, metered_agent, '2', task_queue=task_queue, deps=MeteredDeps()
            )
    async with serve(env, ledger, [metered_agent], task_queue=task_queue):
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.usage.replayed_requests == 1
    return [Reported(result.run_id, result.usage, metered_calls())]


async def restart(env: WorkflowEnvironment, ledger: Ledger, tmp_path: Path, checked: Checked) -> list[Reported]:
    """The run fails for good at step 2; a new run of its workflow id restarts from its latest valid snapshot."""
    workflow_id = f'usage-{uuid.uuid4().hex[:8]}'
    deps = MeteredDeps(fail_once_at=2, marker=str(tmp_path / 'broke'))
    async with serve(env, ledger, [metered_agent]) as served:
        first = await agentledger.start(
            served.client, metered_agent, '3', task_queue=served.task_queue, workflow_id=workflow_id, deps=deps
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(first.result(), 60)
        failed_calls = metered_calls()
        again = await agentledger.start(
            served.client, metered_agent, '3', task_queue=served.task_queue, workflow_id=workflow_id, deps=deps
        )
        result = await asyncio.wait_for(again.result(), 60)
    record = await ledger.run(result.run_id)
    assert record.forked_from is not None and record.forked_from.reason == 'restart'
    assert record.forked_from.run_id == first.run_id
    # The restart's own usage; the failed run keeps what it spent. Its replayed answer was paid by the failed run.
    assert result.usage.replayed_requests >= 1
    return [
        Reported(first.run_id, failure_usage(failed.value), failed_calls),
        Reported(result.run_id, result.usage, metered_calls()[len(failed_calls) :]),
    ]


async def continued_as_new(
    env: WorkflowEnvironment, ledger: Ledger, tmp_path: Path, checked: Checked
) -> list[Reported]:
    async with serve(env, ledger, [metered_agent]) as served:
        handle = await agentledger.start(
            served.client, metered_agent, '8', task_queue=served.task_queue, deps=MeteredDeps(), history_event_limit=30
        )
        result = await asyncio.wait_for(handle.result(), 60)
    assert len((await ledger.run(result.run_id)).temporal_run_ids) > 1
    return [Reported(result.run_id, result.usage, metered_calls())]


async def reset_twice(client: Client, env: WorkflowEnvironment, workflow_id: str) -> AgentRunOutput:
    """Reset a completed run to its first workflow task, twice: each new run replays the answers it had."""
    for reason in ('usage once', 'usage twice'):
        await temporal_reset(env, workflow_id, ['--type', 'FirstWorkflowTask'], reason)
        output = await asyncio.wait_for(
            client.get_workflow_handle(workflow_id, result_type=AgentRunOutput).result(), 60
        )
    return output


async def reset(env: WorkflowEnvironment, ledger: Ledger, tmp_path: Path, checked: Checked) -> list[Reported]:
    """A completed run reset twice: one ledger run, its answers replayed, nothing billed again."""
    async with serve(env, ledger, [metered_agent]) as served:
        handle = await agentledger.start(
            served.client, metered_agent, '2', task_queue=served.task_queue, deps=MeteredDeps()
        )
        first = await asyncio.wait_for(handle.result(), 60)
        await checked(Reported(first.run_id, first.usage, metered_calls()))
        result = await reset_twice(served.client, env, handle.workflow_id)
    assert result.run_id == first.run_id and len((await ledger.run(result.run_id)).temporal_run_ids) == 3
    assert (result.usage.requests, result.usage.replayed_requests, len(metered_calls())) == (3, 3, 3)
    return [Reported(result.run_id, result.usage, metered_calls())]


async def delegated(env: WorkflowEnvironment, ledger: Ledger, tmp_path: Path, checked: Checked) -> list[Reported]:
    """An orchestrator whose delegate runs as its child: its usage includes the child's, billed once in all."""
    async with serve(env, ledger, [metered_boss]) as served:
        handle = await agentledger.start(served.client, metered_boss, 'delegate', task_queue=served.task_queue)
        result = await asyncio.wait_for(handle.result(), 60)
    [child] = [run for run in await ledger.runs() if run.parent_run_id == result.run_id]
    assert (result.usage.requests, child.usage.requests, len(metered_calls())) == (5, 3, 5)
    return [
        Reported(result.run_id, result.usage, metered_calls(), (child.run_id,)),
        Reported(child.run_id, None, metered_calls('metered')),
    ]


async def delegated_reset(env: WorkflowEnvironment, ledger: Ledger, tmp_path: Path, checked: Checked) -> list[Reported]:
    """An orchestrator reset twice after its delegate ran: the child is found again, not run again; each step of
    the orchestrator keeps one accepted attempt though the reset run schedules one more activity."""
    async with serve(env, ledger, [metered_boss]) as served:
        handle = await agentledger.start(served.client, metered_boss, 'delegate', task_queue=served.task_queue)
        await asyncio.wait_for(handle.result(), 60)
        result = await reset_twice(served.client, env, handle.workflow_id)
    [child] = [run for run in await ledger.runs() if run.parent_run_id == result.run_id]
    assert len(metered_calls()) == 5
    steps = await ledger.steps(result.run_id)
    accepted = Counter((s.kind, s.step, s.tool_call_id) for s in steps if s.accepted_attempt is not None)
    assert accepted and set(accepted.values()) == {1}
    return [
        Reported(result.run_id, result.usage, metered_calls(), (child.run_id,)),
        Reported(child.run_id, None, metered_calls('metered')),
    ]


PATHS: dict[str, Callable[[WorkflowEnvironment, Ledger, Path, Checked], Awaitable[list[Reported]]]] = {
    'parked-still': parked_still,
    'parked-resumed': parked_resumed,
    'replayed': replayed,
    'restart': restart,
    'continue-as-new': continued_as_new,
    'reset': reset,
    'delegated': delegated,
    'delegated-reset': delegated_reset,
}


async def cli_out(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert await asyncio.to_thread(cli, list(args)) == 0
    return capsys.readouterr().out


async def check(ledger: Ledger, tmp_path: Path, run: Reported, capsys: pytest.CaptureFixture[str]) -> None:
    """One usage in the run's record, its events, the workflow's report and the CLI; and it is what was billed.

    An orchestrator's usage is its own events' plus its delegates' usage (their records are checked too).
    """
    usage = (await ledger.run(run.run_id)).usage
    delegated = sum([(await ledger.run(child)).usage for child in run.delegates], Usage())
    if run.usage is not None:
        assert run.usage == usage
    # What the provider billed the run: every call, the answers the run then lost or replayed too.
    billed = (len(run.calls), sum(i for i, _ in run.calls), sum(o for _, o in run.calls))
    assert (usage.billed_requests, usage.billed_input_tokens, usage.billed_output_tokens) == billed
    # The step events: the requests the run used (accepted), those replayed, every answer the provider gave.
    ends = [e for e in await ledger.events(run.run_id) if e.kind == 'model_request_completed' and e.usage]
    used = [e.usage for e in ends if e.state == 'accepted' and e.usage]
    answered = [e.usage for e in ends if not e.replayed and e.usage]
    replays = [e.usage for e in ends if e.state == 'accepted' and e.replayed and e.usage]
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (
        len(used) + delegated.requests,
        sum(u.input_tokens for u in used) + delegated.input_tokens,
        sum(u.output_tokens for u in used) + delegated.output_tokens,
    )  # fmt: skip
    assert (usage.replayed_requests, usage.replayed_tokens) == (
        len(replays) + delegated.replayed_requests, sum(u.total_tokens for u in replays) + delegated.replayed_tokens
    )  # fmt: skip
    answered_tokens = sum(u.total_tokens for u in answered) + delegated.billed_tokens
    assert (len(answered) + delegated.billed_requests, answered_tokens) == (billed[0], billed[1] + billed[2])
    url = f'sqlite:///{tmp_path / "runs.db"}'
    show = json.loads(await cli_out(capsys, 'show', run.run_id, '--json', '--ledger', url))
    listed = json.loads(await cli_out(capsys, 'runs', '--json', '--ledger', url))
    [row] = [r for r in listed['runs'] if r['run_id'] == run.run_id]
    assert Usage(**show['run']['usage']) == usage == Usage(**row['usage'])
    text = await cli_out(capsys, 'show', run.run_id, '--ledger', url)
    numbers = [int(n) for n in re.findall(r'\d+', fact(text, 'usage'))]
    assert numbers == [usage.requests, usage.total_tokens, usage.input_tokens, usage.output_tokens, usage.tool_calls]
    calls = [int(n) for n in re.findall(r'\d+', fact(text, 'model calls'))]
    assert calls == [usage.billed_requests, usage.billed_tokens, usage.replayed_requests, usage.replayed_tokens]
    table = await cli_out(capsys, 'runs', '--ledger', url)
    assert re.search(rf'\s{usage.requests}\s+{usage.total_tokens}\s', line_with(table, run.run_id))


@pytest.mark.parametrize('path', sorted(PATHS))
async def test_every_reader_reports_the_same_usage_and_it_is_what_was_billed(
    temporal_env: WorkflowEnvironment, tmp_path: Path, path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        runs = await PATHS[path](temporal_env, ledger, tmp_path, lambda run: check(ledger, tmp_path, run, capsys))
        for run in runs:
            await check(ledger, tmp_path, run, capsys)
        # Each billed call is billed to exactly one run without a parent (an orchestrator's include its delegates').
        records = [await ledger.run(run.run_id) for run in runs]
        records = [record for record in records if record.parent_run_id is None]
        assert sum(record.usage.billed_requests for record in records) == len(metered_calls())
