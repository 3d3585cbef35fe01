"""Retrieval metrics over ranked lists (pure numpy; used by training checks and `embed eval`).

A ranking is a sequence of gallery ids, best first; it may be shorter than the gallery (a
route that returns 200 candidates): anything it does not return counts as not retrieved.
"""

from __future__ import annotations

from typing import Hashable, Iterable, Sequence

import numpy as np


def known_item_metrics(rankings: Sequence[Sequence[Hashable]], targets: Sequence[Hashable],
                       ks: Iterable[int] = (1, 10)) -> dict[str, float]:
    """Recall@k and MRR when each query has exactly one right answer (title -> its product)."""
    ks = tuple(ks)
    hits = {k: 0 for k in ks}
    rr = 0.0
    for ranking, target in zip(rankings, targets, strict=True):
        rank = _rank_of(ranking, target)
        if rank is not None:
            rr += 1.0 / rank
            for k in ks:
                hits[k] += rank <= k
    n = max(1, len(targets))
    out = {f"R@{k}": hits[k] / n for k in ks}
    out["MRR"] = rr / n
    out["queries"] = len(targets)
    return out


def set_metrics(rankings: Sequence[Sequence[Hashable]], relevant: Sequence[set],
                ks: Iterable[int] = (1, 10)) -> dict[str, float]:
    """Mean P@k and average precision when each query has a set of relevant items.

    AP divides by the number of relevant items in the gallery, so a route that stops early
    (or misses relevant items) is penalised for what it did not return.
    """
    ks = tuple(ks)
    prec = {k: 0.0 for k in ks}
    ap_sum = 0.0
    for ranking, rel in zip(rankings, relevant, strict=True):
        if not rel:
            raise ValueError("every query needs at least one relevant item")
        hit = np.fromiter((r in rel for r in ranking), dtype=bool, count=len(ranking))
        for k in ks:
            prec[k] += hit[:k].sum() / k
        if hit.any():
            cum = np.cumsum(hit)
            pos = np.flatnonzero(hit)
            ap_sum += float((cum[pos] / (pos + 1)).sum()) / len(rel)
    n = max(1, len(relevant))
    out = {f"P@{k}": prec[k] / n for k in ks}
    out["AP"] = ap_sum / n
    out["queries"] = len(relevant)
    return out


def _rank_of(ranking: Sequence[Hashable], target: Hashable) -> int | None:
    for i, r in enumerate(ranking):
        if r == target:
            return i + 1
    return None


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise indices of the ``k`` highest scores, best first ([q, n] -> [q, min(k, n)])."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)
