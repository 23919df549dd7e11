"""Builders for ledger records and model histories, shared by the conformance and backend tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.usage import RequestUsage

from agentledger.ledger import Ledger
from agentledger.model import Acceptance, RunSeal, RunStart, StepEvent
from agentledger.model._records import AcceptanceOutcome, EventKind, RunStatus, SnapshotRecord

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run_start(
    run_id: str = 'r1',
    temporal_run_id: str = 't1',
    *,
    started: float = 0,
    agent: str = 'support',
    workflow_id: str | None = None,
    **fields: Any,
) -> RunStart:
    return RunStart(
        run_id=run_id,
        workflow_id=workflow_id or f'wf-{run_id}',
        temporal_run_id=temporal_run_id,
        agent_name=agent,
        started_at=at(started),
        task_queue='agents',
        **fields,
    )


def run_seal(
    run_id: str = 'r1',
    temporal_run_id: str = 't1',
    *,
    status: RunStatus = 'completed',
    ended: float = 60,
    workflow_id: str | None = None,
    **fields: Any,
) -> RunSeal:
    return RunSeal(
        run_id=run_id,
        workflow_id=workflow_id or f'wf-{run_id}',
        temporal_run_id=temporal_run_id,
        status=status,
        ended_at=at(ended),
        **fields,
    )


def event(
    activity_id: str,
    attempt: int,
    kind: EventKind,
    *,
    run_id: str = 'r1',
    temporal_run_id: str = 't1',
    when: float = 1,
    scheduled: float | None = None,
    **fields: Any,
) -> StepEvent:
    """An activity event; each attempt is scheduled at `scheduled` (by default: its attempt number in seconds)."""
    return StepEvent(
        run_id=run_id,
        workflow_id=f'wf-{run_id}',
        temporal_run_id=temporal_run_id,
        activity_id=activity_id,
        attempt=attempt,
        kind=kind,
        timestamp=at(when),
        scheduled_at=at(scheduled if scheduled is not None else attempt),
        **fields,
    )


def acceptance(
    activity_id: str, outcome: AcceptanceOutcome = 'completed', *, run_id: str = 'r1', temporal_run_id: str = 't1'
) -> Acceptance:
    return Acceptance(
        run_id=run_id,
        workflow_id=f'wf-{run_id}',
        temporal_run_id=temporal_run_id,
        activity_id=activity_id,
        outcome=outcome,
    )


def states(events: list[StepEvent]) -> list[tuple[str, int, str, str]]:
    return [(e.activity_id, e.attempt, e.kind, e.state) for e in events]


def ids(runs: list[Any]) -> list[str]:
    return [run.run_id for run in runs]


# Snapshot ids embed the run id and must parse back to it, so these runs are named `run-...`.
def conversation(steps: int) -> list[ModelMessage]:
    """A support agent's history over `steps` model requests: a prompt, then per step a tool round trip.

    Model request k (1-based) sees the first `prefix(k)` messages; the last response answers in text.
    Every message differs from every other (ids, arguments, timestamps), as in a real run.
    """
    messages: list[ModelMessage] = [
        ModelRequest(
            parts=[
                SystemPromptPart('You are a support agent for ACME. Look orders up before answering.', timestamp=at(0)),
                UserPromptPart(f'Where are my {steps - 1} orders?', timestamp=at(0)),
            ],
            timestamp=at(0),
        )
    ]
    for k in range(1, steps):
        messages.append(
            ModelResponse(
                parts=[
                    TextPart(f'Let me look up order {k}.'),
                    ToolCallPart('lookup_order', {'order_id': f'A-{k:04d}'}, tool_call_id=f'call-{k}'),
                ],
                usage=RequestUsage(input_tokens=100 + 40 * k, output_tokens=12),
                model_name='test-model',
                timestamp=at(k),
            )
        )
        messages.append(
            ModelRequest(
                parts=[
                    ToolReturnPart(
                        'lookup_order',
                        {'order_id': f'A-{k:04d}', 'status': 'shipped', 'eta_days': k % 5},
                        tool_call_id=f'call-{k}',
                        timestamp=at(k + 0.5),
                    )
                ],
                timestamp=at(k + 0.5),
            )
        )
    messages.append(
        ModelResponse(
            parts=[TextPart(f'All {steps - 1} orders have shipped.')],
            usage=RequestUsage(input_tokens=100 + 40 * steps, output_tokens=9),
            model_name='test-model',
            timestamp=at(steps),
        )
    )
    return messages


def prefix(step: int) -> int:
    """How many messages of `conversation()` model request `step` sees."""
    return 2 * step - 1


def dumped(messages: list[ModelMessage]) -> bytes:
    return ModelMessagesTypeAdapter.dump_json(messages)


async def snapshot_steps(
    ledger: Ledger, run_id: str, messages: list[ModelMessage], steps: range, *, final: bool = False
) -> list[SnapshotRecord]:
    """Snapshot `messages` at each model-request boundary in `steps` (and as `final` after the last)."""
    records: list[SnapshotRecord] = []
    for step in steps:
        record = await ledger.write_snapshot(
            run_id=run_id, temporal_run_id='t1', step=step, kind='model_request', messages=messages[: prefix(step)]
        )
        assert record is not None
        records.append(record)
    if final:
        record = await ledger.write_snapshot(
            run_id=run_id, temporal_run_id='t1', step=steps[-1], kind='final', messages=messages
        )
        assert record is not None
        records.append(record)
    return records
