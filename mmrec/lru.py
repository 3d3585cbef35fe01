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
