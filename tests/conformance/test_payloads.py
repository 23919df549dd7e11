"""Conformance: stored payloads on every backend: references, deletion, deduplicated chunks, corruption."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart, ToolReturnPart, UserPromptPart

from agentledger.errors import LedgerCorruptionError
from agentledger.ledger import Ledger
from agentledger.ledger._chunks import Manifest, assemble, split
from agentledger.model._content import content_hash, encode_messages
from agentledger.model._records import PayloadReference

from ..helpers.ledgers import stored_content, tamper
from ..helpers.records import at, dumped, run_start, snapshot_steps


def payload_bytes(seed: int, size: int = 40_000) -> bytes:
    """Incompressible payload content, different for every seed."""
    return random.Random(seed).randbytes(size)


async def test_payload_references_keep_the_latest_store_per_workflow(ledger: Ledger) -> None:
    """One reference per (manifest, namespace, workflow); storing again moves `stored_at` forward, never back."""
    manifest, other = content_hash(b'payload one'), content_hash(b'payload two')
    await ledger.record_payload_references(
        [
            PayloadReference(manifest, 'default', 'wf-a', at(10)),
            PayloadReference(manifest, 'default', 'wf-a', at(5)),
            PayloadReference(manifest, 'default', 'wf-b', at(7)),
            PayloadReference(other, 'other-ns', 'wf-a', at(1)),
        ]
    )
    await ledger.record_payload_references([PayloadReference(manifest, 'default', 'wf-a', at(3))])

    found = sorted(await ledger.payload_references(), key=lambda r: r.key)
    assert [(r.manifest, r.namespace, r.workflow_id, r.stored_at) for r in found] == sorted(
        [
            (manifest, 'default', 'wf-a', at(10)),
            (manifest, 'default', 'wf-b', at(7)),
            (other, 'other-ns', 'wf-a', at(1)),
        ]
    )
    assert {r.workflow_id for r in await ledger.payload_references([manifest])} == {'wf-a', 'wf-b'}
    assert await ledger.payload_references([content_hash(b'never stored')]) == []
    assert await ledger.payload_references([]) == []


async def test_store_chunked_records_its_referrers_before_content(ledger: Ledger) -> None:
    data = payload_bytes(1)
    key = await ledger.store_chunked(data, referrers=[('default', 'wf-a'), ('default', 'wf-parent')])
    assert await ledger.load_chunked(key) == data
    assert {(r.namespace, r.workflow_id) for r in await ledger.payload_references([key])} == {
        ('default', 'wf-a'),
        ('default', 'wf-parent'),
    }
    unreferenced = await ledger.store_chunked(payload_bytes(2))
    assert await ledger.payload_references([unreferenced]) == []


async def test_delete_payloads_keeps_chunks_others_still_use(ledger: Ledger) -> None:
    """Deleting a payload deletes its manifest, references and the chunks no other payload or message uses."""
    shared = payload_bytes(3)
    first = await ledger.store_chunked(shared + payload_bytes(4), referrers=[('default', 'wf-old')])
    second = await ledger.store_chunked(shared + payload_bytes(5), referrers=[('default', 'wf-live')])
    # A long message of a snapshot is stored as chunks too; a payload carrying exactly it shares them all.
    long_return = ToolReturnPart('lookup', 'x' * 20_000, tool_call_id='call-long', timestamp=at(2))
    history: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart('look it up', timestamp=at(0))], timestamp=at(0)),
        ModelResponse(parts=[ToolCallPart('lookup', {}, tool_call_id='call-long')], timestamp=at(1)),
        ModelRequest(parts=[long_return], timestamp=at(2)),
    ]
    await ledger.start_run(run_start('run-a'))
    record = await ledger.write_snapshot(
        run_id='run-a', temporal_run_id='t1', step=2, kind='model_request', messages=history
    )
    assert record is not None
    third = await ledger.store_chunked(encode_messages(history)[2].data, referrers=[('default', 'wf-old')])
    before = stored_content(ledger)

    planned = await ledger.delete_payloads([first, third, content_hash(b'not stored')], dry_run=True)
    assert stored_content(ledger) == before
    assert await ledger.load_chunked(first)
    done = await ledger.delete_payloads([first, third, content_hash(b'not stored')])

    assert done == planned
    assert set(done.manifests) == {first, third}
    assert done.chunks > 0 and done.bytes >= 30_000  # the chunks only `first` had
    assert stored_content(ledger) == (before[0], before[1] - 2 - done.chunks)
    for gone in (first, third):
        with pytest.raises(LedgerCorruptionError, match=gone):
            await ledger.load_chunked(gone)
        assert await ledger.payload_references([gone]) == []
    assert await ledger.load_chunked(second) == shared + payload_bytes(5)
    assert [r.workflow_id for r in await ledger.payload_references()] == ['wf-live']
    assert dumped((await ledger.snapshot(record.snapshot_id)).messages) == dumped(history)

    # Content stored again after a deletion is complete again.
    again = await ledger.store_chunked(shared + payload_bytes(4), referrers=[('default', 'wf-new')])
    assert again == first and await ledger.load_chunked(again) == shared + payload_bytes(4)
    assert (await ledger.delete_payloads([])).manifests == ()


def long_text(size: int, seed: int) -> str:
    """`size` characters that repeat nothing, so only real duplication is deduplicated."""
    blocks, block = [], hashlib.sha256(str(seed).encode()).digest()
    while 64 * len(blocks) < size:
        block = hashlib.sha256(block).digest()
        blocks.append(block.hex() + block.hex()[::-1])
    return ''.join(blocks)[:size]


async def unstored_bytes(ledger: Ledger, data: bytes, *, json_text: bool = True) -> int:
    """What storing `data` would add: the bytes of its pieces the ledger does not hold yet."""
    manifest, pieces = split(data, json_text=json_text)
    pieces[manifest.key] = manifest.to_bytes()
    held = await ledger.store.read_blobs(list(pieces))
    return sum(len(piece) for key, piece in pieces.items() if key not in held)


async def test_long_tool_result_is_stored_once_across_snapshot_and_payloads(ledger: Ledger) -> None:
    """A 100 KB tool result stored in a snapshot costs next to nothing again inside the JSON
    payloads that carry it (other surroundings, other offsets), and every copy comes back byte for byte."""
    text = long_text(100 * 1024, seed=1)
    messages: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart('look it up', timestamp=at(0))]),
        ModelResponse(parts=[ToolCallPart('lookup', {'q': 'x'}, tool_call_id='c1')], timestamp=at(1)),
        ModelRequest(parts=[ToolReturnPart('lookup', text, tool_call_id='c1', timestamp=at(2))]),
    ]
    await ledger.start_run(run_start('run-a'))
    [record] = await snapshot_steps(ledger, 'run-a', messages, range(2, 3))
    assert dumped((await ledger.snapshot(record.snapshot_id)).messages) == dumped(messages)

    tool_result = json.dumps({'kind': 'return', 'result': text}).encode()
    model_request = json.dumps({'model': 'm', 'messages': [{'parts': [{'content': text, 'id': 'c1'}]}]}).encode()
    for payload in (tool_result, model_request):
        assert await unstored_bytes(ledger, payload) < 2048
        key = await ledger.store_chunked(payload, json_text=True)
        assert await ledger.load_chunked(key) == payload


async def test_repeated_json_structure_is_stored_once_in_new_surroundings(ledger: Ledger) -> None:
    """Each model request of a run carries the same tool definitions beside new messages: the repeated
    object costs next to nothing after the first request, wherever it sits."""
    tools = [
        {'name': f'tool_{i}', 'description': long_text(300, seed=i), 'parameters': {'type': 'object'}} for i in range(8)
    ]

    def request(step: int) -> bytes:
        messages = [{'tool_call_id': f'call-{step}', 'content': long_text(200, seed=100 + step), 'args': {'i': step}}]
        body = {'messages': messages * (1 + step % 3), 'parameters': {'function_tools': tools}, 'model_id': None}
        return json.dumps(body).encode()

    first = request(1)
    assert await ledger.load_chunked(await ledger.store_chunked(first, json_text=True)) == first
    for step in range(2, 6):
        payload = request(step)
        new_content = len(payload) - len(json.dumps({'function_tools': tools}))
        assert await unstored_bytes(ledger, payload) < new_content + 1024, step
        assert await ledger.load_chunked(await ledger.store_chunked(payload, json_text=True)) == payload


def test_unbalanced_brackets_and_brackets_in_strings_only_move_cut_points() -> None:
    """Bytes that look like JSON but are not still split and rebuild exactly."""
    odd = (b'}' * 50 + b'{"a": "' + b'[' * 3000 + b'"' + b'[1, 2' * 900 + b']]]]' * 10).replace(b'"', b'"', 1)
    manifest, pieces = split(odd)
    nested = {key: Manifest.parse(piece, 'test') for key, piece in pieces.items() if Manifest.is_manifest(piece)}
    assert assemble(manifest, pieces, nested, 'test') == odd


async def test_growing_content_shares_the_chunks_of_its_unchanged_part(ledger: Ledger) -> None:
    """Content-defined chunks: a document that grows by 10% stores about that much again."""
    document = long_text(200 * 1024, seed=2).encode()
    await ledger.load_chunked(await ledger.store_chunked(document, json_text=False))
    grown = document[: len(document) // 2] + long_text(20 * 1024, seed=3).encode() + document[len(document) // 2 :]
    assert await unstored_bytes(ledger, grown, json_text=False) < 60 * 1024
    assert await ledger.load_chunked(await ledger.store_chunked(grown)) == grown


@pytest.mark.parametrize('damage', ['altered', 'missing'])
async def test_damaged_payload_chunk_is_reported_as_corruption(ledger: Ledger, damage: str) -> None:
    """A stored payload whose chunk is altered or gone raises LedgerCorruptionError naming it."""
    payload = json.dumps({'result': long_text(50 * 1024, seed=4)}).encode()
    key = await ledger.store_chunked(payload, json_text=True)
    manifest, pieces = split(payload, json_text=True)
    nested = Manifest.parse(pieces[manifest.nested()[0]], 'test')
    chunk = nested.chunks()[1]
    tamper(ledger, 'blobs', chunk, None if damage == 'missing' else pieces[chunk][:-1] + b'!')

    with pytest.raises(LedgerCorruptionError, match=chunk):
        await ledger.load_chunked(key)


async def test_unknown_payload_key_is_reported(ledger: Ledger) -> None:
    """A payload reference the ledger never stored names itself in the error."""
    with pytest.raises(LedgerCorruptionError, match=r'stored payload 0{64} is missing'):
        await ledger.load_chunked('0' * 64)
