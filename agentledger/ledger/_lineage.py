"""Which snapshot a continuation or fork starts from: the one rule the client and the worker share."""

from __future__ import annotations

from agentledger.errors import SnapshotNotFoundError
from agentledger.ledger._facade import Ledger
from agentledger.model._records import ForkRef
from agentledger.model._snapshots import run_id_of

__all__ = ['resolve_seed']


async def resolve_seed(
    ledger: Ledger,
    *,
    continue_from: str,
    at_step: int | None = None,
    snapshot_id: str | None = None,
) -> ForkRef:
    """The snapshot a continuation or fork starts from; raises a specific error when there is none.

    Raises `RunNotFoundError` for an unknown run, `SnapshotNotFoundError` for a malformed or
    unknown snapshot id, a snapshot of another run, or a step that does not exist.
    """
    if at_step is not None and snapshot_id is not None:
        raise ValueError('give at most one of at_step and snapshot_id')
    await ledger.run(continue_from)
    if snapshot_id is not None:
        if run_id_of(snapshot_id) != continue_from:
            raise SnapshotNotFoundError(f'snapshot {snapshot_id!r} does not belong to run {continue_from!r}')
        known = {s.snapshot_id for s in await ledger.snapshots(continue_from)}
        if snapshot_id not in known:
            raise SnapshotNotFoundError(f'no snapshot with id {snapshot_id!r}')
        return ForkRef(run_id=continue_from, snapshot_id=snapshot_id, reason='fork')
    if at_step is not None:
        chosen = await ledger.snapshot_at_step(continue_from, at_step)
        return ForkRef(run_id=continue_from, snapshot_id=chosen.snapshot_id, reason='fork')
    latest = await ledger.latest_snapshot(continue_from)
    return ForkRef(run_id=continue_from, snapshot_id=latest.snapshot_id, reason='continue')
