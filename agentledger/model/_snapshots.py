"""Pure rules of the snapshot chain: ids, parents, and which snapshot a continuation or fork uses."""

from __future__ import annotations

from collections.abc import Sequence

from agentledger.errors import SnapshotNotFoundError
from agentledger.model._canonical import canonical_json
from agentledger.model._content import content_hash
from agentledger.model._records import RunRecord, SnapshotRecord

__all__ = ['latest_snapshot', 'snapshot_at_step', 'snapshot_id', 'snapshot_order']


def snapshot_id(run_id: str, step: int, kind: str, hashes: Sequence[str]) -> str:
    """A snapshot's id: its run, its step, and a digest of its content.

    The digest makes the write idempotent (the same history at the same step is the same snapshot)
    while a Temporal run that diverged after a reset gets its own id instead of colliding.
    """
    tag = 'final' if kind == 'final' else f's{step}'
    return f'{run_id}.{tag}.{content_hash(canonical_json(list(hashes)))[:12]}'


def run_id_of(snapshot: str) -> str:
    """The run id a snapshot id belongs to; raises `SnapshotNotFoundError` for a malformed id."""
    run_id, _, rest = snapshot.partition('.')
    if not run_id.startswith('run-') or not rest or '.' not in rest:
        raise SnapshotNotFoundError(
            f'malformed snapshot id {snapshot!r}: expected <run id>.<s<step>|final>.<digest> '
            'as `ledger.snapshots()` lists them'
        )
    return run_id


def snapshot_order(run: RunRecord, snapshot: SnapshotRecord) -> tuple[int, int, int, str]:
    """Sort key: later Temporal run (after a reset or restart), then later step, then final last."""
    runs = run.temporal_run_ids
    temporal_index = runs.index(snapshot.temporal_run_id) if snapshot.temporal_run_id in runs else -1
    return (temporal_index, snapshot.step, 1 if snapshot.kind == 'final' else 0, snapshot.created_at.isoformat())


def latest_snapshot(run: RunRecord, snapshots: Sequence[SnapshotRecord]) -> SnapshotRecord:
    """The run's latest valid snapshot; raises `SnapshotNotFoundError` when it has none."""
    if not snapshots:
        raise SnapshotNotFoundError(f'run {run.run_id} has no valid snapshot to continue from')
    return max(snapshots, key=lambda s: snapshot_order(run, s))


def snapshot_at_step(run: RunRecord, snapshots: Sequence[SnapshotRecord], step: int) -> SnapshotRecord:
    """The latest model-request snapshot at or before `step`: the history the model saw at that step.

    Raises `SnapshotNotFoundError` for a step that does not exist. (`latest_snapshot` gives the final one.)
    """
    if not snapshots:
        raise SnapshotNotFoundError(f'run {run.run_id} has no valid snapshot to fork from')
    last = max(s.step for s in snapshots)
    if step < 1 or step > last:
        raise SnapshotNotFoundError(f'run {run.run_id} has no step {step}: its snapshots cover steps 1 to {last}')
    # Forking at step k redoes step k: the history its model request saw, not the run's final one.
    candidates = [s for s in snapshots if s.step <= step and s.kind == 'model_request']
    if not candidates:
        raise SnapshotNotFoundError(f'run {run.run_id} has no valid snapshot at or before step {step}')
    return max(candidates, key=lambda s: snapshot_order(run, s))
