"""`open_ledger` turns a ledger URL into an unopened backend, or says which URLs it supports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agentledger.errors import LedgerConfigError
from agentledger.ledger import MemoryLedger, open_ledger
from agentledger.ledger.backends.sqlite import SqliteLedger


@pytest.mark.parametrize(
    ('url', 'path'),
    [
        ('sqlite:///ledger.db', 'ledger.db'),
        ('sqlite:///relative/dir/ledger.db', 'relative/dir/ledger.db'),
        ('sqlite:////abs/dir/ledger.db', '/abs/dir/ledger.db'),
        ('relative/ledger.db', 'relative/ledger.db'),
        ('/abs/ledger.db', '/abs/ledger.db'),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    ledger = open_ledger(url)
    assert isinstance(ledger, SqliteLedger)
    assert ledger.url == f'sqlite:///{path}'
    # The URL a ledger reports opens the same ledger again.
    assert open_ledger(ledger.url).url == ledger.url


def test_memory_url() -> None:
    ledger = open_ledger('memory://')
    assert isinstance(ledger, MemoryLedger)
    assert ledger.url == 'memory://'


@pytest.mark.parametrize(
    'url',
    [
        'postgres://user:secret@db.internal/ledger',
        'sqlite://ledger.db',
        'sqlite:///',
        'sqlite:ledger.db',
        'ledger.sqlite',
        '',
    ],
)
def test_unsupported_urls_list_the_supported_schemes(url: str) -> None:
    with pytest.raises(LedgerConfigError) as info:
        open_ledger(url)
    message = str(info.value)
    assert 'sqlite:///' in message
    assert 'memory://' in message
    assert 'secret' not in message


async def test_opened_ledger_from_url_works(tmp_path: Path) -> None:
    async with open_ledger(f'sqlite:///{tmp_path}/ledger.db') as ledger:
        assert await ledger.runs() == []
    assert (tmp_path / 'ledger.db').exists()


def test_importing_the_ledger_package_does_not_import_aiosqlite() -> None:
    code = 'import sys, agentledger.ledger; assert "aiosqlite" not in sys.modules, "aiosqlite imported"'
    subprocess.run([sys.executable, '-c', code], check=True, cwd=Path(__file__).parents[2])


@pytest.mark.parametrize(
    ('url', 'read_only', 'location'),
    [
        ('sqlite:///ledger.db?mode=ro', True, 'sqlite:///ledger.db'),
        ('sqlite:///ledger.db?mode=rw', False, 'sqlite:///ledger.db'),
        ('ledger.db?mode=ro', True, 'sqlite:///ledger.db'),
        ('memory://?mode=ro', True, 'memory://'),
        ('s3://bucket/prefix?mode=ro&region_name=eu-west-1', True, 's3://bucket/prefix?region_name=eu-west-1'),
        ('s3://bucket/prefix?region_name=eu-west-1', False, 's3://bucket/prefix?region_name=eu-west-1'),
    ],
)
def test_mode_ro_in_the_url_opens_read_only(url: str, read_only: bool, location: str) -> None:
    ledger = open_ledger(url)
    assert ledger.read_only is read_only
    assert ledger.url == location
    assert open_ledger(location, read_only=True).read_only
    # Either one makes it read-only: a caller that asked for no writes gets none.
    assert open_ledger(url, read_only=True).read_only


@pytest.mark.parametrize(
    ('url', 'message'),
    [
        ('sqlite:///ledger.db?mode=readonly', "mode is 'ro'"),
        ('sqlite:///ledger.db?cache=shared', 'the only option a SQLite ledger URL takes is mode'),
    ],
)
def test_bad_modes_and_sqlite_options_are_refused(url: str, message: str) -> None:
    with pytest.raises(LedgerConfigError, match=message) as info:
        open_ledger(url)
    assert 'readonly' not in str(info.value)
