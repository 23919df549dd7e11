"""S3 servers on loopback for the tests: SeaweedFS, a real S3 implementation, and moto for one fault.

One SeaweedFS server (`weed mini`, built once per machine by `scripts/build_s3_server.sh`, or the binary
`$AGENTLEDGER_S3_SERVER` names) serves the whole session (`s3_server`), in a process of its own with its
data in a temporary directory. Every test gets its own bucket (`s3_bucket`, or `s3_ledger()` for the
shared conformance suite), so tests never see each other's objects. Tests that stop the server mid-run
start one of their own (`S3Server()`), which starts again on the same ports with its data kept.
SeaweedFS decides each conditional write (`If-None-Match`, `If-Match`) atomically, as S3 does.
Credentials are fake, handed to the server through its environment and passed explicitly to every
client: nothing here touches `os.environ`.

moto stays where a test needs a fault SeaweedFS cannot produce: a store that ignores conditional-write
headers (`MotoServer`, patched by that test) and IAM users with policies (`tests/backends/test_s3_ledger.py`).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from agentledger.ledger.backends.s3 import S3Ledger

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY_ID = 'AKIATESTLEDGER000000'
SECRET_ACCESS_KEY = 'test-secret-never-shown-0123456789abcdef'
REGION = 'us-east-1'
ROOT = Path(__file__).parents[2]
_PORTS = ('master', 'volume', 'filer', 's3', 'admin')
_START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return int(probe.getsockname()[1])


@functools.cache
def s3_server_binary() -> str:
    """The `weed` binary: `$AGENTLEDGER_S3_SERVER`, else the one `scripts/build_s3_server.sh` builds (once)."""
    done = subprocess.run(
        ['bash', str(ROOT / 'scripts' / 'build_s3_server.sh')], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f'no S3 server for the tests: scripts/build_s3_server.sh failed:\n{done.stderr[-4000:]}')
    return done.stdout.strip().splitlines()[-1]


class _Endpoint:
    """What every test server offers: clients, buckets, ledgers and the environment a subprocess needs."""

    port: int

    @property
    def endpoint(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def client(self) -> S3Client:
        """An admin client with the test credentials."""
        return admin_client(self.endpoint)

    def new_bucket(self) -> str:
        bucket = f'ledger-{uuid.uuid4().hex[:16]}'
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def ledger(self, bucket: str, prefix: str = 'agentledger', **options: Any) -> S3Ledger:
        """An unopened `S3Ledger` on this server, with the test credentials given explicitly."""
        options.setdefault('endpoint_url', self.endpoint)
        options.setdefault('region_name', REGION)
        options.setdefault('aws_access_key_id', ACCESS_KEY_ID)
        options.setdefault('aws_secret_access_key', SECRET_ACCESS_KEY)
        return S3Ledger(f's3://{bucket}/{prefix}', **options)

    def environment(self) -> dict[str, str]:
        """The AWS variables a subprocess needs to reach this server through boto3's standard chain."""
        return {
            'AWS_ENDPOINT_URL_S3': self.endpoint,
            'AWS_ACCESS_KEY_ID': ACCESS_KEY_ID,
            'AWS_SECRET_ACCESS_KEY': SECRET_ACCESS_KEY,
            'AWS_REGION': REGION,
        }


class S3Server(_Endpoint):
    """A SeaweedFS server on 127.0.0.1 in a process of its own: stopped and started again on the same
    ports, it keeps its data."""

    def __init__(self) -> None:
        self._data = Path(tempfile.mkdtemp(prefix='agentledger-s3-'))
        self._ports = {name: (free_port(), free_port()) for name in _PORTS}
        self.port = self._ports['s3'][0]
        self._process: subprocess.Popen[bytes] | None = None
        self._log = self._data / 'server.log'

    def _argv(self) -> list[str]:
        argv = [
            s3_server_binary(),
            'mini',
            f'-dir={self._data / "data"}',
            '-ip=127.0.0.1',
            '-ip.bind=127.0.0.1',
            '-webdav=false',
            '-admin.ui=false',
            '-admin.port.legacy=0',
            '-debug.port=0',
            # Every test has a bucket, and SeaweedFS gives each bucket volumes of its own: small ones, so
            # the volume count (free space / volume size) outlasts a session's buckets.
            '-master.volumeSizeLimitMB=16',
            f'-s3.port.iceberg={free_port()}',
            f'-s3.port.lance={free_port()}',
        ]
        for name, (http, grpc) in self._ports.items():
            argv += [f'-{name}.port={http}', f'-{name}.port.grpc={grpc}']
        return argv

    def start(self) -> None:
        if self._process is not None:
            return
        (self._data / 'data').mkdir(exist_ok=True)
        env = {**os.environ, 'AWS_ACCESS_KEY_ID': ACCESS_KEY_ID, 'AWS_SECRET_ACCESS_KEY': SECRET_ACCESS_KEY}
        with self._log.open('ab') as log:
            self._process = subprocess.Popen(self._argv(), stdout=log, stderr=subprocess.STDOUT, env=env)
        probe = admin_client(self.endpoint)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            try:
                probe.list_buckets()
                return
            except Exception:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = self._log.read_text(errors='replace')[-3000:]
                    raise RuntimeError(f'the SeaweedFS server on port {self.port} did not start:\n{tail}') from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Kill the server: an outage as clients see one, its port closed at once (what it wrote is on disk)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def remove(self) -> None:
        """Stop for good and delete the data."""
        self.stop()
        shutil.rmtree(self._data, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._process is not None


class MotoServer(_Endpoint):
    """moto's S3 in this process: for the one test that patches it into a store ignoring conditional writes."""

    def __init__(self) -> None:
        self.port = free_port()
        self._thread: ThreadedMotoServer | None = None

    def start(self) -> None:
        # werkzeug logs every request at INFO; the tests' output should show the tests.
        logging.getLogger('werkzeug').setLevel(logging.WARNING)
        self._thread = ThreadedMotoServer(ip_address='127.0.0.1', port=self.port, verbose=False)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None


def admin_client(endpoint: str) -> S3Client:
    """A client of the server at `endpoint` with the test credentials: to look at a ledger's objects from outside."""
    return boto3.client(
        's3',
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


def all_keys(ledger: S3Ledger, under: str = '') -> list[str]:
    """Every key in the ledger's bucket that starts with `under` (relative to the bucket, not the prefix)."""
    pages = admin_client(ledger.endpoint).get_paginator('list_objects_v2').paginate(Bucket=ledger.bucket, Prefix=under)
    return [item['Key'] for page in pages for item in page.get('Contents', [])]


def stored_content(ledger: S3Ledger) -> tuple[int, int]:
    """How many distinct messages and blobs the ledger holds (the conformance suite's storage view)."""
    return len(all_keys(ledger, f'{ledger.prefix}messages/')), len(all_keys(ledger, f'{ledger.prefix}blobs/'))


def tamper(ledger: S3Ledger, table: str, digest: str, data: bytes | None) -> None:
    """Overwrite (or, with `None`, delete) one stored message or blob behind the ledger's back."""
    client = admin_client(ledger.endpoint)
    key = f'{ledger.prefix}{table}/{digest[:2]}/{digest}'
    client.head_object(Bucket=ledger.bucket, Key=key)
    if data is None:
        client.delete_object(Bucket=ledger.bucket, Key=key)
    else:
        client.put_object(Bucket=ledger.bucket, Key=key, Body=data)


_shared: S3Server | None = None


def shared_s3_server() -> S3Server:
    """The session's server, started on first use (by a fixture or by `s3_ledger`)."""
    global _shared
    if _shared is None:
        _shared = S3Server()
        # The suite may use it without the fixture (which stops it), so the process never outlives pytest.
        atexit.register(_shared.remove)
    _shared.start()
    return _shared


def s3_ledger(**options: Any) -> S3Ledger:
    """An unopened `S3Ledger` in a fresh bucket of the session's server: what the conformance suite uses."""
    server = shared_s3_server()
    return server.ledger(server.new_bucket(), **options)


@pytest.fixture(scope='session')
def s3_server() -> S3Server:
    # Stopped at exit (see shared_s3_server), not when this fixture is torn down: the end-of-session
    # check against Temporal's history (tests/conftest.py) still reads the ledgers tests served on it.
    return shared_s3_server()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()
