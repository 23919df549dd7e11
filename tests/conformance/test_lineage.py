"""Conformance: lineage on every backend: forks chain onto their seed, a run without snapshots cannot be
continued, delegates' child run ids on events and steps, and the run tree (C12).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic_ai.messages import ModelRequest, UserPromptPart
from pydantic_ai.usage import RunUsage, UsageLimits

from agentledger import Ledger, MemoryLedger
from agentledger.errors import SnapshotNotFoundError
from agentledger.model import Acceptance, StepEvent, Usage
from agentledger.model._content import encode_messages
from agentledger.model._records import ForkRef
from agentledger.workflows._delegate import remaining_limits
from agentledger.workflows._types import RunFailureDetails

from ..helpers.ledgers import stored_content
from ..helpers.records import at, conversation, dumped, ids, prefix, run_seal, run_start, snapshot_steps


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
    """C12: delegate events carry their child run ids; the run tree links each parent step to its children."""
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


async def test_forked_run_chains_onto_its_seed_without_copying(ledger: Ledger) -> None:
    """C7/C9/C10: a run seeded from another run's snapshot stores only its new messages, linked to the seed."""
    messages = conversation(4)
    await ledger.start_run(run_start('run-a'))
    await snapshot_steps(ledger, 'run-a', messages, range(1, 5), final=True)
    seed = await ledger.snapshot_at_step('run-a', 2)
    fork = ForkRef(run_id='run-a', snapshot_id=seed.snapshot_id, reason='fork')
    await ledger.start_run(run_start('run-b', started=100, forked_from=fork))
    before = stored_content(ledger)

    prompt = ModelRequest(
        parts=[UserPromptPart('Actually, cancel order A-0001.', timestamp=at(101))], timestamp=at(101)
    )
    history = [*(await ledger.snapshot(seed.snapshot_id)).messages, prompt]
    record = await ledger.write_snapshot(
        run_id='run-b', temporal_run_id='t1', step=1, kind='model_request', messages=history
    )

    assert record is not None
    assert record.parent_id == seed.snapshot_id
    assert record.new_hashes == (encode_messages([prompt])[0].hash,)
    assert record.message_count == prefix(2) + 1
    assert stored_content(ledger) == (before[0] + 1, before[1])
    rebuilt = await ledger.snapshot(record.snapshot_id)
    assert dumped(rebuilt.messages) == dumped([*messages[: prefix(2)], prompt])

    assert (await ledger.run('run-b')).forked_from == fork
    assert (await ledger.run('run-a')).forked_from is None
    assert ids(await ledger.runs(forked_from_run_id='run-a')) == ['run-b']
    assert await ledger.runs(forked_from_run_id='run-b') == []


async def test_run_without_snapshots_has_nothing_to_continue_or_fork_from(ledger: Ledger) -> None:
    """C10: a run with no valid snapshot raises SnapshotNotFoundError naming the run."""
    await ledger.start_run(run_start('run-a'))
    assert await ledger.snapshots('run-a') == []
    with pytest.raises(SnapshotNotFoundError, match='run-a'):
        await ledger.latest_snapshot('run-a')
    with pytest.raises(SnapshotNotFoundError, match='run-a'):
        await ledger.snapshot_at_step('run-a', 1)
