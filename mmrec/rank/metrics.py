"""Ranking and probability metrics over grouped candidate lists (pure numpy).

Groups are given by ``offsets`` (length n_groups + 1, rows of group g are
``offsets[g]:offsets[g+1]``). Ties are broken by a seeded random key, never by row order:
candidate lists are often written positive-first, and a popularity baseline full of zero
counts would otherwise be credited with the positive's position.
"""

from __future__ import annotations

import numpy as np


def offsets_from_sizes(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.asarray(sizes, np.int64))])


def _padded(values: np.ndarray, offsets: np.ndarray, fill: float) -> np.ndarray:
    sizes = np.diff(offsets)
    out = np.full((len(sizes), int(sizes.max(initial=0))), fill, np.float64)
    row = np.repeat(np.arange(len(sizes)), sizes)
    col = np.arange(len(values)) - np.repeat(offsets[:-1], sizes)
    out[row, col] = values
    return out


def ranked_gains(scores: np.ndarray, gains: np.ndarray, offsets: np.ndarray,
                 seed: int = 0) -> np.ndarray:
    """Per group, the gains in descending score order (random tie-break); padded with 0."""
    s = _padded(np.asarray(scores, np.float64), offsets, -np.inf)
    g = _padded(np.asarray(gains, np.float64), offsets, 0.0)
    tie = np.random.default_rng(seed).random(s.shape)
    order = np.lexsort((tie, -s), axis=1)
    return np.take_along_axis(g, order, axis=1)


def _dcg(gains_sorted: np.ndarray, k: int) -> np.ndarray:
    top = gains_sorted[:, :k]
    disc = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    return ((2.0 ** top - 1.0) * disc).sum(axis=1)


def ndcg_at_k(scores: np.ndarray, gains: np.ndarray, offsets: np.ndarray, k: int = 10,
              seed: int = 0) -> np.ndarray:
    """NDCG@k per group (exponential gain 2^g - 1); groups without any gain give NaN."""
    got = _dcg(ranked_gains(scores, gains, offsets, seed), k)
    ideal_sorted = -np.sort(-_padded(np.asarray(gains, np.float64), offsets, 0.0), axis=1)
    ideal = _dcg(ideal_sorted, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal > 0, got / ideal, np.nan)


def average_precision_at_k(scores: np.ndarray, labels: np.ndarray, offsets: np.ndarray,
                           k: int = 12, seed: int = 0, n_relevant: np.ndarray | None = None
                           ) -> np.ndarray:
    """AP@k per group as in the H&M competition: sum of precision at hits / min(k, #relevant).

    ``n_relevant`` overrides the count of relevant items (those absent from the candidates
    still count against recall). Groups with no relevant item give NaN.
    """
    rel = ranked_gains(scores, (np.asarray(labels) > 0).astype(np.float64), offsets, seed)[:, :k]
    hits = np.cumsum(rel, axis=1)
    prec = hits / np.arange(1, rel.shape[1] + 1)
    nrel = (_padded((np.asarray(labels) > 0).astype(np.float64), offsets, 0.0).sum(axis=1)
            if n_relevant is None else np.asarray(n_relevant, np.float64))
    denom = np.minimum(nrel, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (prec * rel).sum(axis=1) / denom, np.nan)


def recall_at_k(scores: np.ndarray, labels: np.ndarray, offsets: np.ndarray, k: int,
                seed: int = 0) -> np.ndarray:
    rel = ranked_gains(scores, (np.asarray(labels) > 0).astype(np.float64), offsets, seed)
    total = rel.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, rel[:, :k].sum(axis=1) / total, np.nan)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula, ties counted as half."""
    scores = np.asarray(scores, np.float64)
    y = np.asarray(labels) > 0
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), np.float64)
    # average ranks over ties
    uniq, first, counts = np.unique(s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15
                               ) -> dict[str, float]:
    """ECE with equal-mass bins (robust when most probabilities are tiny), plus the base rates."""
    p = np.asarray(probs, np.float64)
    y = (np.asarray(labels) > 0).astype(np.float64)
    if len(p) == 0:
        return {"ece": float("nan"), "mean_prob": float("nan"), "base_rate": float("nan")}
    order = np.argsort(p, kind="mergesort")
    parts = np.array_split(order, min(bins, len(p)))
    ece = sum(len(ix) * abs(p[ix].mean() - y[ix].mean()) for ix in parts if len(ix)) / len(p)
    return {"ece": float(ece), "mean_prob": float(p.mean()), "base_rate": float(y.mean())}


def summarise(values: np.ndarray) -> float:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")
