"""Reciprocal rank fusion: hand-computed scores, weights, ties, provenance of every candidate."""

from __future__ import annotations

import pytest

from mmrec.recall.fusion import rrf
from mmrec.recall.types import Candidate, RouteResult


def _r(name, ids):
    return RouteResult(name, list(ids), [float(10 - i) for i in range(len(ids))])


def test_rrf_scores_and_order_match_the_formula():
    a = _r("text_image", ["x", "y", "z"])
    b = _r("bm25", ["z", "x", "w"])
    out = rrf([a, b], {"text_image": 1.0, "bm25": 1.0}, k=60)
    want = {"x": 1 / 61 + 1 / 62, "z": 1 / 63 + 1 / 61, "y": 1 / 62, "w": 1 / 63}
    assert [c.item_id for c in out] == ["x", "z", "y", "w"]
    for c in out:
        assert c.score == pytest.approx(want[c.item_id])
    x = out[0]
    assert x.routes == {"text_image": 1, "bm25": 2}
    assert x.route_scores == {"text_image": 10.0, "bm25": 9.0}


def test_weights_change_the_order_and_zero_weight_keeps_provenance():
    a = _r("text_image", ["x", "y"])
    b = _r("attribute", ["y", "x"])
    assert [c.item_id for c in rrf([a, b], {"text_image": 1.0, "attribute": 2.0})] == ["y", "x"]
    assert [c.item_id for c in rrf([a, b], {"text_image": 2.0, "attribute": 1.0})] == ["x", "y"]
    out = rrf([a, b], {"text_image": 1.0, "attribute": 0.0})
    assert [c.item_id for c in out] == ["x", "y"]
    assert out[1].routes == {"text_image": 2, "attribute": 1}  # found by both, scored by one


def test_ties_break_on_best_rank_then_id_and_limit_applies():
    a = _r("a", ["p", "q"])
    b = _r("b", ["q", "p"])  # p and q tie on score and best rank: id decides
    c = _r("c", ["r"])
    out = rrf([a, b, c], {}, k=10)
    assert [x.item_id for x in out] == ["p", "q", "r"]
    assert out[0].score == out[1].score
    assert [x.item_id for x in rrf([a, b, c], {}, k=10, limit=2)] == ["p", "q"]
    # smaller k favours top ranks more: r (rank 1 once) beats s (rank 3 twice) only at small k
    d, e = _r("d", ["r", "u", "s"]), _r("e", ["t", "v", "s"])
    assert [x.item_id for x in rrf([d, e], {}, k=0.5)][:1] == ["r"]
    assert [x.item_id for x in rrf([d, e], {}, k=60)][:1] == ["s"]


def test_duplicate_route_names_are_refused_and_duplicates_in_a_list_keep_best_rank():
    with pytest.raises(ValueError, match="unique"):
        rrf([_r("a", ["x"]), _r("a", ["y"])], {})
    out = rrf([_r("a", ["x", "y", "x"])], {})
    assert out[0].item_id == "x" and out[0].routes == {"a": 1}
    assert out[0].score == pytest.approx(1 / 61)


def _reference_rrf(results, weights, k=60.0):
    """Every item a Candidate, then one sort: the definition, written the obvious way."""
    cands = {}
    for res in results:
        w = float(weights.get(res.name, 1.0))
        for rank, (item_id, s) in enumerate(zip(res.item_ids, res.scores), start=1):
            c = cands.setdefault(item_id, Candidate(item_id=item_id, score=0.0))
            if res.name not in c.routes:
                c.routes[res.name] = rank
                c.route_scores[res.name] = float(s)
                c.score += w / (k + rank)
    return sorted(cands.values(), key=lambda c: (-c.score, min(c.routes.values()), c.item_id))


def test_top_k_fusion_equals_fusing_everything_then_cutting():
    import random

    rng = random.Random(0)
    for trial in range(200):
        pool = [f"i{n}" for n in range(rng.randint(1, 40))]
        results = [RouteResult(name, [rng.choice(pool) for _ in range(rng.randint(0, 30))],
                               [rng.random() for _ in range(30)])
                   for name in rng.sample(["text_image", "photo_image", "attribute", "bm25", "popularity"],
                                          rng.randint(1, 5))]
        for r in results:
            r.scores = r.scores[:len(r.item_ids)]
        weights = {r.name: rng.choice([0.0, 0.3, 1.0, 2.0]) for r in results}
        k, limit = rng.choice([1.0, 60.0]), rng.choice([None, 1, 5, 48])
        want = _reference_rrf(results, weights, k=k)
        got = rrf(results, weights, k=k, limit=limit)
        assert [c.as_dict() for c in got] == [c.as_dict() for c in want[:limit]], trial
