"""Content-addressed messages and blobs, and snapshot manifests, as S3 objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from agentledger.errors import LedgerConfigError
from agentledger.ledger.backends._encoding import decode_snapshot
from agentledger.ledger.backends.s3._client import (
    CACHE_SIZE,
    gather_all,
    json_body,
)
from agentledger.ledger.backends.s3._layout import (
    CREATE,
    HASH,
    RUN_ID,
    SNAPSHOT_ID,
)
from agentledger.ledger.backends.s3._log import RunLog
from agentledger.model._records import (
    SnapshotRecord,
)

__all__ = ['ContentObjects']

_HEAD_FIRST_BYTES = 16 * 1024
"""Content at least this large is looked up (HEAD) before it is uploaded, so existing content is not sent again."""


def _snapshot_of(value: dict[str, Any]) -> tuple[int, SnapshotRecord]:
    seq = value['seq']
    if not isinstance(seq, int):
        raise ValueError(f'seq is not a number: {seq!r}')
    return seq, decode_snapshot(value['snapshot'])


class ContentObjects(RunLog):
    """The `ContentStore` capability of `S3Store`."""

    async def write_content(self, messages: Mapping[str, bytes], blobs: Mapping[str, bytes]) -> None:
        """Store messages and blobs under their hashes; content already stored is left as is."""
        async with self._operation():
            items = [(self._layout.content_key('messages', d), data) for d, data in messages.items()]
            items += [(self._layout.content_key('blobs', d), data) for d, data in blobs.items()]
            await gather_all(self._put_content(key, data) for key, data in items if key not in self._stored_content)

    async def delete_blobs(self, hashes: Sequence[str]) -> None:
        """Delete blobs (chunks and manifests) by hash; absent ones are ignored."""
        async with self._operation():
            keys = [self._layout.content_key('blobs', digest) for digest in dict.fromkeys(hashes)]
            for key in keys:
                # Content this process wrote is not written again while cached as stored: forget it first.
                self._stored_content.pop(key, None)
            await gather_all(self._run(self._delete, key) for key in keys)

    async def write_snapshot(self, snapshot: SnapshotRecord) -> None:
        """Store a snapshot record unless one with its id is stored."""
        async with self._operation():
            key = self._layout.snapshot_key(snapshot.snapshot_id)
            match = SNAPSHOT_ID.fullmatch(snapshot.snapshot_id)
            if match is None or match['run'] != snapshot.run_id:
                raise LedgerConfigError(f'snapshot {snapshot.snapshot_id!r} does not belong to run {snapshot.run_id!r}')
            # A marker in the run's log gives the snapshot its place among the run's writes.
            seq = await self._append(snapshot.run_id, [{'snapshot': snapshot.snapshot_id}])
            await self._run(self._put, key, json_body({'seq': seq, 'snapshot': snapshot.to_json()}), CREATE)

    async def _put_content(self, key: str, data: bytes) -> None:
        # Large content is looked up first so that content already stored is not sent again; small
        # content is cheaper to send with If-None-Match than to look up.
        if len(data) < _HEAD_FIRST_BYTES or not await self._run(self._exists, key):
            await self._run(self._put, key, data, CREATE)
        self._stored_content[key] = None
        while len(self._stored_content) > CACHE_SIZE * 16:
            self._stored_content.popitem(last=False)

    async def read_snapshot(self, snapshot_id: str) -> SnapshotRecord | None:
        """One snapshot record, or `None`."""
        if not SNAPSHOT_ID.fullmatch(snapshot_id):
            return None
        async with self._operation():
            [(key, data)] = await self._get_many([self._layout.snapshot_key(snapshot_id)], immutable=True)
            return self._decode(key, data, _snapshot_of)[1] if data is not None else None

    async def read_snapshots(self, run_id: str) -> list[SnapshotRecord]:
        """The run's snapshot records in the order they were stored."""
        if not RUN_ID.fullmatch(run_id):
            return []
        async with self._operation():
            objects = await self._get_many(
                await self._list(self._layout.run_prefix(run_id) + 'snapshots/'), immutable=True
            )
            manifests = [self._decode(key, data, _snapshot_of) for key, data in objects if data is not None]
            return [snapshot for _, snapshot in sorted(manifests, key=lambda manifest: manifest[0])]

    async def read_messages(self, hashes: Sequence[str]) -> dict[str, bytes]:
        """Stored message bytes by hash; hashes not stored are absent from the result."""
        return await self._read_content('messages', hashes)

    async def read_blobs(self, hashes: Sequence[str]) -> dict[str, bytes]:
        """Stored blob bytes by hash; hashes not stored are absent from the result."""
        return await self._read_content('blobs', hashes)

    async def _read_content(self, kind: Literal['messages', 'blobs'], hashes: Sequence[str]) -> dict[str, bytes]:
        async with self._operation():
            wanted = [digest for digest in dict.fromkeys(hashes) if HASH.fullmatch(digest)]
            # Not cached: content is verified against its hash on every read, so damage is always reported.
            objects = await self._get_many([self._layout.content_key(kind, digest) for digest in wanted])
            return {digest: data for digest, (_, data) in zip(wanted, objects, strict=True) if data is not None}

    async def read_message_hashes(self) -> list[str]:
        """The hash of every stored message."""
        async with self._operation():
            return [key.rsplit('/', 1)[-1] for key in await self._list(self._layout.content_prefix('messages'))]
