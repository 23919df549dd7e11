"""`agentledger.once`: run a tool's side effect once per effect key, whatever crashes, retries and resets happen."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from pydantic_ai.tools import RunContext
from pydantic_core import PydanticSerializationError, to_jsonable_python
from temporalio import activity

from agentledger.activities._failures import ledger_failure
from agentledger.errors import AgentLedgerError, EffectBusyError, EffectUnknownError, LedgerError
from agentledger.ledger._facade import Ledger
from agentledger.model._effects import EffectRecord, EffectResolution, effect_key, lease_is_live
from agentledger.model._keyed import EFFECTS, KeyedRecord
from agentledger.tools._context import ToolContext, current_tool_context

__all__ = ['once']

T = TypeVar('T')

logger = logging.getLogger('agentledger.once')

LEASE_S = 6.0
"""How long a `started` effect stays its holder's without a renewal; the holder renews it every third of that."""
_POLL_S = 0.5
"""How often an attempt waiting for a live holder looks again."""


async def once(
    ctx: RunContext[Any],
    name: str,
    act: Callable[[str], Awaitable[T]],
    *,
    reconcile: Callable[[str], Awaitable[T | None]] | None = None,
) -> T:
    """Perform the side effect `act` at most once for this tool call and `name`; return its (recorded) result.

    The effect key is `<workflow id>/<tool_call_id>/<name>`, where the workflow id is the root of
    the run's lineage (a continuation or fork keys on the workflow it descends from, so a call it
    inherited is not repeated), and is stable across retries, worker crashes, Temporal resets past
    the model response that made the call (with the model-call journal, the same tool_call_id comes
    back) and restarts. `act(key)` should pass the key to the target system as its idempotency key.

    - The first call records `started`, awaits `act(key)`, records `done` with the result, returns it.
    - A later call (any attempt, any worker) of a `done` effect returns the recorded result without acting.
    - A call that finds `started` by an attempt whose lease is live (it is still acting: the holder
      renews its lease every few seconds) waits for it, up to its own start-to-close deadline; then it
      fails with `EffectBusyError` (retryable) and Temporal retries it.
    - A call that finds `started` without `done` and its lease run out (an attempt died mid-effect)
      asks `reconcile(key)`: a result means it happened (recorded, returned), `None` that it did not
      (`act` runs). Without `reconcile` the effect is marked `unknown` and the attempt fails with
      `EffectUnknownError` until an operator runs `agentledger resolve KEY --outcome done|not-done`
      (or `Ledger.resolve_effect`).
    - An exception from `act` records `failed` and propagates; the next call acts again (after asking
      `reconcile`, when there is one).

    Results are stored as JSON (`pydantic_core.to_jsonable_python`) and every call returns that JSON
    form, the first one too, so a replayed result is indistinguishable from a fresh one: return plain
    JSON data (or a model you rebuild from it). Two attempts racing (a zombie and its retry) never both
    act on their own: `started` is taken with the ledger's atomic create / compare-and-swap, and a
    holder that is alive keeps it. A holder stalled for longer than the lease (`LEASE_S`) between
    taking the effect and acting can still race a successor: that is what the key, passed to the
    target as its idempotency key, is for.

    Runs only inside a tool body on a worker with `LedgerPlugin`; elsewhere it raises `AgentLedgerError`.
    """
    tool = current_tool_context()
    if tool is None:
        raise AgentLedgerError(
            'agentledger.once() runs inside a tool body executed as a Temporal activity on a worker with '
            'LedgerPlugin; this call is not'
        )
    if ctx.tool_call_id is None:
        raise ValueError('agentledger.once() is for tool bodies: this RunContext has no tool_call_id')
    try:
        scope = await tool.scopes.effect_scope(tool.run_id)
        key = effect_key(scope, ctx.tool_call_id, name)
        return cast(T, await _Once(tool, scope, key, ctx.tool_call_id, name).run(act, reconcile))
    except LedgerError as error:
        raise ledger_failure(error) from error


@dataclasses.dataclass
class _Once:
    tool: ToolContext
    scope: str
    key: str
    tool_call_id: str
    name: str
    owner: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def ledger(self) -> Ledger:
        return self.tool.ledger

    async def run(self, act: Callable[[str], Awaitable[Any]], reconcile: Callable[[str], Awaitable[Any]] | None) -> Any:
        deadline = _attempt_deadline()
        while True:
            stored = await self.ledger.record(EFFECTS, self.key)
            now = datetime.now(UTC)
            if stored is None:
                created = await self.ledger.create_record(
                    EFFECTS, self.key, self._new(now).to_value(), scope=self.scope
                )
                if created is not None:
                    return await self._act(created, act)
                continue
            effect = EffectRecord.from_record(stored)
            if effect.status == 'done':
                return effect.result
            if lease_is_live(effect, self.owner, now):
                # Its holder is alive and acting (or asking): wait for it rather than guess.
                if deadline is not None and now + timedelta(seconds=_POLL_S) >= deadline:
                    raise EffectBusyError(self.key, effect.owner, cast(datetime, effect.lease_until))
                await asyncio.sleep(_POLL_S)
                continue
            if effect.status == 'started' and effect.owner == self.owner:
                # Our own `started` (a create whose answer was lost and retried): we have not acted yet.
                return await self._act(stored, act)
            may_act = effect.status == 'not_done' or (effect.status == 'failed' and reconcile is None)
            if not may_act and reconcile is None:
                if effect.status != 'unknown':
                    marked = dataclasses.replace(
                        effect,
                        status='unknown',
                        owner='',
                        lease_until=None,
                        error=f'attempt {effect.owner or "?"} started the effect and recorded no end',
                        updated_at=now,
                    )
                    if await self.ledger.replace_record(stored, marked.to_value()) is None:
                        continue
                raise EffectUnknownError(self.key)
            # Take the effect before acting or asking, so two attempts never both decide to act.
            claimed = await self.ledger.replace_record(stored, self._claim(effect, now).to_value())
            if claimed is None:
                continue
            if may_act or reconcile is None:
                return await self._act(claimed, act)
            async with self._leased(claimed) as lease:
                found = await reconcile(self.key)
            if found is None:
                return await self._act(lease.record, act)
            return await self._settle(lease.record, to_jsonable_python(found), 'reconciled')

    def _new(self, now: datetime) -> EffectRecord:
        return EffectRecord(
            key=self.key,
            workflow_id=self.scope,
            tool_call_id=self.tool_call_id,
            name=self.name,
            run_id=self.tool.run_id,
            status='started',
            created_at=now,
            updated_at=now,
            tool_name=self.tool.tool_name,
            owner=self.owner,
            lease_until=now + timedelta(seconds=LEASE_S),
            attempts=1,
        )

    def _claim(self, effect: EffectRecord, now: datetime) -> EffectRecord:
        return dataclasses.replace(
            effect,
            status='started',
            owner=self.owner,
            lease_until=now + timedelta(seconds=LEASE_S),
            attempts=effect.attempts + 1,
            error=None,
            updated_at=now,
        )

    @asynccontextmanager
    async def _leased(self, held: KeyedRecord) -> AsyncIterator[_Lease]:
        """Renew the lease on `held` while the body runs; `lease.record` is the latest stored version."""
        lease = _Lease(self.ledger, held, self.owner)
        try:
            yield lease
        finally:
            await lease.stop()

    async def _act(self, claimed: KeyedRecord, act: Callable[[str], Awaitable[Any]]) -> Any:
        async with self._leased(claimed) as lease:
            try:
                value = await act(self.key)
                failure: Exception | None = None
            except Exception as error:
                failure = error
            except BaseException:
                # Cancelled mid-effect: this attempt no longer acts, so a successor need not wait for the
                # lease to run out before it asks `reconcile` (or marks the effect unknown).
                await lease.stop()
                with suppress(LedgerError):  # else the lease runs out on its own
                    await self._finish(lease.record, _released, only_if_ours=True)
                raise
        if failure is not None:
            message = f'{type(failure).__name__}: {failure}'

            def failed(effect: EffectRecord) -> EffectRecord:
                return dataclasses.replace(
                    effect, status='failed', owner='', lease_until=None, error=message, updated_at=datetime.now(UTC)
                )

            # If another attempt took the effect meanwhile, its record stands.
            await self._finish(lease.record, failed, only_if_ours=True)
            raise failure
        try:
            result = to_jsonable_python(value)
        except PydanticSerializationError as error:
            raise TypeError(
                f'the result of once-only effect {self.key!r} is not JSON-serialisable ({error}); '
                'the effect happened but its result cannot be recorded'
            ) from error
        return await self._settle(lease.record, result, 'acted')

    async def _settle(self, held: KeyedRecord, result: Any, resolution: EffectResolution) -> Any:
        """Record `done` over the record we hold; if it changed meanwhile, record it over the new one."""

        def done(effect: EffectRecord) -> EffectRecord:
            return dataclasses.replace(
                effect,
                status='done',
                result=result,
                error=None,
                owner='',
                lease_until=None,
                resolution=resolution,
                updated_at=datetime.now(UTC),
            )

        return (await self._finish(held, done, only_if_ours=False)).result

    async def _finish(
        self, held: KeyedRecord, outcome: Callable[[EffectRecord], EffectRecord], *, only_if_ours: bool
    ) -> EffectRecord:
        """Write `outcome(effect)` over the latest version (a renewal may have moved it); `done` is never undone."""
        current = held
        while True:
            effect = EffectRecord.from_record(current)
            if effect.status == 'done' or (only_if_ours and effect.owner != self.owner):
                return effect
            stored = await self.ledger.replace_record(current, outcome(effect).to_value())
            if stored is not None:
                return EffectRecord.from_record(stored)
            reread = await self.ledger.record(EFFECTS, self.key)
            if reread is None:
                raise LedgerError(f'once-only effect {self.key!r} disappeared from the ledger')
            current = reread


class _Lease:
    """The holder's lease on a `started` effect, renewed in the background while it acts or asks `reconcile`."""

    def __init__(self, ledger: Ledger, held: KeyedRecord, owner: str) -> None:
        self.record = held
        self._ledger = ledger
        self._owner = owner
        self._task = asyncio.create_task(self._renew(), name=f'agentledger lease {held.key}')

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LEASE_S / 3)
            now = datetime.now(UTC)
            effect = EffectRecord.from_record(self.record)
            renewed = dataclasses.replace(effect, lease_until=now + timedelta(seconds=LEASE_S), updated_at=now)
            try:
                stored = await self._ledger.replace_record(self.record, renewed.to_value())
                if stored is None:
                    # A renewal whose answer was lost may have landed: ours if it still names us.
                    stored = await self._ledger.record(EFFECTS, self.record.key)
            except LedgerError as error:
                logger.warning('could not renew the lease on once-only effect %s: %s', self.record.key, error)
                continue
            if stored is None or not _held_by(EffectRecord.from_record(stored), self._owner):
                logger.warning('once-only effect %s was taken by another attempt while this one held it', effect.key)
                return
            self.record = stored

    async def stop(self) -> None:
        """Stop renewing (the outcome written next clears the lease); idempotent."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def _released(effect: EffectRecord) -> EffectRecord:
    return dataclasses.replace(effect, lease_until=None, updated_at=datetime.now(UTC))


def _held_by(effect: EffectRecord, owner: str) -> bool:
    return effect.status == 'started' and effect.owner == owner


def _attempt_deadline() -> datetime | None:
    """When this activity attempt's start-to-close timeout runs out (`None` outside an activity or without one)."""
    if not activity.in_activity():
        return None
    info = activity.info()
    if info.start_to_close_timeout is None:
        return None
    return info.started_time + info.start_to_close_timeout
