"""An S3-compatible server on loopback for the tests: moto's server, a real HTTP S3 endpoint.

One server serves the whole session (`s3_server`): moto's server in a process of its own
(`python -m tests.helpers.s3_server PORT`), so that it neither competes with the tests for the GIL nor
stops when a test stops its own. Every test gets its own bucket (`s3_bucket`, or `s3_ledger()` for
the shared conformance suite), so tests never see each other's objects. Fault tests start an
in-process `ThreadedMotoServer` of their own (`S3Server(in_process=True)`), which they can stop and
start again on the same port with its data kept. Credentials are fake and passed explicitly to
every client: nothing here touches `os.environ`.

moto checks `If-None-Match` / `If-Match` and then writes, without holding a lock between the two,
so two concurrent conditional PUTs of one key can both succeed; S3, MinIO and R2 decide each
conditional write atomically. `_atomic_conditional_puts` serialises PutObject inside the server so
that the tests get S3's semantics, which the ledger's compare-and-swap loops rely on.
"""

from __future__ import annotations

import atexit
import functools
import logging
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto.s3.responses import S3Response
from moto.server import ThreadedMotoServer

from agentledger.ledger.backends.s3 import S3Ledger

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY_ID = 'AKIATESTLEDGER000000'
SECRET_ACCESS_KEY = 'test-secret-never-shown-0123456789abcdef'
REGION = 'us-east-1'

_put_lock = threading.Lock()


def _atomic_conditional_puts() -> None:
    original = S3Response.put_object
    if getattr(original, 'agentledger_atomic', False):
        return

    @functools.wraps(original)
    def put_object(self: S3Response, *args: Any, **kwargs: Any) -> Any:
        with _put_lock:
            return original(self, *args, **kwargs)

    put_object.agentledger_atomic = True  # type: ignore[attr-defined]
    S3Response.put_object = put_object  # type: ignore[method-assign]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return int(probe.getsockname()[1])


class S3Server:
    """A moto S3 server on 127.0.0.1, in this process (restartable with its data) or in a process of its own."""

    def __init__(self, *, in_process: bool) -> None:
        self.in_process = in_process
        self.port = free_port()
        self.endpoint = f'http://127.0.0.1:{self.port}'
        self._thread: ThreadedMotoServer | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.running:
            return
        if self.in_process:
            _atomic_conditional_puts()
            # werkzeug logs every request at INFO; the tests' output should show the tests.
            logging.getLogger('werkzeug').setLevel(logging.WARNING)
            self._thread = ThreadedMotoServer(ip_address='127.0.0.1', port=self.port, verbose=False)
            self._thread.start()
            return
        self._process = subprocess.Popen(
            [sys.executable, '-m', 'tests.helpers.s3_server', str(self.port)],
            cwd=Path(__file__).parents[2],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f'{self.endpoint}/moto-api/', timeout=1):
                    return
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f'the moto server on port {self.port} did not start') from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    @property
    def running(self) -> bool:
        return self._thread is not None or self._process is not None

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
        _shared = S3Server(in_process=False)
        # The suite may use it without the fixture (which stops it), so the process never outlives pytest.
        atexit.register(_shared.stop)
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


def main() -> None:
    """Serve moto's S3 on 127.0.0.1:<port> (the one argument), with atomic conditional writes."""
    from moto.server import main as serve

    _atomic_conditional_puts()
    serve(['-H', '127.0.0.1', '-p', sys.argv[1]])


if __name__ == '__main__':
    main()
