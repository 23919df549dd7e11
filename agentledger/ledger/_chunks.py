"""Deduplicated storage of large byte strings: content-defined chunks and their manifests. Pure functions.

Large content (a long tool result inside a message, an activity's input or output payload) is cut
with FastCDC into chunks whose boundaries depend on the bytes around them, not on their offsets.
Content that reappears inside other content (the tool result that comes back inside the next model
request, and again inside the stored message) therefore cuts into mostly the same chunks, and each
chunk is stored once under its SHA-256. A manifest lists a content's chunks in order; it grows
with the size of that one content, never with the number of steps that repeat it.

Every read is verified: each chunk against its hash, the whole against the manifest's hash and
size, so a missing or altered chunk raises `LedgerCorruptionError` and is never returned.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from pyfastcdc import FastCDC

from .._errors import LedgerCorruptionError
from ._content import content_hash

__all__ = ['CHUNK_THRESHOLD', 'Manifest', 'assemble', 'split']

CHUNK_THRESHOLD = 4096
"""Content at least this large (in bytes) is stored as chunks."""

# Small chunks keep the bytes that differ around a repeated content (its first and last chunk) small;
# FastCDC's actual average is avg + min.
_CHUNKER = FastCDC(1024, min_size=256, max_size=16384)
_MARKER = b'{"$chunks":'


@dataclass(frozen=True)
class Manifest:
    """The chunks of one content, in order, and the hash and size of the whole."""

    sha256: str
    size: int
    chunks: tuple[tuple[str, int], ...]
    """(hash, length) of each chunk."""

    def to_bytes(self) -> bytes:
        """The stored form: a JSON object whose first key marks it as a manifest."""
        return json.dumps(
            {'$chunks': [list(chunk) for chunk in self.chunks], 'sha256': self.sha256, 'size': self.size},
            separators=(',', ':'),
        ).encode()

    @classmethod
    def parse(cls, data: bytes, where: str) -> Manifest:
        """Read a stored manifest; a malformed one raises `LedgerCorruptionError` naming `where`."""
        try:
            node = json.loads(data)
            chunks = tuple((str(digest), int(length)) for digest, length in node['$chunks'])
            return cls(sha256=str(node['sha256']), size=int(node['size']), chunks=chunks)
        except (ValueError, KeyError, TypeError) as error:
            raise LedgerCorruptionError(f'the chunk manifest of {where} is malformed: {error}') from error

    @staticmethod
    def is_manifest(data: bytes) -> bool:
        """Whether stored bytes are a manifest rather than the content itself."""
        return data.startswith(_MARKER)


def split(data: bytes) -> tuple[Manifest, dict[str, bytes]]:
    """Cut `data` into content-defined chunks: its manifest and the chunks by hash."""
    chunks: dict[str, bytes] = {}
    order: list[tuple[str, int]] = []
    for chunk in _CHUNKER.cut_buf(data):
        piece = bytes(chunk.data)
        digest = content_hash(piece)
        chunks[digest] = piece
        order.append((digest, len(piece)))
    return Manifest(sha256=content_hash(data), size=len(data), chunks=tuple(order)), chunks


def assemble(manifest: Manifest, chunks: Mapping[str, bytes], where: str) -> bytes:
    """Rebuild the content a manifest lists, verifying every chunk and the whole."""
    pieces: list[bytes] = []
    for digest, length in manifest.chunks:
        piece = chunks.get(digest)
        if piece is None:
            raise LedgerCorruptionError(f'chunk {digest} of {where} is missing from the ledger')
        if len(piece) != length or content_hash(piece) != digest:
            raise LedgerCorruptionError(f'chunk {digest} of {where} does not match its hash')
        pieces.append(piece)
    data = b''.join(pieces)
    if len(data) != manifest.size or content_hash(data) != manifest.sha256:
        raise LedgerCorruptionError(f'the chunks of {where} do not rebuild the content they were cut from')
    return data
