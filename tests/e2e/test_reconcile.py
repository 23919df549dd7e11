"""`reconcile`: the ledger compared with Temporal's history, on every backend, against a real dev server.

The rows are broken behind the ledger's back, the way a lost write, a bad disk or a hand edit would:
with the backend's own storage (the memory ledger's dicts, SQL on the SQLite file, objects in the
bucket), and read back through a fresh ledger on the same storage, as an operator's process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger import Ledger, MemoryLedger, reconcile_run
from agentledger.errors import RunNotFoundError
from agentledger.ledger.backends.s3 import S3Ledger
from agentledger.ledger.backends.s3._log import SLOT_ENTRIES
from agentledger.ledger.backends.sqlite import SqliteLedger
from agentledger.model import Acceptance, RunRecord, StepEvent

from ..conftest import expect_discrepancy, serve
from ..helpers import agents
from ..helpers.agents import calc_agent, holder_agent
from ..helpers.ledgers import drop_run_record, raw_sql
from ..helpers.s3_server import admin_client


def _sqlite_path(ledger: SqliteLedger) -> Path:
    return Path(ledger.url.removeprefix('sqlite:///'))


def _s3_key(ledger: S3Ledger, run_id: str, table: str, key: str) -> str:
    return f'{ledger.prefix}runs/{run_id}/{table}/{hashlib.sha256(key.encode()).hexdigest()}.json'


def _s3_log_entry(ledger: S3Ledger, event: StepEvent, entry: dict[str, Any] | None) -> None:
    """Set the run's log entry at `event.seq` (its slot object, its position) to `entry`, behind the ledger's back."""
    client = admin_client(ledger.endpoint)
    key = f'{ledger.prefix}runs/{event.run_id}/log/{event.seq // SLOT_ENTRIES:012d}.json'
    try:
        entries = json.loads(client.get_object(Bucket=ledger.bucket, Key=key)['Body'].read())['entries']
    except client.exceptions.NoSuchKey:
        entries = []
    position = event.seq % SLOT_ENTRIES
    entries += [None] * (position + 1 - len(entries))
    entries[position] = entry
    client.put_object(Bucket=ledger.bucket, Key=key, Body=json.dumps({'entries': entries}))


def _s3_event_entry(event: StepEvent) -> dict[str, Any]:
    body = event.to_json()
    del body['seq'], body['state']
    return {'event': body}


def delete_event(ledger: Ledger, event: StepEvent) -> None:
    """Lose one stored event."""
    if isinstance(ledger, MemoryLedger):
        ledger.store._events[event.run_id] = [e for e in ledger.store._events[event.run_id] if e.key != event.key]
        ledger.store._event_keys.discard(event.key)
    elif isinstance(ledger, SqliteLedger):
        assert raw_sql(_sqlite_path(ledger), 'DELETE FROM events WHERE event_key = ?', (event.key,)) == 1
    else:
        assert isinstance(ledger, S3Ledger)
        _s3_log_entry(ledger, event, None)


def overwrite_event(ledger: Ledger, event: StepEvent) -> None:
    """Change a stored event's content in place (same key, same place in the order)."""
    body = event.to_json()
    del body['state']
    if isinstance(ledger, MemoryLedger):
        ledger.store._events[event.run_id] = [
            event if e.key == event.key else e for e in ledger.store._events[event.run_id]
        ]
    elif isinstance(ledger, SqliteLedger):
        del body['seq']
        query = 'UPDATE events SET body = ? WHERE event_key = ?'
        assert raw_sql(_sqlite_path(ledger), query, (json.dumps(body), event.key)) == 1
    else:
        assert isinstance(ledger, S3Ledger)
        _s3_log_entry(ledger, event, _s3_event_entry(event))


def duplicate_event(ledger: Ledger, event: StepEvent, seq: int) -> None:
    """Store a second copy of an event under another storage key, as a broken writer or a restore could.

    On S3 the copy is a second log entry of the same key, which reads return once (at its first place):
    an event written twice there is what an ambiguous retry leaves, and never a duplicate row.
    """
    copy = event.with_seq(seq).to_json()
    del copy['state']
    if isinstance(ledger, MemoryLedger):
        ledger.store._events[event.run_id].append(event.with_seq(seq).with_state('provisional'))
    elif isinstance(ledger, SqliteLedger):
        del copy['seq']
        query = 'INSERT INTO events (seq, event_key, run_id, body) VALUES (?, ?, ?, ?)'
        raw_sql(_sqlite_path(ledger), query, (seq, f'{event.key}#copy', event.run_id, json.dumps(copy)))
    else:
        assert isinstance(ledger, S3Ledger)
        _s3_log_entry(ledger, event.with_seq(seq), _s3_event_entry(event))


def delete_acceptance(ledger: Ledger, acceptance: Acceptance) -> None:
    if isinstance(ledger, MemoryLedger):
        del ledger.store._acceptances[acceptance.run_id][acceptance.key]
    elif isinstance(ledger, SqliteLedger):
        query = 'DELETE FROM acceptances WHERE acceptance_key = ?'
        assert raw_sql(_sqlite_path(ledger), query, (acceptance.key,)) == 1
    else:
        assert isinstance(ledger, S3Ledger)
        admin_client(ledger.endpoint).delete_object(
            Bucket=ledger.bucket, Key=_s3_key(ledger, acceptance.run_id, 'acceptances', acceptance.key)
        )


def unseal(ledger: Ledger, record: RunRecord) -> None:
    """Make the stored run record say `running`, as if its seal never landed."""
    if isinstance(ledger, MemoryLedger):
        ledger.store._runs[record.run_id] = replace(record, status='running', ended_at=None)
    elif isinstance(ledger, SqliteLedger):
        query = "UPDATE runs SET status = 'running', ended_at = NULL WHERE run_id = ?"
        assert raw_sql(_sqlite_path(ledger), query, (record.run_id,)) == 1
    else:
        assert isinstance(ledger, S3Ledger)
        admin_client(ledger.endpoint).put_object(
            Bucket=ledger.bucket,
            Key=f'{ledger.prefix}runs/{record.run_id}/run.json',
            Body=json.dumps(replace(record, status='running', ended_at=None).to_json()),
        )


def reader(ledger: Ledger) -> Ledger:
    """Another process's view of the same storage (the memory ledger has no other view)."""
    if isinstance(ledger, SqliteLedger):
        return SqliteLedger(_sqlite_path(ledger))
    if isinstance(ledger, S3Ledger):
        return S3Ledger(
            ledger.url,
            aws_access_key_id=ledger.store._credentials.access_key_id,
            aws_secret_access_key=ledger.store._credentials.secret_access_key,
        )
    return ledger


def audits(events: list[StepEvent]) -> list[dict[str, object]]:
    return [json.loads(e.detail or '{}') for e in events if e.kind == 'ledger_repaired']


async def test_reconcile_restores_lost_and_corrupted_rows_of_a_finished_run(
    temporal_env: WorkflowEnvironment, ledger: Ledger
) -> None:
    """Lost, divergent and orphan rows of a closed run: reported by a dry run, repaired (audited) by default."""
    async with serve(temporal_env, ledger, [calc_agent]) as served:
        result = await agentledger.run(served.client, calc_agent, 'compute', task_queue=served.task_queue)
        client = served.client
    clean = await reconcile_run(client, ledger, result.run_id)
    assert clean.clean and not clean.repaired and not clean.open
    # Every row history proves is confirmed: 2 run events, 5 model requests and 4 tool activities
    # (last attempts, started and ended), 2 workflow-side events, the acceptances, the record.
    assert clean.ok >= 2 + 10 + 8 + 2 + 9 + 1, clean.counts

    run_id = result.run_id
    record = await ledger.run(run_id)
    before = await ledger.events(run_id)
    add_end = next(e for e in before if e.tool_name == 'add' and e.outcome == 'returned')
    shout_end = next(e for e in before if e.tool_name == 'shout' and e.outcome == 'returned')
    rejected = next(e for e in before if e.outcome == 'validation_error')
    run_end = next(e for e in before if e.kind == 'run_completed')
    twice = next(e for e in before if e.kind == 'model_request_started' and e.step == 3)
    [acceptance, *_] = await ledger.acceptances(run_id)
    delete_event(ledger, add_end)
    delete_event(ledger, rejected)
    delete_event(ledger, run_end)
    overwrite_event(ledger, replace(shout_end, outcome='denied'))
    delete_acceptance(ledger, acceptance)
    duplicate_event(ledger, twice, max(e.seq for e in before) + 10_000)  # a later place than the original's
    unseal(ledger, record)
    orphan = replace(add_end, activity_id='999', kind='tool_call_started', seq=0, state='provisional')
    await ledger.record_events([orphan])
    expect_discrepancy(ledger, run_id, 'orphan', 'the test adds a row of an activity Temporal never scheduled')

    # S3 reads each key once, at its first place: the copy is never a second row there.
    duplicates = 0 if isinstance(ledger, S3Ledger) else 1
    async with reader(ledger) as other:
        broken = await other.events(run_id)
        dry = await reconcile_run(client, other, run_id, repair=False)
        assert not dry.repaired and not dry.open
        assert {k: v for k, v in dry.counts.items() if k != 'ok'} == {
            'missing': 5,
            'divergent': 1,
            'orphan': 1,
            'duplicate': duplicates,
        }, [(f.category, f.key, f.reason) for f in dry.findings]
        assert {(f.category, f.row, f.key) for f in dry.findings} >= {
            ('missing', 'event', add_end.key),
            ('missing', 'event', rejected.key),
            ('missing', 'event', run_end.key),
            ('missing', 'acceptance', acceptance.key),
            ('missing', 'run', run_id),
            ('divergent', 'event', shout_end.key),
            ('orphan', 'event', orphan.key),
            *([('duplicate', 'event', twice.key)] if duplicates else []),
        }
        assert await other.events(run_id) == broken  # a dry run writes nothing

        repaired = await reconcile_run(client, other, run_id)
        assert repaired.repaired and repaired.status == 'completed'
        after = await other.events(run_id)
        stored = {e.key: e for e in after}
        assert stored[add_end.key].outcome == 'returned' and stored[add_end.key].attempt == add_end.attempt
        assert stored[shout_end.key].outcome == 'returned'
        assert stored[shout_end.key].seq == shout_end.seq  # repaired in place
        assert replace(stored[rejected.key], seq=0) == replace(rejected, seq=0, state='accepted')
        assert stored[run_end.key].kind == 'run_completed'
        assert [e.seq for e in after if e.key == twice.key] == [twice.seq]  # one copy, in its place
        assert acceptance in await other.acceptances(run_id)
        sealed = await other.run(run_id)
        assert (sealed.status, sealed.ended_at, sealed.usage) == ('completed', record.ended_at, record.usage)
        steps = await other.steps(run_id)
        assert all(s.status == 'completed' for s in steps if s.activity_id != '999')
        assert next(s for s in steps if s.activity_id == '999').status == 'abandoned'

        # Audited: one record per repair, with the row before and after and why.
        records = audits(after)
        assert len(records) == 6 + duplicates
        divergent = next(r for r in records if r['category'] == 'divergent')
        assert divergent['before']['outcome'] == 'denied' and divergent['after']['outcome'] == 'returned'  # type: ignore[index]
        assert 'outcome' in str(divergent['reason'])

        # Reconciled: only the orphan (kept for audit, abandoned) remains, and nothing is repaired twice.
        again = await reconcile_run(client, other, run_id)
        assert [(f.category, f.key) for f in again.findings] == [('orphan', orphan.key)]
        assert not again.repaired
        assert len(audits(await other.events(run_id))) == 6 + duplicates


async def test_reconcile_seals_a_terminated_run_and_leaves_an_open_one_alone(
    temporal_env: WorkflowEnvironment, ledger: Ledger
) -> None:
    """An open run is only reported; once its workflow is terminated, reconcile seals it `terminated`."""
    async with serve(temporal_env, ledger, [holder_agent]) as served:
        handle = await agentledger.start(served.client, holder_agent, 'go', task_queue=served.task_queue)

        async def holding() -> list[StepEvent]:
            while True:
                with contextlib.suppress(RunNotFoundError):
                    events = await ledger.events(handle.run_id)
                    if any(e.tool_name == 'hold' and e.kind == 'tool_call_started' for e in events):
                        return events
                await asyncio.sleep(0.05)

        events = await asyncio.wait_for(holding(), timeout=30)
        first_answer = next(e for e in events if e.kind == 'model_request_completed' and e.step == 1)
        delete_event(ledger, first_answer)
        async with reader(ledger) as other:
            report = await reconcile_run(served.client, other, handle.run_id)
            assert report.open and not report.repaired and report.status == 'running'
            assert [(f.category, f.key) for f in report.findings] == [('missing', first_answer.key)]
            assert len(await other.events(handle.run_id)) == len(events) - 1  # untouched

            await handle.workflow_handle.terminate(reason='test: an operator stops the run')
            agents.released.add(handle.workflow_id)
            sealed = await reconcile_run(served.client, other, handle.run_id)
            assert sealed.repaired and not sealed.open and sealed.status == 'terminated'
            assert {(f.category, f.row) for f in sealed.findings} == {('missing', 'event'), ('missing', 'run')}
            record = await other.run(handle.run_id)
            assert record.error is not None and record.error.type == 'WorkflowTerminated'
            assert 'an operator stops the run' in record.error.message
            assert record.usage.requests == 2  # both model requests, the restored one included
            stored = await other.events(handle.run_id)
            assert any(e.key == first_answer.key for e in stored)
            assert [e.kind for e in stored if e.step_kind is None and e.kind != 'ledger_repaired'] == [
                'run_started',
                'run_terminated',
            ]
            hold = next(s for s in await other.steps(handle.run_id) if s.tool_name == 'hold')
            assert hold.status == 'abandoned'
            assert (await reconcile_run(served.client, other, handle.run_id)).clean


async def test_reconcile_rebuilds_a_run_record_lost_before_the_seal_c19(
    temporal_env: WorkflowEnvironment, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    """C19: the record lost mid-run, the seal is kept and reported, and reconcile rebuilds the record (audited)."""
    async with serve(temporal_env, ledger, [holder_agent]) as served:
        handle = await agentledger.start(served.client, holder_agent, 'go', task_queue=served.task_queue)

        async def holding() -> RunRecord:
            while True:
                with contextlib.suppress(RunNotFoundError):
                    events = await ledger.events(handle.run_id)
                    if any(e.tool_name == 'hold' and e.kind == 'tool_call_started' for e in events):
                        return await ledger.run(handle.run_id)
                await asyncio.sleep(0.05)

        started = await asyncio.wait_for(holding(), timeout=30)
        drop_run_record(ledger, handle.run_id)
        with caplog.at_level(logging.WARNING, logger='agentledger.ledger'):
            agents.released.add(handle.workflow_id)
            result = await handle.result()
        client = served.client
    assert any(
        r.name == 'agentledger.ledger' and f'run {handle.run_id} has no run record' in r.getMessage()
        for r in caplog.records
    )
    assert result.output == 'released'

    async with reader(ledger) as other:
        with pytest.raises(RunNotFoundError):
            await other.run(handle.run_id)
        assert handle.run_id not in [run.run_id for run in await other.runs()]
        dry = await reconcile_run(client, other, handle.run_id, repair=False)
        assert not dry.repaired and not dry.open and dry.status == 'completed'
        [lost] = dry.findings
        assert (lost.category, lost.row, lost.key, lost.before) == ('missing', 'run', handle.run_id, None)
        assert 'the run record is lost' in lost.reason
        with pytest.raises(RunNotFoundError):
            await other.run(handle.run_id)  # a dry run writes nothing

        repaired = await reconcile_run(client, other, handle.run_id)
        assert repaired.repaired and repaired.status == 'completed'
        record = await other.run(handle.run_id)
        # What the start wrote, sealed as the seal would have: the seal's usage and output included.
        assert replace(record, status='running', ended_at=None, usage=started.usage, output_preview=None) == replace(
            started, updated_at=record.updated_at
        )
        assert record.usage.requests == 3 and record.output_preview == 'released'
        [end] = [e for e in await other.events(handle.run_id) if e.kind == 'run_completed']
        assert record.ended_at == end.timestamp
        assert handle.run_id in [run.run_id for run in await other.runs()]
        [audit] = audits(await other.events(handle.run_id))
        assert (audit['category'], audit['row'], audit['before']) == ('missing', 'run', None)
        assert (await reconcile_run(client, other, handle.run_id)).clean

    with pytest.raises(RunNotFoundError, match='no-such-run'):
        await reconcile_run(client, ledger, 'no-such-run')


dropping: list[tuple[Ledger, str]] = []
"""The ledger and run whose record the `forgetful` agent's tool loses, once."""


def forgetful_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = sum(isinstance(m, ModelResponse) for m in messages)
    if done < 6:
        return ModelResponse(parts=[ToolCallPart('step_on', {'i': done})])
    return ModelResponse(parts=[TextPart('done')])


forgetful_agent = Agent(FunctionModel(forgetful_script), name='forgetful', capabilities=[TemporalDurability()])


@forgetful_agent.tool_plain
def step_on(i: int) -> str:
    if i == 1 and dropping:
        drop_run_record(*dropping.pop())
    return f'step {i}'


async def test_a_start_that_finds_no_run_record_recreates_and_reports_it_c19(
    temporal_env: WorkflowEnvironment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run that continues as new after its record was lost: the continued run's start recreates the record
    (kept, not dropped) and says so; `reconcile` then restores the Temporal runs the recreated record lacks."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        async with serve(temporal_env, ledger, [forgetful_agent]) as served:
            handle = await agentledger.start(
                served.client, forgetful_agent, 'go', task_queue=served.task_queue, history_event_limit=30
            )
            dropping.append((ledger, handle.run_id))
            result = await handle.result()
            client = served.client
        assert not dropping, 'the tool lost the record'
        warned = [r.getMessage() for r in caplog.records if 'had no run record when Temporal run' in r.getMessage()]
        assert warned and f'agentledger reconcile {result.run_id}' in warned[0]
        recreated = await ledger.run(result.run_id)
        history_runs = []
        run_id: str | None = None
        while True:
            described = await client.get_workflow_handle(handle.workflow_id, run_id=run_id).describe()
            history_runs.append(described.run_id)
            events = (await client.get_workflow_handle(handle.workflow_id, run_id=run_id).fetch_history()).events
            started = events[0].workflow_execution_started_event_attributes
            if not started.continued_execution_run_id:
                break
            run_id = started.continued_execution_run_id
        assert len(history_runs) >= 2
        assert set(recreated.temporal_run_ids) < set(history_runs)
        await reconcile_run(client, ledger, result.run_id)
        assert set((await ledger.run(result.run_id)).temporal_run_ids) == set(history_runs)
