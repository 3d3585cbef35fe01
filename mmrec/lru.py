"""A bounded, thread-safe least-recently-used map: the caches of the request path."""

from __future__ import annotations

import threading
from collections import OrderedDict


class LRU:
    """A small thread-safe LRU map (requests run in a thread pool); size 0 keeps nothing."""

    def __init__(self, size: int):
        self.size, self._d, self._lock = size, OrderedDict(), threading.Lock()

    def __len__(self) -> int:
        return len(self._d)

    def get(self, key):
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key, value) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._d[key] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)


def bounded_memo(cache: dict, key, make, limit: int = 100_000):
    """``cache[key]``, made by ``make()`` on a miss (None too); the cache starts over past
    ``limit`` entries, which bounds a replica's memory at no bookkeeping cost per hit (for pure
    functions of immutable inputs, where an LRU's per-hit lock and reordering would dominate)."""
    try:
        return cache[key]
    except KeyError:
        pass
    if len(cache) > limit:
        cache.clear()
    value = cache[key] = make()
    return value
