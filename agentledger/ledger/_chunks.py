"""Deduplicated storage of large byte strings: content-defined chunks and their manifests. Pure functions.

Large content (a long tool result inside a message, an activity's input or output payload) is cut
into chunks stored once each under their SHA-256, and a manifest lists a content's pieces in order.

Two rules make repeated content cost (almost) nothing:

- In JSON, every long string literal (a tool result, a document) is its own piece: cut from its
  own first byte to its last, with its own manifest, whatever surrounds it. The same text inside
  a tool activity's result, inside the next model request and inside the stored message therefore
  gives the same chunks and the same manifest, stored once; the manifests of the three containing
  documents differ only in their small surroundings.
- In JSON, every long object or array (1 KiB or more: a model request's tool definitions, a
  message) starts and ends at a cut point, so the same structure repeated inside different
  surroundings (each model request of a run carries the same tool definitions beside new
  messages) gives the same chunks.
- Everything is cut with FastCDC, whose cut points depend on the bytes around them, not on their
  offsets, so a text that grows from step to step (an accumulating document) shares the chunks of
  its unchanged part.

So a manifest grows with the size of its own content, never with the number of steps that repeat
it. Every read is verified: each chunk against its hash, each manifest against its key, the whole
against its hash and size; a missing or altered piece raises `LedgerCorruptionError`.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pyfastcdc import FastCDC

from agentledger.errors import LedgerCorruptionError
from agentledger.model._content import content_hash

__all__ = ['CHUNK_THRESHOLD', 'Manifest', 'assemble', 'split']

CHUNK_THRESHOLD = 4096
"""Content at least this large (in bytes) is stored as chunks."""

_LITERAL_THRESHOLD = 1024
"""JSON string literals at least this long are pieces of their own."""

_CONTAINER_THRESHOLD = 1024
"""JSON objects and arrays at least this long start and end at a cut point."""

_MIN_SEGMENT = 128
"""No structural cut closer than this to another: a tiny piece costs more in its manifest than it can save."""

_CHUNKER = FastCDC(4096, min_size=1024, max_size=32768)
_MARKER = b'{"$chunks":'
# One JSON string literal, escapes included (unrolled so long literals match in linear time).
_STRING_LITERAL = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(rb'[\[\]{}]')


@dataclass(frozen=True)
class Manifest:
    """The pieces of one content, in order, and the hash and size of the whole."""

    sha256: str
    size: int
    pieces: tuple[tuple[str, int, bool], ...]
    """(hash, length, is a manifest) of each piece: a chunk, or the manifest of a long string literal."""

    def to_bytes(self) -> bytes:
        """The stored form: a JSON object whose first key marks it as a manifest."""
        pieces = [[digest, length, 1] if nested else [digest, length] for digest, length, nested in self.pieces]
        return json.dumps({'$chunks': pieces, 'sha256': self.sha256, 'size': self.size}, separators=(',', ':')).encode()

    @property
    def key(self) -> str:
        """The hash of the stored form: the manifest is stored, and referenced, under it."""
        return content_hash(self.to_bytes())

    @classmethod
    def parse(cls, data: bytes, where: str) -> Manifest:
        """Read a stored manifest; a malformed one raises `LedgerCorruptionError` naming `where`."""
        try:
            node = json.loads(data)
            pieces = tuple((str(p[0]), int(p[1]), len(p) > 2 and bool(p[2])) for p in node['$chunks'])
            return cls(sha256=str(node['sha256']), size=int(node['size']), pieces=pieces)
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise LedgerCorruptionError(f'the chunk manifest of {where} is malformed: {error}') from error

    @staticmethod
    def is_manifest(data: bytes) -> bool:
        """Whether stored bytes are a manifest rather than the content itself."""
        return data.startswith(_MARKER)

    def nested(self) -> list[str]:
        """The keys of the manifests this one references (its long string literals)."""
        return [digest for digest, _, nested in self.pieces if nested]

    def chunks(self) -> list[str]:
        """The hashes of the chunks this manifest lists itself."""
        return [digest for digest, _, nested in self.pieces if not nested]


def _cut(data: bytes, pieces: list[tuple[str, int, bool]], blobs: dict[str, bytes]) -> None:
    for chunk in _CHUNKER.cut_buf(data):
        piece = bytes(chunk.data)
        digest = content_hash(piece)
        blobs[digest] = piece
        pieces.append((digest, len(piece), False))


def _json_structure(data: bytes) -> tuple[list[tuple[int, int]], list[int]]:
    """The spans of long string literals, and the cut points at both ends of every long object or array.

    Brackets inside string literals are text, not structure; unbalanced brackets (bytes that are
    not JSON after all) only cost cut points, never correctness.
    """
    literals: list[tuple[int, int]] = []
    cuts: list[int] = []
    open_at: list[int] = []

    def brackets(start: int, end: int) -> None:
        for bracket in _BRACKET.finditer(data, start, end):
            if bracket.group() in b'[{':
                open_at.append(bracket.start())
            elif open_at:
                opened = open_at.pop()
                if bracket.end() - opened >= _CONTAINER_THRESHOLD:
                    cuts.extend((opened, bracket.end()))

    position = 0
    for literal in _STRING_LITERAL.finditer(data):
        start, end = literal.span()
        brackets(position, start)
        if end - start >= _LITERAL_THRESHOLD:
            literals.append((start, end))
        position = end
    brackets(position, len(data))
    return literals, sorted(set(cuts))


def _cut_between(
    data: bytes, start: int, end: int, cuts: list[int], pieces: list[tuple[str, int, bool]], blobs: dict[str, bytes]
) -> None:
    """Chunk `data[start:end]`, cutting at every structural cut point inside it as well."""
    position = start
    for cut in cuts[bisect.bisect_right(cuts, start) : bisect.bisect_left(cuts, end)]:
        if cut - position < _MIN_SEGMENT or end - cut < _MIN_SEGMENT:
            continue
        _cut(data[position:cut], pieces, blobs)
        position = cut
    if position < end:
        _cut(data[position:end], pieces, blobs)


def split(data: bytes, *, json_text: bool = True) -> tuple[Manifest, dict[str, bytes]]:
    """Cut `data` into pieces: its manifest, and every chunk and nested manifest to store, by hash.

    With `json_text`, long string literals become nested manifests of their own and long objects
    and arrays are cut at both ends (see the module docstring); bytes that are not JSON are simply
    chunked.
    """
    blobs: dict[str, bytes] = {}
    pieces: list[tuple[str, int, bool]] = []
    literals, cuts = _json_structure(data) if json_text else ([], [])
    position = 0
    for start, end in literals:
        if start > position:
            _cut_between(data, position, start, cuts, pieces, blobs)
        inner: list[tuple[str, int, bool]] = []
        text = data[start:end]
        _cut(text, inner, blobs)
        nested = Manifest(sha256=content_hash(text), size=len(text), pieces=tuple(inner))
        blobs[nested.key] = nested.to_bytes()
        pieces.append((nested.key, len(text), True))
        position = end
    if position < len(data) or not pieces:
        _cut_between(data, position, len(data), cuts, pieces, blobs)
    return Manifest(sha256=content_hash(data), size=len(data), pieces=tuple(pieces)), blobs


def assemble(manifest: Manifest, chunks: Mapping[str, bytes], nested: Mapping[str, Manifest], where: str) -> bytes:
    """Rebuild the content a manifest lists, verifying every chunk, nested manifest and the whole."""
    parts: list[bytes] = []
    for digest, length, is_manifest in manifest.pieces:
        if is_manifest:
            inner = nested.get(digest)
            if inner is None:
                raise LedgerCorruptionError(f'manifest {digest} of {where} is missing from the ledger')
            piece = assemble(inner, chunks, {}, where)
        else:
            found = chunks.get(digest)
            if found is None:
                raise LedgerCorruptionError(f'chunk {digest} of {where} is missing from the ledger')
            if content_hash(found) != digest:
                raise LedgerCorruptionError(f'chunk {digest} of {where} does not match its hash')
            piece = found
        if len(piece) != length:
            raise LedgerCorruptionError(f'piece {digest} of {where} has {len(piece)} bytes, not {length}')
        parts.append(piece)
    data = b''.join(parts)
    if len(data) != manifest.size or content_hash(data) != manifest.sha256:
        raise LedgerCorruptionError(f'the chunks of {where} do not rebuild the content they were cut from')
    return data
