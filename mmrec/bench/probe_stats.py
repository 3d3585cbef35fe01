"""Statistics of the component probes and timings: retrieval precision and recall, the ranking
metrics of one scored list, latency percentiles.

Unlike the judges (`mmrec.bench.judges`) they read no ground truth row: they summarise lists
and numbers that the caller has already judged or measured.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence


def recall_at(retrieved: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """Share of ``relevant`` items found in the first ``k`` retrieved."""
    rel = set(relevant)
    if not rel:
        raise ValueError("recall_at needs at least one relevant item")
    return len(rel & set(retrieved[:k])) / len(rel)


def precision_at(retrieved: Sequence[str], is_relevant: Mapping[str, bool], k: int) -> float | None:
    """Share of the first ``k`` retrieved that are relevant (None when nothing was retrieved)."""
    top = list(retrieved[:k])
    if not top:
        return None
    return sum(bool(is_relevant.get(i)) for i in top) / len(top)


def ranking_metrics(scores: Sequence[float], labels: Sequence[int], k: int = 10) -> dict[str, float] | None:
    """NDCG@k, hit@k and AUC of one scored candidate list with binary labels.

    Ties are broken against the positives (a model that scores everything equal earns no
    credit). None when the list has no positive or no negative.
    """
    n = len(scores)
    if n != len(labels):
        raise ValueError(f"{n} scores but {len(labels)} labels")
    pos = [i for i in range(n) if labels[i]]
    neg = [i for i in range(n) if not labels[i]]
    if not pos or not neg:
        return None
    order = sorted(range(n), key=lambda i: (-scores[i], labels[i]))
    dcg = sum(1.0 / math.log2(r + 2) for r, i in enumerate(order[:k]) if labels[i])
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(pos), k)))
    hit = float(any(labels[i] for i in order[:k]))
    wins = 0.0
    for p in pos:
        for q in neg:
            wins += 1.0 if scores[p] > scores[q] else 0.0
    return {"ndcg": dcg / ideal, "hit": hit, "auc": wins / (len(pos) * len(neg))}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in [0, 100]); None for no values."""
    xs = sorted(values)
    if not xs:
        return None
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def latency_summary(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p90/p99, mean, max and count of latencies in ms (None where there are none)."""
    return {"p50": percentile(values_ms, 50), "p90": percentile(values_ms, 90),
            "p99": percentile(values_ms, 99),
            "mean": sum(values_ms) / len(values_ms) if values_ms else None,
            "max": max(values_ms) if values_ms else None, "count": len(values_ms)}
