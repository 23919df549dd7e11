"""`SqliteLedger` beyond the shared conformance suite: persistence, schema versions, corruption, locking, read-only."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
import uuid
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentledger import LedgerPlugin
from agentledger.errors import (
    LedgerConfigError,
    LedgerCorruptionError,
    LedgerError,
    LedgerPermissionError,
    LedgerReadOnlyError,
    LedgerUnavailableError,
)
from agentledger.ledger import Ledger, RetryPolicy
from agentledger.ledger.backends.sqlite import SCHEMA_VERSION, SqliteLedger
from agentledger.ledger.backends.sqlite._schema import MIGRATIONS
from agentledger.model import ErrorInfo, Usage
from agentledger.model._records import ForkRef

from ..helpers.agents import calc_agent
from ..helpers.ledgers import FAST_RETRY, directory_state, raw_sql, unwritable
from ..helpers.records import T0, acceptance, at, conversation, event, ids, run_seal, run_start, snapshot_steps, states


async def write_a_full_run(ledger: Ledger) -> None:
    await ledger.start_run(run_start('r1', conversation_id='c1', prompt_preview='hi'))
    await ledger.record_events(
        [
            event('1', 1, 'model_request_started', step=1),
            event('1', 1, 'model_request_failed', step=1, error=ErrorInfo('ModelHTTPError', '500', True)),
            event('1', 2, 'model_request_started', step=1),
            event('1', 2, 'model_request_completed', step=1, usage=Usage(requests=1, input_tokens=3)),
        ]
    )
    await ledger.accept([acceptance('1')])
    await ledger.seal_run(run_seal('r1', usage=Usage(requests=1, input_tokens=3), output_preview='bye'))
    await ledger.start_run(run_start('r2', started=5, agent='billing'))


async def test_sqlite_reopened_file_reads_everything_back(tmp_path: Path) -> None:
    path = tmp_path / 'nested' / 'dir' / 'ledger.db'
    async with SqliteLedger(path) as ledger:
        await write_a_full_run(ledger)
        before = (await ledger.runs(), await ledger.events('r1'), await ledger.steps('r1'))

    async with SqliteLedger(path) as reopened:
        after = (await reopened.runs(), await reopened.events('r1'), await reopened.steps('r1'))
        assert after == before
        # New events continue the causal order after the stored ones.
        await reopened.record_events([event('9', 1, 'tool_call_started', run_id='r2')])
        [_, late] = await reopened.events('r2')
        assert late.seq > max(e.seq for e in before[1])

    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute('PRAGMA journal_mode').fetchone() == ('wal',)
        assert raw.execute('SELECT version FROM schema_version').fetchall() == [(SCHEMA_VERSION,)]


async def test_sqlite_url_is_the_path_as_given(tmp_path: Path) -> None:
    assert SqliteLedger('relative/ledger.db').url == 'sqlite:///relative/ledger.db'
    assert SqliteLedger(tmp_path / 'x.db').url == f'sqlite:///{tmp_path}/x.db'


async def test_sqlite_close_is_idempotent_and_later_writes_fail(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / 'ledger.db')
    await ledger.close()
    await ledger.open()
    await ledger.open()
    await ledger.start_run(run_start())
    await ledger.close()
    await ledger.close()
    with pytest.raises(LedgerError, match='not open'):
        await ledger.start_run(run_start('r2'))
    with pytest.raises(LedgerError, match='not open'):
        await ledger.run('r1')


async def test_sqlite_close_commits_queued_writes(tmp_path: Path) -> None:
    path = tmp_path / 'ledger.db'
    ledger = SqliteLedger(path)
    await ledger.open()
    await ledger.start_run(run_start())
    writes = [asyncio.create_task(ledger.record_events([event(str(i), 1, 'tool_call_started')])) for i in range(10)]
    await asyncio.sleep(0)
    await ledger.close()
    await asyncio.gather(*writes)

    async with SqliteLedger(path) as reopened:
        assert len(await reopened.events('r1')) == 11


async def test_sqlite_newer_schema_version_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / 'ledger.db'
    async with SqliteLedger(path):
        pass
    raw_sql(path, 'UPDATE schema_version SET version = ?', (SCHEMA_VERSION + 1,))

    ledger = SqliteLedger(path)
    with pytest.raises(LedgerConfigError, match=f'schema version {SCHEMA_VERSION + 1}') as info:
        await ledger.open()
    assert str(path) in str(info.value)
    assert 'upgrade agentledger' in str(info.value)
    await ledger.close()


async def test_sqlite_file_that_is_not_a_database_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / 'ledger.db'
    path.write_bytes(b'this is not a SQLite database, just some text' * 100)
    with pytest.raises(LedgerCorruptionError, match='not a database') as info:
        await SqliteLedger(path).open()
    assert str(path) in str(info.value)


async def test_sqlite_path_that_cannot_be_opened_is_refused_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLITE_CANTOPEN does not pass by waiting: it is raised on the first attempt, not after the retry budget."""
    path = tmp_path / 'a-directory.db'
    path.mkdir()
    with caplog.at_level(logging.WARNING, logger='agentledger.ledger'), pytest.raises(LedgerPermissionError) as info:
        await SqliteLedger(path, retry=RetryPolicy(attempts=5, initial_backoff_s=1.0)).open()
    assert 'unable to open' in str(info.value) and 'SQLITE_CANTOPEN' in str(info.value)
    assert str(path) in str(info.value)
    assert 'ledger open failed' not in caplog.text


async def test_sqlite_directory_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / 'file'
    blocker.write_text('a file where a directory should be')
    path = blocker / 'ledger.db'
    with pytest.raises(LedgerUnavailableError, match='cannot create the directory') as info:
        await SqliteLedger(path).open()
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ('table', 'key_column', 'key', 'column', 'garbage'),
    [
        ('events', 'event_key', 'wf-r1|t1|1|1|tool_call_started', 'body', '{"run_id": "r1", trailing garbage'),
        ('events', 'event_key', 'wf-r1|t1|1|1|tool_call_started', 'body', '["a", "list"]'),
        ('acceptances', 'acceptance_key', 'wf-r1|t1|1', 'body', '{"run_id": "r1"}'),
        ('runs', 'run_id', 'r1', 'temporal_run_ids', 'not json'),
        ('runs', 'run_id', 'r1', 'temporal_run_ids', '"t1"'),
        ('runs', 'run_id', 'r1', 'usage', '{"requests": 1, "bogus": 2}'),
        ('runs', 'run_id', 'r1', 'status', 'exploded'),
        ('runs', 'run_id', 'r1', 'started_at', 'yesterday'),
    ],
)
async def test_sqlite_row_that_does_not_decode_is_corruption(
    tmp_path: Path, table: str, key_column: str, key: str, column: str, garbage: str
) -> None:
    path = tmp_path / 'ledger.db'
    async with SqliteLedger(path) as ledger:
        await ledger.start_run(run_start())
        await ledger.record_events([event('1', 1, 'tool_call_started')])
        await ledger.accept([acceptance('1')])
        changed = raw_sql(path, f'UPDATE {table} SET {column} = ? WHERE {key_column} = ?', (garbage, key))
        assert changed == 1

        with pytest.raises(LedgerCorruptionError) as info:
            await ledger.steps('r1')
        assert f'table {table}' in str(info.value)
        assert repr(key) in str(info.value)
        assert str(path) in str(info.value)


async def test_sqlite_corrupt_run_row_fails_its_write_but_not_the_others_in_its_batch(tmp_path: Path) -> None:
    path = tmp_path / 'ledger.db'
    async with SqliteLedger(path) as ledger:
        await ledger.start_run(run_start('bad'))
        await ledger.start_run(run_start('good'))
        raw_sql(path, "UPDATE runs SET usage = 'garbage' WHERE run_id = 'bad'")

        # Queued together, these land in group commits (the two seals together, after each read its run's
        # events to settle its usage); the seal of `bad` cannot read its run row.
        results = await asyncio.gather(
            ledger.record_events([event('1', 1, 'tool_call_started', run_id='good')]),
            ledger.seal_run(run_seal('bad')),
            ledger.seal_run(run_seal('good')),
            ledger.record_events([event('2', 1, 'tool_call_started', run_id='good')]),
            return_exceptions=True,
        )
        assert results[0] is None and results[2] == Usage() and results[3] is None
        assert isinstance(results[1], LedgerCorruptionError)
        assert "'bad'" in str(results[1])

        assert (await ledger.run('good')).status == 'completed'
        kinds = [e.kind for e in await ledger.events('good')]
        assert sorted(kinds) == ['run_completed', 'run_started', 'tool_call_started', 'tool_call_started']


V1_RUN_COLUMNS = (
    'run_id, workflow_id, agent_name, status, started_at, started_at_us, updated_at, ended_at, task_queue, '
    'conversation_id, parent_run_id, parent_tool_call_id, temporal_run_ids, usage, error, prompt_preview, '
    'output_preview'
)


def create_v1_ledger(path: Path) -> None:
    """A ledger file as agentledger wrote it at schema version 1, holding one sealed run."""
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.execute('CREATE TABLE schema_version (version INTEGER NOT NULL)')
        for statement in MIGRATIONS[1]:
            raw.execute(statement)
        raw.execute('INSERT INTO schema_version (version) VALUES (1)')
        raw.execute(
            f'INSERT INTO runs ({V1_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
            (
                'run-old',
                'wf-run-old',
                'support',
                'completed',
                T0.isoformat(),
                int(T0.timestamp() * 1_000_000),
                at(60).isoformat(),
                at(60).isoformat(),
                'agents',
                'c1',
                None,
                None,
                '["t1"]',
                '{"requests": 1, "input_tokens": 3, "output_tokens": 4, "tool_calls": 0}',
                None,
                'hi',
                'bye',
            ),
        )


async def test_sqlite_version_1_file_migrates_to_the_current_version(tmp_path: Path) -> None:
    """A file written before snapshots migrates in place, keeps its runs, then takes snapshots, forks and payloads."""
    path = tmp_path / 'ledger.db'
    create_v1_ledger(path)

    async with SqliteLedger(path) as ledger:
        old = await ledger.run('run-old')
        assert (old.run_id, old.status, old.ended_at, old.forked_from) == ('run-old', 'completed', at(60), None)
        assert old.usage == Usage(requests=1, input_tokens=3, output_tokens=4)
        assert ids(await ledger.runs()) == ['run-old']

        [seed] = await snapshot_steps(ledger, 'run-old', conversation(2), range(1, 2))
        fork = ForkRef(run_id='run-old', snapshot_id=seed.snapshot_id, reason='continue')
        await ledger.start_run(run_start('run-new', started=100, forked_from=fork))
        assert ids(await ledger.runs(forked_from_run_id='run-old')) == ['run-new']
        key = await ledger.store_chunked(b'payload' * 1000, referrers=[('default', 'wf-a')])
        assert [r.workflow_id for r in await ledger.payload_references([key])] == ['wf-a']

    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute('SELECT version FROM schema_version').fetchall() == [(SCHEMA_VERSION,)] == [(3,)]
        indexes = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {'runs_forked_from', 'snapshots_run', 'records_scope'} <= indexes

    async with SqliteLedger(path) as reopened:
        assert (await reopened.run('run-new')).forked_from == fork
        assert (await reopened.snapshot(seed.snapshot_id)).record == seed


async def test_sqlite_version_2_file_migrates_to_the_current_version(tmp_path: Path) -> None:
    """Version 3 adds the `degraded` mark of runs recorded under the `warn` outage policy, and the open adds
    the workflow type column; older runs have neither."""
    path = tmp_path / 'ledger.db'
    create_v1_ledger(path)
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        for statement in MIGRATIONS[2]:
            raw.execute(statement)
        raw.execute('UPDATE schema_version SET version = 2')
    async with SqliteLedger(path) as ledger:
        assert (await ledger.run('run-old')).degraded == ()
        assert (await ledger.run('run-old')).workflow_type is None
        await ledger.update_run('run-old', lambda run: replace(run, degraded=('lost',)))
    async with SqliteLedger(path) as reopened:
        assert (await reopened.run('run-old')).degraded == ('lost',)
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute('SELECT version FROM schema_version').fetchall() == [(SCHEMA_VERSION,)] == [(3,)]


async def test_sqlite_snapshot_row_that_does_not_decode_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / 'ledger.db'
    async with SqliteLedger(path) as ledger:
        await ledger.start_run(run_start('run-a'))
        [record] = await snapshot_steps(ledger, 'run-a', conversation(2), range(1, 2))
        raw_sql(path, 'UPDATE snapshots SET body = ? WHERE snapshot_id = ?', ('{"step": 1}', record.snapshot_id))

        with pytest.raises(LedgerCorruptionError, match='table snapshots') as info:
            await ledger.snapshots('run-a')
        assert repr(record.snapshot_id) in str(info.value)


def lock_exclusively(path: Path) -> sqlite3.Connection:
    """Another process's connection holding the write lock of the database."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute('BEGIN EXCLUSIVE')
    return connection


async def test_sqlite_locked_database_retries_then_raises_unavailable(tmp_path: Path) -> None:
    """C16: a write that cannot get the lock is retried, then reported with what was not written."""
    path = tmp_path / 'ledger.db'
    async with SqliteLedger(path, retry=FAST_RETRY, busy_timeout_s=0.05) as ledger:
        await ledger.start_run(run_start())
        blocker = lock_exclusively(path)
        try:
            with pytest.raises(LedgerUnavailableError) as info:
                await ledger.record_events([event('1', 1, 'tool_call_started')])
            # Reads do not wait for the writer (WAL).
            assert len(await ledger.events('r1')) == 1
        finally:
            blocker.rollback()
            blocker.close()

        message = str(info.value)
        assert '1 event(s) of run r1' in message
        assert f'after {FAST_RETRY.attempts} attempts' in message
        assert 'database is locked' in message
        assert str(path) in message
        assert len(await ledger.events('r1')) == 1


async def test_sqlite_lock_released_mid_retry_loses_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / 'ledger.db'
    retry = RetryPolicy(attempts=20, initial_backoff_s=0.02, max_backoff_s=0.05)
    async with SqliteLedger(path, retry=retry, busy_timeout_s=0.02) as ledger:
        await ledger.start_run(run_start())
        blocker = lock_exclusively(path)
        with caplog.at_level(logging.WARNING, logger='agentledger.ledger'):
            writes = asyncio.gather(
                ledger.record_events([event('1', 1, 'tool_call_started')]),
                ledger.accept([acceptance('1')]),
                ledger.seal_run(run_seal()),
            )
            for _ in range(500):
                if any('ledger write failed' in record.getMessage() for record in caplog.records):
                    break
                await asyncio.sleep(0.01)
            blocker.rollback()
            blocker.close()
            await writes

        assert any('database is locked' in record.getMessage() for record in caplog.records)
        assert (await ledger.run('r1')).status == 'completed'
        # The three writes retried independently, so their relative order is not part of the contract.
        assert sorted(states(await ledger.events('r1'))) == [
            ('-', 0, 'run_completed', 'accepted'),
            ('-', 0, 'run_started', 'accepted'),
            ('1', 1, 'tool_call_started', 'accepted'),
        ]


async def test_sqlite_ledger_locked_at_open_is_opened_by_its_first_use_once_free(tmp_path: Path) -> None:
    """`open_lazily` (how a worker opens its ledger): a locked file is down, not refused. The hold is counted,
    every operation tries to open the file again and fails as unavailable while it is locked, and works after."""
    path = tmp_path / 'ledger.db'
    async with SqliteLedger(path):
        pass
    ledger = SqliteLedger(path, retry=FAST_RETRY, busy_timeout_s=0.05)
    blocker = lock_exclusively(path)
    try:
        down = await ledger.open_lazily()
        assert isinstance(down, LedgerUnavailableError) and 'database is locked' in str(down)
        with pytest.raises(LedgerUnavailableError, match=r'could not write run start of r1 .* database is locked'):
            await ledger.start_run(run_start())
        with pytest.raises(LedgerUnavailableError, match='database is locked'):
            await ledger.runs()
        with pytest.raises(LedgerUnavailableError, match='database is locked'):
            await ledger.open()  # another user's open fails as it would have, and is not counted
    finally:
        blocker.rollback()
        blocker.close()
    await ledger.start_run(run_start())
    assert ids(await ledger.runs()) == ['r1']
    await ledger.close()
    assert ledger.store._reader is None  # the one hold released: closed


async def test_sqlite_ledger_that_is_not_a_database_still_fails_a_lazy_open(tmp_path: Path) -> None:
    path = tmp_path / 'not-a-db'
    path.write_bytes(b'this is not sqlite' * 100)
    ledger = SqliteLedger(path, retry=FAST_RETRY)
    with pytest.raises(LedgerCorruptionError):
        await ledger.open_lazily()
    with pytest.raises(LedgerError, match='not open'):
        await ledger.runs()  # nothing is held: no later use opens it


# --- read-only -------------------------------------------------------------------------------------------


async def test_sqlite_read_only_open_reads_without_writing_a_byte(tmp_path: Path) -> None:
    """A reader of a file it may not write: no WAL switch, no migration, no -wal or -shm, the file unchanged."""
    path = tmp_path / 'ro' / 'ledger.db'
    async with SqliteLedger(path) as ledger:
        await write_a_full_run(ledger)
        expected = await ledger.events('r1')
    with unwritable(path) as before:
        async with SqliteLedger(path, read_only=True) as reader:
            assert ids(await reader.runs()) == ['r2', 'r1']
            assert await reader.events('r1') == expected
            assert (await reader.run('r1')).output_preview == 'bye'
        assert directory_state(path.parent) == before
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute('PRAGMA journal_mode').fetchall() == [('delete',)]


async def test_sqlite_read_only_open_refuses_another_schema_version_and_migrates_nothing(tmp_path: Path) -> None:
    """A read-only open cannot migrate: a file of another schema version is refused, naming it, and left as is."""
    older = tmp_path / 'older' / 'ledger.db'
    older.parent.mkdir()
    create_v1_ledger(older)
    newer = tmp_path / 'newer' / 'ledger.db'
    async with SqliteLedger(newer):
        pass
    raw_sql(newer, 'UPDATE schema_version SET version = ?', (SCHEMA_VERSION + 1,))
    empty = tmp_path / 'empty' / 'ledger.db'
    empty.parent.mkdir()
    raw_sql(empty, 'CREATE TABLE unrelated (x)')
    cases = [
        (older, f'has schema version 1, but this version of agentledger reads version {SCHEMA_VERSION}'),
        (newer, f'has schema version {SCHEMA_VERSION + 1}'),
        (empty, 'is not an agentledger SQLite ledger: it has no schema version'),
    ]
    for path, message in cases:
        with unwritable(path) as before:
            with pytest.raises(LedgerConfigError, match=message) as info:
                await SqliteLedger(path, read_only=True).open()
            assert str(path) in str(info.value)
            assert directory_state(path.parent) == before
    missing = tmp_path / 'missing.db'
    with pytest.raises(LedgerConfigError, match='the file does not exist'):
        await SqliteLedger(missing, read_only=True).open()
    assert not missing.exists()


async def test_sqlite_read_only_ledger_refuses_writes_before_the_file(tmp_path: Path) -> None:
    path = tmp_path / 'ledger.db'
    async with SqliteLedger(path) as ledger:
        await ledger.start_run(run_start())
    async with SqliteLedger(path, read_only=True) as reader:
        with pytest.raises(LedgerReadOnlyError, match=r'cannot write 1 event\(s\) of run r1: .* is open read-only'):
            await reader.record_events([event('1', 1, 'tool_call_started')])
        # The store refuses too, for code that writes to it directly.
        with pytest.raises(LedgerReadOnlyError, match='open read-only'):
            await reader.store.write_events([event('1', 1, 'tool_call_started')])
    async with SqliteLedger(path) as ledger:
        assert [e.kind for e in await ledger.events('r1')] == ['run_started']


async def test_sqlite_write_the_file_refuses_is_raised_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """C17: SQLITE_READONLY is a permission problem, not an outage: raised on the first attempt, never retried."""
    path = tmp_path / 'ledger.db'
    async with SqliteLedger(path, retry=RetryPolicy(attempts=5, initial_backoff_s=1.0)) as ledger:
        await ledger.start_run(run_start())
        # What a file this process may only read answers every write (root cannot be denied by file modes).
        assert ledger.store._writer is not None
        await ledger.store._writer.execute('PRAGMA query_only = ON')
        started = time.monotonic()
        with (
            caplog.at_level(logging.WARNING, logger='agentledger.ledger'),
            pytest.raises(LedgerPermissionError) as info,
        ):
            await ledger.record_events([event('1', 1, 'tool_call_started')])
        assert time.monotonic() - started < 0.9
        assert 'ledger write failed' not in caplog.text
        message = str(info.value)
        assert 'SQLITE_READONLY' in message and 'attempt to write a readonly database' in message
        assert str(path) in message and 'open it read-only' in message
        await ledger.store._writer.execute('PRAGMA query_only = OFF')


@pytest.mark.skipif(os.geteuid() == 0, reason='root may write any directory')
async def test_sqlite_read_only_open_of_a_wal_file_in_a_directory_it_may_not_write(tmp_path: Path) -> None:
    """SQLite cannot create the -shm index of a WAL file there; with no -wal file the reader reads it as immutable."""
    path = tmp_path / 'ro' / 'ledger.db'
    async with SqliteLedger(path) as ledger:
        await write_a_full_run(ledger)
    path.parent.chmod(0o555)
    try:
        with pytest.raises(LedgerPermissionError, match='SQLITE_READONLY'):
            await SqliteLedger(path).open()
        async with SqliteLedger(path, read_only=True) as reader:
            assert ids(await reader.runs()) == ['r2', 'r1']
        assert sorted(item.name for item in path.parent.iterdir()) == ['ledger.db']
    finally:
        path.parent.chmod(0o755)


async def test_worker_refuses_to_start_on_a_ledger_it_cannot_write(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """`LedgerPlugin` probes a write as the worker starts: a worker that could not record refuses to serve."""
    path = tmp_path / 'ledger.db'
    async with SqliteLedger(path):
        pass
    ledger = SqliteLedger(path, read_only=True)
    plugin = LedgerPlugin(ledger, agents=[calc_agent])
    client = await Client.connect(temporal_env.client.service_client.config.target_host, plugins=[plugin])
    worker = Worker(client, task_queue=f'tq-{uuid.uuid4().hex[:8]}')
    with pytest.raises(LedgerReadOnlyError, match=r'probe record .* is open read-only'):
        await asyncio.wait_for(worker.run(), timeout=30)
    # The worker closed the ledger it opened.
    assert ledger.store._reader is None


async def test_sqlite_file_of_an_older_agentledger_gains_the_added_columns_in_place(tmp_path: Path) -> None:
    """A version-3 file written before the workflow type existed keeps version 3 (so older workers still open
    it) and gains the column on a read-write open; a read-only open asks for that open first."""
    path = tmp_path / 'ledger.db'
    async with SqliteLedger(path) as ledger:
        await ledger.start_run(run_start('run-a'))
    raw_sql(path, 'ALTER TABLE runs DROP COLUMN workflow_type')

    with pytest.raises(LedgerConfigError, match=r'lacks runs\.workflow_type.*open it once read-write'):
        async with SqliteLedger(path, read_only=True):
            pass
    async with SqliteLedger(path) as ledger:
        assert (await ledger.run('run-a')).workflow_type is None
        await ledger.start_run(replace(run_start('run-b'), workflow_type='SupportWorkflow'))
    async with SqliteLedger(path, read_only=True) as reader:
        assert (await reader.run('run-b')).workflow_type == 'SupportWorkflow'
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute('SELECT version FROM schema_version').fetchall() == [(3,)]
