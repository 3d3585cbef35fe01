"""The FAISS structures behind `VectorIndex`: which kind, and how each is built, trained,
filled and given its search parameters.

Index kinds, chosen by size (`IndexConfig.flat_max`):
- ``flat``: IndexIDMap2(IndexFlatIP): exact; real removal.
- ``ivf_flat``: IndexIVFFlat with the labels as ids: real removal.
- ``ivf_sq8`` / ``ivf_pq``: IndexRefineFlat over IVF with 8-bit scalar or product-quantised
  codes: a compressed scan, then exact re-scoring of ``refine_k_factor * k`` candidates. SQ8
  trains in seconds (min/max per dimension); PQ trains k-means per sub-space, 4x smaller codes.
- ``hnsw``: IndexHNSWFlat, label == faiss id.
HNSW and the refined IVF kinds cannot delete: removed labels are tombstones, which
`VectorIndex` clears in every search bitmap and compacts away.

faiss is imported on first use (``faiss_module``), so importing mmrec.recall stays light.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mmrec.errors import ArtifactError, InputError
from mmrec.recall.config import IndexConfig

REFINE_KINDS = ("ivf_pq", "ivf_sq8")  # compressed IVF scan + exact re-scoring (IndexRefineFlat)
TOMBSTONE_KINDS = ("hnsw", *REFINE_KINDS)
KINDS = ("flat", "hnsw", "ivf_flat", *REFINE_KINDS)
IVF_KINDS = ("ivf_flat", *REFINE_KINDS)


def faiss_module():
    """The faiss module, imported on first use."""
    import faiss

    return faiss


def gpu_available() -> bool:
    """Whether this faiss build sees a CUDA GPU."""
    faiss = faiss_module()
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def choose_kind(n: int, cfg: IndexConfig) -> str:
    """``flat`` up to ``cfg.flat_max`` vectors, else the configured ANN kind."""
    return "flat" if n <= cfg.flat_max else cfg.ann


def check_vectors(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    """``vectors`` as contiguous float32 [n, dim]; refuses other shapes and NaN/inf."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if v.ndim != 2 or (dim is not None and v.shape[1] != dim):
        raise InputError(f"vectors must be float32 [n, {dim or 'd'}], got shape {v.shape}")
    if not np.isfinite(v).all():
        raise InputError("vectors contain NaN or inf; re-embed the affected items")
    return v


def search_params(kind: str, cfg: IndexConfig, sel: Any, n_sel: int, n_labels: int) -> Any:
    """faiss search parameters of ``kind`` with selector ``sel`` (None: unfiltered) keeping
    ``n_sel`` of ``n_labels`` labels."""
    faiss = faiss_module()
    if kind == "hnsw":
        # a filter that keeps a share s of the graph needs a wider beam to fill k results
        share = max(n_sel / max(1, n_labels), 1e-3)
        ef = int(min(4096, math.ceil(cfg.hnsw.ef_search / math.sqrt(share))))
        return faiss.SearchParametersHNSW(sel=sel, efSearch=ef)
    if kind == "ivf_flat":
        return faiss.SearchParametersIVF(sel=sel, nprobe=cfg.ivf.nprobe)
    if kind in REFINE_KINDS:
        base = faiss.SearchParametersIVF(sel=sel, nprobe=cfg.ivf.nprobe)
        p = faiss.IndexRefineSearchParameters(k_factor=cfg.ivf.refine_k_factor,
                                              base_index_params=base)
        p.sel = sel
        p._base = base  # keep the python object alive as long as the params
        return p
    return faiss.SearchParameters(sel=sel) if sel is not None else None


def top_rows(scores: np.ndarray, k: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top ``k`` of ``scores`` [nq, m] as (scores, labels[index]) best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    sc = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-sc, axis=1, kind="stable")
    part = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(scores, part, axis=1).astype(np.float32), labels[part]


def apply_threads(cfg: IndexConfig) -> None:
    """Set faiss's OpenMP thread count from the config (0 keeps the library default)."""
    # faiss's OpenMP threads spin while waiting: on a shared machine, 1 thread can be much
    # faster than 2 busy ones, hence a config knob rather than the library default
    if cfg.threads:
        faiss_module().omp_set_num_threads(cfg.threads)


def new_faiss_index(kind: str, dim: int, n: int, cfg: IndexConfig) -> Any:
    """An empty (maybe untrained) faiss index of ``kind`` for ``n`` vectors of ``dim``."""
    faiss = faiss_module()
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, cfg.hnsw.m, ip)
        index.hnsw.efConstruction = cfg.hnsw.ef_construction
        index.hnsw.efSearch = cfg.hnsw.ef_search
        return index
    nlist = cfg.ivf.nlist or max(1, int(4 * math.sqrt(max(n, 1))))
    nlist = min(nlist, max(1, n // 39))  # faiss wants >= 39 training points per centroid
    if kind == "ivf_flat":
        index = faiss.index_factory(dim, f"IVF{nlist},Flat", ip)
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = cfg.ivf.nprobe
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct by label, removable
        return index
    if kind == "ivf_pq":
        if dim % cfg.ivf.pq_m:
            raise InputError(f"ivf.pq_m={cfg.ivf.pq_m} must divide the vector dim {dim}")
        # RFlat: IndexRefineFlat keeps the raw vectors and re-scores k_factor * k PQ candidates
        index = faiss.index_factory(dim, f"IVF{nlist},PQ{cfg.ivf.pq_m}x{cfg.ivf.pq_bits},RFlat", ip)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.nprobe = cfg.ivf.nprobe
        # polysemous codes serve Hamming pre-filtering, unused here, and make training ~50x slower
        ivf.do_polysemous_training = False
        index.k_factor = cfg.ivf.refine_k_factor
        return index
    if kind == "ivf_sq8":
        index = faiss.index_factory(dim, f"IVF{nlist},SQ8,RFlat", ip)
        faiss.extract_index_ivf(index).nprobe = cfg.ivf.nprobe
        index.k_factor = cfg.ivf.refine_k_factor
        return index
    raise InputError(f"unknown index kind {kind!r}; valid: {', '.join(KINDS)}")


def train_sample(v: np.ndarray, cfg: IndexConfig) -> np.ndarray:
    """At most ``cfg.ivf.train_size`` rows of ``v`` (seeded) to train IVF centroids / codes on."""
    n = min(len(v), cfg.ivf.train_size)
    if n == len(v):
        return v
    rng = np.random.default_rng(cfg.seed)
    return v[np.sort(rng.choice(len(v), n, replace=False))]


def add_vectors(index: Any, kind: str, v: np.ndarray, labels: np.ndarray) -> None:
    """Add ``v`` under ``labels`` (sequential faiss ids for the kinds that cannot take ids)."""
    if kind in TOMBSTONE_KINDS:
        if len(labels) and index.ntotal != labels[0]:
            raise ArtifactError(f"{kind} index holds {index.ntotal} vectors but the next label is "
                                f"{labels[0]}; the label map is out of sync")
        index.add(v)  # faiss ids of these kinds are sequential == labels
    else:
        index.add_with_ids(v, labels)
