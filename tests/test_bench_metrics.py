"""Aggregation, bootstrap, and scoring of hand-made responses (photo, text, ranking probes)."""

from __future__ import annotations

import pytest

from mmrec.bench import metrics as M
from mmrec.bench.personas import Persona
from mmrec.bench.score import Truth, ranking_candidates, score_case
from mmrec.bench.suite import Case
from mmrec.outfit.scenes import SceneBook
from mmrec.taxonomy import default_taxonomy
from test_bench_judges import SCENES, row


def rec(case_id, mode="scene", **obs):
    return {"case_id": case_id, "mode": mode, "scene": "office", "segment": "men:25-34",
            "persona": "p", "obs": obs, "latency_ms": 10.0, "status": "ok"}


def test_aggregate_and_groups_keep_counts():
    rs = [rec("a", scene_rules=[1, 1, 0]), rec("b", scene_rules=[1], tag_x=[]),
          rec("c", mode="photo", scene_rules=[0])]
    agg = M.aggregate(rs)
    assert agg["scene_rules"] == {"value": 3 / 5, "count": 5, "cases": 3}
    assert "tag_x" not in agg  # no observations: not reported as 0
    by = M.group_by(rs, lambda r: r["mode"])
    assert by["photo"]["metrics"]["scene_rules"]["value"] == 0.0 and by["scene"]["cases"] == 2


def test_confusion_matrix():
    rs = [{"tags": {"colour": ["red", "red"]}}, {"tags": {"colour": ["blue", "red"]}},
          {"tags": {"colour": ["blue", "blue"]}}]
    cm = M.confusion(rs, top=1)["colour"]
    assert cm["labels"] == ["red", "other"]
    assert cm["matrix"] == [[1, 1], [0, 1]]  # true red -> red 1, blue 1; true blue -> other
    assert cm["accuracy"] == pytest.approx(2 / 3) and cm["count"] == 3


def test_bootstrap_identical_runs_and_a_real_drop():
    a = [rec(str(i), scene_rules=[1, 1]) for i in range(40)]
    same = M.bootstrap_delta(a, a, "scene_rules", n_boot=200)
    assert same["delta"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0
    b = [rec(str(i), scene_rules=[1, 0 if i % 4 == 0 else 1]) for i in range(40)]
    d = M.bootstrap_delta(a, b, "scene_rules", n_boot=500)
    assert d["delta"] == pytest.approx(-10 / 80) and d["ci_high"] < 0 < 1 + d["ci_low"]
    assert d["count_a"] == d["count_b"] == 80 and d["cases"] == 40
    with pytest.raises(ValueError):
        M.bootstrap_delta(a, b[:3], "scene_rules")
    assert M.bootstrap_delta(a, b, "not_there") is None
    lat = M.bootstrap_percentile_delta([10.0] * 30, [20.0] * 30, 99, n_boot=100)
    assert lat["delta"] == pytest.approx(10.0) and lat["ci_low"] == pytest.approx(10.0)


def test_metric_defs_cover_dynamic_tag_fields():
    assert M.metric_def("tag.colour").group == "tagging"
    with pytest.raises(KeyError):
        M.metric_def("made_up")


@pytest.fixture(scope="module")
def truth():
    rows = {r["item_id"]: r for r in [
        row("10", "shirts", "top", colour="white"),
        row("11", "trousers", "bottom", colour="black"),
        row("12", "formal shoes", "shoes", colour="black"),
        row("13", "shirts", "top", colour="blue", usage="casual"),   # breaks office's must
        row("20", "shirts", "top", colour="white", image_uri=None),  # the photographed product
        row("21", "shirts", "top", colour="red"),
    ]}
    persona = Persona(id="p", label="P", segment="men:25-34", source="hm", resolved_from="x",
                      user_id="u1", gender="men", preferred_occasions=["formal"],
                      history=["21"], heldout=["10", "11"])
    return Truth(rows=rows, scenes=SceneBook.from_dict(SCENES).scenes, personas={"p": persona},
                 taxonomy=default_taxonomy())


def outfit(*items, text="", facts=()):
    return {"items": [{"item_id": i, "slot": s} for i, s in items], "score": 0.5,
            "compatibility": 0.9, "explanation": {"text": text, "facts": list(facts)}}


def test_score_photo_case(truth):
    case = Case(case_id="office/p/photo/0", scene="office", persona="p", segment="men:25-34",
                mode="photo", k=2, gender="men", photo_item="20")
    response = {
        "versions": {"tagger": "vlm@1"},
        "photo": {"attributes": {"category": {"value": "shirts", "confidence": 0.9},
                                 "colour": {"value": "blue", "confidence": 0.7}},
                  "similar": ["13", "20", "21"]},
        "outfits": [
            outfit(("10", "top"), ("11", "bottom"), ("12", "shoes"),
                   text="Office look: white shirt, black trousers and black formal shoes.",
                   facts=[{"item_id": "10", "field": "colour", "value": "white", "source": "catalog"},
                          {"item_id": "11", "field": "colour", "value": "red", "source": "model"},
                          {"item_id": None, "field": "scene", "value": "office", "source": "scene:office"}]),
            outfit(("13", "top"), ("11", "bottom"), ("12", "shoes"), text="A pink look."),
        ],
    }
    r = score_case(case, response, truth, latency_ms=12.5)
    o = r["obs"]
    assert o["scene_rules"] == [1.0, 0.0] and o["complete"] == [1.0, 1.0]
    assert o["fact_precision"] == [1.0, 0.0, 1.0]
    assert o["text_grounded"][-1] == 0.0  # "pink" is nobody's colour
    assert o["repeat_rate"] == [pytest.approx(2 / 6)]
    assert o["tag.category"] == [1.0] and o["tag.colour"] == [0.0]
    assert r["tags"]["colour"] == ["blue", "white"]
    assert o["recall.self@10"] == [1.0] and o["recall.category_p@10"] == [1.0]
    assert o["recall.colour_p@10"] == [pytest.approx(1 / 3)]
    assert o["photo_category"] == [1.0, 1.0] and o["photo_colour"] == [1.0, 0.0]
    assert o["latency_ms"] == [12.5]
    checks = {f["check"] for f in r["outfits"][1]["failures"]}
    assert {"scene_rule", "explanation"} <= checks


def test_tagging_not_measured_without_a_tagger(truth):
    case = Case(case_id="c", scene="office", persona="p", segment="s", mode="photo", k=1,
                photo_item="20")
    r = score_case(case, {"versions": {"tagger": "absent"}, "photo": {"attributes": {}},
                          "outfits": []}, truth)
    assert not any(k.startswith("tag.") for k in r["obs"]) and r["obs"]["answered"] == [0.0]


def test_text_case_and_ranking_probe(truth):
    case = Case(case_id="office/p/text/0", scene="office", persona="p", segment="s", mode="text",
                k=1, gender="men", text="white shirt", expect={"category": "shirts", "colour": "white"},
                user_id="u1")
    resp = {"outfits": [outfit(("10", "top"), ("11", "bottom"), ("12", "shoes"))]}
    cand = ranking_candidates(case, truth.personas["p"], sorted(truth.rows), n_neg=3)
    ids, labels = cand
    assert sorted(i for i, lab in zip(ids, labels) if lab) == ["10", "11"]
    assert "21" not in ids  # history is never a negative
    perfect = [1.0 if lab else 0.0 for lab in labels]
    r = score_case(case, resp, truth, text_hits=["10", "13", "21"], rank=(perfect, labels))
    assert r["obs"]["text_match"] == [1.0]
    assert r["obs"]["recall.text_p@10"] == [pytest.approx(1 / 3)]
    assert r["obs"]["rank.ndcg@10"] == [1.0] and r["obs"]["rank.auc"] == [1.0]
    miss = score_case(case.model_copy(update={"expect": {"colour": "red"}}), resp, truth)
    assert miss["obs"]["text_match"] == [0.0]
    assert [f["check"] for f in miss["outfits"][0]["failures"]] == ["text_query"]
    assert ranking_candidates(case, truth.personas["p"].model_copy(update={"heldout": []}),
                              sorted(truth.rows), 3) is None
