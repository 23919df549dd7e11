"""Content through a store: snapshot chains, and chunked messages and payloads rebuilt and verified on read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from pydantic_ai.messages import ModelMessage

from agentledger.errors import LedgerCorruptionError, RunNotFoundError, SnapshotNotFoundError
from agentledger.ledger._chunks import CHUNK_THRESHOLD, Manifest, assemble, split
from agentledger.ledger._store import LedgerStore
from agentledger.model._content import EncodedMessage, blob_refs, content_hash
from agentledger.model._records import SnapshotRecord
from agentledger.model._snapshots import latest_snapshot, run_id_of

__all__ = ['PayloadDeletion', 'Retrying', 'Snapshot', 'StoredContent', 'snapshot_content']

T = TypeVar('T')


@dataclass(frozen=True)
class Snapshot:
    """A stored snapshot with its messages rebuilt: exactly the history that was captured."""

    record: SnapshotRecord
    messages: list[ModelMessage]
    hashes: list[str] = field(default_factory=list)
    """The content hash of each message, in order."""

    @property
    def snapshot_id(self) -> str:
        """The snapshot's id."""
        return self.record.snapshot_id


@dataclass(frozen=True)
class PayloadDeletion:
    """What `Ledger.delete_payloads` removed."""

    manifests: tuple[str, ...]
    """The manifests deleted (with their references)."""
    chunks: int
    """How many chunks were deleted: those no remaining payload and no stored message uses."""
    bytes: int
    """The size of the deleted chunks."""


class Retrying(Protocol):
    """How the ledger runs a store call: under its retry policy, naming what could not be done."""

    def __call__(self, what: str, operation: Callable[[], Awaitable[T]], *, action: str = 'write') -> Awaitable[T]:
        """Run `operation`, retried while the store is unavailable."""
        ...


def snapshot_content(new: Sequence[EncodedMessage]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The message rows and blobs to store for a snapshot's new messages; long messages are stored as chunks."""
    blobs = {digest: data for m in new for digest, data in m.blobs.items()}
    rows: dict[str, bytes] = {}
    for m in new:
        if len(m.data) >= CHUNK_THRESHOLD:
            # A long message (a large tool result) shares its chunks with the activity payloads that carried it.
            manifest, pieces = split(m.data)
            rows[m.hash] = manifest.to_bytes()
            blobs.update(pieces)
        else:
            rows[m.hash] = m.data
    return rows, blobs


class StoredContent:
    """The content a `Ledger` reads through its store, and the snapshot chain each run's next snapshot extends."""

    def __init__(self, store: LedgerStore, retrying: Retrying) -> None:
        """Content of `store`, its reads of chunks retried with `retrying`."""
        self._store = store
        self._retrying = retrying
        # The latest snapshot written per run in this process, so a write reads nothing to find its parent.
        self._chains: dict[str, tuple[str, list[str]]] = {}

    def remember(self, run_id: str, snapshot_id: str, hashes: list[str]) -> None:
        """Record the snapshot just written as the run's latest, the parent of its next one."""
        self._chains[run_id] = (snapshot_id, hashes)

    async def chain_parent(self, run_id: str, hashes: Sequence[str]) -> tuple[str | None, list[str]]:
        """The parent of a new snapshot of `run_id` holding `hashes`: its id and hashes, or `(None, [])`.

        The run's latest snapshot (or, before its first, the snapshot it was seeded from), if `hashes`
        starts with its messages.
        """
        candidate = self._chains.get(run_id)
        if candidate is None:
            stored = await self._store.read_snapshots(run_id)
            if stored:
                record = await self._store.read_run(run_id)
                if record is None:
                    raise RunNotFoundError(run_id)
                latest = latest_snapshot(record, stored)
                candidate = (latest.snapshot_id, await self.chain_hashes(latest.snapshot_id))
            else:
                stored_run = await self._store.read_run(run_id)
                if stored_run is not None and stored_run.forked_from is not None:
                    seed = stored_run.forked_from.snapshot_id
                    candidate = (seed, await self.chain_hashes(seed))
        if candidate is not None:
            parent_id, parent_hashes = candidate
            if list(hashes[: len(parent_hashes)]) == parent_hashes:
                return parent_id, parent_hashes
        return None, []

    async def chain_hashes(self, snapshot: str) -> list[str]:
        """Every message hash of a snapshot, oldest first, walking its parents (across runs for forks)."""
        by_run: dict[str, dict[str, SnapshotRecord]] = {}
        links: list[SnapshotRecord] = []
        current: str | None = snapshot
        while current is not None:
            run_id = run_id_of(current)
            if run_id not in by_run:
                by_run[run_id] = {s.snapshot_id: s for s in await self._store.read_snapshots(run_id)}
            link = by_run[run_id].get(current)
            if link is None:
                if current == snapshot:
                    raise SnapshotNotFoundError(f'no snapshot with id {snapshot!r}')
                raise LedgerCorruptionError(f'snapshot {current!r}, an ancestor of {snapshot!r}, is missing')
            links.append(link)
            current = link.parent_id
        hashes = [digest for link in reversed(links) for digest in link.new_hashes]
        if len(hashes) != links[0].message_count:
            raise LedgerCorruptionError(
                f'snapshot {snapshot!r} should hold {links[0].message_count} messages but its chain has {len(hashes)}'
            )
        return hashes

    async def expand_chunked(self, stored: dict[str, bytes]) -> dict[str, bytes]:
        """Stored messages with the chunked ones rebuilt from their chunks."""
        manifests = {
            digest: Manifest.parse(data, f'message {digest}')
            for digest, data in stored.items()
            if Manifest.is_manifest(data)
        }
        if not manifests:
            return stored
        return {**stored, **await self.assemble(manifests, 'message')}

    async def assemble(self, manifests: Mapping[str, Manifest], what: str) -> dict[str, bytes]:
        """Rebuild the content of each manifest: read its nested manifests, then every chunk, verified."""
        nested_keys = list(dict.fromkeys(key for m in manifests.values() for key in m.nested()))
        read = await self._retrying(
            f'{len(nested_keys)} manifest(s)', lambda: self._store.read_blobs(nested_keys), action='read'
        )
        nested: dict[str, Manifest] = {}
        for key in nested_keys:
            data = read.get(key)
            if data is None or content_hash(data) != key:
                state = 'missing from the ledger' if data is None else 'altered'
                raise LedgerCorruptionError(f'chunk manifest {key} of {what} is {state}')
            nested[key] = Manifest.parse(data, f'{what} (manifest {key})')
        wanted = list(dict.fromkeys(chunk for m in [*manifests.values(), *nested.values()] for chunk in m.chunks()))
        chunks = await self._retrying(f'{len(wanted)} chunk(s)', lambda: self._store.read_blobs(wanted), action='read')
        return {key: assemble(m, chunks, nested, f'{what} {key}') for key, m in manifests.items()}

    async def blobs_of(self, manifests: Mapping[str, Manifest]) -> dict[str, int]:
        """Every blob the manifests use (their chunks, nested manifests and those manifests' chunks), with its size."""
        used = {digest: length for m in manifests.values() for digest, length, nested in m.pieces if not nested}
        nested_keys = list(dict.fromkeys(key for m in manifests.values() for key in m.nested()))
        for start in range(0, len(nested_keys), 500):
            for key, data in (await self._store.read_blobs(nested_keys[start : start + 500])).items():
                used[key] = len(data)
                inner = Manifest.parse(data, f'manifest {key}')
                used.update({digest: length for digest, length, nested in inner.pieces if not nested})
        return used

    async def unused_chunks(
        self, doomed: list[str], still_referenced: Callable[[], Awaitable[list[str]]]
    ) -> tuple[PayloadDeletion, list[str]]:
        """What deleting `doomed` payloads removes: them, and the chunks no message or other payload uses.

        The other payloads are those `still_referenced()` lists. It is called after the doomed manifests
        are read, so that a payload referenced meanwhile keeps its chunks.
        """
        gone = set(doomed)
        found = await self._store.read_blobs(doomed)
        candidates = await self.blobs_of(
            {key: Manifest.parse(data, f'stored payload {key}') for key, data in found.items()}
        )
        remaining = await still_referenced()
        kept: set[str] = set()
        for start in range(0, len(remaining), 500):
            batch = await self._store.read_blobs(remaining[start : start + 500])
            kept.update(await self.blobs_of({k: Manifest.parse(d, f'stored payload {k}') for k, d in batch.items()}))
        hashes = await self._store.read_message_hashes()
        for start in range(0, len(hashes), 500):
            rows = await self._store.read_messages(hashes[start : start + 500])
            chunked = {
                d: Manifest.parse(data, f'message {d}') for d, data in rows.items() if Manifest.is_manifest(data)
            }
            kept.update(await self.blobs_of(chunked))
            kept.update(ref for d, data in rows.items() if d not in chunked for ref in blob_refs(data))
        chunks = [digest for digest in candidates if digest not in kept and digest not in gone]
        deletion = PayloadDeletion(
            manifests=tuple(key for key in doomed if key in found),
            chunks=len(chunks),
            bytes=sum(candidates[digest] for digest in chunks),
        )
        return deletion, chunks
