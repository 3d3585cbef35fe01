"""Reciprocal rank fusion of route results.

score(item) = sum over routes r that found it of weight_r / (k + rank_r(item)), rank 1-based
(Cormack et al., 2009). Ranks, not raw scores, are fused because the routes' scores live on
unrelated scales (cosine, BM25, weighted field matches, event counts). Every candidate keeps
each route's rank and score, which explanations and the ranker's features use.
"""

from __future__ import annotations

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
    cands: dict[str, Candidate] = {}
    for res in results:
        w = float(weights.get(res.name, 1.0))
        for rank, (item_id, s) in enumerate(zip(res.item_ids, res.scores), start=1):
            c = cands.get(item_id)
            if c is None:
                c = cands[item_id] = Candidate(item_id=item_id, score=0.0)
            if res.name in c.routes:  # a route listing an item twice: keep its best rank
                continue
            c.routes[res.name] = rank
            c.route_scores[res.name] = float(s)
            c.score += w / (k + rank)
    out = sorted(cands.values(), key=lambda c: (-c.score, min(c.routes.values()), c.item_id))
    return out if limit is None else out[:limit]
