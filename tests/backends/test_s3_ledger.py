"""`S3Ledger` beyond the shared conformance suite: layout, security, configuration errors, faults, fleets.

Everything runs against SeaweedFS on loopback (see `tests/helpers/s3_server.py`): a real S3
implementation, real HTTP, conditional writes decided atomically by the server. moto serves only what
SeaweedFS here cannot: a store that ignores conditional writes, IAM users with policies, and SSE-KMS.
The end-to-end tests add a real Temporal dev server and, for the fleet, two worker processes started
with `python -m agentledger worker`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto.s3.responses import S3Response
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from werkzeug.datastructures import Headers

import agentledger
import agentledger.errors
import agentledger.model
from agentledger import RetryPolicy
from agentledger.errors import (
    LedgerConfigError,
    LedgerCorruptionError,
    LedgerError,
    LedgerPermissionError,
    LedgerReadOnlyError,
    LedgerUnavailableError,
    SnapshotNotFoundError,
)
from agentledger.ledger import open_ledger
from agentledger.ledger.backends.s3 import FORMAT_VERSION, S3Ledger
from agentledger.ledger.backends.s3._client import Bucket
from agentledger.model._content import content_hash

from ..conftest import check_at_session_end, check_served_ledgers, serve
from ..helpers.agents import calc_agent
from ..helpers.checks import check_calc_run, check_complete_calc_run, retried_failures
from ..helpers.records import acceptance, conversation, event, ids, run_seal, run_start, snapshot_steps
from ..helpers.s3_server import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    MotoServer,
    S3Server,
    admin_client,
    all_keys,
    free_port,
)

FAST_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)


@pytest.fixture
async def ledger(s3_server: S3Server, s3_bucket: str) -> AsyncIterator[S3Ledger]:
    async with s3_server.ledger(s3_bucket, retry=FAST_RETRY) as opened:
        yield opened


@pytest.fixture
async def own_server() -> AsyncIterator[S3Server]:
    """A server of this test's own that it may stop and start again (on the same ports, with its data).

    The ledgers a test served on it are checked against Temporal's history before it stops for good
    (the end-of-session check could not reach them any more).
    """
    server = S3Server()
    server.start()
    try:
        yield server
        server.start()
        await check_served_ledgers(lambda ledger: isinstance(ledger, S3Ledger) and ledger.endpoint == server.endpoint)
    finally:
        server.remove()


def count_requests(ledger: S3Ledger) -> Counter[str]:
    """Count the ledger's S3 requests by operation name from now on."""
    counts: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        counts[model.name] += 1

    assert ledger.store._client is not None
    ledger.store._client.meta.events.register('before-call.s3', count)
    return counts


# --- configuration ---------------------------------------------------------------------------------------


def test_url_names_the_bucket_the_prefix_and_the_non_secret_options() -> None:
    assert S3Ledger('s3://my-bucket').url == 's3://my-bucket'
    assert S3Ledger('s3://my-bucket/').url == 's3://my-bucket'
    assert S3Ledger('s3://my-bucket//agents/prod/').url == 's3://my-bucket/agents/prod'
    ledger = S3Ledger(
        's3://my-bucket/agents?region_name=eu-west-1',
        endpoint_url='http://127.0.0.1:9000',
        aws_access_key_id='AKIAEXAMPLE',
        aws_secret_access_key='very-secret',
        sse='aws:kms',
        sse_kms_key_id='alias/ledger',
    )
    assert ledger.url == (
        's3://my-bucket/agents?endpoint_url=http://127.0.0.1:9000&region_name=eu-west-1'
        '&sse=aws:kms&sse_kms_key_id=alias/ledger'
    )
    assert (ledger.bucket, ledger.prefix) == ('my-bucket', 'agents/')
    assert 'very-secret' not in ledger.url and 'AKIAEXAMPLE' not in ledger.url
    assert 'very-secret' not in repr(vars(ledger)) and 'AKIAEXAMPLE' not in repr(vars(ledger))
    # open_ledger builds the same ledger from its URL (credentials come from the environment).
    reopened = open_ledger(ledger.url)
    assert isinstance(reopened, S3Ledger)
    assert reopened.url == ledger.url
    assert agentledger.S3Ledger is S3Ledger
    assert agentledger.ledger.S3Ledger is S3Ledger


@pytest.mark.parametrize(
    ('url', 'options', 'message'),
    [
        ('s3://AKIAX:secret-in-url@bucket/p', {}, 'never carries credentials'),
        ('s3://bucket/p?aws_secret_access_key=secret-in-url', {}, 'never carries credentials'),
        ('s3://bucket/p?color=blue', {}, "unknown S3 ledger URL option 'color'"),
        ('s3://bucket/../escape', {}, 'may not contain'),
        ('s3://bucket/a/./b', {}, 'may not contain'),
        ('s3://bucket/a\x00b', {}, 'control characters'),
        ('s3://b/p', {}, 'not a valid S3 bucket name'),
        ('s3://bucket/p', {'sse': 'rot13'}, 'sse must be one of'),
        ('s3://bucket/p', {'sse_kms_key_id': 'k'}, 'sse_kms_key_id needs'),
        ('s3://bucket/p', {'aws_access_key_id': 'AKIAX'}, 'give both'),
    ],
)
def test_invalid_configuration_is_refused_without_echoing_secrets(
    url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(LedgerConfigError, match=re.escape(message)) as info:
        S3Ledger(url, **options)
    assert 'secret-in-url' not in str(info.value)


# --- errors at open (C17) ---------------------------------------------------------------------------------


async def test_missing_bucket_is_a_config_error_at_open(s3_server: S3Server) -> None:
    ledger = s3_server.ledger('no-such-bucket-here')
    with pytest.raises(LedgerConfigError, match="the bucket 'no-such-bucket-here' does not exist") as info:
        await ledger.open()
    assert s3_server.endpoint in str(info.value)


async def test_unreachable_endpoint_fails_fast_at_open() -> None:
    """A closed local port: connection refused, reported as unavailable within seconds."""
    closed = f'http://127.0.0.1:{free_port()}'
    ledger = S3Ledger(
        's3://some-bucket/ledger',
        endpoint_url=closed,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )
    started = time.monotonic()
    with pytest.raises(LedgerUnavailableError, match='cannot reach the endpoint') as info:
        await ledger.open()
    assert time.monotonic() - started < 10
    assert closed in str(info.value)


async def test_unknown_profile_is_a_config_error_at_open() -> None:
    with pytest.raises(LedgerConfigError, match='no-such-profile'):
        await S3Ledger('s3://some-bucket/ledger', profile_name='no-such-profile').open()


async def test_newer_layout_is_refused(ledger: S3Ledger, s3_server: S3Server) -> None:
    marker = {'format': 'agentledger.s3', 'version': FORMAT_VERSION + 1}
    s3_server.client().put_object(
        Bucket=ledger.bucket, Key=f'{ledger.prefix}agentledger.json', Body=json.dumps(marker).encode()
    )
    with pytest.raises(LedgerConfigError, match=f'layout version {FORMAT_VERSION + 1}.*upgrade agentledger'):
        await s3_server.ledger(ledger.bucket).open()


async def test_store_ignoring_conditional_writes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An S3-compatible store that does not enforce If-None-Match would silently duplicate and lose writes.

    moto, patched to drop the conditional headers: no real server can be made to ignore them.
    """
    original = S3Response.put_object

    def ignoring_conditions(self: S3Response, *args: Any, **kwargs: Any) -> Any:
        self.headers = Headers(
            [(k, v) for k, v in self.headers.items() if k.lower() not in ('if-none-match', 'if-match')]
        )
        return original(self, *args, **kwargs)

    monkeypatch.setattr(S3Response, 'put_object', ignoring_conditions)
    server = MotoServer()
    server.start()
    try:
        with pytest.raises(LedgerConfigError, match=r'ignored If-None-Match.*needs conditional writes'):
            await server.ledger(server.new_bucket()).open()
    finally:
        server.stop()


class AuthServer:
    """A moto server in its own process that checks credentials, with one user allowed and one not.

    moto, because it has IAM users and policies to refuse a request by; SeaweedFS's identities do not.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f'http://127.0.0.1:{self.port}'
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'moto.server', '-H', '127.0.0.1', '-p', str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f'{self.endpoint}/moto-api/', timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and self.process.poll() is None, 'moto did not start'
                time.sleep(0.05)
        root = {'endpoint_url': self.endpoint, 'region_name': REGION, 'aws_access_key_id': 'root'}
        iam = boto3.client('iam', aws_secret_access_key='root', **root)
        self.allowed = self._user(iam, 'ledger-writer', ['s3:*'])
        self.denied = self._user(iam, 'ledger-nobody', [])
        self.reader = self._user(iam, 'ledger-reader', ['s3:List*', 's3:Get*'])
        boto3.client('s3', aws_secret_access_key='root', **root).create_bucket(Bucket='auth-ledger')
        # From now on every request must be signed by a known user and allowed by its policies.
        request = urllib.request.Request(
            f'{self.endpoint}/moto-api/reset-auth', data=b'0', method='POST', headers={'Content-Type': 'text/plain'}
        )
        urllib.request.urlopen(request, timeout=5).close()

    @staticmethod
    def _user(iam: Any, name: str, actions: list[str]) -> tuple[str, str]:
        iam.create_user(UserName=name)
        if actions:
            policy = {'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': actions, 'Resource': '*'}]}
            iam.put_user_policy(UserName=name, PolicyName='ledger', PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)['AccessKey']
        return key['AccessKeyId'], key['SecretAccessKey']

    def ledger(self, access_key_id: str, secret: str, *, read_only: bool = False) -> S3Ledger:
        return S3Ledger(
            's3://auth-ledger/prod',
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret,
            retry=FAST_RETRY,
            read_only=read_only,
        )


@pytest.fixture(scope='module')
def auth_server() -> Iterator[AuthServer]:
    server = AuthServer()
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


async def test_accepted_credentials_open_and_write(auth_server: AuthServer) -> None:
    async with auth_server.ledger(*auth_server.allowed) as ledger:
        await ledger.start_run(run_start())
        assert [e.kind for e in await ledger.events('r1')] == ['run_started']


@pytest.mark.parametrize(
    ('who', 'code', 'what'),
    [
        ('unknown key', 'InvalidAccessKeyId', 'the credentials were refused'),
        ('wrong secret', 'SignatureDoesNotMatch', 'the credentials were refused'),
        ('no permission', 'AccessDenied', 'access denied'),
    ],
)
async def test_refused_credentials_are_a_config_error_at_open_that_shows_no_secret(
    auth_server: AuthServer, caplog: pytest.LogCaptureFixture, who: str, code: str, what: str
) -> None:
    """C17: wrong S3 credentials fail the worker's start with a specific error; the secret appears nowhere."""
    key_id, secret = auth_server.allowed
    if who == 'unknown key':
        key_id = 'AKIAUNKNOWN000000000'
    elif who == 'wrong secret':
        secret = 'wrong-' + secret
    else:
        key_id, secret = auth_server.denied
    ledger = auth_server.ledger(key_id, secret)
    with caplog.at_level(logging.DEBUG, logger='agentledger'), pytest.raises(LedgerConfigError) as info:
        await ledger.open()
    message = str(info.value)
    assert code in message and what in message
    assert 'auth-ledger' in message and auth_server.endpoint in message
    assert secret not in message and secret not in caplog.text and secret not in ledger.url


async def test_credentials_that_may_only_read_are_refused_at_once_and_read_read_only(
    auth_server: AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    """C17: AccessDenied on a write is a permission error raised at once; the same credentials read read-only."""
    async with auth_server.ledger(*auth_server.allowed) as writer:
        await writer.start_run(run_start('r-readable'))
    reader_key, reader_secret = auth_server.reader
    with caplog.at_level(logging.WARNING, logger='agentledger'), pytest.raises(LedgerPermissionError) as info:
        await auth_server.ledger(reader_key, reader_secret).open()
    message = str(info.value)
    assert 'AccessDenied' in message and 'writing' in message and 'open it read-only' in message
    assert 'ledger open failed' not in caplog.text
    assert reader_secret not in message and reader_secret not in caplog.text
    async with auth_server.ledger(reader_key, reader_secret, read_only=True) as reader:
        assert (await reader.run('r-readable')).status == 'running'
        with pytest.raises(LedgerReadOnlyError):
            await reader.start_run(run_start('r-other'))


# --- read-only -------------------------------------------------------------------------------------------


def count_all_requests(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the S3 requests of every ledger opened from now on by operation name, from its first request."""
    counts: Counter[str] = Counter()
    make_client = Bucket._make_client

    def counting(self: Bucket) -> Any:
        client = make_client(self)
        client.meta.events.register('before-call.s3', lambda model, **_: counts.update([model.name]))
        return client

    monkeypatch.setattr(Bucket, '_make_client', counting)
    return counts


async def test_read_only_open_and_reads_send_no_put(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only ledger reads the marker instead of writing it, and never sends a PUT or DELETE."""
    async with s3_server.ledger(s3_bucket) as writer:
        await writer.start_run(run_start())
        await writer.record_events([event('1', 1, 'tool_call_started')])
    keys = all_keys(writer)
    counts = count_all_requests(monkeypatch)
    async with s3_server.ledger(s3_bucket, read_only=True) as reader:
        assert ids(await reader.runs()) == ['r1']
        assert [e.kind for e in await reader.events('r1')] == ['run_started', 'tool_call_started']
        with pytest.raises(LedgerReadOnlyError, match='open read-only'):
            await reader.record_events([event('2', 1, 'tool_call_started')])
        with pytest.raises(LedgerReadOnlyError, match='open read-only'):
            await reader.store.write_events([event('2', 1, 'tool_call_started')])
    assert counts['GetObject'] > 0 and counts['ListObjectsV2'] > 0
    assert counts['PutObject'] == counts['DeleteObject'] == 0, counts
    assert all_keys(writer) == keys


async def test_read_only_open_of_a_prefix_without_a_ledger(s3_server: S3Server, s3_bucket: str) -> None:
    """A reader does not create the ledger it did not find: it says the prefix holds none."""
    ledger = s3_server.ledger(s3_bucket, 'nothing-here', read_only=True)
    with pytest.raises(
        LedgerConfigError, match=r"no agentledger ledger at s3://.*/nothing-here\?.*holds no 'agentledger\.json' marker"
    ):
        await ledger.open()
    assert all_keys(ledger) == []


# --- layout and security ---------------------------------------------------------------------------------


async def test_key_layout(ledger: S3Ledger) -> None:
    """Every object sits under the prefix, where the module docstring says it does."""
    await ledger.start_run(run_start('run-a', conversation_id='c1', workflow_id='orders/../../../etc'))
    await ledger.record_events([event('1', 1, 'model_request_started', run_id='run-a')])
    await ledger.accept([acceptance('1', run_id='run-a')])
    await snapshot_steps(ledger, 'run-a', conversation(2), range(1, 3))
    await ledger.seal_run(run_seal('run-a'))

    keys = all_keys(ledger)
    hexes = '[0-9a-f]{64}'
    patterns = {
        'marker': r'agentledger\.json',
        'run': r'runs/run-a/run\.json',
        'log': r'runs/run-a/log/[0-9]{12}\.json',
        'acceptance': rf'runs/run-a/acceptances/{hexes}\.json',
        'snapshot': r'runs/run-a/snapshots/run-a\.s[12]\.[0-9a-f]{12}\.json',
        'message': r'messages/([0-9a-f]{2})/\1[0-9a-f]{62}',
        'index': r'index/runs/all/[0-9]{18}-run-a',
        'field index': r'index/runs/(agent|conversation|workflow)/[0-9a-f]{32}/[0-9]{18}-run-a',
    }
    kinds: Counter[str] = Counter()
    for key in keys:
        assert key.startswith(ledger.prefix)
        relative = key.removeprefix(ledger.prefix)
        [kind] = [name for name, pattern in patterns.items() if re.fullmatch(pattern, relative)] or [relative]
        kinds[kind] += 1
    assert kinds == {
        'marker': 1,
        'run': 1,
        'log': 5,
        'acceptance': 1,
        'snapshot': 2,
        'message': len(conversation(2)[:3]),
        'index': 1,
        'field index': 3,
    }
    # One log object per write, numbered in order: the start, the event, two snapshots' markers, the seal.
    assert [entry.get('event', {}).get('kind') or 'snapshot' for entry in logged(ledger, 'run-a')] == [
        'run_started',
        'model_request_started',
        'snapshot',
        'snapshot',
        'run_completed',
    ]
    assert len(all_keys(ledger, f'{ledger.prefix}runs/run-a/log/')) == 5


def logged(ledger: S3Ledger, run_id: str) -> list[dict[str, Any]]:
    """Every entry of a run's log objects, in slot order, read behind the ledger's back."""
    client = admin_client(ledger.endpoint)
    return [
        entry
        for key in sorted(all_keys(ledger, f'{ledger.prefix}runs/{run_id}/log/'))
        for entry in json.loads(client.get_object(Bucket=ledger.bucket, Key=key)['Body'].read())['entries']
    ]


@pytest.mark.parametrize('run_id', ['../escape', 'a/b', '/absolute', '..', '.hidden', 'tab\there', 'x' * 129, ''])
async def test_ids_cannot_escape_the_prefix(ledger: S3Ledger, run_id: str) -> None:
    before = all_keys(ledger)
    with pytest.raises(LedgerConfigError, match='cannot name objects'):
        await ledger.start_run(run_start(run_id))
    with pytest.raises(LedgerConfigError, match='cannot name objects'):
        await ledger.record_events([event('1', 1, 'tool_call_started', run_id=run_id)])
    # Reading such an id finds nothing, as for any unknown run.
    with pytest.raises(agentledger.errors.RunNotFoundError):
        await ledger.run(run_id)
    assert await ledger.store.read_events(run_id) == []
    assert all_keys(ledger) == before


async def test_free_text_ids_are_hashed_into_keys(ledger: S3Ledger) -> None:
    """Workflow ids, activity ids and agent names are free text: they name objects only through their hash."""
    hostile = '../../outside/\x00\n' + 'é' * 300
    await ledger.start_run(run_start('r1', agent=hostile, workflow_id=hostile, conversation_id=hostile))
    await ledger.record_events([event(hostile, 1, 'tool_call_started', tool_name=hostile)])
    assert all(key.startswith(ledger.prefix) and '..' not in key and '\x00' not in key for key in all_keys(ledger))
    [run] = await ledger.runs(agent=hostile, workflow_id=hostile, conversation_id=hostile)
    assert run.workflow_id == hostile
    assert [e.activity_id for e in await ledger.events('r1')] == ['-', hostile]


async def test_malformed_snapshot_ids_are_not_found(ledger: S3Ledger) -> None:
    await ledger.start_run(run_start('run-a'))
    for snapshot_id in ('run-a.s1.../../x', 'run-a/../b.s1.abc', 'run-a.s1.ABC', 'run-a'):
        with pytest.raises(SnapshotNotFoundError):
            await ledger.snapshot(snapshot_id)


@pytest.mark.parametrize(
    ('options', 'expected'),
    [
        ({'sse': 'AES256'}, ('AES256', None)),
        ({'sse': 'aws:kms', 'sse_kms_key_id': 'alias/agentledger'}, ('aws:kms', 'alias/agentledger')),
    ],
    ids=['sse-s3', 'sse-kms'],
)
async def test_server_side_encryption_is_asked_for_on_every_object(
    s3_server: S3Server, options: dict[str, str], expected: tuple[str, str | None]
) -> None:
    """SSE-S3 on SeaweedFS; SSE-KMS on moto, which accepts any key id (the SeaweedFS here has no KMS)."""
    server: S3Server | MotoServer = s3_server
    if options['sse'] == 'aws:kms':
        server = MotoServer()
        server.start()
    try:
        bucket = server.new_bucket()
        async with server.ledger(bucket, **options) as ledger:
            await ledger.start_run(run_start('run-a'))
            await ledger.accept([acceptance('1', run_id='run-a')])
            await snapshot_steps(ledger, 'run-a', conversation(1), range(1, 2))
        client = server.client()
        keys = all_keys(ledger)
        assert len(keys) > 8
        for key in keys:
            head = client.head_object(Bucket=bucket, Key=key)
            assert (head.get('ServerSideEncryption'), head.get('SSEKMSKeyId')) == expected, key
    finally:
        if isinstance(server, MotoServer):
            server.stop()


async def test_no_credentials_are_stored_in_the_ledger(ledger: S3Ledger, s3_server: S3Server) -> None:
    await ledger.start_run(run_start())
    await ledger.record_events([event('1', 1, 'tool_call_started')])
    client = s3_server.client()
    for key in all_keys(ledger):
        body = client.get_object(Bucket=ledger.bucket, Key=key)['Body'].read()
        assert SECRET_ACCESS_KEY.encode() not in body and ACCESS_KEY_ID.encode() not in body


async def test_corrupt_run_record_is_reported_naming_its_key(ledger: S3Ledger, s3_server: S3Server) -> None:
    """C17: a stored object that does not decode raises LedgerCorruptionError; it is never returned."""
    await ledger.start_run(run_start())
    key = f'{ledger.prefix}runs/r1/run.json'
    s3_server.client().put_object(Bucket=ledger.bucket, Key=key, Body=b'{"run_id": "r1", trailing')
    with pytest.raises(LedgerCorruptionError, match=re.escape(repr(key))):
        await ledger.run('r1')


# --- S3-specific behaviour -------------------------------------------------------------------------------


async def test_runs_lists_a_page_without_scanning_the_bucket(ledger: S3Ledger) -> None:
    """The time-ordered index: a small page lists one page of keys and reads about as many run records."""
    await asyncio.gather(
        *(
            ledger.start_run(run_start(f'r{i:02}', started=i, agent='billing' if i % 2 else 'support'))
            for i in range(40)
        )
    )
    requests = count_requests(ledger)
    assert [r.run_id for r in await ledger.runs(limit=3)] == ['r39', 'r38', 'r37']
    assert requests['ListObjectsV2'] == 1 and requests['GetObject'] <= 8

    requests.clear()
    assert [r.run_id for r in await ledger.runs(agent='support', limit=2, before='r20')] == ['r18', 'r16']
    assert requests['ListObjectsV2'] == 1 and requests['GetObject'] <= 8

    # A common status is filtered on the records of the pages listed.
    await ledger.seal_run(run_seal('r05'))
    assert [r.run_id for r in await ledger.runs(status='completed')] == ['r05']


async def test_rare_statuses_are_indexed_while_a_run_has_them(ledger: S3Ledger) -> None:
    """Failed and parked runs are listed from an index of their own: a listing reads only their records."""
    await asyncio.gather(
        *(
            ledger.start_run(run_start(f'r{i:02}', started=i, agent='billing' if i % 2 else 'support'))
            for i in range(40)
        )
    )
    for run_id in ('r05', 'r17', 'r20'):
        await ledger.seal_run(run_seal(run_id, status='failed'))
    await ledger.seal_run(run_seal('r30'))
    requests = count_requests(ledger)
    assert [r.run_id for r in await ledger.runs(status='failed')] == ['r20', 'r17', 'r05']
    assert (requests['ListObjectsV2'], requests['GetObject']) == (1, 3)
    requests.clear()
    assert [r.run_id for r in await ledger.runs(agent='billing', status='failed', limit=1)] == ['r17']
    assert (requests['ListObjectsV2'], requests['GetObject']) == (1, 2)

    # A run that leaves a status leaves its entries: parked, then resumed, it is listed as running only.
    error = agentledger.model.ErrorInfo('ModelHTTPError', 'overloaded', True)
    await ledger.park_run('r33', error, datetime.now(UTC))
    assert [r.run_id for r in await ledger.runs(status='parked')] == ['r33']
    await ledger.resume_run('r33', datetime.now(UTC))
    assert await ledger.runs(status='parked') == []
    assert not [key for key in all_keys(ledger) if '/index/runs/status/' in key and key.endswith('-r33')]
    assert 'r33' in [r.run_id for r in await ledger.runs(status='running', limit=40)]


async def test_content_already_stored_is_not_uploaded_again(s3_server: S3Server, s3_bucket: str) -> None:
    large, small = b'x' * 20_000, b'small'
    content = {content_hash(large): large, content_hash(small): small}
    async with s3_server.ledger(s3_bucket) as first:
        await first.store.write_content(content, {})
    async with s3_server.ledger(s3_bucket) as second:
        requests = count_requests(second)
        await second.store.write_content(content, {})
        # The large message is looked up and skipped; the small one is cheaper to offer with If-None-Match.
        assert (requests['HeadObject'], requests['PutObject']) == (1, 1)
        requests.clear()
        # Content this ledger stored or found is not even looked up again.
        await second.store.write_content(content, {})
        assert requests == {}
        assert await second.store.read_messages(list(content)) == content


async def test_close_waits_for_writes_in_flight(s3_server: S3Server, s3_bucket: str) -> None:
    ledger = s3_server.ledger(s3_bucket)
    await ledger.open()
    await ledger.start_run(run_start())
    writes = [asyncio.create_task(ledger.record_events([event(str(i), 1, 'tool_call_started')])) for i in range(10)]
    await asyncio.sleep(0)
    await ledger.close()
    await asyncio.gather(*writes)
    with pytest.raises(LedgerError, match='not open'):
        await ledger.record_events([event('late', 1, 'tool_call_started')])
    async with s3_server.ledger(s3_bucket) as reopened:
        assert len(await reopened.events('r1')) == 11


# --- the run log: one request per event ----------------------------------------------------------------


async def test_an_event_costs_one_request_in_steady_state(ledger: S3Ledger) -> None:
    """The log object is the write: no counter to advance first, no lookup."""
    requests = count_requests(ledger)
    await ledger.start_run(run_start('r1'))
    # Three index entries (all, agent, workflow), the record created without reading it first, the event.
    assert requests == {'PutObject': 5}
    requests.clear()
    for i in range(10):
        await ledger.record_events([event(str(i), 1, 'tool_call_started')])
    assert requests == {'PutObject': 10}
    requests.clear()
    await ledger.seal_run(run_seal('r1'))
    # The record's fold starts from the record this process wrote (If-Match its ETag), the event beside it;
    # settling the run's usage lists its events and acceptances (their content this process already holds).
    assert requests == {'ListObjectsV2': 2, 'PutObject': 2}
    assert [e.seq for e in await ledger.events('r1')] == [1024 * slot for slot in range(1, 13)]


async def test_a_fold_from_a_stale_record_reads_the_stored_one(s3_server: S3Server, s3_bucket: str) -> None:
    """Another process changed the record since this one wrote it: the If-Match fails, the record is read and folded."""
    async with s3_server.ledger(s3_bucket) as first, s3_server.ledger(s3_bucket) as second:
        await first.start_run(run_start('r1'))
        await second.start_run(run_start('r1', 't2'))  # continue-as-new on another worker
        requests = count_requests(first)
        await first.seal_run(run_seal('r1', 't2'))
        # The stale If-Match, the GET and the fold; the event meets the other's log object (412), then lands.
        # Settling the run's usage first lists its events and acceptances and reads the other's log object.
        assert requests == {'ListObjectsV2': 2, 'PutObject': 4, 'GetObject': 2}
        record = await second.run('r1')
        assert (record.status, record.temporal_run_ids) == ('completed', ('t1', 't2'))


async def test_concurrent_writes_of_a_run_share_log_objects(ledger: S3Ledger) -> None:
    """What arrives while a run's log object is in flight waits and goes into the next one, in arrival order."""
    await ledger.start_run(run_start('r1'))
    requests = count_requests(ledger)
    await asyncio.gather(*(ledger.record_events([event(str(i), 1, 'tool_call_started')]) for i in range(20)))
    # Here all 20 arrive before the first object is sent; later arrivals would share the next one.
    assert requests == {'PutObject': 1}
    events = await ledger.events('r1')
    assert [e.activity_id for e in events] == ['-', *(str(i) for i in range(20))]
    assert len({e.seq for e in events}) == 21


async def test_writers_of_two_processes_keep_the_order_of_their_writes(s3_server: S3Server, s3_bucket: str) -> None:
    """A writer that knows only its own writes meets the other's objects (412), moves past them, and lands after."""
    async with s3_server.ledger(s3_bucket) as first, s3_server.ledger(s3_bucket) as second:
        await first.start_run(run_start('r1'))
        requests = count_requests(second)
        await second.record_events([event('1', 1, 'tool_call_started')])
        assert requests == {'ListObjectsV2': 1, 'PutObject': 1}  # the log's end looked up once
        for i in range(2, 12):
            writer = first if i % 2 else second
            await writer.record_events([event(str(i), 1, 'tool_call_started')])
        # Each write began after the one before it returned: the log keeps that order.
        assert [e.activity_id for e in await first.events('r1')] == ['-', *(str(i) for i in range(1, 12))]


async def test_racing_writers_of_two_processes_lose_nothing(s3_server: S3Server, s3_bucket: str) -> None:
    async with s3_server.ledger(s3_bucket) as first, s3_server.ledger(s3_bucket) as second:
        await first.start_run(run_start('r1'))

        async def write(ledger: S3Ledger, name: str) -> None:
            for i in range(15):
                await ledger.record_events([event(f'{name}{i}', 1, 'tool_call_started')])

        await asyncio.gather(write(first, 'a'), write(second, 'b'))
        events = await second.events('r1')
        assert len(events) == 31 and len({e.seq for e in events}) == 31
        for name in 'ab':
            # Each writer's writes, one after another, keep their order among the other's.
            assert [e.activity_id for e in events if e.activity_id.startswith(name)] == [
                f'{name}{i}' for i in range(15)
            ]


async def test_an_event_logged_twice_is_read_once_at_its_first_place(s3_server: S3Server, s3_bucket: str) -> None:
    """A redelivered event (or a write retried after an ambiguous failure) lands in a later object: it is read once."""
    async with s3_server.ledger(s3_bucket) as first, s3_server.ledger(s3_bucket) as second:
        await first.start_run(run_start('r1'))
        await first.record_events([event('1', 1, 'tool_call_started', tool_name='original')])
        await first.record_events([event('2', 1, 'tool_call_started')])
        await second.record_events([event('1', 1, 'tool_call_started', tool_name='again')])
        events = await second.events('r1')
        assert [(e.activity_id, e.tool_name) for e in events] == [('-', None), ('1', 'original'), ('2', None)]
        assert len(logged(second, 'r1')) == 4


async def test_a_ledger_begun_with_layout_1_is_read_and_continued(s3_server: S3Server, s3_bucket: str) -> None:
    """What agentledger 0.2 wrote (a counter, one object per event) is read, and new events are numbered after it."""
    async with s3_server.ledger(s3_bucket) as ledger:
        await ledger.start_run(run_start('r1'))
        await ledger.start_run(run_start('r2'))
        await ledger.seal_run(run_seal('r2', status='failed'))
    # Rewrite the runs as layout 1 stored them (no status index, a counter, one object per event), behind
    # the ledger's back.
    client, prefix = s3_server.client(), 'agentledger/'
    for key in all_keys(ledger, f'{prefix}index/runs/status/') + all_keys(ledger, f'{prefix}index/runs/agent-status/'):
        client.delete_object(Bucket=s3_bucket, Key=key)
    for key in all_keys(ledger, f'{prefix}runs/r1/log/'):
        client.delete_object(Bucket=s3_bucket, Key=key)
    old = [event('-', 1, 'run_started'), event('1', 1, 'tool_call_started'), event('1', 1, 'tool_call_completed')]
    for seq, stored in enumerate(old, start=1):
        body = stored.with_seq(seq).to_json()
        del body['state']
        key = f'{prefix}runs/r1/events/{hashlib.sha256(stored.key.encode()).hexdigest()}.json'
        client.put_object(Bucket=s3_bucket, Key=key, Body=json.dumps(body).encode())
    client.put_object(Bucket=s3_bucket, Key=f'{prefix}runs/r1/seq', Body=b'3')
    client.put_object(
        Bucket=s3_bucket, Key=f'{prefix}agentledger.json', Body=b'{"format":"agentledger.s3","version":1}'
    )

    async with s3_server.ledger(s3_bucket) as upgraded:
        # Runs that ended before the status index existed are still found by their status.
        assert [r.run_id for r in await upgraded.runs(status='failed')] == ['r2']
        await upgraded.record_events([event('2', 1, 'tool_call_started')])
        events = await upgraded.events('r1')
        assert [(e.activity_id, e.kind) for e in events][1:] == [
            ('1', 'tool_call_started'),
            ('1', 'tool_call_completed'),
            ('2', 'tool_call_started'),
        ]
        assert [e.seq for e in events] == [1, 2, 3, 1024]
        # A repair of an old event keeps its place.
        fixed = event('1', 1, 'tool_call_failed', error=None).with_seq(3)
        await upgraded.replace_events('r1', [3], [fixed])
        assert [(e.kind, e.seq) for e in await upgraded.events('r1')][2:] == [
            ('tool_call_failed', 3),
            ('tool_call_started', 1024),
        ]
    marker = json.loads(client.get_object(Bucket=s3_bucket, Key=f'{prefix}agentledger.json')['Body'].read())
    # Workers of the old version that start now refuse the prefix instead of writing what this one does not number.
    assert marker == {'format': 'agentledger.s3', 'version': FORMAT_VERSION, 'first_version': 1}
    async with s3_server.ledger(s3_bucket) as reopened:
        assert len(await reopened.events('r1')) == 4


# --- faults (C16) ----------------------------------------------------------------------------------------


def failing_puts(ledger: S3Ledger, failures: int) -> list[int]:
    """Answer the ledger's next `failures` PutObject requests with 503 SlowDown instead of sending them."""
    left = [failures]

    class Raw:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield b'<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>'

    def fail(request: Any, **_: Any) -> AWSResponse | None:
        if left[0] <= 0:
            return None
        left[0] -= 1
        return AWSResponse(request.url, 503, {}, Raw())

    assert ledger.store._client is not None
    ledger.store._client.meta.events.register('before-send.s3.PutObject', fail)
    return left


async def test_injected_server_errors_are_retried_with_backoff(
    s3_server: S3Server, s3_bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    """C16: 503s mid-run are retried (by botocore, then by the ledger's backoff) and every event lands once."""
    retry = RetryPolicy(attempts=6, initial_backoff_s=0.01, max_backoff_s=0.05)
    async with s3_server.ledger(s3_bucket, retry=retry, request_attempts=2) as ledger:
        await ledger.start_run(run_start())
        left = failing_puts(ledger, 7)
        with caplog.at_level(logging.WARNING, logger='agentledger.ledger'):
            for i in range(5):
                await ledger.record_events(
                    [event(str(i), 1, 'tool_call_started'), event(str(i), 1, 'tool_call_completed')]
                )
            await ledger.seal_run(run_seal())
        assert left == [0]
        assert 'SlowDown' in caplog.text and 'ledger write failed' in caplog.text
        events = await ledger.events('r1')
        assert [(e.activity_id, e.kind) for e in events] == [
            ('-', 'run_started'),
            *((str(i), kind) for i in range(5) for kind in ('tool_call_started', 'tool_call_completed')),
            ('-', 'run_completed'),
        ]
        assert (await ledger.run('r1')).status == 'completed'


async def test_endpoint_down_mid_run_then_back_loses_nothing(
    own_server: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    """C16: the S3 server stops in the middle of a run; writes back off and retry, and land once it is back."""
    retry = RetryPolicy(attempts=40, initial_backoff_s=0.02, max_backoff_s=0.1)
    ledger = own_server.ledger(own_server.new_bucket(), retry=retry, request_attempts=1, connect_timeout_s=0.5)
    async with ledger:
        await ledger.start_run(run_start())
        await ledger.record_events([event('0', 1, 'tool_call_started'), event('0', 1, 'tool_call_completed')])
        own_server.stop()
        with caplog.at_level(logging.WARNING, logger='agentledger.ledger'):

            async def rest_of_the_run() -> None:
                for i in range(1, 4):
                    await ledger.record_events(
                        [event(str(i), 1, 'tool_call_started'), event(str(i), 1, 'tool_call_completed')]
                    )
                await ledger.seal_run(run_seal())

            writing = asyncio.create_task(rest_of_the_run())
            while caplog.text.count('ledger write failed') < 3:
                assert not writing.done()
                await asyncio.sleep(0.02)
            own_server.start()
            await writing

        assert 'cannot reach the endpoint' in caplog.text
        events = await ledger.events('r1')
        assert [(e.activity_id, e.kind) for e in events] == [
            ('-', 'run_started'),
            *((str(i), kind) for i in range(4) for kind in ('tool_call_started', 'tool_call_completed')),
            ('-', 'run_completed'),
        ]
        assert (await ledger.run('r1')).status == 'completed'


async def test_endpoint_that_stays_down_is_reported_not_dropped(own_server: S3Server) -> None:
    """C16: when the retries run out, the write fails naming what was not written; nothing half-written remains."""
    retry = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)
    ledger = own_server.ledger(own_server.new_bucket(), retry=retry, request_attempts=1, connect_timeout_s=0.5)
    async with ledger:
        await ledger.start_run(run_start())
        own_server.stop()
        started = time.monotonic()
        with pytest.raises(LedgerUnavailableError) as info:
            await ledger.record_events([event('1', 1, 'tool_call_started')])
        assert time.monotonic() - started < 10
        message = str(info.value)
        assert 'could not write 1 event(s) of run r1' in message and 'after 3 attempts' in message
        assert 'cannot reach the endpoint' in message and own_server.endpoint in message

        own_server.start()
        assert [e.kind for e in await ledger.events('r1')] == ['run_started']
        # The caller (Temporal retrying the activity) writes it again once the store is back.
        await ledger.record_events([event('1', 1, 'tool_call_started')])
        assert [e.kind for e in await ledger.events('r1')] == ['run_started', 'tool_call_started']


# --- end to end --------------------------------------------------------------------------------------------


async def test_run_records_every_step_on_s3_c1_c2_c3(
    temporal_env: WorkflowEnvironment, s3_server: S3Server, s3_bucket: str
) -> None:
    """C1, C2, C3 with the ledger in S3: the same checks as on SQLite."""
    async with s3_server.ledger(s3_bucket) as ledger, serve(temporal_env, ledger, [calc_agent]) as served:
        result = await agentledger.run(served.client, calc_agent, 'compute', task_queue=served.task_queue)
        await check_calc_run(ledger, result)


async def test_s3_outage_mid_run_pauses_the_run_and_loses_nothing_c16(
    temporal_env: WorkflowEnvironment, own_server: S3Server
) -> None:
    """C16 end to end: the S3 endpoint goes away mid-run. Attempts that cannot write fail with the ledger's
    specific error and Temporal retries them; once S3 is back the run completes with every accepted step recorded.
    """
    retry = RetryPolicy(attempts=2, initial_backoff_s=0.05)
    ledger = own_server.ledger(own_server.new_bucket(), retry=retry, request_attempts=1, connect_timeout_s=0.5)
    async with ledger, serve(temporal_env, ledger, [calc_agent]) as served:
        handle = await agentledger.start(served.client, calc_agent, 'compute', task_queue=served.task_queue)
        while not any(e.kind == 'model_request_completed' for e in await ledger.store.read_events(handle.run_id)):
            await asyncio.sleep(0.02)
        own_server.stop()
        await asyncio.sleep(0.6)
        own_server.start()
        result = await handle.result()
        assert result.output == 'done'

        await check_complete_calc_run(ledger, result.run_id)

        failures = await retried_failures(handle.workflow_handle)
        assert any(
            f.application_failure_info.type == 'LedgerUnavailableError' and 'cannot reach the endpoint' in f.message
            for f in failures
        ), [(f.application_failure_info.type, f.message) for f in failures]


async def test_s3_outage_under_warn_lets_the_run_finish_and_catches_up_c16(
    temporal_env: WorkflowEnvironment, own_server: S3Server
) -> None:
    """C16, outage policy `warn`: the S3 endpoint goes away mid-run and the run completes anyway; once S3 is
    back the worker writes what the ledger missed and marks the run degraded; `reconcile` clears the mark."""
    retry = RetryPolicy(attempts=2, initial_backoff_s=0.05)
    ledger = own_server.ledger(own_server.new_bucket(), retry=retry, request_attempts=1, connect_timeout_s=0.5)
    async with ledger, serve(temporal_env, ledger, [calc_agent], plugin_options={'outage': 'warn'}) as served:
        handle = await agentledger.start(served.client, calc_agent, 'compute', task_queue=served.task_queue)
        while not any(e.kind == 'model_request_completed' for e in await ledger.store.read_events(handle.run_id)):
            await asyncio.sleep(0.02)
        own_server.stop()
        result = await asyncio.wait_for(handle.result(), timeout=90)
        assert result.output == 'done'
        own_server.start()

        async def caught_up() -> agentledger.model.RunRecord:
            while (record := await ledger.run(result.run_id)).status == 'running':
                await asyncio.sleep(0.1)
            return record

        record = await asyncio.wait_for(caught_up(), timeout=60)
        assert record.degraded
        await check_complete_calc_run(ledger, result.run_id)
        # No attempt failed for the ledger's sake: the only retried activity is the tool that fails once.
        failures = await retried_failures(handle.workflow_handle)
        assert [f.application_failure_info.type for f in failures] == ['RuntimeError']

        report = await agentledger.reconcile_run(served.client, ledger, result.run_id)
        assert report.clean and report.repaired
        assert (await ledger.run(result.run_id)).degraded == ()


def start_worker(
    address: str,
    task_queue: str,
    ledger_url: str,
    environment: dict[str, str],
    log: Path,
    agents: tuple[str, ...] = ('calc',),
) -> subprocess.Popen[bytes]:
    command = [sys.executable, '-m', 'agentledger', 'worker']
    for agent in agents:
        command += ['--agent', f'tests.helpers.agents:{agent}_agent']
    command += ['--ledger', ledger_url, '--address', address, '--task-queue', task_queue]
    with log.open('wb') as stderr:
        return subprocess.Popen(
            command, cwd=Path(__file__).parents[2], env=environment, stdout=subprocess.DEVNULL, stderr=stderr
        )


async def wait_until_serving(workers: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    """Until every worker announced that it serves (the CLI prints that once its Temporal worker runs)."""
    deadline = time.monotonic() + 60
    while not all('worker: serving' in log.read_text() for log in logs):
        texts = '\n'.join(log.read_text() for log in logs)
        assert all(worker.poll() is None for worker in workers), f'a worker process exited:\n{texts}'
        assert time.monotonic() < deadline, f'the workers did not start:\n{texts}'
        await asyncio.sleep(0.1)


async def test_two_worker_processes_share_one_bucket(
    temporal_env: WorkflowEnvironment, s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """A fleet: two worker processes, one task queue, one bucket, ten runs at once; all complete, nothing lost
    or duplicated. The workers find the bucket through the standard AWS environment, as deployed workers do."""
    address = temporal_env.client.service_client.config.target_host
    task_queue = f'fleet-{uuid.uuid4().hex[:8]}'
    environment = {k: v for k, v in os.environ.items() if not k.startswith('AWS_')}
    environment |= s3_server.environment() | {'AWS_CONFIG_FILE': os.devnull, 'AWS_SHARED_CREDENTIALS_FILE': os.devnull}
    ledger_url = f's3://{s3_bucket}/fleet'
    logs = [tmp_path / f'worker-{i}.log' for i in range(2)]
    workers = [start_worker(address, task_queue, ledger_url, environment, log) for log in logs]
    try:
        client = await Client.connect(address, plugins=[PydanticAIPlugin()])
        await wait_until_serving(workers, logs)
        handles = await asyncio.gather(
            *(agentledger.start(client, 'calc', 'compute', task_queue=task_queue) for _ in range(10))
        )
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=120)
        assert [r.output for r in results] == ['done'] * 10

        identities: set[str] = set()
        for handle in handles:
            history = await handle.workflow_handle.fetch_history()
            identities |= {
                e.activity_task_started_event_attributes.identity
                for e in history.events
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
            }
        assert len(identities) == 2, f'both workers should have run activities: {identities}'
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
    assert all(worker.returncode == 0 for worker in workers), [log.read_text() for log in logs]

    fleet_ledger = s3_server.ledger(s3_bucket, prefix='fleet')
    check_at_session_end(fleet_ledger, client)
    async with fleet_ledger as ledger:
        runs = await ledger.runs(agent='calc')
        assert sorted(r.run_id for r in runs) == sorted(h.run_id for h in handles)
        for handle in handles:
            events = await check_complete_calc_run(ledger, handle.run_id)
            # Two writers, one log: it holds exactly what the ledger reports, no event twice.
            stored = [entry['event'] for entry in logged(ledger, handle.run_id) if 'event' in entry]
            assert len(stored) == len(events)


async def test_workers_sharing_a_bucket_resolve_each_others_payloads(
    temporal_env: WorkflowEnvironment, s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """Payloads and histories one worker stores in the bucket, the other reads: two worker processes
    run bulky runs that continue as new, and the client (on the same bucket) reads their results."""
    address = temporal_env.client.service_client.config.target_host
    task_queue = f'bulky-{uuid.uuid4().hex[:8]}'
    environment = {k: v for k, v in os.environ.items() if not k.startswith('AWS_')}
    environment |= s3_server.environment() | {'AWS_CONFIG_FILE': os.devnull, 'AWS_SHARED_CREDENTIALS_FILE': os.devnull}
    logs = [tmp_path / f'worker-{i}.log' for i in range(2)]
    url = f's3://{s3_bucket}/bulky'
    workers = [start_worker(address, task_queue, url, environment, log, agents=('bulky',)) for log in logs]
    try:
        async with s3_server.ledger(s3_bucket, prefix='bulky') as ledger:
            client = await Client.connect(address, plugins=[agentledger.LedgerPlugin(ledger)])
            await wait_until_serving(workers, logs)
            handles = await asyncio.gather(
                *(
                    agentledger.start(client, 'bulky', '6', task_queue=task_queue, history_event_limit=30)
                    for _ in range(4)
                )
            )
            results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=180)
            assert [r.output for r in results] == ['36000 characters read'] * 4
            for handle in handles:
                record = await ledger.run(handle.run_id)
                assert record.status == 'completed' and len(record.temporal_run_ids) >= 2
                assert [s.step for s in await ledger.steps(handle.run_id) if s.kind == 'model_request'] == [
                    1,
                    2,
                    3,
                    4,
                    5,
                    6,
                    7,
                ]
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
    assert all(worker.returncode == 0 for worker in workers), [log.read_text() for log in logs]


async def test_worker_with_a_bad_bucket_fails_at_start(temporal_env: WorkflowEnvironment, s3_server: S3Server) -> None:
    """C17 at worker start: `LedgerPlugin` opens the ledger when the worker starts, so the worker does not run."""
    plugin = agentledger.LedgerPlugin(s3_server.ledger('no-such-bucket-here'), agents=[calc_agent])
    client = await Client.connect(temporal_env.client.service_client.config.target_host, plugins=[plugin])
    worker = Worker(client, task_queue=f'tq-{uuid.uuid4().hex[:8]}')
    with pytest.raises(LedgerConfigError, match="the bucket 'no-such-bucket-here' does not exist"):
        await asyncio.wait_for(worker.run(), timeout=30)
