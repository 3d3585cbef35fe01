"""Every replica follows the acknowledged catalog changes (`POST /v1/admin/catalog`): stock and
price changes, new or replaced items, deletions.

Changes are written to the feedback store first (durable), then each replica reads the ones it
has not applied yet, at most once per ``interval_s``, just before it answers a request — so a
change reaches every replica that serves within about a second, with no background thread and
no broadcast; a recommender loaded by a reload has applied none and catches up at its first
request. Stock and price changes are applied in place; a batch holding an upsert or a delete
builds a derived recommender that replaces the served one in the holder
(`mmrec.recommend.catalog_live`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from mmrec.feedback.store import FeedbackStore
from mmrec.recommend.catalog_live import apply_changes


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

    def sync(self, holder: Any, *, now: bool = False) -> int:
        """Apply the changes the holder's recommender has not seen; returns how many items changed.

        Args:
            holder: a `RecommenderHolder` (its recommender may be replaced by a derived one),
                or a recommender (in place only: a batch with upserts or deletes is refused).
            now: look now, whatever the interval (the admin route, before it answers).
        """
        t = time.monotonic()
        rec = getattr(holder, "current", holder)
        fresh = not hasattr(rec, "stock_seq")  # a new recommender (start, reload) catches up at once
        if not (now or fresh) and t < self._next:
            return 0
        with self._lock:
            self._next = t + self.interval_s
            rec = getattr(holder, "current", holder)  # another thread may have swapped it meanwhile
            seq = getattr(rec, "stock_seq", 0)
            ups = self.store.catalog_changes_since(seq)
            if not ups:
                rec.stock_seq = seq
                return 0
            last = ups[-1][0]
            served, changed = apply_changes(rec, [u[1:] for u in ups], seq=last)
            served.stock_seq = last
            for r in (served, *getattr(served, "variants", {}).values()):
                r.versions["catalog_seq"] = str(last)  # answers say which live changes they include
            if served is not rec:
                if not hasattr(holder, "swap"):
                    raise TypeError("upserts and deletes replace the recommender: pass its holder")
                holder.swap(rec, served)
            return changed
