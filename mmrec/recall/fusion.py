"""Reciprocal rank fusion of route results.

score(item) = sum over routes r that found it of weight_r / (k + rank_r(item)), rank 1-based
(Cormack et al., 2009). Ranks, not raw scores, are fused because the routes' scores live on
unrelated scales (cosine, BM25, weighted field matches, event counts). Every candidate keeps
each route's rank and score, which explanations and the ranker's features use.
"""

from __future__ import annotations

import heapq
from typing import Mapping, Sequence

from mmrec.recall.types import Candidate, RouteResult


def rrf(results: Sequence[RouteResult], weights: Mapping[str, float], *, k: float = 60.0,
        limit: int | None = None) -> list[Candidate]:
    """Fuse ranked lists; ties on the fused score go to the better best rank, then the item id.

    Args:
        results: one ranked list per route (names must be unique).
        weights: route name -> weight; a missing route weighs 1.0, weight 0 keeps its ranks on
            the candidates but gives no score.
        k: the RRF constant; larger flattens the gap between top and lower ranks.
        limit: keep this many candidates (default: all).
    """
    names = [r.name for r in results]
    if len(set(names)) != len(names):
        raise ValueError(f"route names must be unique, got {names}")
    # scores first, Candidate objects only for the kept ones: a photo query fuses ~600 route
    # entries to keep 48, and building every candidate was most of the fusion's cost
    score: dict[str, float] = {}
    best: dict[str, int] = {}
    found: list[dict[str, tuple[int, float]]] = []  # per route: item -> (rank, score), first listing
    for res in results:
        w = float(weights.get(res.name, 1.0))
        first: dict[str, tuple[int, float]] = {}
        for rank, (item_id, s) in enumerate(zip(res.item_ids, res.scores), start=1):
            if item_id in first:  # a route listing an item twice: keep its best rank
                continue
            first[item_id] = (rank, s)
            score[item_id] = score.get(item_id, 0.0) + w / (k + rank)
            if rank < best.get(item_id, rank + 1):
                best[item_id] = rank
        found.append(first)
    order = lambda i: (-score[i], best[i], i)  # noqa: E731
    kept = sorted(score, key=order) if limit is None else heapq.nsmallest(limit, score, key=order)
    out = []
    for item_id in kept:
        c = Candidate(item_id=item_id, score=score[item_id])
        for name, first in zip(names, found):
            hit = first.get(item_id)
            if hit is not None:
                c.routes[name] = hit[0]
                c.route_scores[name] = float(hit[1])
        out.append(c)
    return out
