"""Garbage collection of payloads stored through Temporal's external storage.

A stored payload may go only when no workflow history that can still be read references it. The
storage driver records, for every payload it stores, which workflows' histories hold the reference
(`PayloadReference`). Temporal keeps a closed workflow's history for the namespace's retention
period, and replaying or showing it resolves the references again. So a payload is deleted only
when every workflow that references it is closed for longer than its namespace's retention, or
is gone from Temporal; then its chunks go too, unless another payload or a stored snapshot message
still uses them. Anything undecidable (Temporal unreachable, an unknown namespace, an unexpected
answer) keeps the payload and is reported. A payload stored less than `grace` ago is kept whatever
Temporal says: a client stores a workflow's input before it starts the workflow.

The rules (`referrer_state`, `verdicts`) are pure functions; `collect_garbage` does the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeAlias

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from agentledger.ledger._facade import Ledger
from agentledger.model._records import PayloadReference

__all__ = [
    'DEFAULT_GRACE',
    'GcReport',
    'KeptPayload',
    'ReferrerState',
    'ReferrerStatus',
    'collect_garbage',
    'referrer_state',
    'verdicts',
]

DEFAULT_GRACE = timedelta(hours=1)
"""Payloads stored more recently than this are always kept."""

_RPC_TIMEOUT = timedelta(seconds=10)

ReferrerState: TypeAlias = Literal['open', 'retained', 'expired', 'gone', 'unknown']
"""What Temporal says of a referencing workflow: `open` and `retained` keep a payload, `expired` and
`gone` do not, `unknown` (undecidable) keeps it."""

_COLLECTABLE: frozenset[ReferrerState] = frozenset({'expired', 'gone'})


@dataclass(frozen=True)
class ReferrerStatus:
    """One referencing workflow and what Temporal said of it."""

    namespace: str
    workflow_id: str
    state: ReferrerState
    detail: str
    """Readable: 'running', 'closed at …, retained until …', 'not found', or why it is undecidable."""

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict."""
        return {
            'namespace': self.namespace,
            'workflow_id': self.workflow_id,
            'state': self.state,
            'detail': self.detail,
        }


@dataclass(frozen=True)
class KeptPayload:
    """A stored payload that was not deleted, and why."""

    manifest: str
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-compatible dict."""
        return {'manifest': self.manifest, 'reasons': list(self.reasons)}


@dataclass(frozen=True)
class GcReport:
    """What one collection deleted (or, with `dry_run`, would delete) and what it kept."""

    dry_run: bool
    deleted: tuple[str, ...]
    """Manifest hashes of the payloads deleted."""
    chunks: int
    """Chunks deleted with them (those nothing else uses)."""
    bytes: int
    """The size of those chunks."""
    kept: tuple[KeptPayload, ...]
    referrers: tuple[ReferrerStatus, ...]

    @property
    def undecided(self) -> tuple[ReferrerStatus, ...]:
        """The referrers whose state could not be decided (their payloads were kept)."""
        return tuple(r for r in self.referrers if r.state == 'unknown')

    def to_json(self) -> dict[str, Any]:
        """The `agentledger gc --json` document."""
        return {
            'schema': 'agentledger.gc/1',
            'dry_run': self.dry_run,
            'deleted': list(self.deleted),
            'chunks': self.chunks,
            'bytes': self.bytes,
            'kept': [k.to_json() for k in self.kept],
            'referrers': [r.to_json() for r in self.referrers],
        }


def referrer_state(
    status: WorkflowExecutionStatus.ValueType, close_time: datetime | None, retention: timedelta, now: datetime
) -> tuple[ReferrerState, str]:
    """Whether a described workflow still needs its payloads: open, or closed less than `retention` ago."""
    if status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING:
        return 'open', 'running'
    if status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED or close_time is None:
        return 'unknown', f'Temporal reported status {status} without a close time'
    until = close_time + retention
    name = WorkflowExecutionStatus.Name(status).removeprefix('WORKFLOW_EXECUTION_STATUS_').lower()
    if until > now:
        return 'retained', f'{name} at {close_time.isoformat()}, history retained until {until.isoformat()}'
    return 'expired', f'{name} at {close_time.isoformat()}, retention ended {until.isoformat()}'


def verdicts(
    references: Sequence[PayloadReference],
    states: Mapping[tuple[str, str], ReferrerStatus],
    *,
    now: datetime,
    grace: timedelta,
) -> tuple[list[str], list[KeptPayload]]:
    """The payloads that may go (every referrer expired or gone, none stored within `grace`); why the rest stay."""
    by_manifest: dict[str, list[PayloadReference]] = {}
    for reference in references:
        by_manifest.setdefault(reference.manifest, []).append(reference)
    deletable: list[str] = []
    kept: list[KeptPayload] = []
    for manifest, refs in by_manifest.items():
        reasons: list[str] = []
        for ref in refs:
            if ref.stored_at > now - grace:
                reasons.append(
                    f'stored by {ref.namespace}/{ref.workflow_id} at {ref.stored_at.isoformat()}, less than {grace} ago'
                )
            status = states.get((ref.namespace, ref.workflow_id))
            if status is None:
                reasons.append(f'{ref.namespace}/{ref.workflow_id}: not looked up')
            elif status.state not in _COLLECTABLE:
                reasons.append(f'{ref.namespace}/{ref.workflow_id}: {status.state} ({status.detail})')
        if reasons:
            kept.append(KeptPayload(manifest, tuple(reasons)))
        else:
            deletable.append(manifest)
    return deletable, kept


async def collect_garbage(
    ledger: Ledger,
    client: Client,
    *,
    dry_run: bool = False,
    grace: timedelta = DEFAULT_GRACE,
    now: datetime | None = None,
) -> GcReport:
    """Delete the stored payloads no workflow inside its namespace's retention references (see the module docstring).

    `client` reaches the Temporal server the workflows ran on (any namespace: each reference names
    its own). The ledger must be open. `dry_run` decides and reports without deleting anything.
    """
    moment = now or datetime.now(UTC)
    references = await ledger.payload_references()
    referrers = sorted({(r.namespace, r.workflow_id) for r in references})
    retentions: dict[str, timedelta | str] = {}
    states: dict[tuple[str, str], ReferrerStatus] = {}
    for namespace, workflow_id in referrers:
        if namespace not in retentions:
            retentions[namespace] = await _retention(client, namespace)
        retention = retentions[namespace]
        if isinstance(retention, str):
            states[(namespace, workflow_id)] = ReferrerStatus(namespace, workflow_id, 'unknown', retention)
        else:
            states[(namespace, workflow_id)] = await _describe(client, namespace, workflow_id, retention, moment)
    deletable, kept = verdicts(references, states, now=moment, grace=grace)
    # A workflow may have stored one of these payloads again since the references were read: keep those.
    seen = {(r.key, r.stored_at) for r in references}
    fresh = {r.manifest for r in await ledger.payload_references(deletable) if (r.key, r.stored_at) not in seen}
    kept += [KeptPayload(m, ('stored again while collecting',)) for m in deletable if m in fresh]
    deletable = [m for m in deletable if m not in fresh]
    deletion = await ledger.delete_payloads(deletable, dry_run=dry_run)
    return GcReport(
        dry_run=dry_run,
        deleted=deletion.manifests,
        chunks=deletion.chunks,
        bytes=deletion.bytes,
        kept=tuple(kept),
        referrers=tuple(states[r] for r in referrers),
    )


async def _retention(client: Client, namespace: str) -> timedelta | str:
    """The namespace's history retention, or why it could not be read."""
    try:
        described = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=_RPC_TIMEOUT
        )
    except RPCError as error:
        return f'cannot read the retention of namespace {namespace!r}: {error.status.name}: {error.message}'
    return described.config.workflow_execution_retention_ttl.ToTimedelta()


async def _describe(
    client: Client, namespace: str, workflow_id: str, retention: timedelta, now: datetime
) -> ReferrerStatus:
    try:
        described = await client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(namespace=namespace, execution=WorkflowExecution(workflow_id=workflow_id)),
            timeout=_RPC_TIMEOUT,
        )
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return ReferrerStatus(namespace, workflow_id, 'gone', 'not found in Temporal (deleted or past retention)')
        return ReferrerStatus(
            namespace, workflow_id, 'unknown', f'Temporal did not answer: {error.status.name}: {error.message}'
        )
    info = described.workflow_execution_info
    close_time = info.close_time.ToDatetime(tzinfo=UTC) if info.HasField('close_time') else None
    state, detail = referrer_state(info.status, close_time, retention, now)
    return ReferrerStatus(namespace, workflow_id, state, detail)
