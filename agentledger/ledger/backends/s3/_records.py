"""Keyed records (model-call journal, once-only effects) as S3 objects, created and replaced with conditional PUTs."""

from __future__ import annotations

from typing import Any

from agentledger.errors import LedgerCorruptionError
from agentledger.ledger.backends.s3._client import (
    Bucket,
    gather_all,
    json_body,
)
from agentledger.ledger.backends.s3._layout import (
    CREATE,
    digest,
)
from agentledger.model._keyed import KeyedRecord

__all__ = ['RecordObjects']


class RecordObjects(Bucket):
    """The `KeyedStore` capability of `S3Store`; a record's ETag is its version."""

    async def put_record(self, record: KeyedRecord, expected_version: str | None) -> str | None:
        """Store `record` atomically if the condition holds; return its new version, or `None` if it did not."""
        async with self._operation():
            body = json_body(
                {'namespace': record.namespace, 'key': record.key, 'scope': record.scope, 'value': record.value}
            )
            if expected_version is None:
                entry = self._layout.record_scope_prefix(record.namespace, record.scope) + digest(record.key)
                await self._run(self._put, entry, b'', CREATE)
                return await self._run(self._put, self._layout.record_key(record.namespace, record.key), body, CREATE)
            return await self._run(
                self._put, self._layout.record_key(record.namespace, record.key), body, expected_version
            )

    async def read_record(self, namespace: str, key: str) -> KeyedRecord | None:
        """The keyed record with its current version, or `None`."""
        async with self._operation():
            object_key = self._layout.record_key(namespace, key)
            stored = await self._run(self._get, object_key)
            if stored is None:
                return None
            record = self._decode_record(object_key, stored[0], stored[1])
            if (record.namespace, record.key) != (namespace, key):
                raise LedgerCorruptionError(
                    f'object {object_key!r} in the S3 ledger {self.url} holds record {record.key!r}, not {key!r}'
                )
            return record

    async def list_records(self, namespace: str, scope: str | None) -> list[KeyedRecord]:
        """Every record of `namespace` (of `scope` only, when given), in no particular order."""
        async with self._operation():
            if scope is None:
                keys = await self._list(self._layout.record_prefix(namespace))
            else:
                entries = await self._list(self._layout.record_scope_prefix(namespace, scope))
                keys = [self._layout.listed_record_key(namespace, entry) for entry in entries]
            stored = await gather_all(self._run(self._get, key) for key in keys)
            records = [
                self._decode_record(key, item[0], item[1])
                for key, item in zip(keys, stored, strict=True)
                if item is not None
            ]
            return [r for r in records if r.namespace == namespace and (scope is None or r.scope == scope)]

    def _decode_record(self, key: str, data: bytes, etag: str) -> KeyedRecord:
        def build(value: dict[str, Any]) -> KeyedRecord:
            inner = value['value']
            if not isinstance(inner, dict):
                raise ValueError('the record value is not a JSON object')
            return KeyedRecord(str(value['namespace']), str(value['key']), str(value['scope']), inner, etag)

        return self._decode(key, data, build)
