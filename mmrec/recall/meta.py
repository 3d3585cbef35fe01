"""Filterable item metadata as coded numpy columns, and the boolean masks `Filters` select.

Every route filters through `ItemMeta.mask`, so "in stock, women, tops" means the same in the
vector index, BM25, attribute match and popularity. Categorical values are stored as int32
codes into a per-field vocabulary, so a filter is a lookup table applied to one code array:
about a millisecond per field for a million items.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Iterable, Sequence

import numpy as np

from mmrec.recall.config import FILTER_FIELDS
from mmrec.recall.types import Filters

META_COLUMNS = (*FILTER_FIELDS, "price", "in_stock")


class ItemMeta:
    """Row-aligned filter columns: row ``i`` describes one item (or one index label)."""

    def __init__(self, cache_size: int = 256) -> None:
        self.vocab: dict[str, dict[str, int]] = {f: {} for f in FILTER_FIELDS}
        self.codes: dict[str, np.ndarray] = {f: np.zeros(0, np.int32) for f in FILTER_FIELDS}
        self.price = np.zeros(0, np.float64)  # NaN = unknown
        self.in_stock = np.zeros(0, bool)
        self.generation = 0  # bumped on every change; invalidates cached masks
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # masks are cached across request threads

    def __len__(self) -> int:
        return len(self.in_stock)

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, Any]], cache_size: int = 256) -> "ItemMeta":
        meta = cls(cache_size)
        meta.extend(rows)
        return meta

    def _code(self, field: str, value: Any) -> int:
        if value is None:
            return -1  # matches no value filter
        v = str(value).strip().lower()
        voc = self.vocab[field]
        return voc.setdefault(v, len(voc))

    def _encode(self, rows: Sequence[dict[str, Any]]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        codes = {f: np.fromiter((self._code(f, r.get(f)) for r in rows), np.int32, len(rows))
                 for f in FILTER_FIELDS}
        price = np.array([np.nan if r.get("price") is None else float(r["price"]) for r in rows],
                         dtype=np.float64)
        stock = np.array([bool(r.get("in_stock", True)) for r in rows], dtype=bool)
        return codes, price, stock

    def extend(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append one row per item (dicts with slot, gender, category, usage, price, in_stock)."""
        codes, price, stock = self._encode(rows)
        for f in FILTER_FIELDS:
            self.codes[f] = np.concatenate([self.codes[f], codes[f]])
        self.price = np.concatenate([self.price, price])
        self.in_stock = np.concatenate([self.in_stock, stock])
        self._changed()

    def set_rows(self, positions: Sequence[int], rows: Sequence[dict[str, Any]]) -> None:
        """Overwrite the metadata of existing rows (e.g. an item went out of stock)."""
        pos = np.asarray(positions, dtype=np.int64)
        codes, price, stock = self._encode(rows)
        for f in FILTER_FIELDS:
            self.codes[f][pos] = codes[f]
        self.price[pos] = price
        self.in_stock[pos] = stock
        self._changed()

    def take(self, positions: np.ndarray) -> "ItemMeta":
        """A new ItemMeta holding only ``positions`` (same vocabularies), in that order."""
        out = ItemMeta(self._cache_size)
        out.vocab = {f: dict(v) for f, v in self.vocab.items()}
        out.codes = {f: c[positions] for f, c in self.codes.items()}
        out.price, out.in_stock = self.price[positions], self.in_stock[positions]
        return out

    def rows(self, positions: Iterable[int]) -> list[dict[str, Any]]:
        inv = {f: {c: v for v, c in voc.items()} for f, voc in self.vocab.items()}
        out = []
        for p in positions:
            r: dict[str, Any] = {f: inv[f].get(int(self.codes[f][p])) for f in FILTER_FIELDS}
            r["price"] = None if np.isnan(self.price[p]) else float(self.price[p])
            r["in_stock"] = bool(self.in_stock[p])
            out.append(r)
        return out

    def _changed(self) -> None:
        self.generation += 1
        with self._lock:
            self._cache.clear()

    # -- filtering ------------------------------------------------------------------------
    def mask(self, filters: Filters | None, base: np.ndarray | None = None) -> np.ndarray:
        """Rows that satisfy ``filters`` (and ``base``, e.g. "alive"); a fresh array the caller may edit.

        Exclusions by id are not handled here (rows are not ids); see the callers.
        """
        n = len(self)
        if filters is None:
            m = np.ones(n, bool)
        else:
            key = filters.key()
            with self._lock:
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.move_to_end(key)
            if cached is None:
                cached = self._compute(filters)
                if self._cache_size:
                    with self._lock:
                        self._cache[key] = cached
                        while len(self._cache) > self._cache_size:
                            self._cache.popitem(last=False)
            m = cached.copy()
        if base is not None:
            m &= base[:n]
        return m

    def _compute(self, f: Filters) -> np.ndarray:
        m = np.ones(len(self), bool)
        for field, allowed in (("slot", f.slots), ("gender", f.genders),
                               ("category", f.categories), ("usage", f.usages)):
            if allowed is None:
                continue
            voc = self.vocab[field]
            wanted = sorted({voc[v] for v in allowed if v in voc})
            codes = self.codes[field]
            if len(wanted) <= 4:  # a few comparisons beat a gather through a lookup table
                hit = np.zeros(len(codes), bool)
                for c in wanted:
                    hit |= codes == c
            else:
                table = np.zeros(len(voc) + 1, bool)  # last slot catches code -1 (no value)
                table[wanted] = True
                hit = table[codes]
            m &= hit
        if f.price_min is not None:
            m &= self.price >= f.price_min  # NaN compares False: unknown prices never qualify
        if f.price_max is not None:
            m &= self.price <= f.price_max
        if f.in_stock_only:
            m &= self.in_stock
        return m
