"""Conformance: snapshots on every backend: each message stored once, prefixes rebuilt, binary content,
corruption and unknown ids reported.
"""

from __future__ import annotations

import random

import pytest
from pydantic_ai.messages import (
    BinaryContent,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from agentledger.errors import LedgerCorruptionError, RunNotFoundError, SnapshotNotFoundError
from agentledger.ledger import Ledger
from agentledger.model._content import content_hash, encode_messages
from agentledger.model._records import SnapshotRecord

from ..helpers.ledgers import stored_content, tamper
from ..helpers.records import at, conversation, dumped, prefix, run_start, snapshot_steps


async def test_snapshots_rebuild_each_prefix_and_store_each_message_once(ledger: Ledger) -> None:
    """C7/C8: 30 steps, one snapshot per model request plus `final`; each rebuilds its exact history,
    each adds only what its parent lacks, and storage holds each distinct message once."""
    steps = 30
    messages = conversation(steps)
    encoded = [m.hash for m in encode_messages(messages)]
    assert len(set(encoded)) == len(messages)
    await ledger.start_run(run_start('run-a'))

    records = await snapshot_steps(ledger, 'run-a', messages, range(1, steps + 1), final=True)

    assert await ledger.snapshots('run-a') == records
    parent: SnapshotRecord | None = None
    for record in records:
        count = len(messages) if record.kind == 'final' else prefix(record.step)
        assert record.run_id == 'run-a'
        assert record.message_count == count
        assert record.parent_id == (parent.snapshot_id if parent is not None else None)
        start = parent.message_count if parent is not None else 0
        assert record.new_hashes == tuple(encoded[start:count])
        rebuilt = await ledger.snapshot(record.snapshot_id)
        assert rebuilt.record == record
        assert rebuilt.snapshot_id == record.snapshot_id
        assert dumped(rebuilt.messages) == dumped(messages[:count])
        parent = record
    assert stored_content(ledger) == (len(messages), 0)


async def test_snapshot_written_twice_is_stored_once(ledger: Ledger) -> None:
    """C7: a redelivered snapshot write (same run, step, kind and history) is the same snapshot, stored once."""
    messages = conversation(3)
    await ledger.start_run(run_start('run-a'))
    [first_step] = await snapshot_steps(ledger, 'run-a', messages, range(1, 2))
    [first] = await snapshot_steps(ledger, 'run-a', messages, range(2, 3))
    [again] = await snapshot_steps(ledger, 'run-a', messages, range(2, 3))

    assert again.snapshot_id == first.snapshot_id
    assert await ledger.snapshots('run-a') == [first_step, first]
    assert stored_content(ledger) == (prefix(2), 0)
    # What the repeated write returns describes the stored snapshot, not a link to itself.
    assert (again.parent_id, again.new_hashes, again.message_count) == (
        first.parent_id,
        first.new_hashes,
        first.message_count,
    )


async def test_history_with_an_unanswered_tool_call_is_not_stored(ledger: Ledger) -> None:
    """C5: a history ending in a tool call nobody answered is no continuation point: nothing is stored."""
    messages = conversation(3)
    await ledger.start_run(run_start('run-a'))
    dangling = messages[: prefix(2) + 1]
    assert isinstance(dangling[-1], ModelResponse)
    assert any(isinstance(part, ToolCallPart) for part in dangling[-1].parts)

    record = await ledger.write_snapshot(
        run_id='run-a', temporal_run_id='t1', step=2, kind='model_request', messages=dangling
    )

    assert record is None
    assert await ledger.snapshots('run-a') == []
    assert stored_content(ledger) == (0, 0)
    with pytest.raises(SnapshotNotFoundError):
        await ledger.latest_snapshot('run-a')


def image(size: int, seed: int) -> bytes:
    """Incompressible bytes, like a real PNG or JPEG."""
    return random.Random(seed).randbytes(size)


def multimodal_history(prompt: str, photo: bytes, chart: bytes, *, offset: float = 0) -> list[ModelMessage]:
    """A user sends a photo; the model calls a tool that returns a chart image alongside text."""
    return [
        ModelRequest(
            parts=[UserPromptPart([prompt, BinaryContent(data=photo, media_type='image/png')], timestamp=at(offset))],
            timestamp=at(offset),
        ),
        ModelResponse(
            parts=[
                TextPart('I will fetch the delivery chart.'),
                ToolCallPart('delivery_chart', {'order_id': 'A-0001'}, tool_call_id=f'call-chart-{offset}'),
            ],
            model_name='test-model',
            timestamp=at(offset + 1),
        ),
        ModelRequest(
            parts=[
                ToolReturnPart(
                    'delivery_chart',
                    ['Deliveries per day:', BinaryContent(data=chart, media_type='image/jpeg')],
                    tool_call_id=f'call-chart-{offset}',
                    timestamp=at(offset + 2),
                )
            ],
            timestamp=at(offset + 2),
        ),
    ]


def binary_parts(messages: list[ModelMessage]) -> list[bytes]:
    found: list[bytes] = []
    for message in messages:
        for part in message.parts:
            content = getattr(part, 'content', None)
            if isinstance(content, list):
                found.extend(item.data for item in content if isinstance(item, BinaryContent))
    return found


async def test_large_binary_content_round_trips_and_is_stored_once(ledger: Ledger) -> None:
    """C8: a 100 KB image in a prompt and a 50 KB one in a tool return come back byte-identical; the
    same image in two snapshots and two runs is one stored blob (C7)."""
    photo, chart = image(100 * 1024, seed=1), image(50 * 1024, seed=2)
    await ledger.start_run(run_start('run-a'))
    await ledger.start_run(run_start('run-b', started=10))
    first = multimodal_history('Is my parcel damaged?', photo, chart)
    second = multimodal_history('Same parcel, another question.', photo, chart, offset=10)

    [one, two] = await snapshot_steps(ledger, 'run-a', first, range(1, 3))
    [other] = await snapshot_steps(ledger, 'run-b', second, range(2, 3))

    for record, messages in ((one, first[:1]), (two, first), (other, second)):
        rebuilt = (await ledger.snapshot(record.snapshot_id)).messages
        assert dumped(rebuilt) == dumped(messages)
        assert binary_parts(rebuilt) == binary_parts(messages)
    assert binary_parts((await ledger.snapshot(two.snapshot_id)).messages) == [photo, chart]
    assert stored_content(ledger) == (len(first) + len(second), 2)


async def test_altered_message_is_reported_as_corruption(ledger: Ledger) -> None:
    """C17: a stored message that no longer matches its hash raises LedgerCorruptionError naming it."""
    messages = conversation(3)
    await ledger.start_run(run_start('run-a'))
    [_, record] = await snapshot_steps(ledger, 'run-a', messages, range(1, 3))
    digest = record.new_hashes[-1]
    [original] = (await ledger.store.read_messages([digest])).values()
    tamper(ledger, 'messages', digest, original.replace(b'shipped', b'lost!!!'))

    with pytest.raises(LedgerCorruptionError, match=digest):
        await ledger.snapshot(record.snapshot_id)


async def test_missing_message_is_reported_as_corruption(ledger: Ledger) -> None:
    """C17: a snapshot whose message is gone from storage raises LedgerCorruptionError naming it."""
    messages = conversation(3)
    await ledger.start_run(run_start('run-a'))
    [record] = await snapshot_steps(ledger, 'run-a', messages, range(1, 2))
    [digest] = record.new_hashes
    tamper(ledger, 'messages', digest, None)

    with pytest.raises(LedgerCorruptionError, match=digest):
        await ledger.snapshot(record.snapshot_id)


@pytest.mark.parametrize('damage', ['altered', 'missing'])
async def test_damaged_blob_is_reported_as_corruption(ledger: Ledger, damage: str) -> None:
    """C17: a blob altered or missing from storage raises LedgerCorruptionError naming its hash."""
    photo = image(100 * 1024, seed=1)
    await ledger.start_run(run_start('run-a'))
    [record] = await snapshot_steps(
        ledger, 'run-a', multimodal_history('Is my parcel damaged?', photo, image(5000, seed=3)), range(1, 2)
    )
    digest = content_hash(photo)
    tamper(ledger, 'blobs', digest, None if damage == 'missing' else photo[:-1] + b'\x00')

    with pytest.raises(LedgerCorruptionError, match=digest):
        await ledger.snapshot(record.snapshot_id)


@pytest.mark.parametrize('snapshot_id', ['nonsense', 'run-x', ''])
async def test_malformed_snapshot_id_is_not_found(ledger: Ledger, snapshot_id: str) -> None:
    """C17: a malformed snapshot id raises SnapshotNotFoundError explaining the expected shape."""
    with pytest.raises(SnapshotNotFoundError, match='malformed snapshot id') as info:
        await ledger.snapshot(snapshot_id)
    assert repr(snapshot_id) in str(info.value)
    assert '<run id>' in str(info.value)


async def test_unknown_snapshot_and_run_ids_are_not_found(ledger: Ledger) -> None:
    """C17: a well-formed id nobody stored, and the snapshots of an unknown run, raise specific errors."""
    await ledger.start_run(run_start('run-a'))
    [record] = await snapshot_steps(ledger, 'run-a', conversation(2), range(1, 2))
    unknown = record.snapshot_id.replace('run-a.', 'run-zz.')
    for snapshot_id in (unknown, 'run-a.s7.0123456789ab'):
        with pytest.raises(SnapshotNotFoundError, match='no snapshot with id') as info:
            await ledger.snapshot(snapshot_id)
        assert repr(snapshot_id) in str(info.value)
    for read in (ledger.snapshots, ledger.latest_snapshot):
        with pytest.raises(RunNotFoundError, match='unknown-run'):
            await read('unknown-run')
    with pytest.raises(RunNotFoundError, match='unknown-run'):
        await ledger.snapshot_at_step('unknown-run', 1)


async def test_latest_snapshot_and_snapshot_at_step(ledger: Ledger) -> None:
    """C9/C10: latest is the `final` snapshot; at step k, the latest model-request snapshot at or before k
    (forking redoes step k); steps outside the run are not found."""
    messages = conversation(3)
    await ledger.start_run(run_start('run-a'))
    [s1, s2, s3, final] = await snapshot_steps(ledger, 'run-a', messages, range(1, 4), final=True)

    assert await ledger.latest_snapshot('run-a') == final
    assert await ledger.snapshot_at_step('run-a', 1) == s1
    assert await ledger.snapshot_at_step('run-a', 2) == s2
    # Forking at the last step redoes it: the model-request snapshot, not the final history.
    assert await ledger.snapshot_at_step('run-a', 3) == s3
    assert s3.step == final.step == 3
    for step in (0, 4):
        with pytest.raises(SnapshotNotFoundError, match=f'no step {step}'):
            await ledger.snapshot_at_step('run-a', step)


async def test_snapshot_at_a_step_without_one_takes_the_one_before(ledger: Ledger) -> None:
    """C10: when step 2 left no valid snapshot, forking at step 2 seeds from step 1's."""
    messages = conversation(3)
    await ledger.start_run(run_start('run-a'))
    [s1] = await snapshot_steps(ledger, 'run-a', messages, range(1, 2))
    [s3] = await snapshot_steps(ledger, 'run-a', messages, range(3, 4))

    assert await ledger.snapshot_at_step('run-a', 2) == s1
    assert await ledger.snapshot_at_step('run-a', 3) == s3
    assert await ledger.latest_snapshot('run-a') == s3


async def test_read_content_returns_only_stored_hashes(ledger: Ledger) -> None:
    """The content primitives answer for more hashes than one backend query may bind, and omit unknown ones."""
    messages = {content_hash(f'message {i}'.encode()): f'message {i}'.encode() for i in range(1200)}
    blobs = {content_hash(b'blob'): b'blob'}
    await ledger.store.write_content(messages, blobs)
    await ledger.store.write_content({digest: b'ignored' for digest in list(messages)[:10]}, {})
    unknown = [content_hash(f'absent {i}'.encode()) for i in range(5)]

    assert await ledger.store.read_messages([*messages, *unknown]) == messages
    assert await ledger.store.read_blobs([*blobs, *unknown]) == blobs
    assert await ledger.store.read_messages([]) == {}
