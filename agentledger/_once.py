"""`agentledger.once`: run a tool's side effect once per effect key, whatever crashes, retries and resets happen."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from pydantic_ai.tools import RunContext
from pydantic_core import PydanticSerializationError, to_jsonable_python

from ._errors import AgentLedgerError, EffectUnknownError, LedgerError
from .activities._failures import ledger_failure
from .activities._tool_context import ToolContext, current_tool_context
from .ledger._base import Ledger
from .ledger._effects import EffectRecord, EffectResolution, effect_key
from .ledger._keyed import EFFECTS, KeyedRecord

__all__ = ['once']

T = TypeVar('T')


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
    - A call that finds `started` without `done` (an attempt died mid-effect) asks `reconcile(key)`:
      a result means it happened (recorded, returned), `None` that it did not (`act` runs). Without
      `reconcile` the effect is marked `unknown` and the attempt fails with `EffectUnknownError` until
      an operator runs `agentledger resolve KEY --outcome done|not-done` (or `Ledger.resolve_effect`).
    - An exception from `act` records `failed` and propagates; the next call acts again (after asking
      `reconcile`, when there is one).

    Results are stored as JSON (`pydantic_core.to_jsonable_python`) and every call returns that JSON
    form, the first one too, so a replayed result is indistinguishable from a fresh one: return plain
    JSON data (or a model you rebuild from it). Two attempts racing (a zombie and its retry) never both
    act on their own: `started` is taken with the ledger's atomic create / compare-and-swap.

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
            found = await reconcile(self.key)
            if found is None:
                return await self._act(claimed, act)
            return await self._settle(claimed, to_jsonable_python(found), 'reconciled')

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
            attempts=1,
        )

    def _claim(self, effect: EffectRecord, now: datetime) -> EffectRecord:
        return dataclasses.replace(
            effect, status='started', owner=self.owner, attempts=effect.attempts + 1, error=None, updated_at=now
        )

    async def _act(self, claimed: KeyedRecord, act: Callable[[str], Awaitable[Any]]) -> Any:
        try:
            value = await act(self.key)
        except Exception as error:
            failed = dataclasses.replace(
                EffectRecord.from_record(claimed),
                status='failed',
                owner='',
                error=f'{type(error).__name__}: {error}',
                updated_at=datetime.now(UTC),
            )
            # If another attempt took the effect meanwhile, its record stands.
            await self.ledger.replace_record(claimed, failed.to_value())
            raise
        try:
            result = to_jsonable_python(value)
        except PydanticSerializationError as error:
            raise TypeError(
                f'the result of once-only effect {self.key!r} is not JSON-serialisable ({error}); '
                'the effect happened but its result cannot be recorded'
            ) from error
        return await self._settle(claimed, result, 'acted')

    async def _settle(self, claimed: KeyedRecord, result: Any, resolution: EffectResolution) -> Any:
        """Record `done` over the record we hold; if it changed meanwhile, record it over the new one."""
        current = claimed
        while True:
            effect = EffectRecord.from_record(current)
            if effect.status == 'done':
                return effect.result
            done = dataclasses.replace(
                effect,
                status='done',
                result=result,
                error=None,
                owner='',
                resolution=resolution,
                updated_at=datetime.now(UTC),
            )
            if await self.ledger.replace_record(current, done.to_value()) is not None:
                return result
            reread = await self.ledger.record(EFFECTS, self.key)
            if reread is None:
                raise LedgerError(f'once-only effect {self.key!r} disappeared from the ledger')
            current = reread
