"""Payload references as S3 objects: which workflows reference which stored payload."""

from __future__ import annotations

from collections.abc import Sequence

from agentledger.errors import LedgerUnavailableError
from agentledger.ledger.backends.s3._client import (
    CAS_ATTEMPTS,
    Bucket,
    contention_pause,
    gather_all,
    json_body,
)
from agentledger.ledger.backends.s3._layout import (
    CREATE,
    HASH,
)
from agentledger.model._records import (
    PayloadReference,
)

__all__ = ['ReferenceObjects']


class ReferenceObjects(Bucket):
    """The `PayloadRefStore` capability of `S3Store`."""

    async def write_payload_references(self, references: Sequence[PayloadReference]) -> None:
        """Store references by `key`; one already stored keeps the later of the two `stored_at`."""
        async with self._operation():
            await gather_all(
                self._upsert_reference(r)
                for r in {r.key: r for r in sorted(references, key=lambda r: r.stored_at)}.values()
            )

    async def _upsert_reference(self, reference: PayloadReference) -> None:
        """Compare-and-swap the reference in, unless the stored one is as recent."""
        key = self._layout.reference_key(reference)
        for attempt in range(CAS_ATTEMPTS):
            stored = await self._run(self._get, key)
            if stored is not None and self._decode(key, stored[0], PayloadReference.from_json).stored_at >= (
                reference.stored_at
            ):
                return
            condition = stored[1] if stored is not None else CREATE
            if await self._run(self._put, key, json_body(reference.to_json()), condition) is not None:
                return
            await contention_pause(attempt)
        raise LedgerUnavailableError(
            f'the payload reference {key!r} in the S3 ledger {self.url} changed under {CAS_ATTEMPTS} updates in a row'
        )

    async def delete_payload_references(self, references: Sequence[PayloadReference]) -> None:
        """Delete these references (by `key`); absent ones are ignored."""
        async with self._operation():
            await gather_all(
                self._run(self._delete, key) for key in dict.fromkeys(map(self._layout.reference_key, references))
            )

    async def read_payload_references(self, manifests: Sequence[str] | None) -> list[PayloadReference]:
        """The stored references to `manifests`, or all of them for `None`."""
        async with self._operation():
            if manifests is None:
                keys = await self._list(self._layout.reference_prefix())
            else:
                listed = await gather_all(
                    self._list(self._layout.reference_prefix(m)) for m in manifests if HASH.fullmatch(m)
                )
                keys = [key for page in listed for key in page]
            objects = await self._get_many(keys)
            return [self._decode(key, data, PayloadReference.from_json) for key, data in objects if data is not None]
