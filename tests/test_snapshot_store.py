"""Pure tests of snapshot storage: content addressing (`_content`) and the snapshot-chain rules (`_snapshots`).

No ledger backend is involved; the conformance suite (`tests/conformance/`) checks that every backend
stores and rebuilds what these functions produce.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from pydantic_ai.messages import (
    BinaryContent,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from agentledger.errors import LedgerCorruptionError, SnapshotNotFoundError
from agentledger.model._content import (
    BLOB_THRESHOLD,
    blob_refs,
    canonical_json,
    content_hash,
    decode_message,
    encode_messages,
    message_address,
)
from agentledger.model._records import RunRecord, SnapshotKind, SnapshotRecord
from agentledger.model._snapshots import latest_snapshot, run_id_of, snapshot_at_step, snapshot_id

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

HASHES = [content_hash(f'message {i}'.encode()) for i in range(4)]


def dumped(messages: list[ModelMessage]) -> bytes:
    return ModelMessagesTypeAdapter.dump_json(messages)


def round_trip(messages: list[ModelMessage]) -> list[ModelMessage]:
    return [decode_message(m.hash, m.data, m.blobs) for m in encode_messages(messages)]


def tool_round(args: dict[str, object], result: dict[str, object]) -> list[ModelMessage]:
    """A prompt, a tool call with `args`, and its return `result`."""
    return [
        ModelRequest(parts=[UserPromptPart('Refund order A-7.', timestamp=T0)], timestamp=T0),
        ModelResponse(
            parts=[TextPart('Refunding.'), ToolCallPart('refund', args, tool_call_id='call-1')],
            model_name='test-model',
            timestamp=T0,
        ),
        ModelRequest(parts=[ToolReturnPart('refund', result, tool_call_id='call-1', timestamp=T0)], timestamp=T0),
    ]


def with_image(data: bytes, *, media_type: str = 'image/png') -> ModelRequest:
    return ModelRequest(
        parts=[
            UserPromptPart(['What is in this picture?', BinaryContent(data=data, media_type=media_type)], timestamp=T0)
        ],
        timestamp=T0,
    )


# --- canonical JSON and hashes ----------------------------------------------------------------------


def test_canonical_json_does_not_depend_on_key_order() -> None:
    one = {'b': 1, 'a': {'y': [1, {'q': None, 'p': True}], 'x': 'é'}}
    two = {'a': {'x': 'é', 'y': [1, {'p': True, 'q': None}]}, 'b': 1}
    assert canonical_json(one) == canonical_json(two)
    assert canonical_json(one) == '{"a":{"x":"é","y":[1,{"p":true,"q":null}]},"b":1}'.encode()


def test_content_hash_is_the_hex_sha256() -> None:
    assert content_hash(b'') == 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    assert content_hash(b'abc') == hashlib.sha256(b'abc').hexdigest()


def test_message_hash_is_stable_and_covers_its_stored_content() -> None:
    messages = tool_round({'order_id': 'A-7', 'amount': 12}, {'status': 'refunded'})
    first, again = encode_messages(messages), encode_messages(tool_round({'order_id': 'A-7', 'amount': 12}, {}))
    assert [m.hash for m in first[:2]] == [m.hash for m in again[:2]]
    assert first[2].hash != again[2].hash
    for message in first:
        assert message.hash == message_address(json.loads(message.data))
        assert re.fullmatch(r'[0-9a-f]{64}', message.hash)
    assert len({m.hash for m in first}) == 3


def test_message_hash_does_not_depend_on_dict_key_order() -> None:
    sorted_args = encode_messages(tool_round({'amount': 12, 'order_id': 'A-7'}, {}))
    unsorted_args = encode_messages(tool_round({'order_id': 'A-7', 'amount': 12}, {}))
    assert sorted_args[1].hash == unsorted_args[1].hash


def test_messages_round_trip_exactly() -> None:
    """C8: decoding gives back the messages pydantic-ai dumps identically, including dict key order."""
    messages = tool_round({'order_id': 'A-7', 'amount': 12, 'reason': 'damaged'}, {'status': 'ok', 'id': 'rf-1'})
    assert dumped(round_trip(messages)) == dumped(messages)


# --- blobs --------------------------------------------------------------------------------------------


def test_large_binary_part_is_cut_out_as_a_blob() -> None:
    raw = random.Random(0).randbytes(BLOB_THRESHOLD)
    [message] = encode_messages([with_image(raw)])

    assert dict(message.blobs) == {content_hash(raw): raw}
    assert blob_refs(message.data) == [content_hash(raw)]
    part = json.loads(message.data)['parts'][0]['content'][1]
    assert part['data'] == {'$blob': content_hash(raw)}
    assert part['media_type'] == 'image/png'
    assert len(message.data) < 1000


def test_small_binary_part_stays_inline() -> None:
    raw = random.Random(0).randbytes(BLOB_THRESHOLD - 1)
    [message] = encode_messages([with_image(raw)])

    assert dict(message.blobs) == {}
    assert blob_refs(message.data) == []
    [restored] = round_trip([with_image(raw)])
    assert dumped([restored]) == dumped([with_image(raw)])


def test_the_same_image_twice_is_one_blob() -> None:
    raw = random.Random(0).randbytes(10_000)
    request = ModelRequest(
        parts=[
            UserPromptPart(['Before:', BinaryContent(raw, media_type='image/png')], timestamp=T0),
            UserPromptPart(['After:', BinaryContent(raw, media_type='image/png')], timestamp=T0),
        ],
        timestamp=T0,
    )
    [message] = encode_messages([request])
    assert dict(message.blobs) == {content_hash(raw): raw}
    assert blob_refs(message.data) == [content_hash(raw), content_hash(raw)]


@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('size', [BLOB_THRESHOLD, 5000, 100 * 1024])
def test_binary_parts_round_trip_byte_identical(seed: int, size: int) -> None:
    """C8: any bytes, in a prompt and in a tool return, come back identical (pydantic dumps them URL-safe base64)."""
    photo = random.Random(seed).randbytes(size)
    chart = random.Random(seed + 100).randbytes(size)
    messages: list[ModelMessage] = [
        with_image(photo),
        ModelResponse(parts=[ToolCallPart('chart', {}, tool_call_id='call-1')], timestamp=T0),
        ModelRequest(
            parts=[ToolReturnPart('chart', ['chart:', BinaryContent(chart, media_type='image/jpeg')], 'call-1')],
            timestamp=T0,
        ),
    ]
    encoded = encode_messages(messages)
    assert {digest: data for m in encoded for digest, data in m.blobs.items()} == {
        content_hash(photo): photo,
        content_hash(chart): chart,
    }
    restored = round_trip(messages)
    assert dumped(restored) == dumped(messages)


# --- decoding verifies ----------------------------------------------------------------------------------


def test_decode_rejects_bytes_that_do_not_match_their_hash() -> None:
    [message] = encode_messages([with_image(b'tiny')])
    altered = message.data.replace(b'picture', b'pictures')
    with pytest.raises(LedgerCorruptionError, match=f'{message.hash} does not match its hash'):
        decode_message(message.hash, altered, {})


def test_decode_rejects_stored_bytes_that_are_not_json() -> None:
    data = b'{"parts": ['
    with pytest.raises(LedgerCorruptionError, match=f'{content_hash(data)} is not JSON'):
        decode_message(content_hash(data), data, {})


def test_decode_rejects_a_missing_or_altered_blob() -> None:
    raw = random.Random(0).randbytes(BLOB_THRESHOLD)
    [message] = encode_messages([with_image(raw)])
    digest = content_hash(raw)
    with pytest.raises(LedgerCorruptionError, match=f'blob {digest} .* is missing'):
        decode_message(message.hash, message.data, {})
    with pytest.raises(LedgerCorruptionError, match=f'blob {digest} .* does not match its hash'):
        decode_message(message.hash, message.data, {digest: raw[:-1]})


# --- snapshot ids -----------------------------------------------------------------------------------------


def test_snapshot_id_names_run_step_and_content() -> None:
    model_request = snapshot_id('run-0123abcd', 3, 'model_request', HASHES)
    final = snapshot_id('run-0123abcd', 3, 'final', HASHES)
    assert re.fullmatch(r'run-0123abcd\.s3\.[0-9a-f]{12}', model_request)
    assert re.fullmatch(r'run-0123abcd\.final\.[0-9a-f]{12}', final)
    assert model_request.rsplit('.', 1)[1] == final.rsplit('.', 1)[1]


def test_snapshot_id_is_idempotent_and_content_sensitive() -> None:
    assert snapshot_id('run-a', 2, 'model_request', HASHES) == snapshot_id('run-a', 2, 'model_request', list(HASHES))
    assert snapshot_id('run-a', 2, 'model_request', HASHES) != snapshot_id('run-a', 2, 'model_request', HASHES[:3])
    assert snapshot_id('run-a', 2, 'model_request', HASHES) != snapshot_id('run-a', 2, 'model_request', HASHES[::-1])
    assert snapshot_id('run-a', 2, 'model_request', HASHES) != snapshot_id('run-a', 3, 'model_request', HASHES)


@pytest.mark.parametrize('kind', ['model_request', 'final'])
def test_run_id_of_a_snapshot_id(kind: SnapshotKind) -> None:
    assert run_id_of(snapshot_id('run-5f3a9c', 7, kind, HASHES)) == 'run-5f3a9c'
    assert run_id_of('run-x.s1.abc') == 'run-x'


@pytest.mark.parametrize('malformed', ['nonsense', 'run-x', 'run-x.s1', 'run-x.', 'job-1.s1.abc', '.s1.abc', ''])
def test_run_id_of_a_malformed_id_is_not_found(malformed: str) -> None:
    with pytest.raises(SnapshotNotFoundError, match='malformed snapshot id') as info:
        run_id_of(malformed)
    assert repr(malformed) in str(info.value)
    assert isinstance(info.value, LookupError)


# --- choosing a snapshot ----------------------------------------------------------------------------------


def run_record(*temporal_run_ids: str) -> RunRecord:
    return RunRecord(
        run_id='run-a',
        workflow_id='wf-a',
        temporal_run_ids=temporal_run_ids,
        agent_name='support',
        status='running',
        started_at=T0,
        updated_at=T0,
        task_queue='agents',
    )


def record(step: int, kind: SnapshotKind = 'model_request', *, temporal_run_id: str = 't1') -> SnapshotRecord:
    return SnapshotRecord(
        snapshot_id=snapshot_id('run-a', step, kind, [temporal_run_id, *HASHES[:step]]),
        run_id='run-a',
        temporal_run_id=temporal_run_id,
        step=step,
        kind=kind,
        parent_id=None,
        new_hashes=tuple(HASHES[:step]),
        message_count=step,
        created_at=T0 + timedelta(seconds=step),
    )


def test_latest_snapshot_prefers_the_latest_temporal_run_then_step_then_final() -> None:
    """C14: after a reset (t2), the new Temporal run's snapshots win over the old run's later steps."""
    old_step_3, old_final = record(3, temporal_run_id='t1'), record(3, 'final', temporal_run_id='t1')
    new_step_2 = record(2, temporal_run_id='t2')
    assert latest_snapshot(run_record('t1'), [old_final, old_step_3]) == old_final
    assert latest_snapshot(run_record('t1', 't2'), [old_step_3, old_final, new_step_2]) == new_step_2


def test_snapshot_at_step_takes_the_latest_at_or_before() -> None:
    """C10: the snapshot at or before the step; steps outside the run are a clear error."""
    snapshots = [record(1), record(3), record(3, 'final')]
    run = run_record('t1')
    assert snapshot_at_step(run, snapshots, 2) == snapshots[0]
    # At the last step, the history its model request saw; the final one is what continue uses.
    assert snapshot_at_step(run, snapshots, 3) == snapshots[1]
    assert latest_snapshot(run, snapshots) == snapshots[2]
    for step in (0, 4):
        with pytest.raises(SnapshotNotFoundError, match=f'run-a has no step {step}'):
            snapshot_at_step(run, snapshots, step)
    with pytest.raises(SnapshotNotFoundError, match='run-a has no valid snapshot'):
        snapshot_at_step(run, [], 1)
    with pytest.raises(SnapshotNotFoundError, match='run-a has no valid snapshot'):
        latest_snapshot(run, [])
