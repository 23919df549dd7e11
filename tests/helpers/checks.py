"""Assertions shared by the end-to-end tests of every ledger backend."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from agentledger import AgentRunResult, Ledger
from agentledger.cli import find_temporal_cli
from agentledger.model import StepEvent


def kinds(events: list[StepEvent]) -> Counter[str]:
    """How many events of each kind the run kept (abandoned attempts left out)."""
    return Counter(e.kind for e in events if e.state != 'abandoned')


async def check_calc_run(ledger: Ledger, result: AgentRunResult[Any]) -> None:
    """C1, C2 and C3 for one run of `calc_agent` on one worker: `flaky` fails on attempt 1 and works on attempt 2."""
    assert result.output == 'done'
    assert result.usage.requests == 5
    run = await ledger.run(result.run_id)
    assert run.workflow_id == result.workflow_id
    assert run.usage == result.usage
    events = await check_complete_calc_run(ledger, result.run_id)

    # C2: flaky failed on attempt 1 (kept, abandoned) and completed on attempt 2 (accepted).
    flaky = [e for e in events if e.tool_name == 'flaky']
    assert [(e.kind, e.attempt, e.state) for e in flaky] == [
        ('tool_call_started', 1, 'abandoned'),
        ('tool_call_failed', 1, 'abandoned'),
        ('tool_call_started', 2, 'accepted'),
        ('tool_call_completed', 2, 'accepted'),
    ]
    failure = flaky[1].error
    assert failure is not None
    assert failure.type == 'RuntimeError' and 'transient failure' in failure.message and failure.retryable
    flaky_step = next(s for s in await ledger.steps(result.run_id) if s.tool_name == 'flaky')
    assert (flaky_step.attempts, flaky_step.accepted_attempt) == (2, 2)


async def check_complete_calc_run(ledger: Ledger, run_id: str) -> list[StepEvent]:
    """C1 and C3 for one completed run of `calc_agent`, whichever workers ran it; returns its events.

    Every step is recorded once (no duplicate keys), in causal order, with every attempt ended, and
    the run's failed `flaky` attempts (one per worker that ran it first) come before the accepted one.
    """
    run = await ledger.run(run_id)
    assert run.status == 'completed'
    assert run.agent_name == 'calc'

    events = await ledger.events(run_id)
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert len({e.seq for e in events}) == len(events)
    assert events[0].kind == 'run_started'
    assert events[-1].kind == 'run_completed'
    assert all(e.state != 'provisional' for e in events)

    # C1: 5 model requests, 5 tool calls (add, flaky, add with bad args, shout twice), one start, one end.
    accepted = kinds(events)
    assert accepted['run_started'] == 1 and accepted['run_completed'] == 1
    assert accepted['model_request_started'] == 5 and accepted['model_request_completed'] == 5
    assert accepted['tool_call_started'] == 5
    assert accepted['tool_call_completed'] == 5
    assert accepted['tool_call_failed'] == 0
    model_steps = [e.step for e in events if e.kind == 'model_request_started']
    assert model_steps == [1, 2, 3, 4, 5]

    # Causal order: every attempt's start precedes its end; each tool call follows its model response.
    position = {(e.activity_id, e.attempt, e.kind): i for i, e in enumerate(events)}
    for e in events:
        if e.kind.endswith(('_completed', '_failed')) and e.step_kind is not None and e.attempt > 0:
            assert (
                position[(e.activity_id, e.attempt, e.kind.rsplit('_', 1)[0] + '_started')]
                < position[(e.activity_id, e.attempt, e.kind)]
            )
    for e in events:
        if e.kind == 'tool_call_started':
            response = next(m for m in events if m.kind == 'model_request_completed' and m.step == e.step)
            assert response.seq < e.seq

    # Every attempt that started ended: nothing in flight, nothing lost.
    ends = {(e.activity_id, e.attempt) for e in events if e.step_kind is not None and e.is_terminal}
    assert {(e.activity_id, e.attempt) for e in events if e.kind.endswith('_started') and e.step_kind} == ends

    # C2 whatever the worker: flaky's failed attempts precede its accepted one.
    flaky = [e for e in events if e.tool_name == 'flaky' and e.is_terminal]
    assert [e.kind for e in flaky][-1] == 'tool_call_completed'
    assert {e.kind for e in flaky[:-1]} <= {'tool_call_failed'} and len(flaky) >= 2
    assert [e.state for e in flaky] == ['abandoned'] * (len(flaky) - 1) + ['accepted']

    # C3: ModelRetry is a completed call with outcome retry_requested; a validation error likewise.
    outcomes = [(e.tool_name, e.outcome) for e in events if e.kind == 'tool_call_completed']
    assert sorted(outcomes, key=str) == sorted(
        [
            ('add', 'returned'),
            ('flaky', 'returned'),
            ('add', 'validation_error'),
            ('shout', 'retry_requested'),
            ('shout', 'returned'),
        ],
        key=str,
    )
    retry = next(e for e in events if e.outcome == 'retry_requested')
    assert retry.detail == 'say it in upper case'

    # Every event key is stored once.
    assert len({e.key for e in events}) == len(events)

    steps = await ledger.steps(run_id)
    assert all(s.status == 'completed' and s.accepted_attempt is not None for s in steps)
    return events


async def retried_failures(handle: WorkflowHandle[Any, Any]) -> list[Failure]:
    """The last failure of every retried activity attempt, as Temporal's history records it."""
    history = await handle.fetch_history()
    return [
        e.activity_task_started_event_attributes.last_failure
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.attempt > 1
    ]


async def temporal_reset(env: WorkflowEnvironment, workflow_id: str, how: list[str], reason: str) -> None:
    """Reset the workflow's current run with the Temporal CLI, as an operator would (`how`: `--type ...` or
    `--event-id N`)."""
    temporal = find_temporal_cli(build=False)
    assert temporal is not None
    host = env.client.service_client.config.target_host
    done = await asyncio.to_thread(
        subprocess.run,
        [
            *(temporal, 'workflow', 'reset', '--address', host, '--workflow-id', workflow_id, *how),
            *('--reason', reason),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
