"""Once-only effect records and their pure rules (no I/O): what `agentledger.once` stores per effect key.

An effect goes `started` (an attempt is about to act) -> `done` (with the result) on the happy path.
An attempt that finds `started` without `done` knows an earlier attempt died mid-effect: the target
system is asked (`reconcile`), or the effect becomes `unknown` until an operator resolves it
(`done` with a result, or `not_done`, which lets the next attempt act). An exception from the
effect itself records `failed` (it reported that it did not happen), and the next attempt may act.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Literal, TypeAlias

from agentledger.errors import EffectStateError, LedgerCorruptionError
from agentledger.model._keyed import EFFECTS, KeyedRecord

__all__ = [
    'EffectRecord',
    'EffectResolution',
    'EffectStatus',
    'ResolveOutcome',
    'effect_key',
    'lease_is_live',
    'resolved_effect',
]

EffectStatus: TypeAlias = Literal['started', 'done', 'failed', 'unknown', 'not_done']
"""Where a once-only effect stands. `unknown`: an attempt died mid-effect and no one could tell what happened."""

EffectResolution: TypeAlias = Literal['acted', 'reconciled', 'operator']
"""Who decided the effect's outcome: the attempt that acted, the reconcile callback, or an operator."""

ResolveOutcome: TypeAlias = Literal['done', 'not-done']
"""An operator's answer for an effect in doubt (`agentledger resolve KEY --outcome ...`)."""


def effect_key(scope: str, tool_call_id: str, name: str) -> str:
    """The key of effect `name` of a tool call: `<scope workflow id>/<tool_call_id>/<name>`."""
    if not name or '/' in name:
        raise ValueError(f'an effect name is a non-empty string without "/", got {name!r}')
    if not tool_call_id:
        raise ValueError('an effect needs the tool call id of the tool body it runs in')
    return f'{scope}/{tool_call_id}/{name}'


@dataclass(frozen=True)
class EffectRecord:
    """One once-only effect: which call performed it, where it stands, and its recorded result."""

    key: str
    """`<workflow id>/<tool_call_id>/<name>`: what `act` and `reconcile` receive, and what `resolve` takes."""
    workflow_id: str
    """The workflow id the key is scoped to (for a continuation or fork: the root of its lineage)."""
    tool_call_id: str
    name: str
    run_id: str
    """The ledger run whose tool call first started the effect."""
    status: EffectStatus
    created_at: datetime
    updated_at: datetime
    tool_name: str | None = None
    owner: str = ''
    """The attempt that holds `started` (a token per call of `once`): only it may record `done` without asking."""
    lease_until: datetime | None = None
    """While `started`: until when the holder is known to be alive. It renews the lease while it acts;
    another attempt waits for it to pass before it treats the holder as dead (and asks `reconcile`)."""
    attempts: int = 0
    """How many times the effect was acted (started by an attempt)."""
    result: Any = None
    """The JSON result, once `done`."""
    error: str | None = None
    """For `failed`: what the effect raised; for `unknown`: why it is in doubt."""
    resolution: EffectResolution | None = None
    version: str = ''
    """The stored version (compare-and-swap token); empty for a record not stored yet."""

    def to_value(self) -> dict[str, Any]:
        """The stored JSON value (everything but the key and the version)."""
        data = asdict(self)
        del data['key'], data['version']
        data['created_at'] = self.created_at.isoformat()
        data['updated_at'] = self.updated_at.isoformat()
        data['lease_until'] = self.lease_until.isoformat() if self.lease_until is not None else None
        return data

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict; the shape of `agentledger effects --json`."""
        return {'key': self.key, **self.to_value()}

    @classmethod
    def from_record(cls, record: KeyedRecord) -> EffectRecord:
        """Rebuild from a stored keyed record of the `effects` namespace."""
        if record.namespace != EFFECTS:
            raise ValueError(f'record {record.key!r} is a {record.namespace} record, not an effect')
        try:
            values = dict(record.value)
            values['created_at'] = datetime.fromisoformat(values['created_at'])
            values['updated_at'] = datetime.fromisoformat(values['updated_at'])
            if values.get('lease_until') is not None:
                values['lease_until'] = datetime.fromisoformat(values['lease_until'])
            return cls(key=record.key, version=record.version, **values)
        except (KeyError, TypeError, ValueError) as error:
            raise LedgerCorruptionError(f'once-only effect {record.key!r} does not decode: {error}') from error


def lease_is_live(effect: EffectRecord, owner: str, now: datetime) -> bool:
    """Whether another attempt holds `effect` and may still be acting: `started`, not by `owner`, lease not past."""
    return (
        effect.status == 'started'
        and effect.owner != owner
        and effect.lease_until is not None
        and effect.lease_until > now
    )


def resolved_effect(effect: EffectRecord, outcome: ResolveOutcome, result: Any, now: datetime) -> EffectRecord:
    """The effect after an operator said whether it happened; an effect already `done` cannot be resolved."""
    if effect.status == 'done':
        raise EffectStateError(f'effect {effect.key!r} is already done (by {effect.resolution}); nothing to resolve')
    if outcome == 'done':
        return replace(
            effect,
            status='done',
            result=result,
            error=None,
            resolution='operator',
            owner='',
            lease_until=None,
            updated_at=now,
        )
    if outcome == 'not-done':
        if result is not None:
            raise ValueError('a result is only recorded with --outcome done')
        return replace(
            effect, status='not_done', result=None, resolution='operator', owner='', lease_until=None, updated_at=now
        )
    raise ValueError(f'outcome must be "done" or "not-done", got {outcome!r}')
