"""The command line's side of approvals: `approve` / `deny` against the dev server, `show` and `runs` of a waiting run.

Each run uses the approval agent (tests/helpers/agents.py): it asks for one `refund` call per
`order:amount` of its prompt, with tool call ids `call-<order>`, and the tool needs approval.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger import Ledger, SqliteLedger, cli
from agentledger.cli._render import RunView, awaiting_calls, render_timeline, run_json
from agentledger.client import AgentRunHandle
from agentledger.model import RunRecord, StepEvent

from ..conftest import Served, serve
from ..helpers.agents import REFUNDS, approval_agent


async def invoke(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`cli.main` in a thread (it runs its own event loop); its exit code, stdout and stderr."""
    code = await asyncio.to_thread(cli.main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def awaiting(ledger: Ledger, handle: AgentRunHandle[Any], count: int, timeout_s: float = 20) -> None:
    """Wait until the ledger says the run awaits approval with `count` calls requested."""

    async def poll() -> None:
        while True:
            # The run may not be in the ledger yet: its run_started write is the worker's first.
            [record] = await ledger.runs(workflow_id=handle.workflow_id) or [None]
            if record is not None and record.status == 'awaiting_approval':
                requested = [e for e in await ledger.events(handle.run_id) if e.kind == 'approval_requested']
                if len(requested) == count:
                    return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout_s)


class Cli:
    """The command line pointed at one served ledger and the dev server."""

    def __init__(self, env: WorkflowEnvironment, path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.ledger_url = f'sqlite:///{path}'
        self.address = env.client.service_client.config.target_host
        self.capsys = capsys

    async def read(self, *argv: str) -> tuple[int, str, str]:
        """A ledger-only command (`show`, `runs`)."""
        return await invoke(self.capsys, *argv, '--ledger', self.ledger_url)

    async def decide(self, *argv: str) -> tuple[int, str, str]:
        """`approve` / `deny`: the ledger and the Temporal server."""
        return await invoke(self.capsys, *argv, '--ledger', self.ledger_url, '--address', self.address)


async def start(served: Served, prompt: str) -> AgentRunHandle[Any]:
    return await agentledger.start(served.client, approval_agent, prompt, task_queue=served.task_queue)


async def test_show_and_runs_list_the_waiting_call_and_approve_completes_the_run(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / 'runs.db'
    shell = Cli(temporal_env, path, capsys)
    async with SqliteLedger(path) as ledger, serve(temporal_env, ledger, [approval_agent]) as served:
        handle = await start(served, 'refund 401:5')
        await awaiting(ledger, handle, 1)
        run_id = handle.run_id
        [pending] = await handle.pending_approvals()

        code, shown, err = await shell.read('show', run_id)
        assert code == 0, err
        assert 'awaiting_approval' in shown and 'a decision on 1 tool call' in shown
        section = shown[shown.index('\nAwaiting approval\n') :]
        assert 'call-401' in section and 'refund' in section and pending.digest in section
        assert '{"amount": 5, "order": 401}' in section
        assert f'    agentledger approve {run_id} call-401 --ledger {shell.ledger_url}\n' in section
        assert f'    agentledger deny {run_id} call-401 --reason "..." --ledger {shell.ledger_url}' in section
        requested = next(line for line in shown.splitlines() if 'approval requested' in line)
        assert f'refund({{"amount": 5, "order": 401}}), digest {pending.digest}' in requested

        code, out, err = await shell.read('show', run_id, '--json')
        assert code == 0, err
        [listed_call] = json.loads(out)['pending_approvals']
        assert datetime.fromisoformat(listed_call.pop('requested_at')) == pending.requested_at
        assert listed_call == {
            'tool_call_id': 'call-401',
            'tool_name': 'refund',
            'digest': pending.digest,
            'arguments': '{"amount": 5, "order": 401}',
        }

        for spelling in ('awaiting-approval', 'awaiting_approval'):
            code, listed, err = await shell.read('runs', '--status', spelling)
            assert code == 0, err
            assert run_id in listed and 'awaiting_approval' in listed
        code, listed, err = await shell.read('runs', '--status', 'running')
        assert code == 0 and run_id not in listed

        code, out, err = await shell.decide('approve', run_id, 'call-401', '--by', 'alice')
        assert code == 0, err
        assert out == f'approved tool call call-401 of run {run_id}; 0 still waiting\n'
        assert f'approving refund({{"amount": 5, "order": 401}}) (tool call call-401, digest {pending.digest})' in err
        assert 'as alice' in err
        assert (await handle.result()).output == 'refunded 5 on order 401'
        assert REFUNDS.count((401, 5)) == 1
        granted = next(e for e in await ledger.events(run_id) if e.kind == 'approval_granted')
        assert granted.detail == f'digest {pending.digest}; by alice'

        # Done: the timeline says who approved, and nothing waits any more.
        code, shown, err = await shell.read('show', run_id)
        assert code == 0, err
        assert 'Awaiting approval' not in shown and 'agentledger approve' not in shown
        decided = next(line for line in shown.splitlines() if 'approval granted' in line)
        assert decided.split()[-3:] == ['refund', 'by', 'alice']

        # A run that does not await approval is refused from the ledger, before Temporal is asked.
        code, out, err = await shell.decide('approve', run_id, 'call-401')
        assert code == 1 and out == ''
        assert f'run {run_id} is not awaiting approval (status completed)' in err
        code, _, err = await shell.decide('deny', 'run-missing', 'call-401', '--reason', 'no')
        assert code == 1 and 'run-missing' in err


async def test_deny_by_cli_answers_the_model_with_the_reason(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / 'runs.db'
    shell = Cli(temporal_env, path, capsys)
    async with SqliteLedger(path) as ledger, serve(temporal_env, ledger, [approval_agent]) as served:
        handle = await start(served, 'refund 402:500')
        await awaiting(ledger, handle, 1)
        # The reason is required: a denial says why.
        code, _, err = await shell.decide('deny', handle.run_id, 'call-402')
        assert code == 2 and '--reason' in err

        code, out, err = await shell.decide(
            'deny', handle.run_id, 'call-402', '--reason', 'Over the refund limit.', '--by', 'bob'
        )
        assert code == 0, err
        assert out == f'denied tool call call-402 of run {handle.run_id}; 0 still waiting\n'
        assert 'denying refund({"amount": 500, "order": 402})' in err
        assert (await handle.result()).output == 'Over the refund limit.'
        assert all(order != 402 for order, _ in REFUNDS)
        events = await ledger.events(handle.run_id)
        denied = next(e for e in events if e.kind == 'approval_denied')
        assert denied.detail is not None and denied.detail.endswith('; by bob; reason: Over the refund limit.')

        code, shown, err = await shell.read('show', handle.run_id)
        assert code == 0, err
        line = next(line for line in shown.splitlines() if 'approval denied' in line)
        assert line.endswith('by bob, reason: Over the refund limit.')


async def test_approve_with_args_and_a_wrong_tool_call_id_lists_the_waiting_ones(
    temporal_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / 'runs.db'
    shell = Cli(temporal_env, path, capsys)
    async with SqliteLedger(path) as ledger, serve(temporal_env, ledger, [approval_agent]) as served:
        handle = await start(served, 'refund 403:90 404:6')
        await awaiting(ledger, handle, 2)
        run_id = handle.run_id

        code, out, err = await shell.decide('approve', run_id, 'call-999')
        assert code == 1 and out == ''
        assert f"run {run_id} does not wait for a decision on tool call 'call-999' (waiting: call-403, call-404)" in err
        for bad, says in [('{"amount": ', 'not valid JSON'), ('[40]', 'not an array'), ('5', 'not a number')]:
            code, _, err = await shell.decide('approve', run_id, 'call-403', '--args', bad)
            assert code == 1 and says in err, err

        code, out, err = await shell.decide('approve', run_id, 'call-403', '--args', '{"order": 403, "amount": 40}')
        assert code == 0, err
        assert out == f'approved tool call call-403 of run {run_id}; 1 still waiting\n'
        assert 'approving refund({"amount": 90, "order": 403})' in err
        assert 'with arguments {"amount": 40, "order": 403} instead of the model\'s' in err

        # One decided, one waiting: show lists only the one still waiting.
        code, shown, err = await shell.read('show', run_id)
        assert code == 0, err
        section = shown[shown.index('\nAwaiting approval\n') :]
        assert 'call-404' in section and 'call-403' not in section
        assert 'a decision on 1 tool call' in shown
        granted = next(line for line in shown.splitlines() if 'approval granted' in line)
        assert 'with arguments {"amount": 40, "order": 403}' in granted

        # Decided already: it waits no more.
        code, out, err = await shell.decide('approve', run_id, 'call-403')
        assert code == 1 and '(waiting: call-404)' in err

        code, out, err = await shell.decide('approve', run_id, 'call-404')
        assert code == 0, err
        assert (await handle.result()).output == 'refunded 40 on order 403 | refunded 6 on order 404'
        assert REFUNDS.count((403, 40)) == 1 and (403, 90) not in REFUNDS


# --- rendering, without a server ----------------------------------------------------------------------

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

WAITING = RunRecord(
    run_id='run-w',
    workflow_id='approval-1',
    temporal_run_ids=('t1', 't2'),
    agent_name='approval',
    status='awaiting_approval',
    started_at=T0,
    updated_at=T0,
    task_queue='tq',
)


def approval(kind: str, call_id: str, seconds: float, detail: str, *, temporal_run_id: str = 't2') -> StepEvent:
    return StepEvent(
        run_id='run-w',
        workflow_id='approval-1',
        temporal_run_id=temporal_run_id,
        activity_id=f'approval:{call_id}',
        attempt=1 if kind == 'approval_rejected' else 0,
        kind=kind,  # type: ignore[arg-type]
        timestamp=T0 + timedelta(seconds=seconds),
        step=1 if kind == 'approval_requested' else None,
        tool_call_id=call_id,
        tool_name=None if kind == 'approval_rejected' else 'refund',
        detail=detail,
    )


def test_the_waiting_calls_are_the_last_temporal_runs_undecided_requests() -> None:
    """A request of an earlier Temporal run (before a reset) waits no more; a decided one neither."""
    events = [
        approval('approval_requested', 'call-1', 1, 'digest aaaa: refund({"order": 1})', temporal_run_id='t1'),
        approval('approval_requested', 'call-1', 2, 'digest aaaa: refund({"order": 1})'),
        approval('approval_requested', 'call-2', 2, 'digest bbbb: refund({"order": 2, "note": "a) b"})'),
        approval('approval_requested', 'call-3', 2, 'digest cccc: refund({"order": 3, "note": "' + 'x' * 170 + '…'),
        approval('approval_rejected', 'call-1', 3, 'digest bbbb; by mallory; rejected: digest does not match'),
        approval('approval_granted', 'call-1', 4, 'digest aaaa; by alice; override_args: {"order": 9}'),
    ]
    calls = awaiting_calls(WAITING, events)
    assert [(c.tool_call_id, c.digest, c.arguments) for c in calls] == [
        ('call-2', 'bbbb', '{"order": 2, "note": "a) b"}'),
        ('call-3', 'cccc', '{"order": 3, "note": "' + 'x' * 170 + '…'),
    ]
    assert awaiting_calls(replace(WAITING, status='running'), events) == []

    text = render_timeline(RunView(WAITING, events, []), ledger_url='sqlite:///r.db')
    lines = text.splitlines()
    rejected = next(line for line in lines if 'approval rejected' in line)
    # No attempt: the number of a rejected decision only tells rejections apart.
    assert rejected.split()[1:5] == ['approval', 'rejected', '-', 'by'] and rejected.endswith(
        'by mallory, rejected: digest does not match'
    )
    granted = next(line for line in lines if 'approval granted' in line)
    assert granted.endswith('refund  by alice, with arguments {"order": 9}')
    assert 'agentledger approve run-w call-2 --ledger sqlite:///r.db' in text
    assert 'agentledger deny run-w call-3 --reason "..." --ledger sqlite:///r.db' in text
    assert 'a decision on 2 tool calls' in text
    assert [c['tool_call_id'] for c in run_json(RunView(WAITING, events, []))['pending_approvals']] == [
        'call-2',
        'call-3',
    ]
