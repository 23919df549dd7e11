"""Conformance: keyed records, the journals (model calls, tool calls), tool effects and once-only effects."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import ModelResponse, TextPart
from pydantic_ai.models.test import TestModel
from pydantic_ai.tools import RunContext
from pydantic_ai.usage import RequestUsage, RunUsage

import agentledger.tools._once
from agentledger import once
from agentledger.errors import (
    AgentLedgerError,
    EffectBusyError,
    EffectNotFoundError,
    EffectStateError,
    EffectUnknownError,
    RunNotFoundError,
)
from agentledger.ledger import Ledger
from agentledger.ledger._scopes import Scopes
from agentledger.model import ErrorInfo
from agentledger.model._effects import EffectRecord
from agentledger.model._journal import JournalEntry
from agentledger.model._keyed import EFFECTS
from agentledger.model._records import ForkRef, ToolEffect
from agentledger.model._tool_journal import ToolJournalEntry, decode_payload, encode_payload, tool_journal_key
from agentledger.tools._context import ToolContext, tool_context

from ..helpers.ledgers import SHARED_BACKENDS, make_sharing_pair
from ..helpers.records import acceptance, at, event, run_seal, run_start


async def test_tool_effect_of_a_retried_call_lists_the_abandoned_attempt_in_doubt(ledger: Ledger) -> None:
    """C4/C11: attempt 1 started and never ended, attempt 2 completed and was accepted: the effect is
    completed, with attempt 1 in doubt, under the idempotency key `<workflow_id>/<tool_call_id>`."""
    await ledger.start_run(run_start('run-t'))
    call: dict[str, Any] = {'run_id': 'run-t', 'tool_name': 'refund', 'tool_call_id': 'call-7'}
    await ledger.record_events(
        [
            event('3', 1, 'tool_call_started', when=1, **call),
            event('3', 2, 'tool_call_started', when=11, **call),
            event('3', 2, 'tool_call_completed', when=12, outcome='returned', **call),
        ]
    )
    await ledger.accept([acceptance('3', run_id='run-t')])

    assert await ledger.tool_effects('run-t') == [
        ToolEffect(
            run_id='run-t',
            tool_call_id='call-7',
            tool_name='refund',
            status='completed',
            attempts=2,
            idempotency_key='wf-run-t/call-7',
            outcome='returned',
            in_doubt_attempts=(1,),
        )
    ]


async def test_tool_effect_started_and_never_ended_is_unknown_after_the_run_ends(ledger: Ledger) -> None:
    """C4: a tool call whose only attempt never ended is `started` while the run runs, then
    `unknown_after_crash` once the run is sealed."""
    await ledger.start_run(run_start('run-t'))
    await ledger.record_events(
        [event('3', 1, 'tool_call_started', run_id='run-t', tool_name='refund', tool_call_id='call-7')]
    )
    [running] = await ledger.tool_effects('run-t')
    assert (running.status, running.in_doubt_attempts) == ('started', ())

    await ledger.seal_run(run_seal('run-t', status='failed', error=ErrorInfo('WorkerCrash', 'killed', False)))

    [effect] = await ledger.tool_effects('run-t')
    assert effect.status == 'unknown_after_crash'
    assert (effect.attempts, effect.in_doubt_attempts, effect.outcome) == (1, (1,), None)
    assert effect.idempotency_key == 'wf-run-t/call-7'
    with pytest.raises(RunNotFoundError):
        await ledger.tool_effects('unknown-run')


@pytest.mark.parametrize(('decided', 'outcome'), [('approved', 'returned'), ('denied', 'denied')])
async def test_tool_effect_of_a_call_that_asked_for_approval_is_its_decided_end(
    ledger: Ledger, decided: str, outcome: str
) -> None:
    """A tool that raised `ApprovalRequired` completed its activity `approval_required`; once decided the call
    ends again, run in a new activity or denied by the workflow: that end is the effect, not the deferral."""
    await ledger.start_run(run_start('run-t'))
    call: dict[str, Any] = {'run_id': 'run-t', 'tool_name': 'store_credit', 'tool_call_id': 'call-3'}
    asked = [
        event('3', 1, 'tool_call_started', when=1, **call),
        event('3', 1, 'tool_call_completed', when=2, outcome='approval_required', **call),
    ]
    if decided == 'approved':
        then = [
            event('8', 1, 'tool_call_started', when=5, **call),
            event('8', 1, 'tool_call_completed', when=6, outcome='returned', **call),
        ]
    else:
        then = [
            event('deferred:call-3', 0, 'tool_call_started', when=5, **call),
            event('deferred:call-3', 0, 'tool_call_completed', when=5, outcome='denied', **call),
        ]
    await ledger.record_events([*asked, *then])
    await ledger.accept([acceptance('3', run_id='run-t'), acceptance(then[0].activity_id, run_id='run-t')])

    [effect] = await ledger.tool_effects('run-t')
    assert (effect.status, effect.outcome, effect.attempts, effect.in_doubt_attempts) == ('completed', outcome, 2, ())


async def test_keyed_record_create_is_atomic_first_writer_wins(ledger: Ledger) -> None:
    """Of writers racing to create one key, exactly one gets the record; the others get None."""
    results = await asyncio.gather(
        *(ledger.create_record('journal', 'k1', {'writer': i}, scope='wf-1') for i in range(12))
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    stored = await ledger.record('journal', 'k1')
    assert stored is not None
    assert (stored.value, stored.scope, stored.version) == (winners[0].value, 'wf-1', winners[0].version)
    assert await ledger.record('journal', 'k2') is None
    assert await ledger.record('effects', 'k1') is None


async def test_keyed_record_replace_is_compare_and_swap(ledger: Ledger) -> None:
    """A replace names the version it read: a stale version stores nothing; the scope never changes."""
    created = await ledger.create_record('effects', 'wf-1/call-1/pay', {'status': 'started'}, scope='wf-1')
    assert created is not None
    first = await ledger.replace_record(created, {'status': 'done'})
    assert first is not None and first.version != created.version
    assert await ledger.replace_record(created, {'status': 'unknown'}) is None
    stored = await ledger.record('effects', 'wf-1/call-1/pay')
    assert stored is not None and stored.value == {'status': 'done'} and stored.scope == 'wf-1'
    racing = await asyncio.gather(*(ledger.replace_record(first, {'n': i}) for i in range(8)))
    assert sum(r is not None for r in racing) == 1
    with pytest.raises(ValueError, match='never stored'):
        await ledger.replace_record(dataclasses.replace(created, version=''), {})


async def test_keyed_records_list_by_namespace_and_scope(ledger: Ledger) -> None:
    for key, scope in [('a/1', 'a'), ('a/2', 'a'), ('a/delegate/x/1', 'a/delegate/x'), ('b/1', 'b')]:
        assert await ledger.create_record('effects', key, {'key': key}, scope=scope) is not None
    assert await ledger.create_record('journal', 'a|j', {}, scope='a') is not None
    assert [r.key for r in await ledger.records('effects', scope='a')] == ['a/1', 'a/2']
    assert [r.key for r in await ledger.records('effects')] == ['a/1', 'a/2', 'a/delegate/x/1', 'b/1']
    assert await ledger.records('effects', scope='nobody') == []
    with pytest.raises(ValueError, match='namespace'):
        await ledger.records('../runs')


def response(text: str) -> ModelResponse:
    return ModelResponse(parts=[TextPart(text)], usage=RequestUsage(input_tokens=7, output_tokens=3), model_name='m')


def journal_entry(key: str, text: str, attempt: int = 1) -> JournalEntry:
    return JournalEntry.of(
        response(text),
        key=key,
        workflow_id='wf-1',
        run_id='r1',
        activity_type='agent__model_request',
        request_hash='h',
        recorded_at=at(attempt),
        temporal_run_id='t1',
        activity_id='2',
        attempt=attempt,
    )


async def test_journal_keeps_the_first_response_recorded(ledger: Ledger) -> None:
    """The model-call journal: the first response recorded under a key is the one every attempt replays."""
    assert await ledger.journal_entry('wf-1|r1|agent__model_request|h') is None
    first = await ledger.record_journal(journal_entry('wf-1|r1|agent__model_request|h', 'first'))
    late = await ledger.record_journal(journal_entry('wf-1|r1|agent__model_request|h', 'zombie', attempt=2))
    assert late == first
    stored = await ledger.journal_entry('wf-1|r1|agent__model_request|h')
    assert stored is not None and stored.attempt == 1
    replayed = stored.model_response()
    assert replayed.parts == [TextPart('first')] and replayed.usage.input_tokens == 7


def tool_entry(
    tool_call_id: str, text: str, *, temporal_run_id: str = 't1', attempt: int = 1, args_digest: str | None = 'args-1'
) -> ToolJournalEntry:
    return ToolJournalEntry(
        key=tool_journal_key('wf-1', 'r1', 'charge', tool_call_id),
        workflow_id='wf-1',
        run_id='r1',
        tool_name='charge',
        tool_call_id=tool_call_id,
        step=1,
        payload=encode_payload({'encoding': b'json/plain'}, f'"{text}"'.encode()),
        outcome='returned',
        detail=None,
        recorded_at=at(attempt),
        temporal_run_id=temporal_run_id,
        activity_id='2',
        attempt=attempt,
        args_digest=args_digest,
    )


async def test_tool_journal_keeps_the_first_result_until_it_is_voided(ledger: Ledger) -> None:
    """The tool-call journal: the first result stands; a voided one, or one an earlier ledger run recorded when
    the tools were asked to run again, is replaced by the next; voiding touches one execution chain only."""
    first = tool_entry('c1', 'first')
    assert await ledger.tool_journal_entry(first.key) is None
    assert await ledger.record_tool_result(first) == first
    assert await ledger.record_tool_result(tool_entry('c1', 'zombie', attempt=2)) == first
    stored = await ledger.tool_journal_entry(first.key)
    assert stored == first and decode_payload(stored.payload) == ({'encoding': b'json/plain'}, b'"first"')

    # Asked to run again, the same ledger run (in any Temporal run) still replays its own result; a later one
    # (restarting the failed run) replaces it.
    same_run = tool_entry('c1', 'same run', temporal_run_id='t2', attempt=3)
    assert await ledger.record_tool_result(same_run, supersede_earlier_runs=True) == first
    rerun = dataclasses.replace(tool_entry('c1', 'rerun', temporal_run_id='t3'), run_id='r2')
    assert await ledger.record_tool_result(rerun, supersede_earlier_runs=True) == rerun

    other_chain = dataclasses.replace(tool_entry('c2', 'other'), key=tool_journal_key('wf-1', 'r0', 'charge', 'c2'))
    await ledger.record_tool_result(other_chain)
    await ledger.record_tool_result(tool_entry('c3', 'third'))
    voided = await ledger.void_tool_results('wf-1', 'r1', 'tools changed')
    assert sorted(e.tool_call_id for e in voided) == ['c1', 'c3'] and {e.voided for e in voided} == {'tools changed'}
    assert await ledger.void_tool_results('wf-1', 'r1', 'again') == []
    assert await ledger.tool_journal_entry(other_chain.key) == other_chain
    after = tool_entry('c1', 'after the reset', temporal_run_id='t3')
    assert await ledger.record_tool_result(after) == after
    assert await ledger.tool_journal_entry(after.key) == after


async def test_a_tool_result_recorded_for_other_arguments_is_replaced(ledger: Ledger) -> None:
    """A tool_call_id reused for a call with other arguments: its result replaces the one recorded for the
    first call, and then stands like any other. An entry without an arguments' digest stands for any."""
    first = tool_entry('c1', 'for args 1')
    assert await ledger.record_tool_result(first) == first
    other = tool_entry('c1', 'for args 2', args_digest='args-2', attempt=2)
    assert await ledger.record_tool_result(other) == other
    assert await ledger.record_tool_result(tool_entry('c1', 'racing', args_digest='args-2', attempt=3)) == other
    assert await ledger.tool_journal_entry(first.key) == other

    undigested = tool_entry('c2', 'no digest', args_digest=None)
    assert await ledger.record_tool_result(undigested) == undigested
    assert await ledger.record_tool_result(tool_entry('c2', 'digested', attempt=2)) == undigested


class Target:
    """A fake external system that counts the effects it performed, by idempotency key."""

    def __init__(self) -> None:
        self.performed: list[str] = []

    async def charge(self, key: str) -> dict[str, Any]:
        self.performed.append(key)
        await asyncio.sleep(0.01)
        return {'charge': f'ch-{len(self.performed)}', 'key': key}

    async def lookup(self, key: str) -> dict[str, Any] | None:
        return {'charge': 'found', 'key': key} if key in self.performed else None


def tool_ctx(ledger: Ledger, tool_call_id: str = 'call-1', *, attempt: int = 1) -> RunContext[None]:
    """Run `once` as the body of a tool-call attempt of run r1 would (the interceptor sets this context)."""
    tool_context.set(
        ToolContext(
            ledger=ledger,
            scopes=Scopes(ledger),
            run_id='r1',
            workflow_id='wf-r1',
            temporal_run_id='t1',
            activity_id='3',
            attempt=attempt,
            tool_name='charge',
        )
    )
    return RunContext(deps=None, model=TestModel(), usage=RunUsage(), tool_call_id=tool_call_id)


async def test_once_acts_once_and_replays_the_recorded_result(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1'))
    target = Target()
    first = await once(tool_ctx(ledger), 'charge', target.charge)
    again = await once(tool_ctx(ledger, attempt=2), 'charge', target.charge)
    assert first == again == {'charge': 'ch-1', 'key': 'wf-r1/call-1/charge'}
    assert target.performed == ['wf-r1/call-1/charge']
    other = await once(tool_ctx(ledger, 'call-2'), 'charge', target.charge)
    assert other['charge'] == 'ch-2'
    effect = await ledger.effect('wf-r1/call-1/charge')
    assert (effect.status, effect.resolution, effect.attempts, effect.run_id) == ('done', 'acted', 1, 'r1')
    assert [e.key for e in await ledger.effects(run_id='r1')] == ['wf-r1/call-1/charge', 'wf-r1/call-2/charge']


async def test_racing_attempts_never_both_act(ledger: Ledger) -> None:
    """A zombie attempt and its retry call `once` together: one acts; the other never acts on its own."""
    await ledger.start_run(run_start('r1'))
    target = Target()
    results = await asyncio.gather(
        *(once(tool_ctx(ledger, attempt=i), 'charge', target.charge) for i in range(1, 6)), return_exceptions=True
    )
    assert len(target.performed) == 1
    assert all(isinstance(r, dict | EffectUnknownError) for r in results)
    assert (await ledger.effect('wf-r1/call-1/charge')).status == 'done'


async def died_mid_effect(ledger: Ledger, target: Target, *, performed: bool) -> None:
    """Leave the effect `started` as an attempt killed inside `act` does (before or after the target acted)."""

    async def killed(key: str) -> None:
        if performed:
            target.performed.append(key)
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await once(tool_ctx(ledger), 'charge', killed)
    assert (await ledger.effect('wf-r1/call-1/charge')).status == 'started'


@pytest.mark.parametrize('performed', [True, False])
async def test_started_effect_is_reconciled_with_the_target(ledger: Ledger, performed: bool) -> None:
    await ledger.start_run(run_start('r1'))
    target = Target()
    await died_mid_effect(ledger, target, performed=performed)
    result = await once(tool_ctx(ledger, attempt=2), 'charge', target.charge, reconcile=target.lookup)
    assert target.performed == ['wf-r1/call-1/charge']
    effect = await ledger.effect('wf-r1/call-1/charge')
    assert effect.status == 'done' and effect.result == result
    assert effect.resolution == ('reconciled' if performed else 'acted')


async def test_started_effect_without_reconcile_waits_for_an_operator(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1'))
    target = Target()
    await died_mid_effect(ledger, target, performed=True)
    for attempt in (2, 3):
        with pytest.raises(EffectUnknownError, match=r'agentledger resolve wf-r1/call-1/charge'):
            await once(tool_ctx(ledger, attempt=attempt), 'charge', target.charge)
    [unknown] = await ledger.effects(status='unknown')
    assert unknown.key == 'wf-r1/call-1/charge' and unknown.error is not None
    resolved = await ledger.resolve_effect(unknown.key, 'done', {'charge': 'by-hand'})
    assert (resolved.status, resolved.resolution) == ('done', 'operator')
    assert await once(tool_ctx(ledger, attempt=4), 'charge', target.charge) == {'charge': 'by-hand'}
    assert target.performed == ['wf-r1/call-1/charge']
    with pytest.raises(EffectStateError, match='already done'):
        await ledger.resolve_effect(unknown.key, 'not-done')
    with pytest.raises(EffectNotFoundError, match='nope'):
        await ledger.resolve_effect('nope', 'done')


async def test_effect_resolved_not_done_acts_on_the_next_attempt(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1'))
    target = Target()
    await died_mid_effect(ledger, target, performed=False)
    with pytest.raises(EffectUnknownError):
        await once(tool_ctx(ledger, attempt=2), 'charge', target.charge)
    with pytest.raises(ValueError, match='only recorded with --outcome done'):
        await ledger.resolve_effect('wf-r1/call-1/charge', 'not-done', {'x': 1})
    assert (await ledger.resolve_effect('wf-r1/call-1/charge', 'not-done')).status == 'not_done'
    assert (await once(tool_ctx(ledger, attempt=3), 'charge', target.charge))['charge'] == 'ch-1'
    assert target.performed == ['wf-r1/call-1/charge']
    assert (await ledger.effect('wf-r1/call-1/charge')).attempts == 2


async def test_effect_that_raised_is_failed_and_acts_again(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1'))
    target = Target()

    async def declined(key: str) -> None:
        raise RuntimeError('card declined')

    with pytest.raises(RuntimeError, match='declined'):
        await once(tool_ctx(ledger), 'charge', declined)
    failed = await ledger.effect('wf-r1/call-1/charge')
    assert (failed.status, failed.error) == ('failed', 'RuntimeError: card declined')
    assert (await once(tool_ctx(ledger, attempt=2), 'charge', target.charge))['charge'] == 'ch-1'


async def test_continuation_keys_effects_on_its_lineage_root(ledger: Ledger) -> None:
    """A continuation (or fork) re-running an inherited call finds the effect its ancestor recorded."""
    await ledger.start_run(run_start('r0', workflow_id='wf-root'))
    seed = ForkRef(run_id='r0', snapshot_id='snapshot-of-r0', reason='continue')
    await ledger.start_run(run_start('r1', workflow_id='wf-r1', forked_from=seed))
    target = Target()
    result = await once(tool_ctx(ledger), 'charge', target.charge)
    assert result['key'] == 'wf-root/call-1/charge'
    assert [e.key for e in await ledger.effects(workflow_id='wf-root')] == ['wf-root/call-1/charge']


async def test_once_outside_a_tool_activity_is_an_error(ledger: Ledger) -> None:
    tool_context.set(None)
    with pytest.raises(AgentLedgerError, match='LedgerPlugin'):
        await once(RunContext(deps=None, model=TestModel(), usage=RunUsage(), tool_call_id='c'), 'x', Target().charge)


@pytest.mark.parametrize('backend', SHARED_BACKENDS)
async def test_two_workers_racing_on_one_effect_act_once(backend: str, tmp_path: Path) -> None:
    """Two ledgers on one store (two worker processes): the atomic create lets exactly one attempt act."""
    one, two = make_sharing_pair(backend, tmp_path)
    async with one as first, two as second:
        await first.start_run(run_start('r1'))
        target = Target()
        results = await asyncio.gather(
            *(
                once(tool_ctx(ledger, attempt=i), 'charge', target.charge)
                for i, ledger in enumerate([first, second] * 3)
            ),
            return_exceptions=True,
        )
        assert len(target.performed) == 1
        assert any(isinstance(r, dict) for r in results)
        assert (await second.effect('wf-r1/call-1/charge')).status == 'done'


class SlowTarget(Target):
    """A target whose effect takes `seconds` before it is recorded there: a holder that is alive but slow."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def charge(self, key: str) -> dict[str, Any]:
        await asyncio.sleep(self.seconds)
        return await super().charge(key)


async def test_an_attempt_waits_for_a_live_holder_instead_of_reconciling(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow holder renews its lease past its first term; its successor neither asks the target nor acts."""
    monkeypatch.setattr(agentledger.tools._once, 'LEASE_S', 1.0)
    monkeypatch.setattr(agentledger.tools._once, '_POLL_S', 0.05)
    await ledger.start_run(run_start('r1'))
    target = SlowTarget(2.5)
    asked: list[str] = []

    async def lookup(key: str) -> dict[str, Any] | None:
        asked.append(key)
        return await target.lookup(key)

    holder = asyncio.create_task(once(tool_ctx(ledger), 'charge', target.charge, reconcile=lookup))
    while (await ledger.record(EFFECTS, 'wf-r1/call-1/charge')) is None:
        await asyncio.sleep(0.01)
    successor = await once(tool_ctx(ledger, attempt=2), 'charge', target.charge, reconcile=lookup)
    assert successor == await holder
    assert target.performed == ['wf-r1/call-1/charge'] and asked == []
    effect = await ledger.effect('wf-r1/call-1/charge')
    assert (effect.status, effect.resolution, effect.attempts, effect.lease_until) == ('done', 'acted', 1, None)


async def test_a_holder_that_stopped_renewing_is_reconciled_once_its_lease_runs_out(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agentledger.tools._once, '_POLL_S', 0.05)
    await ledger.start_run(run_start('r1'))
    target = Target()
    now = datetime.now(UTC)
    dead = EffectRecord(
        key='wf-r1/call-1/charge',
        workflow_id='wf-r1',
        tool_call_id='call-1',
        name='charge',
        run_id='r1',
        status='started',
        created_at=now,
        updated_at=now,
        owner='a-worker-that-died',
        lease_until=now + timedelta(seconds=0.4),
        attempts=1,
    )
    await ledger.create_record(EFFECTS, dead.key, dead.to_value(), scope='wf-r1')
    result = await once(tool_ctx(ledger, attempt=2), 'charge', target.charge, reconcile=target.lookup)
    assert datetime.now(UTC) >= dead.lease_until  # it waited for the lease, not for the holder
    assert result['charge'] == 'ch-1' and target.performed == ['wf-r1/call-1/charge']
    assert (await ledger.effect(dead.key)).attempts == 2


async def test_an_attempt_that_outlasts_its_own_deadline_waiting_fails_busy(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ledger.start_run(run_start('r1'))
    target = SlowTarget(1.0)
    holder = asyncio.create_task(once(tool_ctx(ledger), 'charge', target.charge))
    while (await ledger.record(EFFECTS, 'wf-r1/call-1/charge')) is None:
        await asyncio.sleep(0.01)
    monkeypatch.setattr(
        agentledger.tools._once, '_attempt_deadline', lambda: datetime.now(UTC) + timedelta(seconds=0.2)
    )
    with pytest.raises(EffectBusyError, match=r"'wf-r1/call-1/charge' is held by attempt \w+ that is still acting"):
        await once(tool_ctx(ledger, attempt=2), 'charge', target.charge)
    await holder
    assert target.performed == ['wf-r1/call-1/charge']
