"""FAISS inner-product index over L2-normalised item vectors, with filters inside the search.

Labels: every vector gets an int64 label, assigned in order and never reused; ``item_ids[label]``
is the stable id map and `ItemMeta` row ``label`` its filter metadata. Filters become a bitmap
over labels handed to faiss as an ``IDSelectorBitmap`` in the search parameters, so faiss only
ever scores allowed items: nothing is over-fetched and dropped afterwards.

The faiss structures of each kind (flat, IVF, refined IVF, HNSW) are made in
`mmrec.recall.faiss_index`. HNSW and the refined IVF kinds cannot delete: removed labels are
tombstones (cleared in every search bitmap) and the structure is rebuilt once they exceed
``compact_dead_fraction``.

Filtered search, by what the filter keeps:
- at most ``exact_below`` items (kinds with raw vector storage): exactly those are scored;
- IVF kinds: filter-aware probing (`_search_ivf`): the nearest lists that hold allowed items,
  since filters correlate with clusters and the nearest lists may hold none;
- otherwise faiss's own search with the selector (HNSW widens its beam as the filter narrows).

Updates (add, remove, re-embed, metadata) never rebuild the structure;
`mmrec.recall.index_files` writes and reads the folder of an index artifact, which
`mmrec.recall.build` publishes atomically.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mmrec.errors import InputError
from mmrec.recall.config import IndexConfig
from mmrec.recall.faiss_index import (IVF_KINDS, REFINE_KINDS, TOMBSTONE_KINDS, add_vectors,
                                      apply_threads, check_vectors, choose_kind, faiss_module,
                                      gpu_available, new_faiss_index, search_params, top_rows,
                                      train_sample)
from mmrec.recall.meta import ItemMeta
from mmrec.recall.types import Filters

_NO_FILTER_KEY = Filters(in_stock_only=False).key()


class VectorIndex:
    """A FAISS index + stable id map + filter metadata. Build with `build`, or read a saved one
    with `mmrec.recall.index_files.read_index_dir`."""

    def __init__(self, cfg: IndexConfig, kind: str, dim: int, index: Any, item_ids: list[str],
                 alive: np.ndarray, meta: ItemMeta, encoder_id: str | None,
                 tags: list[str | None] | None = None) -> None:
        self.cfg = cfg
        self.kind = kind
        self.dim = dim
        self.index = index
        self.item_ids = item_ids                # label -> item id (tombstoned labels keep theirs)
        self.alive = alive                      # label -> still in the index
        self.meta = meta                        # label -> filter metadata
        self.encoder_id = encoder_id
        # label -> what the vector was made from (image sha256): tells "changed" from "same"
        self.tags = list(tags) if tags is not None else [None] * len(item_ids)
        self.label_of = {iid: i for i, iid in enumerate(item_ids) if alive[i]}
        self._gpu_index = None
        self._generation = 0  # bumped on every change: invalidates cached selections
        self._tombstones = 0  # labels marked dead by `tombstone` while faiss still holds them
        self._sel_cache: OrderedDict[tuple, tuple] = OrderedDict()
        self._lock = threading.Lock()  # searches may run in threads; the cache is shared
        self._lists: tuple[int, np.ndarray] | None = None  # (generation, list of each label)
        self._centroid_cache: tuple[Any, np.ndarray] | None = None
        apply_threads(cfg)
        if cfg.device == "gpu" and not gpu_available():
            raise InputError("index.device=gpu, but this faiss build sees no GPU (install the "
                             "'gpu' extra on a CUDA machine); use device=auto or cpu")
        # GPU copies only serve unfiltered searches (GPU indexes ignore IDSelectors) and only
        # flat/IVF-flat exist on GPU; the CPU index stays the source of truth for updates.
        if kind in ("flat", "ivf_flat") and cfg.device != "cpu" and gpu_available():
            self._to_gpu()

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, item_ids: Sequence[str], rows: Sequence[dict[str, Any]],
              cfg: IndexConfig, *, encoder_id: str | None = None, kind: str | None = None,
              tags: Sequence[str | None] | None = None) -> "VectorIndex":
        """Index ``vectors`` (row i = ``item_ids[i]``, filter metadata ``rows[i]``, source tag ``tags[i]``)."""
        v = check_vectors(vectors)
        if len(item_ids) != len(v) or len(rows) != len(v):
            raise InputError(f"{len(v)} vectors but {len(item_ids)} ids and {len(rows)} metadata rows")
        if len(set(item_ids)) != len(item_ids):
            raise InputError("item ids must be unique within one index build")
        kind = kind or choose_kind(len(v), cfg)
        apply_threads(cfg)
        index = new_faiss_index(kind, v.shape[1], len(v), cfg)
        if not index.is_trained:
            index.train(train_sample(v, cfg))
        add_vectors(index, kind, v, np.arange(len(v), dtype=np.int64))
        meta = ItemMeta.from_rows(rows, cfg.filter_cache)
        return cls(cfg, kind, v.shape[1], index, list(item_ids), np.ones(len(v), bool), meta,
                   encoder_id, list(tags) if tags is not None else None)

    # -- updates (no rebuild) ---------------------------------------------------------------
    @property
    def n_alive(self) -> int:
        return len(self.label_of)

    @property
    def n_dead(self) -> int:
        return len(self.item_ids) - self.n_alive

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.label_of

    def __len__(self) -> int:
        return self.n_alive

    def upsert(self, item_ids: Sequence[str], vectors: np.ndarray, rows: Sequence[dict[str, Any]],
               tags: Sequence[str | None] | None = None) -> tuple[int, int]:
        """Add new items and replace the vectors of existing ones; returns (added, updated)."""
        v = check_vectors(vectors, self.dim)
        if len(item_ids) != len(v) or len(rows) != len(v):
            raise InputError(f"{len(v)} vectors but {len(item_ids)} ids and {len(rows)} rows")
        if len(set(item_ids)) != len(item_ids):
            raise InputError("item ids must be unique within one upsert")
        updated = [i for i in item_ids if i in self.label_of]
        self._drop_labels([self.label_of[i] for i in updated])
        start = len(self.item_ids)
        labels = np.arange(start, start + len(v), dtype=np.int64)
        add_vectors(self.index, self.kind, v, labels)
        self.item_ids.extend(item_ids)
        self.tags.extend(tags if tags is not None else [None] * len(item_ids))
        self.alive = np.concatenate([self.alive, np.ones(len(v), bool)])
        self.meta.extend(rows)
        for iid, lab in zip(item_ids, labels):
            self.label_of[iid] = int(lab)
        self._after_change()
        return len(v) - len(updated), len(updated)

    def remove(self, item_ids: Sequence[str]) -> int:
        """Remove items (unknown ids are ignored); returns how many were removed."""
        labels = [self.label_of.pop(i) for i in dict.fromkeys(item_ids) if i in self.label_of]
        self._drop_labels(labels)
        self._after_change()
        return len(labels)

    def tombstone(self, item_ids: Sequence[str]) -> int:
        """Mark items dead without touching the faiss structure, which may be searched by other
        threads meanwhile (faiss adds and removals are not safe beside searches; flipping flags
        is); `compact` drops them. Returns how many were alive."""
        labels = [self.label_of.pop(i) for i in dict.fromkeys(item_ids) if i in self.label_of]
        if labels:
            self.alive[np.asarray(labels, dtype=np.int64)] = False
            self._tombstones += len(labels)
            self._changed()
        return len(labels)

    def set_metadata(self, item_ids: Sequence[str], rows: Sequence[dict[str, Any]]) -> int:
        """Change filter metadata (stock, price, ...) without touching vectors; returns rows changed."""
        pairs = [(self.label_of[i], r) for i, r in zip(item_ids, rows) if i in self.label_of]
        if pairs:
            self.meta.set_rows([p for p, _ in pairs], [r for _, r in pairs])
            self._changed()
        return len(pairs)

    def _drop_labels(self, labels: list[int]) -> None:
        if not labels:
            return
        arr = np.asarray(labels, dtype=np.int64)
        self.alive[arr] = False
        if self.kind not in TOMBSTONE_KINDS:
            faiss = faiss_module()
            # the IVF direct map (hashtable, for reconstruct) only removes by IDSelectorArray
            sel = faiss.IDSelectorArray(arr) if self.kind == "ivf_flat" else faiss.IDSelectorBatch(arr)
            self.index.remove_ids(sel)
        self._changed()

    def _changed(self) -> None:
        self._generation += 1
        with self._lock:
            self._sel_cache.clear()

    def _after_change(self) -> None:
        self._changed()
        if self.kind in TOMBSTONE_KINDS and self.n_dead > self.cfg.compact_dead_fraction * max(1, len(self.item_ids)):
            self.compact()
        if self._gpu_index is not None:
            self._to_gpu()

    def compact(self) -> None:
        """Rebuild the structure from the live vectors (drops tombstones; labels are renumbered)."""
        live = np.flatnonzero(self.alive)
        vectors = self.vectors(live)
        index = new_faiss_index(self.kind, self.dim, len(live), self.cfg)
        if not index.is_trained:
            index.train(train_sample(vectors, self.cfg))
        add_vectors(index, self.kind, vectors, np.arange(len(live), dtype=np.int64))
        self.index = index
        self.item_ids = [self.item_ids[i] for i in live]
        self.tags = [self.tags[i] for i in live]
        self.alive = np.ones(len(live), bool)
        self.meta = self.meta.take(live)
        self.label_of = {iid: i for i, iid in enumerate(self.item_ids)}
        self._tombstones = 0
        self._changed()

    # -- vectors --------------------------------------------------------------------------
    def _flat_storage(self) -> Any | None:
        """The IndexFlat holding raw vectors by label (hnsw storage, ivf_pq refine), else None."""
        faiss = faiss_module()
        if self.kind == "hnsw":
            return faiss.downcast_index(self.index.storage)
        if self.kind in REFINE_KINDS:
            return faiss.downcast_index(faiss.downcast_index(self.index).refine_index)
        return None

    def _raw_view(self) -> np.ndarray | None:
        """Zero-copy [labels, d] view of the stored float vectors (hnsw / ivf_pq), else None."""
        flat = self._flat_storage()
        if flat is None:
            return None
        n = flat.ntotal
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        return faiss_module().rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)

    def vectors(self, labels: np.ndarray) -> np.ndarray:
        """A copy of the vectors of ``labels``."""
        view = self._raw_view()
        if view is not None:
            return np.array(view[labels])
        return np.stack([self.index.reconstruct(int(lab)) for lab in labels]) if len(labels) else \
            np.zeros((0, self.dim), np.float32)

    def tag_of(self, item_id: str) -> str | None:
        return self.tags[self.label_of[item_id]] if item_id in self.label_of else None

    def metadata_of(self, item_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        return [self.meta.rows([self.label_of[i]])[0] if i in self.label_of else None for i in item_ids]

    def vector_of(self, item_id: str) -> np.ndarray:
        if item_id not in self.label_of:
            raise InputError(f"item {item_id!r} is not in the index")
        return self.vectors(np.array([self.label_of[item_id]]))[0]

    # -- search ---------------------------------------------------------------------------
    def allowed(self, filters: Filters | None) -> np.ndarray:
        """Boolean mask over labels: alive, passing ``filters``, not excluded."""
        mask = self.meta.mask(filters, base=self.alive)
        if filters is not None and filters.exclude_ids:
            ex = [self.label_of[i] for i in filters.exclude_ids if i in self.label_of]
            mask[ex] = False
        return mask

    def _selection(self, filters: Filters) -> _Selection:
        """What ``filters`` allow, in the forms the search paths need (see `_Selection`).

        Cached per filter (LRU, dropped on any change): a million-label mask costs a few ms to
        build, a cache hit microseconds. Exclusions by id are applied to a copy.
        """
        key = (filters.key(), self._generation)
        with self._lock:
            hit = self._sel_cache.get(key)
            if hit is not None:
                self._sel_cache.move_to_end(key)
        if hit is None:
            mask = self.meta.mask(filters.model_copy(update={"exclude_ids": []}), base=self.alive)
            hit = self._make_selection(mask)
            if self.cfg.filter_cache:
                with self._lock:
                    self._sel_cache[key] = hit
                    while len(self._sel_cache) > self.cfg.filter_cache:
                        self._sel_cache.popitem(last=False)
        ex = np.array(sorted({self.label_of[i] for i in filters.exclude_ids if i in self.label_of}),
                      dtype=np.int64)
        if not len(ex):
            return hit
        on = ((hit.bitmap[ex >> 3] >> (ex & 7)) & 1).astype(bool)
        ex = ex[on]
        bitmap = hit.bitmap.copy()
        np.bitwise_and.at(bitmap, ex >> 3, ~(np.uint8(1) << (ex & 7).astype(np.uint8)))
        labels = hit.labels[~np.isin(hit.labels, ex)] if hit.labels is not None else None
        per_list = None
        if hit.per_list is not None:
            per_list = hit.per_list.copy()
            np.subtract.at(per_list, self._list_of_labels()[ex], 1)
        return _Selection(bitmap, hit.n_sel - len(ex), labels, per_list)

    def _make_selection(self, mask: np.ndarray) -> "_Selection":
        n_sel = int(mask.sum())
        labels = per_list = None
        if n_sel <= self.cfg.exact_below and self._flat_storage() is not None:
            labels = np.flatnonzero(mask)
        elif self.kind in IVF_KINDS:
            lists = self._list_of_labels()
            per_list = np.bincount(lists[mask], minlength=self._ivf().nlist)
        # faiss reads bit (i & 7) of byte (i >> 3): numpy's little bit order
        return _Selection(np.packbits(mask, bitorder="little"), n_sel, labels, per_list)

    def search(self, queries: np.ndarray, k: int, filters: Filters | None = None,
               ) -> list[list[tuple[str, float]]]:
        """Top ``k`` (item_id, inner product) per query among items allowed by ``filters``."""
        q = check_vectors(np.atleast_2d(queries), self.dim)
        if k <= 0 or self.n_alive == 0:
            return [[] for _ in range(len(q))]
        unfiltered = (filters is None or (filters.key() == _NO_FILTER_KEY and not filters.exclude_ids)) \
            and not (self.kind in TOMBSTONE_KINDS and self.n_dead) and not self._tombstones
        if unfiltered:
            D, I = self._search_plain(q, k)
            return self._pairs(D, I)
        sel = self._selection(filters or Filters(in_stock_only=False))
        if sel.n_sel == 0:
            return [[] for _ in range(len(q))]
        k = min(k, sel.n_sel)
        if sel.labels is not None:
            D, I = self._search_exact(q, k, sel.labels)
        elif sel.per_list is not None:
            D, I = self._search_ivf(q, k, sel)
        else:
            faiss = faiss_module()
            selector = faiss.IDSelectorBitmap(len(self.item_ids), faiss.swig_ptr(sel.bitmap))
            # GPU indexes ignore IDSelectors (faiss#3924): filtered searches use the CPU index.
            params = search_params(self.kind, self.cfg, selector, sel.n_sel, len(self.item_ids))
            D, I = self.index.search(q, k, params=params)
        return self._pairs(D, I)

    def _search_plain(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        index = self._gpu_index or self.index
        params = search_params(self.kind, self.cfg, None, len(self.item_ids), len(self.item_ids))
        return index.search(q, min(k, self.n_alive), params=params)

    def _search_exact(self, q: np.ndarray, k: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score exactly the selected vectors: the right tool when a filter keeps few items."""
        sub = self._raw_view()[labels]
        scores = q @ sub.T
        return top_rows(scores, k, labels)

    def _search_ivf(self, q: np.ndarray, k: int, sel: "_Selection") -> tuple[np.ndarray, np.ndarray]:
        """Filter-aware IVF probing: visit the lists nearest to the query that hold allowed items.

        Filters correlate with the embedding (a category lives in a few clusters), so the lists
        nearest to a query may hold no allowed item at all. Lists are taken in order of centroid
        similarity, skipping those without allowed items, until they hold as many allowed items
        as an unfiltered search would scan (``nprobe`` x mean list size), and at least ``nprobe``
        lists. The selector still checks every entry, so only allowed items are scored.
        """
        faiss = faiss_module()
        ivf = self._ivf()
        nlist = ivf.nlist
        # every list ranked by centroid similarity; numpy on the (cached) centroids is ~10x
        # cheaper than a faiss top-nlist heap for a single query
        centroid_scores = q @ self._centroids().T
        coarse_i = np.argsort(-centroid_scores, axis=1)
        coarse_d = np.take_along_axis(centroid_scores, coarse_i, axis=1)
        target = min(sel.n_sel, self.cfg.ivf.nprobe * ivf.ntotal / nlist)
        chosen = []
        for row_i, row_d in zip(coarse_i, coarse_d):
            counts = sel.per_list[row_i]
            keep = counts > 0
            lists, dists = row_i[keep], row_d[keep]
            m = int(np.searchsorted(np.cumsum(counts[keep]), target)) + 1
            m = max(m, min(self.cfg.ivf.nprobe, len(lists)))
            chosen.append((lists[:m], dists[:m]))
        width = max(1, max(len(c[0]) for c in chosen))
        assign = np.full((len(q), width), -1, np.int64)  # -1: faiss skips the slot
        cdis = np.zeros((len(q), width), np.float32)
        for r, (lists, dists) in enumerate(chosen):
            assign[r, :len(lists)], cdis[r, :len(lists)] = lists, dists
        refine = self.kind in REFINE_KINDS
        kk = min(sel.n_sel, int(math.ceil(k * self.cfg.ivf.refine_k_factor))) if refine else k
        D = np.empty((len(q), kk), np.float32)
        I = np.empty((len(q), kk), np.int64)
        selector = faiss.IDSelectorBitmap(len(self.item_ids), faiss.swig_ptr(sel.bitmap))
        params = faiss.SearchParametersIVF(sel=selector, nprobe=width)
        # the python wrapper refuses params here; the C++ method takes them
        ivf.search_preassigned_c(len(q), faiss.swig_ptr(np.ascontiguousarray(q)), kk,
                                 faiss.swig_ptr(assign), faiss.swig_ptr(cdis), faiss.swig_ptr(D),
                                 faiss.swig_ptr(I), False, params)
        if not refine:
            return D, I
        view = self._raw_view()  # exact re-scoring of the compressed-code candidates
        out_d = np.full((len(q), k), -np.inf, np.float32)
        out_i = np.full((len(q), k), -1, np.int64)
        for r in range(len(q)):
            cand = I[r][I[r] >= 0]
            if len(cand):
                d, i = top_rows((view[cand] @ q[r])[None, :], k, cand)
                out_d[r, :d.shape[1]], out_i[r, :i.shape[1]] = d[0], i[0]
        return out_d, out_i

    def _ivf(self) -> Any:
        faiss = faiss_module()
        return faiss.downcast_index(faiss.extract_index_ivf(self.index))

    def _centroids(self) -> np.ndarray:
        """IVF centroids [nlist, d] (fixed once trained; compaction retrains, hence the reset)."""
        if self._centroid_cache is None or self._centroid_cache[0] is not self.index:
            ivf = self._ivf()
            flat = faiss_module().downcast_index(ivf.quantizer)
            c = np.array(faiss_module().rev_swig_ptr(flat.get_xb(), ivf.nlist * self.dim)).reshape(ivf.nlist, self.dim)
            self._centroid_cache = (self.index, c)
        return self._centroid_cache[1]

    def _list_of_labels(self) -> np.ndarray:
        """Inverted list of every label (-1 when not in the index), rebuilt after changes."""
        if self._lists is None or self._lists[0] != self._generation:
            faiss = faiss_module()
            ivf = self._ivf()
            out = np.full(len(self.item_ids), -1, np.int64)
            inv = ivf.invlists
            for lst in range(ivf.nlist):
                size = inv.list_size(lst)
                if size:
                    ids = faiss.rev_swig_ptr(inv.get_ids(lst), size)
                    out[np.asarray(ids, dtype=np.int64)] = lst
            self._lists = (self._generation, out)
        return self._lists[1]

    def _pairs(self, D: np.ndarray, I: np.ndarray) -> list[list[tuple[str, float]]]:
        ids, alive = self.item_ids, self.alive
        out = []
        for drow, irow in zip(D.tolist(), I.tolist()):  # python ints/floats: fast to index with
            out.append([(ids[i], d) for d, i in zip(drow, irow) if i >= 0 and alive[i]])
        return out

    def _to_gpu(self) -> None:
        faiss = faiss_module()
        if not hasattr(self, "_gpu_res"):
            self._gpu_res = faiss.StandardGpuResources()
        self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_res, 0, self.index)


@dataclass(frozen=True)
class _Selection:
    """The items a filter allows: a bitmap for faiss selectors; for selective filters on kinds
    with exact storage, the label list itself; for IVF kinds, allowed items per inverted list."""

    bitmap: np.ndarray
    n_sel: int
    labels: np.ndarray | None = None
    per_list: np.ndarray | None = None
