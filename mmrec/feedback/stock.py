"""Every replica follows the acknowledged stock and price changes (`POST /v1/admin/catalog`).

Changes are written to the feedback store first (durable), then each replica reads the ones it
has not applied yet, at most once per ``interval_s``, just before it answers a request — so a
change reaches every replica that serves within about a second, with no background thread and
no broadcast; a recommender loaded by a reload has applied none and catches up at its first
request.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from mmrec.feedback.store import FeedbackStore
from mmrec.recommend.inventory import apply_stock


class StockSync:
    """Args:
        store: the feedback store holding the changes.
        interval_s: how often a replica looks for new changes (0: at every request).
    """

    def __init__(self, store: FeedbackStore, interval_s: float = 1.0):
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s}")
        self.store = store
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._next = 0.0

    def sync(self, rec: Any, *, now: bool = False) -> int:
        """Apply the changes ``rec`` has not seen; returns how many items changed."""
        t = time.monotonic()
        fresh = not hasattr(rec, "stock_seq")  # a new recommender (start, reload) catches up at once
        if not (now or fresh) and t < self._next:
            return 0
        with self._lock:
            self._next = t + self.interval_s
            seq = getattr(rec, "stock_seq", 0)
            ups = self.store.stock_updates_since(seq)
            changed = apply_stock(rec, [(i, st, p) for _, i, st, p in ups]) if ups else 0
            rec.stock_seq = ups[-1][0] if ups else seq
            return changed
