"""Delegation in the ledger, on every backend: child run ids on events and steps, and the run tree (C12)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.usage import RunUsage, UsageLimits

from agentledger import Ledger, MemoryLedger
from agentledger.model import Acceptance, StepEvent, Usage
from agentledger.workflows._delegate import remaining_limits
from agentledger.workflows._types import RunFailureDetails

from .test_ledger_suite import BACKENDS, at, make_ledger, run_seal, run_start


@pytest.fixture(params=BACKENDS)
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    async with make_ledger(request.param, tmp_path) as opened:
        yield opened


def delegate_event(run_id: str, tool_call_id: str, kind: str, attempt: int, when: float, **fields: Any) -> StepEvent:
    return StepEvent(
        run_id=run_id,
        workflow_id=f'wf-{run_id}',
        temporal_run_id='t1',
        activity_id=f'delegate:{tool_call_id}',
        attempt=attempt,
        kind=kind,  # type: ignore[arg-type]
        timestamp=at(when),
        step=1,
        tool_call_id=tool_call_id,
        tool_name='helper',
        **fields,
    )


async def test_child_run_ids_round_trip_and_the_tree_links_steps_to_children(ledger: Ledger) -> None:
    await ledger.start_run(run_start('root'))
    await ledger.start_run(
        run_start('kid-1', started=1, agent='helper', parent_run_id='root', parent_tool_call_id='c1')
    )
    await ledger.start_run(
        run_start('kid-2', started=5, agent='helper', parent_run_id='root', parent_tool_call_id='c1')
    )
    await ledger.start_run(
        run_start('grandkid', started=6, agent='leaf', parent_run_id='kid-2', parent_tool_call_id='g1')
    )
    await ledger.record_events(
        [
            delegate_event('root', 'c1', 'tool_call_started', 1, 1, child_run_id='kid-1'),
            delegate_event('root', 'c1', 'tool_call_failed', 1, 2, child_run_id='kid-1'),
            delegate_event('root', 'c1', 'tool_call_started', 2, 5, child_run_id='kid-2'),
            delegate_event(
                'root', 'c1', 'tool_call_completed', 2, 9, child_run_id='kid-2', outcome='returned', usage=Usage(1)
            ),
        ]
    )
    await ledger.accept([Acceptance('root', 'wf-root', 't1', 'delegate:c1', 'completed')])
    await ledger.seal_run(run_seal('kid-1', status='failed', ended=2))
    await ledger.seal_run(run_seal('grandkid', ended=8, usage=Usage(requests=1)))
    await ledger.seal_run(run_seal('kid-2', ended=9, usage=Usage(requests=2)))
    await ledger.seal_run(run_seal('root', ended=10, usage=Usage(requests=4)))

    events = await ledger.events('root')
    delegated = [(e.attempt, e.kind, e.child_run_id, e.state) for e in events if e.tool_call_id == 'c1']
    assert delegated == [
        (1, 'tool_call_started', 'kid-1', 'abandoned'),
        (1, 'tool_call_failed', 'kid-1', 'abandoned'),
        (2, 'tool_call_started', 'kid-2', 'accepted'),
        (2, 'tool_call_completed', 'kid-2', 'accepted'),
    ]
    (step,) = await ledger.steps('root')
    assert (step.attempts, step.accepted_attempt, step.status, step.child_run_id) == (2, 2, 'completed', 'kid-2')
    assert [r.run_id for r in await ledger.runs(parent_run_id='root')] == ['kid-2', 'kid-1']

    tree = await ledger.run_tree('root')
    assert [(depth, node.run.run_id, node.run.status) for depth, node in tree.walk()] == [
        (0, 'root', 'completed'),
        (1, 'kid-1', 'failed'),
        (1, 'kid-2', 'completed'),
        (2, 'grandkid', 'completed'),
    ]
    assert [node.step == step for node in tree.children] == [True, True]
    assert tree.children[1].children[0].step is None  # kid-2 recorded no delegate events for g1
    assert (await ledger.run_tree('root', max_depth=1)).children[1].children == ()
    assert (await ledger.run_tree('grandkid')).children == ()
    assert tree.to_json()['children'][1]['children'][0]['run']['run_id'] == 'grandkid'


async def test_run_tree_pages_through_many_children() -> None:
    async with MemoryLedger() as ledger:
        await ledger.start_run(run_start('root'))
        for index in range(130):
            await ledger.start_run(
                run_start(f'kid-{index:03}', started=index + 1, parent_run_id='root', parent_tool_call_id=f'c{index}')
            )
        tree = await ledger.run_tree('root')
        assert [node.run.run_id for node in tree.children] == [f'kid-{index:03}' for index in range(130)]


def test_remaining_limits_are_what_the_orchestrator_has_not_used() -> None:
    used = RunUsage(requests=3, tool_calls=2, input_tokens=100, output_tokens=30)
    left = remaining_limits(UsageLimits(request_limit=5, total_tokens_limit=120, output_tokens_limit=None), used)
    assert left is not None
    assert (left.request_limit, left.total_tokens_limit, left.output_tokens_limit) == (2, 0, None)
    assert remaining_limits(None, used) is None


def test_failure_details_read_back_from_decoded_data() -> None:
    details = RunFailureDetails.from_details([{'run_id': 'run-1', 'usage': {'requests': 2, 'input_tokens': 5}}])
    assert details == RunFailureDetails(run_id='run-1', usage=Usage(requests=2, input_tokens=5))
    assert RunFailureDetails.from_details([]) is None
    assert RunFailureDetails.from_details(['not details']) is None
