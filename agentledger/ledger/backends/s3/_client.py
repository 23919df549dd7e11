"""The S3 ledger's connection: a boto3 client on a thread pool of its own, conditional PUTs, errors translated.

boto3's calls block, so they run on this pool (`max_concurrency` threads, as many pooled
connections) and the event loop never waits on the network. Every failure is mapped to the ledger
error that says whether trying again can help, naming the bucket and endpoint, never a credential.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, Unpack, cast

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

from agentledger._redaction import redact
from agentledger.errors import (
    LedgerConfigError,
    LedgerError,
    LedgerPermissionError,
    LedgerReadOnlyError,
    LedgerUnavailableError,
)
from agentledger.ledger.backends._encoding import decode, dumps, loads_object
from agentledger.ledger.backends.s3._cache import ObjectCache
from agentledger.ledger.backends.s3._config import (
    URL_OPTIONS,
    Credentials,
    S3Options,
    checked_options,
    format_url,
    parse_url,
)
from agentledger.ledger.backends.s3._layout import CREATE, FORMAT, FORMAT_VERSION, MARKER, Layout
from agentledger.model._options import check_options
from agentledger.model._records import RunRecord

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ListObjectsV2RequestTypeDef, PutObjectRequestTypeDef

__all__ = ['CACHE_SIZE', 'CAS_ATTEMPTS', 'Bucket', 'LogCursor', 'contention_pause', 'gather_all', 'json_body']

T = TypeVar('T')

CAS_ATTEMPTS = 32
"""Compare-and-swap rounds on one object before contention is reported as unavailability."""
CACHE_SIZE = 4096
"""How many runs' log ends (and, times 16, content hashes known stored) a ledger remembers."""

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


@dataclass
class LogCursor:
    """One run's log as this process knows it, and the appends waiting for its next slot."""

    end: int | None = None
    """The highest slot this process knows exists (0: none); `None` until it is looked up."""
    waiting: list[tuple[list[dict[str, Any]], asyncio.Future[int]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class Bucket:
    """One ledger's prefix of one bucket: the client, its threads, the operations in flight, and what is cached.

    The store's capabilities (`_runs`, `_content`, `_records`, ...) are built on its calls: `_put`,
    `_get`, `_delete`, `_exists` and `_list_page` block and run on the pool through `_run`; every
    store method runs inside `_operation()`, so `close()` waits for it. `bucket` is the bucket's name and
    `prefix` the key prefix of every object (`''` for the bucket's root, else ending in `/`). Opened
    `read_only`, it never sends a PUT or DELETE.
    """

    def __init__(self, url: str, *, read_only: bool = False, **given: Unpack[S3Options]) -> None:
        """Describe the bucket and prefix `url` names; nothing is contacted until `open()`. See `S3Ledger`."""
        check_options('S3Store', given, S3Options)
        self.read_only = read_only
        bucket, prefix, options = parse_url(url)
        explicit = {name: given.get(name) for name in URL_OPTIONS}
        options.update({name: value for name, value in explicit.items() if isinstance(value, str)})
        self.bucket = bucket
        self.prefix = prefix
        self._options = options
        self._sse, style = checked_options(options)
        self._sse_kms_key_id = options.get('sse_kms_key_id')
        aws_access_key_id = given.get('aws_access_key_id')
        aws_secret_access_key = given.get('aws_secret_access_key')
        request_attempts = given.get('request_attempts', 3)
        max_concurrency = given.get('max_concurrency', 16)
        if (aws_access_key_id is None) != (aws_secret_access_key is None):
            raise LedgerConfigError('give both aws_access_key_id and aws_secret_access_key, or neither')
        if request_attempts < 1 or max_concurrency < 1:
            raise LedgerConfigError('request_attempts and max_concurrency must be at least 1')
        self.url = format_url(self.bucket, self.prefix, options)
        self._credentials = Credentials(aws_access_key_id, aws_secret_access_key, given.get('aws_session_token'))
        self._config = Config(
            retries={'total_max_attempts': request_attempts, 'mode': 'standard'},
            connect_timeout=given.get('connect_timeout_s', 3.0),
            read_timeout=given.get('read_timeout_s', 20.0),
            max_pool_connections=max_concurrency,
            s3={'addressing_style': style} if style is not None else None,
        )
        self._max_concurrency = max_concurrency
        self._client: S3Client | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._active = 0
        self._idle = asyncio.Event()
        self._logs: OrderedDict[str, LogCursor] = OrderedDict()
        self._records: OrderedDict[str, tuple[RunRecord, str]] = OrderedDict()
        """Run records as this process last wrote them, with their ETags: a fold of one starts from it."""
        self._first_version = FORMAT_VERSION
        """The layout version the ledger began with (its marker's): older runs are stored as that layout stored them."""
        self._stored_content: OrderedDict[str, None] = OrderedDict()
        self._cache = ObjectCache(given.get('cache_bytes', 64 * 1024 * 1024))
        self._layout = Layout(self.prefix, self.url)

    @property
    def endpoint(self) -> str:
        """The endpoint the ledger talks to (known for certain once open)."""
        if self._client is not None:
            return redact(str(self._client.meta.endpoint_url))
        return redact(str(self._options.get('endpoint_url') or 'the default AWS S3 endpoint'))

    # --- lifecycle ---------------------------------------------------------------------------------

    async def open(self) -> None:
        """Build the client, then prove the ledger usable before any run depends on it.

        Checks that the endpoint answers, the bucket exists, the credentials may list and write, the
        layout is one this code reads, and the store enforces conditional writes. Read-only, it writes
        nothing: it checks that the credentials may list and read and that the prefix holds a ledger.
        Raises `LedgerUnavailableError` when the endpoint cannot be reached, `LedgerPermissionError`
        for refused credentials or access, and `LedgerConfigError` for a missing bucket, a newer layout,
        a store that ignores conditional writes, or (read-only) a prefix that holds no ledger.
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

    async def close(self) -> None:
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
        await self._run(self._list_page, self.prefix, None, None, 1)
        marker = self.prefix + MARKER
        if self.read_only:
            found = await self._run(self._get, marker)
            if found is None:
                raise LedgerConfigError(
                    f'no agentledger ledger at {self.url}: the prefix holds no {MARKER!r} marker '
                    '(a ledger is created when it is first opened read-write, as by a worker)'
                )
            self._read_marker(marker, found[0])
            return
        body = json_body({'format': FORMAT, 'version': FORMAT_VERSION})
        if await self._run(self._put, marker, body, CREATE) is None:
            await self._upgrade_marker(marker)
        elif await self._run(self._put, marker, body, CREATE) is not None:
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

    async def _upgrade_marker(self, key: str) -> None:
        """Read the stored marker; one of an older layout is rewritten to this one, naming the layout it began with.

        Workers of the older version that start later then refuse the prefix ("upgrade agentledger")
        instead of writing objects this layout does not number, and every reader knows to read them.
        """
        for attempt in range(CAS_ATTEMPTS):
            stored = await self._run(self._get, key)
            if stored is None:
                return
            marker = self._read_marker(key, stored[0])
            if marker['version'] >= FORMAT_VERSION:
                return
            upgraded = {'format': FORMAT, 'version': FORMAT_VERSION, 'first_version': marker['version']}
            if await self._run(self._put, key, json_body(upgraded), stored[1]) is not None:
                return
            await contention_pause(attempt)

    def _read_marker(self, key: str, data: bytes) -> dict[str, Any]:
        """Check a stored marker and note what its layout implies; return it."""
        marker = self._decode(key, data, lambda value: value)
        if marker.get('format') != FORMAT or not isinstance(marker.get('version'), int):
            raise LedgerConfigError(f'{self.url} holds an object {key!r} that is not an agentledger S3 marker')
        if marker['version'] > FORMAT_VERSION:
            raise LedgerConfigError(
                f'the S3 ledger {self.url} was written with layout version {marker["version"]}; this agentledger '
                f'reads up to version {FORMAT_VERSION}: upgrade agentledger'
            )
        first = marker.get('first_version', marker['version'])
        self._first_version = first if isinstance(first, int) else 1
        return marker

    @property
    def _began_with_layout_1(self) -> bool:
        """Whether the ledger may hold runs of layout 1: one object per event, and no status index entries."""
        return self._first_version < 2

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
        """PUT `body` at `key` if `condition` (`CREATE`, an ETag, `None`: always) holds; the new ETag, or `None`."""
        self._check_writable(key)
        request: PutObjectRequestTypeDef = {'Bucket': self.bucket, 'Key': key, 'Body': body}
        if condition == CREATE:
            request['IfNoneMatch'] = CREATE
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
            if status == 412 or (condition not in (CREATE, None) and code == 'NoSuchKey'):
                return None
            raise self._translate(error, f'writing {key!r} to') from None
        except BotoCoreError as error:
            raise self._translate(error, f'writing {key!r} to') from None

    def _check_writable(self, key: str) -> None:
        if self.read_only:
            raise LedgerReadOnlyError(f'cannot write {key!r} to the S3 ledger {self.url}: it is open read-only')

    def _get(self, key: str) -> tuple[bytes, str] | None:
        """GET `key`: its bytes and ETag, or `None` when there is no such key."""
        try:
            response = self._s3().get_object(Bucket=self.bucket, Key=key)
            return response['Body'].read(), response['ETag']
        except ClientError as error:
            if _code(error) == 'NoSuchKey':
                return None
            raise self._translate(error, f'reading {key!r} from') from None
        except BotoCoreError as error:
            raise self._translate(error, f'reading {key!r} from') from None

    def _delete(self, key: str) -> None:
        self._check_writable(key)
        try:
            self._s3().delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as error:
            raise self._translate(error, f'deleting {key!r} from') from None

    def _exists(self, key: str) -> bool:
        try:
            self._s3().head_object(Bucket=self.bucket, Key=key)
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
        request: ListObjectsV2RequestTypeDef = {'Bucket': self.bucket, 'Prefix': prefix, 'MaxKeys': max_keys}
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
        where = f'{doing} bucket {self.bucket!r} at {self.endpoint}'
        if isinstance(error, ClientError):
            code, status = _code(error), _status(error)
            message = error.response.get('Error', {}).get('Message') or ''
            detail = f'{code} ({message})' if message and message != code else code
            if code == 'NoSuchBucket':
                return LedgerConfigError(f'{where} failed: the bucket {self.bucket!r} does not exist')
            if code == 'NotImplemented' or status == 501:
                return LedgerConfigError(f'{where} failed: the store does not implement this request: {detail}')
            if code in _CREDENTIAL_CODES:
                return LedgerPermissionError(
                    f'{where} failed: the credentials were refused: {detail}. Check AWS_ACCESS_KEY_ID / '
                    'AWS_SECRET_ACCESS_KEY / AWS_PROFILE or the explicit credential options'
                )
            if code in _DENIED_CODES or status == 403:
                needs = (
                    's3:ListBucket and s3:GetObject'
                    if self.read_only
                    else 's3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject'
                )
                return LedgerPermissionError(
                    f'{where} failed: access denied: {detail}. The credentials need {needs} on bucket '
                    f'{self.bucket!r}' + ('' if self.read_only else '; to only read the ledger, open it read-only')
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
        stored = await gather_all(self._run(self._get, key) for key in missing)
        for key, item in zip(missing, stored, strict=True):
            if item is not None:
                found[key] = item[0]
                if immutable:
                    self._cache.put(key, item[0])
        return [(key, found.get(key)) for key in keys]

    def _decode(self, key: str, data: bytes, build: Callable[[dict[str, Any]], T], *, run_id: str | None = None) -> T:
        return decode(f'object {key!r} in the S3 ledger {self.url}', lambda: build(loads_object(data)), run_id=run_id)


# --- helpers ---------------------------------------------------------------------------------------------


def json_body(value: object) -> bytes:
    """The stored body of a JSON value."""
    return dumps(value).encode()


def _code(error: ClientError) -> str:
    return str(error.response.get('Error', {}).get('Code', ''))


def _status(error: ClientError) -> int | None:
    return error.response.get('ResponseMetadata', {}).get('HTTPStatusCode')


async def contention_pause(attempt: int) -> None:
    """Wait a little before the next compare-and-swap round."""
    # Full jitter, so writers that collided once do not collide again in lockstep.
    await asyncio.sleep(random.uniform(0, min(0.25, 0.005 * 2**attempt)))


async def gather_all(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Await all of `awaitables` concurrently; if any failed, raise the first failure after all have ended."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        raise failures[0]
    return cast(list[T], results)
