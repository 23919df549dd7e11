"""A memory-bounded cache of immutable objects already read (events, acceptances, snapshot manifests)."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ['ObjectCache']


class ObjectCache:
    """Bytes of immutable objects by key, up to a memory budget; the least recently used go first."""

    def __init__(self, max_bytes: int) -> None:
        """An empty cache of at most `max_bytes`."""
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes

    def get(self, key: str) -> bytes | None:
        """The bytes cached under `key`, or `None`."""
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def drop(self, key: str) -> None:
        """Forget `key` (an object a repair replaced)."""
        data = self._items.pop(key, None)
        if data is not None:
            self._bytes -= len(data)

    def put(self, key: str, data: bytes) -> None:
        """Keep `data` under `key`, dropping the least recently used beyond the budget."""
        # One large blob must not flush everything else.
        if len(data) > self._max_bytes // 8 or key in self._items:
            return
        self._items[key] = data
        self._bytes += len(data)
        while self._bytes > self._max_bytes:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= len(dropped)
