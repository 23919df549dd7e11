"""`S3Ledger`: a ledger in an S3 bucket (AWS S3, MinIO, R2 or any S3-compatible store) shared by a fleet of workers.

Every worker on every host points at one `s3://bucket/prefix` and gets the same ledger `SqliteLedger`
gives one host. S3 has no transactions and no counters, so the layout uses only what S3 decides
atomically for one object: a conditional PUT. `If-None-Match: *` creates an object only if the key
is free, `If-Match: <etag>` replaces it only if nobody replaced it since it was read. Both need a
store that enforces them (AWS S3 since 2024, MinIO, R2); `open()` checks that the store does.

Key layout, under `<prefix>/`::

    agentledger.json                         marker: {"format": "agentledger.s3", "version": 1}
    runs/<run id>/run.json                   the RunRecord. Created with If-None-Match; every start and seal
                                             folds into it with `apply_run_start` / `apply_seal` in a
                                             compare-and-swap loop (GET, fold, PUT If-Match the ETag read;
                                             a 412 means another writer won, so read and fold again).
    runs/<run id>/seq                        the run's sequence counter (decimal text), advanced by
                                             compare-and-swap; it gives events and snapshots their `seq`.
    runs/<run id>/events/<sha256(key)>.json  one immutable object per StepEvent, named by the SHA-256 of its
                                             idempotency key and created with If-None-Match: a redelivered
                                             event gets a 412 and changes nothing. The body is
                                             `StepEvent.to_json()` with its `seq` (and no `state`).
    runs/<run id>/acceptances/<sha256(key)>.json
                                             one immutable object per Acceptance, likewise.
    runs/<run id>/snapshots/<snapshot id>.json
                                             one manifest per snapshot: {"seq": n, "snapshot": SnapshotRecord}.
    messages/<hash[:2]>/<hash>               message content, addressed by its SHA-256 and created with
                                             If-None-Match; content of 16 KiB or more is looked up (HEAD)
                                             first, so what is stored already is not sent again.
    blobs/<hash[:2]>/<hash>                  binary parts, likewise; also the FastCDC chunks and manifests of
                                             payloads stored through Temporal's external storage.
    payload-refs/<manifest>/<sha256(namespace + "|" + workflow id)>.json
                                             `PayloadReference.to_json()`: that workflow's history references
                                             the payload stored under that manifest hash. A later store replaces
                                             it by compare-and-swap (`stored_at` only moves forward); deleted by
                                             `agentledger gc` together with the payload.
    records/<namespace>/keys/<sha256(key)>.json
                                             one keyed record (model-call journal entries under `journal`,
                                             once-only effects under `effects`): {"namespace", "key", "scope",
                                             "value"}. Created with If-None-Match (of two racing creators
                                             exactly one gets a 2xx), replaced with If-Match the ETag read
                                             (a 412 means another writer replaced it first); the ETag is the
                                             record's version.
    records/<namespace>/scopes/<sha256(scope)[:32]>/<sha256(key)>
                                             empty objects: the records of one scope (a workflow id), written
                                             before the record is created, so a record that exists is always
                                             listed; an entry whose record is missing or of another scope is
                                             skipped.
    index/runs/all/<inverted start time>-<run id>
    index/runs/<field>/<sha256(value)[:32]>/<inverted start time>-<run id>
                                             empty objects. The inverted start time (microseconds since the
                                             epoch, subtracted from a constant, zero-padded) makes a listing
                                             return the newest run first, so `runs(limit=n)` lists about n
                                             keys and reads n run records however large the bucket grows.
                                             `field` is `agent`, `conversation`, `parent`, `workflow` or
                                             `forked-from`: facts a run has from its start and never changes,
                                             so their indexes are written once, before the run record (a
                                             run that exists is always listed; an entry whose run record is
                                             missing or started at another time is skipped). Status
                                             changes, so it is filtered on the run records of listed pages.

Batching: idempotency is per event, so each event is its own object (a batch object could not
tell a redelivered event from a new one without reading every batch back); what a batch shares is
its sequence numbers: one compare-and-swap for the whole batch, and for every batch of the same
run waiting in this process. A batch's events are uploaded in order, so a batch cut short by a
failure and retried keeps its order.

Order guarantee: `seq` comes from the run's counter, not from a clock, so it is the same on every
host whatever their clocks say. An event whose write returned before another write of the same run
began has the smaller `seq`; events of one `record_events` call keep the call's order; writes that
overlap in time are ordered by when they took their numbers. That is the causal order the plugin
needs: an attempt's `started` is written (and acknowledged) before its body runs and its end after,
and a tool call is only scheduled after the model request that asked for it completed, which
recorded its `completed` before returning. `seq` is per run, increasing and unique, but not
contiguous: a redelivered or retried write takes numbers it then does not use. A read made while
writes are in flight may see an event before one with a smaller `seq` lands; once they returned,
the order is final.

Cost: an event is two requests in a row (the counter's compare-and-swap, then its PUT), a run
start about six (index entries in parallel, the run record, the counter, the event), a snapshot a
lookup, its new content, a number and its manifest. Reading a run lists its prefixes and GETs each
object once per process: events, acceptances and snapshot manifests never change, so they are kept
in a cache (`cache_bytes`); message content is read every time, so its hash check sees what is stored.

Reads are consistent: S3 (since 2020), MinIO and R2 give read-after-write consistency for GET and
LIST, so a write that returned is seen by every later read on any host.

Failures: boto3's calls block, so they run on a thread pool of this ledger's own (`max_concurrency`
threads, as many pooled connections); the event loop never waits on the network. Every call has
short timeouts and a few retries by botocore (standard mode), and the `Ledger` base class retries
whole writes with backoff; what still fails raises `LedgerUnavailableError` naming what was not
written. Writes are idempotent, so a retry after an ambiguous failure (a timeout after S3 applied
the PUT) stores nothing twice. Refused credentials, a missing bucket or a store that ignores
conditional writes raise `LedgerConfigError` at `open()`, which `LedgerPlugin` calls when a worker
starts.

Security: every key is built from validated parts: run ids and snapshot ids must match a strict
pattern (letters, digits, `-`, `_`), content hashes must be SHA-256 hex, and free text (workflow ids,
agent names, idempotency keys) is hashed, so no id can reach outside the prefix. Credentials stay
in memory (the ledger's and its boto3 client's): they are never part of `url` or a `repr`, never
written to the bucket and never in an error message (SigV4 signs with the secret and never sends
it, so no server error can echo it).
`sse` / `sse_kms_key_id` are passed on every PUT.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import random
import re
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, TypeVar, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from agentledger.errors import LedgerConfigError, LedgerCorruptionError, LedgerError, LedgerUnavailableError
from agentledger.ledger._facade import Ledger, RetryPolicy, RunFilter
from agentledger.model._keyed import KeyedRecord
from agentledger.model._records import (
    Acceptance,
    PayloadReference,
    RunRecord,
    RunSeal,
    RunStart,
    SnapshotRecord,
    StepEvent,
)
from agentledger.model._rules import apply_run_start, apply_seal

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ListObjectsV2RequestTypeDef, PutObjectRequestTypeDef

__all__ = ['FORMAT_VERSION', 'AddressingStyle', 'S3Ledger', 'ServerSideEncryption']

FORMAT_VERSION = 1
"""The key layout this code writes; `open()` refuses a prefix written by a newer layout."""

ServerSideEncryption: TypeAlias = Literal['AES256', 'aws:kms', 'aws:kms:dsse']
"""The `ServerSideEncryption` values S3 accepts on a PUT."""

AddressingStyle: TypeAlias = Literal['auto', 'path', 'virtual']
"""How requests name the bucket: in the host name (`virtual`), in the path (`path`), or as botocore sees fit."""

T = TypeVar('T')

_FORMAT = 'agentledger.s3'
_MARKER = 'agentledger.json'

_RUN_ID = re.compile(r'[A-Za-z0-9][A-Za-z0-9_-]{0,127}')
_SNAPSHOT_ID = re.compile(r'(?P<run>[A-Za-z0-9][A-Za-z0-9_-]{0,127})\.(?:s[0-9]{1,9}|final)\.[0-9a-f]{1,64}')
_HASH = re.compile(r'[0-9a-f]{64}')
_BUCKET = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]')
_PREFIX_SEGMENT = re.compile(r'[^\x00-\x1f\x7f]{1,255}')

_URL_OPTIONS = ('endpoint_url', 'region_name', 'profile_name', 'sse', 'sse_kms_key_id', 'addressing_style')
_SSE_VALUES = ('AES256', 'aws:kms', 'aws:kms:dsse')
_ADDRESSING_STYLES = ('auto', 'path', 'virtual')

_CREATE: Final = '*'
"""The condition of a PUT that only creates: `If-None-Match: *`."""

# Index keys: an inverted start time sorts the newest run first in a listing. The offset keeps
# every datetime Python can hold (year 1 to 9999) positive and 18 digits wide.
_TIME_OFFSET_US = 10**17
_TIME_CEILING = 10**18 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_CAS_ATTEMPTS = 32
"""Compare-and-swap rounds on one object before contention is reported as unavailability."""
_HEAD_FIRST_BYTES = 16 * 1024
"""Content at least this large is looked up (HEAD) before it is uploaded, so existing content is not sent again."""
_CACHE_SIZE = 4096
"""How many runs' sequence counters (and, times 16, content hashes known stored) a ledger remembers."""

# S3 error codes that say the credentials are wrong (as opposed to lacking a permission).
_CREDENTIAL_CODES = frozenset(
    {
        'InvalidAccessKeyId',
        'SignatureDoesNotMatch',
        'InvalidToken',
        'ExpiredToken',
        'TokenRefreshRequired',
        'InvalidClientTokenId',
        'UnrecognizedClientException',
    }
)
_DENIED_CODES = frozenset({'AccessDenied', 'AllAccessDisabled', 'AccountProblem', 'InvalidObjectState'})
# Codes that may pass: S3 is throttling, busy, or another conditional write of the same key is in flight.
_TRANSIENT_CODES = frozenset(
    {
        'SlowDown',
        'Throttling',
        'ThrottlingException',
        'RequestTimeout',
        'RequestTimeoutException',
        'InternalError',
        'ServiceUnavailable',
        'ConditionalRequestConflict',
        'OperationAborted',
    }
)


_sessions: dict[str | None, boto3.Session] = {}
_sessions_lock = threading.Lock()


class _ObjectCache:
    """Bytes of immutable objects by key, up to a memory budget; the least recently used go first."""

    def __init__(self, max_bytes: int) -> None:
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes

    def get(self, key: str) -> bytes | None:
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def drop(self, key: str) -> None:
        data = self._items.pop(key, None)
        if data is not None:
            self._bytes -= len(data)

    def put(self, key: str, data: bytes) -> None:
        # One large blob must not flush everything else.
        if len(data) > self._max_bytes // 8 or key in self._items:
            return
        self._items[key] = data
        self._bytes += len(data)
        while self._bytes > self._max_bytes:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= len(dropped)


@dataclass(frozen=True)
class _Credentials:
    """Explicit credentials, held until the client is built; their `repr` shows none of them."""

    access_key_id: str | None = field(repr=False)
    secret_access_key: str | None = field(repr=False)
    session_token: str | None = field(repr=False)


@dataclass
class _Counter:
    """One run's sequence counter as this process last saw it, and the allocations waiting for it."""

    known: bool = False
    """Whether `etag` and `value` are this process's latest knowledge (else the counter is read first)."""
    etag: str | None = None
    """The ETag this process last wrote or read; `None` for a counter not written yet."""
    value: int = 0
    waiting: list[tuple[int, asyncio.Future[int]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class S3Ledger(Ledger):
    """A ledger in an S3 bucket, shared by any number of worker processes on any number of hosts.

    Configure it with a URL and, where the standard AWS chain (environment, shared config and
    credentials files, instance or container roles) is not what you want, explicit options::

        S3Ledger('s3://my-bucket/agents/prod')
        S3Ledger('s3://ledger/dev', endpoint_url='http://localhost:9000', region_name='us-east-1')

    The URL may carry the non-secret options as query parameters (`endpoint_url`, `region_name`,
    `profile_name`, `sse`, `sse_kms_key_id`, `addressing_style`), so `open_ledger` and the CLI's
    `--ledger` can name any S3 ledger; keyword arguments override them. Credentials are never
    accepted in the URL. See the module docstring for the key layout and the guarantees.
    """

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        profile_name: str | None = None,
        sse: ServerSideEncryption | None = None,
        sse_kms_key_id: str | None = None,
        addressing_style: AddressingStyle | None = None,
        retry: RetryPolicy | None = None,
        request_attempts: int = 3,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 20.0,
        max_concurrency: int = 16,
        cache_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        """Describe the ledger at `url` (`s3://bucket` or `s3://bucket/prefix`); nothing is contacted until `open()`.

        Args:
            url: The bucket and key prefix, optionally with non-secret options as query parameters.
            endpoint_url: An S3-compatible endpoint (MinIO, R2, a loopback test server); by default
                boto3's (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, or AWS S3 itself).
            region_name: The bucket's region; by default boto3's (`AWS_REGION`, the profile).
            aws_access_key_id: With `aws_secret_access_key` (and `aws_session_token` for temporary
                credentials), explicit credentials instead of boto3's chain.
            aws_secret_access_key: See `aws_access_key_id`. Never part of `url`, a `repr` or a message.
            aws_session_token: See `aws_access_key_id`.
            profile_name: A profile of the shared AWS config and credentials files.
            sse: Server-side encryption of every object written (`AES256`, `aws:kms`, `aws:kms:dsse`).
            sse_kms_key_id: The KMS key for `aws:kms` / `aws:kms:dsse` (by default the bucket's or
                the account's default key).
            addressing_style: `path` for stores that serve buckets only under the path (many MinIO
                setups); by default botocore's choice.
            retry: How whole ledger writes are retried (see `RetryPolicy`).
            request_attempts: How many times botocore sends one request before the call fails
                (standard retry mode, with its own jittered backoff).
            connect_timeout_s: How long one connection attempt may take; short, so an unreachable
                endpoint fails at worker start within seconds.
            read_timeout_s: How long one response may take.
            max_concurrency: Threads (and pooled connections) this ledger uses for S3 calls.
            cache_bytes: Memory for immutable records already read (events, acceptances, snapshot
                manifests); 0 turns the cache off. Message and blob content is read every time, so
                that its hash check sees what is stored.

        """
        bucket, prefix, options = _parse_url(url)
        explicit = {
            'endpoint_url': endpoint_url,
            'region_name': region_name,
            'profile_name': profile_name,
            'sse': sse,
            'sse_kms_key_id': sse_kms_key_id,
            'addressing_style': addressing_style,
        }
        options.update({name: value for name, value in explicit.items() if value is not None})
        self._bucket = bucket
        self._prefix = prefix
        self._options = options
        self._sse, style = _checked_options(options)
        self._sse_kms_key_id = options.get('sse_kms_key_id')
        if (aws_access_key_id is None) != (aws_secret_access_key is None):
            raise LedgerConfigError('give both aws_access_key_id and aws_secret_access_key, or neither')
        if request_attempts < 1 or max_concurrency < 1:
            raise LedgerConfigError('request_attempts and max_concurrency must be at least 1')
        self.url = _format_url(self._bucket, self._prefix, options)
        if retry is not None:
            self.retry = retry
        self._credentials = _Credentials(aws_access_key_id, aws_secret_access_key, aws_session_token)
        self._config = Config(
            retries={'total_max_attempts': request_attempts, 'mode': 'standard'},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            max_pool_connections=max_concurrency,
            s3={'addressing_style': style} if style is not None else None,
        )
        self._max_concurrency = max_concurrency
        self._client: S3Client | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._active = 0
        self._idle = asyncio.Event()
        self._counters: OrderedDict[str, _Counter] = OrderedDict()
        self._stored_content: OrderedDict[str, None] = OrderedDict()
        self._cache = _ObjectCache(cache_bytes)

    @property
    def bucket(self) -> str:
        """The bucket the ledger lives in."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The key prefix of every object of this ledger (`''` for the bucket's root, else ending in `/`)."""
        return self._prefix

    @property
    def endpoint(self) -> str:
        """The endpoint the ledger talks to (known for certain once open)."""
        if self._client is not None:
            return self._client.meta.endpoint_url
        return self._options.get('endpoint_url') or 'the default AWS S3 endpoint'

    # --- lifecycle ---------------------------------------------------------------------------------

    async def _open(self) -> None:
        """Build the client, then prove the ledger usable before any run depends on it.

        Checks that the endpoint answers, the bucket exists, the credentials may list and write, the
        layout is one this code reads, and the store enforces conditional writes. Raises
        `LedgerUnavailableError` when the endpoint cannot be reached and `LedgerConfigError` for refused
        credentials, a missing bucket, a newer layout or a store that ignores conditional writes.
        """
        if self._client is not None:
            return
        executor = ThreadPoolExecutor(max_workers=self._max_concurrency, thread_name_prefix='agentledger-s3')
        try:
            self._executor = executor
            self._client = await self._run(self._make_client)
            self._closing = False
            self._idle = asyncio.Event()
            async with self._operation():
                await self._verify()
        except BaseException:
            client, self._client, self._executor = self._client, None, None
            executor.shutdown(wait=False)
            if client is not None:
                client.close()
            raise

    async def _close(self) -> None:
        """Wait for the operations in flight, then release the threads and connections."""
        if self._client is None:
            return
        self._closing = True
        while self._active:
            self._idle.clear()
            await self._idle.wait()
        client, executor = self._client, self._executor
        self._client, self._executor = None, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)
        if client is not None:
            client.close()

    def _make_client(self) -> S3Client:
        credentials = self._credentials
        profile = self._options.get('profile_name')
        try:
            # A boto3 session loads its service models once: sharing one per profile makes a new
            # client cost milliseconds instead of the tens a fresh session takes. Sessions are not
            # thread-safe, hence the lock.
            with _sessions_lock:
                session = _sessions.get(profile)
                if session is None:
                    session = _sessions[profile] = boto3.Session(profile_name=profile)
                return session.client(
                    's3',
                    endpoint_url=self._options.get('endpoint_url'),
                    region_name=self._options.get('region_name'),
                    aws_access_key_id=credentials.access_key_id,
                    aws_secret_access_key=credentials.secret_access_key,
                    aws_session_token=credentials.session_token,
                    config=self._config,
                )
        except (BotoCoreError, ValueError) as error:
            raise self._translate(error, 'configuring') from None

    async def _verify(self) -> None:
        await self._run(self._list_page, self._prefix, None, None, 1)
        marker = self._prefix + _MARKER
        body = _dumps({'format': _FORMAT, 'version': FORMAT_VERSION})
        if await self._run(self._put, marker, body, _CREATE) is None:
            stored = await self._run(self._get, marker)
            if stored is not None:
                self._check_marker(marker, stored[0])
        elif await self._run(self._put, marker, body, _CREATE) is not None:
            raise LedgerConfigError(
                f'the S3 store at {self.endpoint} ignored If-None-Match when writing {self.url}: '
                'the S3 ledger needs conditional writes (AWS S3, MinIO and R2 enforce them)'
            )
        # A mismatching If-Match must be refused too; if it is not, the marker was rewritten with the same bytes.
        if await self._run(self._put, marker, body, '"00000000000000000000000000000000"') is not None:
            raise LedgerConfigError(
                f'the S3 store at {self.endpoint} ignored If-Match when writing {self.url}: '
                'the S3 ledger needs conditional writes (AWS S3, MinIO and R2 enforce them)'
            )

    def _check_marker(self, key: str, data: bytes) -> None:
        marker = self._decode(key, data, lambda value: value)
        if marker.get('format') != _FORMAT or not isinstance(marker.get('version'), int):
            raise LedgerConfigError(f'{self.url} holds an object {key!r} that is not an agentledger S3 marker')
        if marker['version'] > FORMAT_VERSION:
            raise LedgerConfigError(
                f'the S3 ledger {self.url} was written with layout version {marker["version"]}; this agentledger '
                f'reads up to version {FORMAT_VERSION}: upgrade agentledger'
            )

    @asynccontextmanager
    async def _operation(self) -> AsyncIterator[None]:
        """Count an operation in flight, so `close()` waits for it; refuse new ones once closing."""
        if self._client is None or self._closing:
            raise LedgerError(f'the S3 ledger {self.url} is not open')
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        """Run a blocking boto3 call on the ledger's threads."""
        executor = self._executor
        if executor is None:
            raise LedgerError(f'the S3 ledger {self.url} is not open')
        return await asyncio.get_running_loop().run_in_executor(executor, call, *args)

    # --- blocking S3 calls (run on the executor) ----------------------------------------------------

    def _s3(self) -> S3Client:
        if self._client is None:
            raise LedgerError(f'the S3 ledger {self.url} is not open')
        return self._client

    def _put(self, key: str, body: bytes, condition: str | None) -> str | None:
        """PUT `body` at `key` if `condition` (`_CREATE`, an ETag, `None`: always) holds; the new ETag, or `None`."""
        request: PutObjectRequestTypeDef = {'Bucket': self._bucket, 'Key': key, 'Body': body}
        if condition == _CREATE:
            request['IfNoneMatch'] = _CREATE
        elif condition is not None:
            request['IfMatch'] = condition
        if key.endswith('.json'):
            request['ContentType'] = 'application/json'
        if self._sse is not None:
            request['ServerSideEncryption'] = self._sse
        if self._sse_kms_key_id is not None:
            request['SSEKMSKeyId'] = self._sse_kms_key_id
        try:
            return self._s3().put_object(**request)['ETag']
        except ClientError as error:
            code, status = _code(error), _status(error)
            # 412: the condition failed. S3 answers If-Match on a key that is gone with 404 NoSuchKey.
            if status == 412 or (condition not in (_CREATE, None) and code == 'NoSuchKey'):
                return None
            raise self._translate(error, f'writing {key!r} to') from None
        except BotoCoreError as error:
            raise self._translate(error, f'writing {key!r} to') from None

    def _get(self, key: str) -> tuple[bytes, str] | None:
        """GET `key`: its bytes and ETag, or `None` when there is no such key."""
        try:
            response = self._s3().get_object(Bucket=self._bucket, Key=key)
            return response['Body'].read(), response['ETag']
        except ClientError as error:
            if _code(error) == 'NoSuchKey':
                return None
            raise self._translate(error, f'reading {key!r} from') from None
        except BotoCoreError as error:
            raise self._translate(error, f'reading {key!r} from') from None

    def _delete(self, key: str) -> None:
        try:
            self._s3().delete_object(Bucket=self._bucket, Key=key)
        except (ClientError, BotoCoreError) as error:
            raise self._translate(error, f'deleting {key!r} from') from None

    def _exists(self, key: str) -> bool:
        try:
            self._s3().head_object(Bucket=self._bucket, Key=key)
            return True
        except ClientError as error:
            if _status(error) == 404 and _code(error) in ('404', 'NoSuchKey', 'NotFound'):
                return False
            raise self._translate(error, f'looking up {key!r} in') from None
        except BotoCoreError as error:
            raise self._translate(error, f'looking up {key!r} in') from None

    def _list_page(
        self, prefix: str, start_after: str | None, token: str | None, max_keys: int
    ) -> tuple[list[str], str | None]:
        """One page of keys under `prefix` in key order, and the token of the next page (`None` at the end)."""
        request: ListObjectsV2RequestTypeDef = {'Bucket': self._bucket, 'Prefix': prefix, 'MaxKeys': max_keys}
        if token is not None:
            request['ContinuationToken'] = token
        elif start_after is not None:
            request['StartAfter'] = start_after
        try:
            response = self._s3().list_objects_v2(**request)
        except (ClientError, BotoCoreError) as error:
            raise self._translate(error, f'listing {prefix!r} in') from None
        keys = [item['Key'] for item in response.get('Contents', []) if 'Key' in item]
        return keys, response.get('NextContinuationToken') if response.get('IsTruncated') else None

    def _translate(self, error: Exception, doing: str) -> LedgerError:
        """Map a boto3 error to the ledger error that says whether trying again can help.

        The message names the bucket, prefix and endpoint and the store's error code, never a credential.
        Callers raise it `from None`: the message already names the boto3 error, and botocore's dozens of
        frames would push the failure Temporal records for the activity past its size limit (4 KiB by
        default), leaving operators "Failure exceeds size limit." instead of what was not written.
        """
        where = f'{doing} bucket {self._bucket!r} at {self.endpoint}'
        if isinstance(error, ClientError):
            code, status = _code(error), _status(error)
            message = error.response.get('Error', {}).get('Message') or ''
            detail = f'{code} ({message})' if message and message != code else code
            if code == 'NoSuchBucket':
                return LedgerConfigError(f'{where} failed: the bucket {self._bucket!r} does not exist')
            if code == 'NotImplemented' or status == 501:
                return LedgerConfigError(f'{where} failed: the store does not implement this request: {detail}')
            if code in _CREDENTIAL_CODES:
                return LedgerConfigError(
                    f'{where} failed: the credentials were refused: {detail}. Check AWS_ACCESS_KEY_ID / '
                    'AWS_SECRET_ACCESS_KEY / AWS_PROFILE or the explicit credential options'
                )
            if code in _DENIED_CODES or status == 403:
                return LedgerConfigError(
                    f'{where} failed: access denied: {detail}. The credentials need s3:ListBucket, '
                    f's3:GetObject and s3:PutObject on bucket {self._bucket!r}'
                )
            if code in _TRANSIENT_CODES or status is None or status >= 500 or status in (408, 409, 429):
                return LedgerUnavailableError(f'{where} failed: {detail} (HTTP {status})')
            return LedgerError(f'{where} failed: {detail} (HTTP {status})')
        if isinstance(error, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
            return LedgerConfigError(
                f'{where} failed: no usable AWS credentials ({type(error).__name__}). Set AWS_ACCESS_KEY_ID and '
                'AWS_SECRET_ACCESS_KEY, AWS_PROFILE, a role, or the explicit credential options'
            )
        if isinstance(error, ProfileNotFound):
            return LedgerConfigError(f'{where} failed: {error}')
        if isinstance(error, SSLError):
            return LedgerUnavailableError(f'{where} failed: cannot reach the endpoint: {error}')
        if isinstance(error, BotoConnectionError | HTTPClientError):
            # botocore's message only repeats the request's URL.
            return LedgerUnavailableError(f'{where} failed: cannot reach the endpoint ({type(error).__name__})')
        return LedgerError(f'{where} failed ({type(error).__name__}): {error}')

    # --- keys ----------------------------------------------------------------------------------------

    def _run_prefix(self, run_id: str) -> str:
        if not _RUN_ID.fullmatch(run_id):
            raise LedgerConfigError(
                f'run id {run_id!r} cannot name objects in the S3 ledger {self.url}: '
                'a run id is 1 to 128 letters, digits, "-" or "_", starting with a letter or digit'
            )
        return f'{self._prefix}runs/{run_id}/'

    def _snapshot_key(self, snapshot_id: str) -> str:
        match = _SNAPSHOT_ID.fullmatch(snapshot_id)
        if match is None:
            raise LedgerConfigError(f'snapshot id {snapshot_id!r} cannot name an object in the S3 ledger {self.url}')
        return f'{self._run_prefix(match["run"])}snapshots/{snapshot_id}.json'

    def _content_key(self, kind: Literal['messages', 'blobs'], digest: str) -> str:
        if not _HASH.fullmatch(digest):
            raise LedgerConfigError(f'{digest!r} is not a SHA-256 hex digest and cannot name stored content')
        return f'{self._prefix}{kind}/{digest[:2]}/{digest}'

    def _reference_key(self, reference: PayloadReference) -> str:
        referrer = _digest(f'{reference.namespace}|{reference.workflow_id}')
        return f'{self._reference_prefix(reference.manifest)}{referrer}.json'

    def _reference_prefix(self, manifest: str | None = None) -> str:
        if manifest is None:
            return f'{self._prefix}payload-refs/'
        if not _HASH.fullmatch(manifest):
            raise LedgerConfigError(f'{manifest!r} is not a SHA-256 hex digest and cannot name a stored payload')
        return f'{self._prefix}payload-refs/{manifest}/'

    def _index_prefix(self, name: str, value: str | None = None) -> str:
        if value is None:
            return f'{self._prefix}index/runs/{name}/'
        return f'{self._prefix}index/runs/{name}/{_digest(value)[:32]}/'

    def _index_keys(self, start: RunStart) -> list[str]:
        entry = f'{_index_time(_epoch_us(start.started_at))}-{start.run_id}'
        prefixes = [self._index_prefix('all')] + [
            self._index_prefix(name, value) for name, value in _indexed(start) if value is not None
        ]
        return [prefix + entry for prefix in prefixes]

    # --- writes --------------------------------------------------------------------------------------

    async def _write_run_start(self, start: RunStart, event: StepEvent) -> None:
        async with self._operation():
            key = self._run_prefix(start.run_id) + 'run.json'
            # Index entries first: a run record that exists is always listed.
            await _all(self._run(self._put, index_key, b'', _CREATE) for index_key in self._index_keys(start))
            if await self._fold_run(key, lambda existing: apply_run_start(existing, start)):
                # This start created the run, so its counter is not written yet: skip reading it.
                self._counters.setdefault(start.run_id, _Counter(known=True))
            await self._put_events([event])

    async def _write_seal(self, seal: RunSeal, event: StepEvent) -> None:
        async with self._operation():
            key = self._run_prefix(seal.run_id) + 'run.json'
            await self._fold_run(key, lambda existing: apply_seal(existing, seal) if existing is not None else None)
            await self._put_events([event])

    async def _write_events(self, events: Sequence[StepEvent]) -> None:
        async with self._operation():
            await self._put_events(events)

    async def _write_acceptances(self, acceptances: Sequence[Acceptance]) -> None:
        async with self._operation():
            unique = {(a.run_id, a.key): a for a in reversed(acceptances)}
            await _all(
                self._run(
                    self._put,
                    f'{self._run_prefix(run_id)}acceptances/{_digest(key)}.json',
                    _dumps(acceptance.to_json()),
                    _CREATE,
                )
                for (run_id, key), acceptance in unique.items()
            )

    async def _rewrite_events(self, run_id: str, remove_seqs: Sequence[int], events: Sequence[StepEvent]) -> None:
        # Repairs only: events are otherwise immutable objects, so the cache of what was read is dropped.
        async with self._operation():
            removed = set(remove_seqs)
            if removed:
                keys = await self._list(self._run_prefix(run_id) + 'events/')
                for key, data in await self._get_many(keys, immutable=True):
                    if data is not None and self._decode(key, data, StepEvent.from_json).seq in removed:
                        await self._run(self._delete, key)
                        self._cache.drop(key)
            for event in events:
                seq = event.seq or (await self._allocate(event.run_id, 1))[0]
                body = event.with_seq(seq).to_json()
                del body['state']
                key = f'{self._run_prefix(event.run_id)}events/{_digest(event.key)}.json'
                await self._run(self._put, key, _dumps(body), None)
                self._cache.drop(key)

    async def _rewrite_acceptances(self, acceptances: Sequence[Acceptance]) -> None:
        async with self._operation():
            for acceptance in acceptances:
                key = f'{self._run_prefix(acceptance.run_id)}acceptances/{_digest(acceptance.key)}.json'
                await self._run(self._put, key, _dumps(acceptance.to_json()), None)
                self._cache.drop(key)

    async def _update_run(self, run_id: str, fold: Callable[[RunRecord], RunRecord | None]) -> None:
        async with self._operation():
            key = self._run_prefix(run_id) + 'run.json'
            await self._fold_run(key, lambda existing: fold(existing) if existing is not None else None)

    async def _write_content(self, messages: Mapping[str, bytes], blobs: Mapping[str, bytes]) -> None:
        async with self._operation():
            items = [(self._content_key('messages', d), data) for d, data in messages.items()]
            items += [(self._content_key('blobs', d), data) for d, data in blobs.items()]
            await _all(self._put_content(key, data) for key, data in items if key not in self._stored_content)

    async def _write_payload_references(self, references: Sequence[PayloadReference]) -> None:
        async with self._operation():
            await _all(
                self._upsert_reference(r)
                for r in {r.key: r for r in sorted(references, key=lambda r: r.stored_at)}.values()
            )

    async def _upsert_reference(self, reference: PayloadReference) -> None:
        """Compare-and-swap the reference in, unless the stored one is as recent."""
        key = self._reference_key(reference)
        for attempt in range(_CAS_ATTEMPTS):
            stored = await self._run(self._get, key)
            if stored is not None and self._decode(key, stored[0], PayloadReference.from_json).stored_at >= (
                reference.stored_at
            ):
                return
            condition = stored[1] if stored is not None else _CREATE
            if await self._run(self._put, key, _dumps(reference.to_json()), condition) is not None:
                return
            await _contention_pause(attempt)
        raise LedgerUnavailableError(
            f'the payload reference {key!r} in the S3 ledger {self.url} changed under {_CAS_ATTEMPTS} updates in a row'
        )

    async def _delete_payload_references(self, references: Sequence[PayloadReference]) -> None:
        async with self._operation():
            await _all(self._run(self._delete, key) for key in dict.fromkeys(map(self._reference_key, references)))

    async def _delete_blobs(self, hashes: Sequence[str]) -> None:
        async with self._operation():
            keys = [self._content_key('blobs', digest) for digest in dict.fromkeys(hashes)]
            for key in keys:
                # Content this process wrote is not written again while cached as stored: forget it first.
                self._stored_content.pop(key, None)
            await _all(self._run(self._delete, key) for key in keys)

    async def _write_snapshot(self, snapshot: SnapshotRecord) -> None:
        async with self._operation():
            key = self._snapshot_key(snapshot.snapshot_id)
            match = _SNAPSHOT_ID.fullmatch(snapshot.snapshot_id)
            if match is None or match['run'] != snapshot.run_id:
                raise LedgerConfigError(f'snapshot {snapshot.snapshot_id!r} does not belong to run {snapshot.run_id!r}')
            [seq] = await self._allocate(snapshot.run_id, 1)
            await self._run(self._put, key, _dumps({'seq': seq, 'snapshot': snapshot.to_json()}), _CREATE)

    def _record_key(self, namespace: str, key: str) -> str:
        return f'{self._prefix}records/{namespace}/keys/{_digest(key)}.json'

    def _record_scope_prefix(self, namespace: str, scope: str) -> str:
        return f'{self._prefix}records/{namespace}/scopes/{_digest(scope)[:32]}/'

    async def _put_record(self, record: KeyedRecord, expected_version: str | None) -> str | None:
        async with self._operation():
            body = _dumps(
                {'namespace': record.namespace, 'key': record.key, 'scope': record.scope, 'value': record.value}
            )
            if expected_version is None:
                entry = self._record_scope_prefix(record.namespace, record.scope) + _digest(record.key)
                await self._run(self._put, entry, b'', _CREATE)
                return await self._run(self._put, self._record_key(record.namespace, record.key), body, _CREATE)
            return await self._run(self._put, self._record_key(record.namespace, record.key), body, expected_version)

    async def _read_record(self, namespace: str, key: str) -> KeyedRecord | None:
        async with self._operation():
            object_key = self._record_key(namespace, key)
            stored = await self._run(self._get, object_key)
            if stored is None:
                return None
            record = self._decode_record(object_key, stored[0], stored[1])
            if (record.namespace, record.key) != (namespace, key):
                raise LedgerCorruptionError(
                    f'object {object_key!r} in the S3 ledger {self.url} holds record {record.key!r}, not {key!r}'
                )
            return record

    async def _list_records(self, namespace: str, scope: str | None) -> list[KeyedRecord]:
        async with self._operation():
            if scope is None:
                keys = await self._list(f'{self._prefix}records/{namespace}/keys/')
            else:
                entries = await self._list(self._record_scope_prefix(namespace, scope))
                keys = [f'{self._prefix}records/{namespace}/keys/{entry.rsplit("/", 1)[1]}.json' for entry in entries]
            stored = await _all(self._run(self._get, key) for key in keys)
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

    async def _fold_run(self, key: str, fold: Callable[[RunRecord | None], RunRecord | None]) -> bool:
        """Compare-and-swap `fold` into the run record at `key` until it lands or changes nothing.

        Returns whether this call created the record.
        """
        for attempt in range(_CAS_ATTEMPTS):
            stored = await self._run(self._get, key)
            existing = self._decode(key, stored[0], RunRecord.from_json) if stored is not None else None
            updated = fold(existing)
            if updated is None:
                return False
            condition = stored[1] if stored is not None else _CREATE
            if await self._run(self._put, key, _dumps(updated.to_json()), condition) is not None:
                return stored is None
            await _contention_pause(attempt)
        raise LedgerUnavailableError(
            f'the run record {key!r} in the S3 ledger {self.url} changed under {_CAS_ATTEMPTS} updates in a row'
        )

    async def _put_events(self, events: Sequence[StepEvent]) -> None:
        by_run: dict[str, dict[str, StepEvent]] = {}
        for event in events:
            by_run.setdefault(event.run_id, {}).setdefault(event.key, event)
        if len(by_run) == 1:
            [(run_id, unique)] = by_run.items()
            await self._put_run_events(run_id, list(unique.values()))
        else:
            await _all(self._put_run_events(run_id, list(unique.values())) for run_id, unique in by_run.items())

    async def _put_run_events(self, run_id: str, events: list[StepEvent]) -> None:
        prefix = self._run_prefix(run_id) + 'events/'
        seqs = await self._allocate(run_id, len(events))
        # In order, one after another: if one fails, none after it was written, so the retry (which
        # takes new numbers) cannot put a later event of the batch before an earlier one.
        for event, seq in zip(events, seqs, strict=True):
            body = event.with_seq(seq).to_json()
            del body['state']
            await self._run(self._put, f'{prefix}{_digest(event.key)}.json', _dumps(body), _CREATE)

    async def _put_content(self, key: str, data: bytes) -> None:
        # Large content is looked up first so that content already stored is not sent again; small
        # content is cheaper to send with If-None-Match than to look up.
        if len(data) < _HEAD_FIRST_BYTES or not await self._run(self._exists, key):
            await self._run(self._put, key, data, _CREATE)
        self._stored_content[key] = None
        while len(self._stored_content) > _CACHE_SIZE * 16:
            self._stored_content.popitem(last=False)

    # --- sequence numbers ----------------------------------------------------------------------------

    async def _allocate(self, run_id: str, count: int) -> range:
        """Take `count` consecutive sequence numbers of the run.

        Allocations of one run that arrive while a compare-and-swap is in flight wait and are served
        together by the next one, so concurrent writers in one process cost one round trip, not one each.
        """
        counter = self._counters.get(run_id)
        if counter is None:
            counter = self._counters[run_id] = _Counter()
        self._counters.move_to_end(run_id)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        counter.waiting.append((count, future))
        if counter.task is None:
            counter.task = asyncio.create_task(self._serve_counter(run_id, counter), name=f'agentledger seq {run_id}')
        first = await future
        self._forget_idle_counters()
        return range(first, first + count)

    async def _serve_counter(self, run_id: str, counter: _Counter) -> None:
        try:
            while counter.waiting:
                batch = [(count, future) for count, future in counter.waiting if not future.done()]
                counter.waiting = []
                if not batch:
                    continue
                try:
                    first = await self._advance(run_id, counter, sum(count for count, _ in batch))
                except Exception as error:
                    # Each waiter raises its own copy, with a traceback of its own (short, and not
                    # growing with every waiter it is raised in).
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(copy.copy(error).with_traceback(None))
                    continue
                for count, future in batch:
                    if not future.done():
                        future.set_result(first)
                    first += count
        finally:
            counter.task = None

    async def _advance(self, run_id: str, counter: _Counter, count: int) -> int:
        """Advance the run's counter by `count` with compare-and-swap; return the first number taken."""
        key = self._run_prefix(run_id) + 'seq'
        for attempt in range(_CAS_ATTEMPTS):
            if not counter.known:
                stored = await self._run(self._get, key)
                counter.value = self._decode_counter(key, stored[0]) if stored is not None else 0
                counter.etag = stored[1] if stored is not None else None
                counter.known = True
            condition = counter.etag if counter.etag is not None else _CREATE
            etag = await self._run(self._put, key, str(counter.value + count).encode(), condition)
            if etag is not None:
                first = counter.value + 1
                counter.value, counter.etag = counter.value + count, etag
                return first
            counter.known = False
            await _contention_pause(attempt)
        raise LedgerUnavailableError(
            f'the sequence counter {key!r} in the S3 ledger {self.url} changed under {_CAS_ATTEMPTS} updates in a row'
        )

    def _forget_idle_counters(self) -> None:
        while len(self._counters) > _CACHE_SIZE:
            run_id, counter = next(iter(self._counters.items()))
            if counter.task is not None or counter.waiting:
                return
            del self._counters[run_id]

    # --- reads ---------------------------------------------------------------------------------------

    async def _read_run(self, run_id: str) -> RunRecord | None:
        if not _RUN_ID.fullmatch(run_id):
            return None
        async with self._operation():
            key = self._run_prefix(run_id) + 'run.json'
            stored = await self._run(self._get, key)
            return self._decode(key, stored[0], RunRecord.from_json) if stored is not None else None

    async def _read_runs(self, filter: RunFilter, *, limit: int, before: RunRecord | None) -> list[RunRecord]:
        async with self._operation():
            index = self._index_for(filter)
            cursor = (_epoch_us(before.started_at), before.run_id) if before is not None else None
            # Every key of the cursor's start time sorts after this one, so listing starts at its group.
            start_after = index + _index_time(cursor[0]) if cursor is not None else None
            found: list[RunRecord] = []
            listed: list[tuple[int, str]] = []
            token: str | None = None
            # One key past the page tells its last start time is complete; the cursor's own key is listed too.
            page_size = min(1000, limit + 1 + (cursor is not None))
            while True:
                keys, token = await self._run(self._list_page, index, start_after, token, page_size)
                listed += [entry for key in keys if (entry := _parse_index_entry(key[len(index) :])) is not None]
                page_size = min(1000, page_size * 2)
                # Ties on the start time are ordered by run id, newest-first like the rest: a listed
                # start time is complete only once the listing moved past it.
                if token is None:
                    ready, listed = listed, []
                else:
                    last = listed[-1][0] if listed else None
                    ready = [entry for entry in listed if entry[0] != last]
                    listed = [entry for entry in listed if entry[0] == last]
                ready.sort(reverse=True)
                if cursor is not None:
                    ready = [entry for entry in ready if entry < cursor]
                while ready:
                    size = max(limit - len(found), 8)
                    chunk, ready = ready[:size], ready[size:]
                    records = await self._get_many([self._run_prefix(run_id) + 'run.json' for _, run_id in chunk])
                    for (started_us, _), (key, data) in zip(chunk, records, strict=True):
                        if data is None:
                            continue  # indexed before its record was written, which never happened
                        record = self._decode(key, data, RunRecord.from_json)
                        if _epoch_us(record.started_at) == started_us and filter.matches(record):
                            found.append(record)
                            if len(found) == limit:
                                return found
                if token is None:
                    return found

    def _index_for(self, filter: RunFilter) -> str:
        """The narrowest index that holds every run matching `filter`."""
        for name, value in (
            ('workflow', filter.workflow_id),
            ('parent', filter.parent_run_id),
            ('forked-from', filter.forked_from_run_id),
            ('conversation', filter.conversation_id),
            ('agent', filter.agent),
        ):
            if value is not None:
                return self._index_prefix(name, value)
        return self._index_prefix('all')

    async def _read_events(self, run_id: str) -> list[StepEvent]:
        if not _RUN_ID.fullmatch(run_id):
            return []
        async with self._operation():
            objects = await self._get_many(await self._list(self._run_prefix(run_id) + 'events/'), immutable=True)
            events = [self._decode(key, data, StepEvent.from_json) for key, data in objects if data is not None]
            return sorted(events, key=lambda event: event.seq)

    async def _read_acceptances(self, run_id: str) -> list[Acceptance]:
        if not _RUN_ID.fullmatch(run_id):
            return []
        async with self._operation():
            objects = await self._get_many(await self._list(self._run_prefix(run_id) + 'acceptances/'), immutable=True)
            return [self._decode(key, data, Acceptance.from_json) for key, data in objects if data is not None]

    async def _read_snapshot(self, snapshot_id: str) -> SnapshotRecord | None:
        if not _SNAPSHOT_ID.fullmatch(snapshot_id):
            return None
        async with self._operation():
            [(key, data)] = await self._get_many([self._snapshot_key(snapshot_id)], immutable=True)
            return self._decode(key, data, _snapshot_of)[1] if data is not None else None

    async def _read_snapshots(self, run_id: str) -> list[SnapshotRecord]:
        if not _RUN_ID.fullmatch(run_id):
            return []
        async with self._operation():
            objects = await self._get_many(await self._list(self._run_prefix(run_id) + 'snapshots/'), immutable=True)
            manifests = [self._decode(key, data, _snapshot_of) for key, data in objects if data is not None]
            return [snapshot for _, snapshot in sorted(manifests, key=lambda manifest: manifest[0])]

    async def _read_messages(self, hashes: Sequence[str]) -> dict[str, bytes]:
        return await self._read_content('messages', hashes)

    async def _read_blobs(self, hashes: Sequence[str]) -> dict[str, bytes]:
        return await self._read_content('blobs', hashes)

    async def _read_content(self, kind: Literal['messages', 'blobs'], hashes: Sequence[str]) -> dict[str, bytes]:
        async with self._operation():
            wanted = [digest for digest in dict.fromkeys(hashes) if _HASH.fullmatch(digest)]
            # Not cached: content is verified against its hash on every read, so damage is always reported.
            objects = await self._get_many([self._content_key(kind, digest) for digest in wanted])
            return {digest: data for digest, (_, data) in zip(wanted, objects, strict=True) if data is not None}

    async def _read_payload_references(self, manifests: Sequence[str] | None) -> list[PayloadReference]:
        async with self._operation():
            if manifests is None:
                keys = await self._list(self._reference_prefix())
            else:
                listed = await _all(self._list(self._reference_prefix(m)) for m in manifests if _HASH.fullmatch(m))
                keys = [key for page in listed for key in page]
            objects = await self._get_many(keys)
            return [self._decode(key, data, PayloadReference.from_json) for key, data in objects if data is not None]

    async def _read_message_hashes(self) -> list[str]:
        async with self._operation():
            return [key.rsplit('/', 1)[-1] for key in await self._list(f'{self._prefix}messages/')]

    async def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        while True:
            page, token = await self._run(self._list_page, prefix, None, token, 1000)
            keys += page
            if token is None:
                return keys

    async def _get_many(self, keys: Sequence[str], *, immutable: bool = False) -> list[tuple[str, bytes | None]]:
        """GET `keys` in parallel: each key with its bytes, or `None` when it does not exist.

        `immutable` objects (written once with If-None-Match and never replaced) are served from and
        kept in this ledger's cache, so reading a run again costs a listing, not a GET per object.
        """
        found = {key: data for key in keys if immutable and (data := self._cache.get(key)) is not None}
        missing = [key for key in dict.fromkeys(keys) if key not in found]
        stored = await _all(self._run(self._get, key) for key in missing)
        for key, item in zip(missing, stored, strict=True):
            if item is not None:
                found[key] = item[0]
                if immutable:
                    self._cache.put(key, item[0])
        return [(key, found.get(key)) for key in keys]

    def _decode_counter(self, key: str, data: bytes) -> int:
        text = data.decode('ascii', errors='replace')
        if not text.isdigit():
            raise LedgerCorruptionError(
                f'sequence counter {key!r} in the S3 ledger {self.url} is not a number: {text[:40]!r}'
            )
        return int(text)

    def _decode(self, key: str, data: bytes, build: Callable[[dict[str, Any]], T]) -> T:
        try:
            value = json.loads(data)
            if not isinstance(value, dict):
                raise ValueError(f'expected a JSON object, got {type(value).__name__}')
            return build(value)
        except (ValueError, TypeError, KeyError) as error:
            raise LedgerCorruptionError(
                f'object {key!r} in the S3 ledger {self.url} does not decode: {error}'
            ) from error


# --- helpers ---------------------------------------------------------------------------------------------


def _parse_url(url: str) -> tuple[str, str, dict[str, str]]:
    """Split `s3://bucket/prefix?options` into the bucket, the prefix (`''` or ending in `/`) and the options."""
    parts = urlsplit(url)
    if parts.scheme != 's3':
        raise LedgerConfigError(f'an S3 ledger URL starts with s3://, got scheme {parts.scheme!r}')
    if '@' in parts.netloc:
        raise LedgerConfigError(
            'an S3 ledger URL never carries credentials: use the AWS environment, a profile, or the credential options'
        )
    if not _BUCKET.fullmatch(parts.netloc):
        raise LedgerConfigError(f'{parts.netloc!r} is not a valid S3 bucket name (in {_scheme_and_bucket(url)})')
    segments = [segment for segment in parts.path.split('/') if segment]
    for segment in segments:
        if segment in ('.', '..') or not _PREFIX_SEGMENT.fullmatch(segment):
            raise LedgerConfigError(
                f'the S3 ledger prefix {parts.path!r} may not contain ".", ".." or control characters'
            )
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in _URL_OPTIONS:
            if 'key' in name.lower() or 'secret' in name.lower() or 'token' in name.lower():
                raise LedgerConfigError(
                    'an S3 ledger URL never carries credentials: use the AWS environment, a profile, '
                    'or the credential options'
                )
            raise LedgerConfigError(f'unknown S3 ledger URL option {name!r}; supported: {", ".join(_URL_OPTIONS)}')
        options[name] = value
    return parts.netloc, ''.join(f'{segment}/' for segment in segments), options


def _checked_options(options: Mapping[str, str]) -> tuple[ServerSideEncryption | None, AddressingStyle | None]:
    """The encryption and addressing style `options` ask for; raises `LedgerConfigError` for values S3 does not know."""
    sse = options.get('sse')
    if sse is not None and sse not in _SSE_VALUES:
        raise LedgerConfigError(f'sse must be one of {", ".join(_SSE_VALUES)}, got {sse!r}')
    if options.get('sse_kms_key_id') is not None and sse not in ('aws:kms', 'aws:kms:dsse'):
        raise LedgerConfigError("sse_kms_key_id needs sse='aws:kms' or 'aws:kms:dsse'")
    style = options.get('addressing_style')
    if style is not None and style not in _ADDRESSING_STYLES:
        raise LedgerConfigError(f'addressing_style must be one of {", ".join(_ADDRESSING_STYLES)}, got {style!r}')
    return cast(ServerSideEncryption | None, sse), cast(AddressingStyle | None, style)


def _format_url(bucket: str, prefix: str, options: Mapping[str, str]) -> str:
    query = urlencode([(name, options[name]) for name in _URL_OPTIONS if name in options], safe=':/', quote_via=quote)
    path = f'/{prefix.rstrip("/")}' if prefix else ''
    return f's3://{bucket}{path}' + (f'?{query}' if query else '')


def _scheme_and_bucket(url: str) -> str:
    # Only what precedes the path is echoed: the rest of a malformed URL may hold anything.
    return url.split('/', 3)[2] if url.count('/') >= 2 else 's3 URL'


def _indexed(start: RunStart) -> Iterable[tuple[str, str | None]]:
    """The indexed facts of a run, fixed from its start."""
    yield 'agent', start.agent_name
    yield 'conversation', start.conversation_id
    yield 'parent', start.parent_run_id
    yield 'workflow', start.workflow_id
    yield 'forked-from', start.forked_from.run_id if start.forked_from is not None else None


def _index_time(epoch_us: int) -> str:
    return f'{_TIME_CEILING - (epoch_us + _TIME_OFFSET_US):018d}'


def _parse_index_entry(name: str) -> tuple[int, str] | None:
    """`(start time in epoch microseconds, run id)` from an index key's last part; `None` for a foreign key."""
    inverted, _, run_id = name.partition('-')
    if len(inverted) != 18 or not inverted.isdigit() or not _RUN_ID.fullmatch(run_id):
        return None
    return _TIME_CEILING - int(inverted) - _TIME_OFFSET_US, run_id


def _epoch_us(moment: datetime) -> int:
    # astimezone() reads a naive datetime as local time, the same reading datetime comparison gives it.
    return (moment.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(',', ':'), ensure_ascii=False).encode()


def _code(error: ClientError) -> str:
    return str(error.response.get('Error', {}).get('Code', ''))


def _status(error: ClientError) -> int | None:
    return error.response.get('ResponseMetadata', {}).get('HTTPStatusCode')


def _snapshot_of(value: dict[str, Any]) -> tuple[int, SnapshotRecord]:
    seq = value['seq']
    if not isinstance(seq, int):
        raise ValueError(f'seq is not a number: {seq!r}')
    return seq, SnapshotRecord.from_json(value['snapshot'])


async def _contention_pause(attempt: int) -> None:
    # Full jitter, so writers that collided once do not collide again in lockstep.
    await asyncio.sleep(random.uniform(0, min(0.25, 0.005 * 2**attempt)))


async def _all(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Await all of `awaitables` concurrently; if any failed, raise the first failure after all have ended."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        raise failures[0]
    return cast(list[T], results)
