"""The S3 ledger's key layout: every object key is built here, from validated parts only.

Run ids and snapshot ids must match a strict pattern, content hashes must be SHA-256 hex, and free
text (workflow ids, agent names, idempotency keys) is hashed, so no id can reach outside the prefix.
The layout itself is described in `agentledger.ledger.backends.s3`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from agentledger.errors import LedgerConfigError
from agentledger.ledger._store import RunFilter
from agentledger.ledger.backends._encoding import epoch_us
from agentledger.model._records import PayloadReference, RunRecord, RunStart, RunStatus

__all__ = [
    'CREATE',
    'FORMAT',
    'FORMAT_VERSION',
    'HASH',
    'INDEXED_STATUSES',
    'MARKER',
    'RUN_ID',
    'SNAPSHOT_ID',
    'Layout',
    'digest',
    'index_time',
    'log_slot',
    'parse_index_entry',
    'slot_key',
]

FORMAT_VERSION = 2
"""The key layout this code writes; `open()` refuses a prefix written by a newer layout.

Version 2 numbers events and snapshots by each run's log (`runs/<id>/log/`); version 1 kept one object per
event (`runs/<id>/events/`) and a counter object (`runs/<id>/seq`), which this code still reads.
"""

FORMAT = 'agentledger.s3'
"""The `format` of the marker object."""
MARKER = 'agentledger.json'
"""The marker object's key under the prefix."""

RUN_ID = re.compile(r'[A-Za-z0-9][A-Za-z0-9_-]{0,127}')
"""What a run id must look like to name objects."""
SNAPSHOT_ID = re.compile(r'(?P<run>[A-Za-z0-9][A-Za-z0-9_-]{0,127})\.(?:s[0-9]{1,9}|final)\.[0-9a-f]{1,64}')
"""What a snapshot id must look like to name an object."""
HASH = re.compile(r'[0-9a-f]{64}')
"""A content hash: SHA-256 hex."""

INDEXED_STATUSES: Final[frozenset[RunStatus]] = frozenset(
    {'failed', 'parked', 'awaiting_approval', 'cancelled', 'terminated'}
)
"""The statuses a run is indexed by while it has them: the rare ones operators look for. Common ones
(`completed`, and `running`, which the newest runs have) are met within a few records of an index
listed newest first, so indexing them would cost writes on every run to save few reads."""

CREATE: Final = '*'
"""The condition of a PUT that only creates: `If-None-Match: *`."""

# Index keys: an inverted start time sorts the newest run first in a listing. The offset keeps
# every datetime Python can hold (year 1 to 9999) positive and 18 digits wide.
_TIME_OFFSET_US = 10**17
_TIME_CEILING = 10**18 - 1


@dataclass(frozen=True)
class Layout:
    """The keys of one ledger's objects under its `prefix` (`''` or ending in `/`)."""

    prefix: str
    url: str
    """The ledger's URL, for messages."""

    def run_prefix(self, run_id: str) -> str:
        """Where one run's objects are (its record, counter, events, acceptances, snapshots); checks the id."""
        if not RUN_ID.fullmatch(run_id):
            raise LedgerConfigError(
                f'run id {run_id!r} cannot name objects in the S3 ledger {self.url}: '
                'a run id is 1 to 128 letters, digits, "-" or "_", starting with a letter or digit'
            )
        return f'{self.prefix}runs/{run_id}/'

    def snapshot_key(self, snapshot_id: str) -> str:
        """The manifest object of one snapshot, under its run; checks the id."""
        match = SNAPSHOT_ID.fullmatch(snapshot_id)
        if match is None:
            raise LedgerConfigError(f'snapshot id {snapshot_id!r} cannot name an object in the S3 ledger {self.url}')
        return f'{self.run_prefix(match["run"])}snapshots/{snapshot_id}.json'

    def content_prefix(self, kind: Literal['messages', 'blobs']) -> str:
        """Where every message (or blob) is stored."""
        return f'{self.prefix}{kind}/'

    def content_key(self, kind: Literal['messages', 'blobs'], digest: str) -> str:
        """The object holding one message or blob, addressed by its SHA-256; checks the digest."""
        if not HASH.fullmatch(digest):
            raise LedgerConfigError(f'{digest!r} is not a SHA-256 hex digest and cannot name stored content')
        return f'{self.content_prefix(kind)}{digest[:2]}/{digest}'

    def reference_key(self, reference: PayloadReference) -> str:
        """The object saying that `reference`'s workflow references its stored payload."""
        referrer = digest(f'{reference.namespace}|{reference.workflow_id}')
        return f'{self.reference_prefix(reference.manifest)}{referrer}.json'

    def reference_prefix(self, manifest: str | None = None) -> str:
        """Where the references to one stored payload are (to every payload, without `manifest`)."""
        if manifest is None:
            return f'{self.prefix}payload-refs/'
        if not HASH.fullmatch(manifest):
            raise LedgerConfigError(f'{manifest!r} is not a SHA-256 hex digest and cannot name a stored payload')
        return f'{self.prefix}payload-refs/{manifest}/'

    def index_prefix(self, name: str, value: str | None = None) -> str:
        """Where the entries of the run index `name` are, for the runs whose field has `value`."""
        if value is None:
            return f'{self.prefix}index/runs/{name}/'
        return f'{self.prefix}index/runs/{name}/{digest(value)[:32]}/'

    def index_keys(self, start: RunStart | RunRecord) -> list[str]:
        """The index entries a run gets when it starts (or its lost record is rebuilt): newest first in every index."""
        entry = f'{index_time(epoch_us(start.started_at))}-{start.run_id}'
        prefixes = [self.index_prefix('all')] + [
            self.index_prefix(name, value) for name, value in indexed(start) if value is not None
        ]
        return [prefix + entry for prefix in prefixes]

    def record_prefix(self, namespace: str) -> str:
        """Where the keyed records of `namespace` are, one object each, named by its key's digest."""
        return f'{self.prefix}records/{namespace}/keys/'

    def record_key(self, namespace: str, key: str) -> str:
        """The object holding the keyed record `key` of `namespace`."""
        return f'{self.record_prefix(namespace)}{digest(key)}.json'

    def listed_record_key(self, namespace: str, scope_entry: str) -> str:
        """The record a scope entry lists: the entry is named by the digest its record is named by."""
        return f'{self.record_prefix(namespace)}{scope_entry.rsplit("/", 1)[1]}.json'

    def record_scope_prefix(self, namespace: str, scope: str) -> str:
        """Where the entries listing the records of one scope (a workflow id) are."""
        return f'{self.prefix}records/{namespace}/scopes/{digest(scope)[:32]}/'

    def status_index_keys(self, record: RunRecord) -> list[str]:
        """The status index entries `record` is listed under: none unless its status is one of `INDEXED_STATUSES`."""
        if record.status not in INDEXED_STATUSES:
            return []
        entry = f'{index_time(epoch_us(record.started_at))}-{record.run_id}'
        return [
            self.index_prefix('status', record.status) + entry,
            self.index_prefix('agent-status', f'{record.agent_name}|{record.status}') + entry,
        ]

    def index_for(self, filter: RunFilter, *, statuses_indexed: bool = True) -> str:
        """The narrowest index that holds every run matching `filter`.

        `statuses_indexed=False` for a ledger begun before runs were indexed by status: its older runs
        have no status entries, so a status is filtered on the records of another index.
        """
        status = filter.status if statuses_indexed and filter.status in INDEXED_STATUSES else None
        for name, value in (
            ('workflow', filter.workflow_id),
            ('parent', filter.parent_run_id),
            ('forked-from', filter.forked_from_run_id),
            ('conversation', filter.conversation_id),
            ('agent-status', f'{filter.agent}|{status}' if filter.agent is not None and status is not None else None),
            ('status', status),
            ('agent', filter.agent),
        ):
            if value is not None:
                return self.index_prefix(name, value)
        return self.index_prefix('all')


def indexed(start: RunStart | RunRecord) -> Iterable[tuple[str, str | None]]:
    """The indexed facts of a run, fixed from its start."""
    yield 'agent', start.agent_name
    yield 'conversation', start.conversation_id
    yield 'parent', start.parent_run_id
    yield 'workflow', start.workflow_id
    yield 'forked-from', start.forked_from.run_id if start.forked_from is not None else None


def index_time(epoch_us: int) -> str:
    return f'{_TIME_CEILING - (epoch_us + _TIME_OFFSET_US):018d}'


def parse_index_entry(name: str) -> tuple[int, str] | None:
    """`(start time in epoch microseconds, run id)` from an index key's last part; `None` for a foreign key."""
    inverted, _, run_id = name.partition('-')
    if len(inverted) != 18 or not inverted.isdigit() or not RUN_ID.fullmatch(run_id):
        return None
    return _TIME_CEILING - int(inverted) - _TIME_OFFSET_US, run_id


_SLOT_DIGITS = 12


def slot_key(run_prefix: str, slot: int) -> str:
    """The key of log object `slot` of the run under `run_prefix`: zero-padded, so keys sort as numbers do."""
    return f'{run_prefix}log/{slot:0{_SLOT_DIGITS}d}.json'


def log_slot(run_prefix: str, key: str) -> int | None:
    """The slot number of a log object's key; `None` for a key that is not one."""
    name = key.removeprefix(run_prefix + 'log/').removesuffix('.json')
    if len(name) != _SLOT_DIGITS or not name.isdigit() or key != slot_key(run_prefix, int(name)):
        return None
    return int(name)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
