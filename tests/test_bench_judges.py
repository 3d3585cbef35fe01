"""Judges on hand-made inputs with known answers."""

from __future__ import annotations

import pytest

from mmrec.bench import judges as J
from mmrec.bench import probe_stats as S
from mmrec.outfit.scenes import SceneBook
from mmrec.taxonomy import default_taxonomy

TAX = default_taxonomy()

SCENES = {
    "version": 1,
    "scenes": {
        "office": {
            "label": "Office", "usages": ["formal", "casual"], "seasons": ["summer", "winter"],
            "query": "office shirt",
            "templates": [["top", "bottom", "shoes"], ["one-piece", "shoes"]],
            "slots": {"top": {"categories": ["shirts"]}, "bottom": {"categories": ["trousers"]},
                      "shoes": {"categories": ["formal shoes"]},
                      "one-piece": {"categories": ["dresses"]}},
            "must": [{"field": "usage", "values": ["formal"], "slots": ["top"],
                      "reason": "formal shirts only"}],
            "must_not": [{"field": "pattern", "values": ["graphic"], "reason": "no loud prints"}],
        }
    },
}


@pytest.fixture(scope="module")
def scene():
    return SceneBook.from_dict(SCENES).get("office")


def row(item_id, category, slot, gender="men", colour="white", usage="formal", pattern=None,
        price=None, **attrs):
    r = {"item_id": item_id, "category": category, "slot": slot, "gender": gender,
         "colour": colour, "usage": usage, "pattern": pattern, "price": price, "season": None,
         "attributes": {}}
    r.update(attrs)
    return r


SHIRT = row("1", "shirts", "top")
TROUSERS = row("2", "trousers", "bottom", colour="navy blue")
SHOES = row("3", "formal shoes", "shoes", colour="black")


def test_clean_outfit_passes_every_rule(scene):
    outfit = [("top", SHIRT), ("bottom", TROUSERS), ("shoes", SHOES)]
    assert J.judge_scene_rules(scene, outfit) == []
    complete, valid, fails = J.judge_structure(scene, outfit)
    assert complete and valid == [True, True, True] and fails == []


def test_must_and_must_not_on_catalog_truth(scene):
    casual_shirt = row("4", "shirts", "top", usage="casual")
    graphic = row("5", "trousers", "bottom", pattern="graphic")
    fails = J.judge_scene_rules(scene, [("top", casual_shirt), ("bottom", graphic), ("shoes", SHOES)])
    assert [(f.item_id, f.detail.split(":")[0]) for f in fails] == [("4", "must"), ("5", "must not")]
    # must fails on an unknown value; must_not passes on one
    unknown = row("6", "shirts", "top", usage=None)
    assert J.rule_failures(scene, unknown, "top")[0].startswith("must: usage")
    assert J.rule_failures(scene, row("7", "trousers", "bottom", pattern=None), "bottom") == []


def test_model_provenance_is_not_truth(scene):
    # usage "formal" here was written by a model: the judge must treat it as unknown
    predicted = row("8", "shirts", "top", usage="formal",
                    attributes={"usage": {"value": "formal", "source": "model", "confidence": 0.9}})
    assert J.truth_value(predicted, "usage") is None
    assert any(x.startswith("must: usage") for x in J.rule_failures(scene, predicted, "top"))
    titled = row("9", "shirts", "top", attributes=[("usage", {"value": "formal", "source": "title"})])
    assert J.truth_value(titled, "usage") == "formal"


def test_category_outside_the_scene_dress_code(scene):
    tee = row("10", "tshirts", "top")
    assert "not allowed" in J.rule_failures(scene, tee, "top")[0]


def test_structure_detects_wrong_slot_and_template(scene):
    # shoes returned as a bottom: the slot claim contradicts the catalog
    complete, valid, fails = J.judge_structure(scene, [("top", SHIRT), ("bottom", SHOES)])
    assert not complete and valid == [True, False]
    assert {f.check for f in fails} == {"slot", "template"}
    # right slots, but no template is top + shoes
    complete, valid, _ = J.judge_structure(scene, [("top", SHIRT), ("shoes", SHOES)])
    assert not complete and valid == [True, True]


def test_gender_and_budget():
    per_item, mixed, fails = J.judge_gender(
        [("top", SHIRT), ("bottom", row("11", "trousers", "bottom", gender="women")),
         ("shoes", row("12", "formal shoes", "shoes", gender="unisex"))], "men")
    assert per_item == [False, True, False] and mixed and len(fails) == 2
    assert J.judge_gender([("top", SHIRT)], None)[0] == [False]
    priced = [("top", row("13", "shirts", "top", price=30.0)), ("bottom", row("14", "trousers", "bottom", price=25.0))]
    assert J.judge_budget(priced, 60.0) == (False, [])
    over, fails = J.judge_budget(priced, 50.0)
    assert over is True and "55.00 > budget 50.00" in fails[0].detail
    assert J.judge_budget([("top", SHIRT)], 50.0) == (None, [])  # unknown price: cannot judge
    assert J.judge_budget(priced, None) == (None, [])


def test_compatibility_scores():
    neutral_formal = [SHIRT, TROUSERS, SHOES]
    assert J.compatibility(neutral_formal, TAX) == pytest.approx(1.0)
    clash = [row("20", "shirts", "top", colour="red"), row("21", "trousers", "bottom", colour="pink"),
             row("22", "formal shoes", "shoes", colour="black")]
    # two accents (0.75) that clash (x0.5) -> 0.375; formality 1.0 -> mean 0.6875
    assert J.compatibility(clash, TAX) == pytest.approx((1.0 + 0.375) / 2)
    mixed_formality = [row("23", "shirts", "top", usage="sports"), SHOES]
    assert J.compatibility(mixed_formality, TAX) == pytest.approx((0.0 + 1.0) / 2)
    assert J.compatibility([row("24", "shirts", "top", colour=None, usage=None)], TAX) is None


def test_diversity():
    assert J.diversity_within([SHIRT, TROUSERS, SHOES], TAX) == pytest.approx(1.0)
    assert J.diversity_within([SHIRT, row("25", "trousers", "bottom", colour="white")], TAX) == 0.5
    div, rep = J.diversity_across([["a", "b", "c"], ["a", "d", "e"]])
    assert div == pytest.approx(1 - 1 / 5) and rep == pytest.approx(1 / 6)
    assert J.diversity_across([["a"]]) == (None, None)


def test_coverage():
    cov = J.coverage(["a", "a", "c", "zz"], {"a": "top", "b": "top", "c": "shoes"})
    assert cov["top"] == {"value": 0.5, "count": 2}
    assert cov["shoes"]["value"] == 1.0 and cov["total"]["value"] == pytest.approx(2 / 3)


def test_facts_checked_against_catalog():
    rows = {"1": SHIRT, "2": TROUSERS}
    ctx = {"scene": ["office", "Office", "formal shirts only"], "preferred_occasions": ["formal"]}
    assert J.judge_fact({"item_id": "1", "field": "colour", "value": "white"}, rows, ctx) is True
    assert J.judge_fact({"item_id": "1", "field": "colour", "value": "red"}, rows, ctx) is False
    assert J.judge_fact({"item_id": "99", "field": "colour", "value": "white"}, rows, ctx) is False
    # pattern unknown in the catalog: a model claim cannot be checked
    assert J.judge_fact({"item_id": "1", "field": "pattern", "value": "solid", "source": "model"},
                        rows, ctx) is None
    assert J.judge_fact({"item_id": None, "field": "scene", "value": "office"}, rows, ctx) is True
    assert J.judge_fact({"item_id": None, "field": "preferred_occasions", "value": ["party"]},
                        rows, ctx) is False
    assert J.judge_fact({"item_id": None, "field": "weather", "value": "rain"}, rows, ctx) is None
    # attributes-map values count when their source is the catalog or the title
    titled = dict(SHIRT, attributes={"material": {"value": "cotton", "source": "title"}})
    assert J.judge_fact({"item_id": "1", "field": "material", "value": "cotton"}, {"1": titled}, ctx)


def test_text_mentions_and_grounding():
    found = J.scan_mentions("A white shirt with navy blue trousers and formal shoes for the top slot", TAX)
    assert sorted(found) == ["formal shoes", "navy blue", "shirts", "trousers", "white"]
    rows = {"1": SHIRT, "2": TROUSERS}
    facts = [{"item_id": "1", "field": "colour", "value": "white"}]
    res = dict(J.judge_text("White shirt, navy blue trousers, striped and red", facts, rows,
                            {"scene": ["office"]}, TAX))
    assert res == {"white": True, "shirts": True, "navy blue": True, "trousers": True,
                   "striped": False, "red": False}


def test_query_relevance():
    assert J.judge_text_match([SHIRT, TROUSERS], {"colour": "navy blue", "category": "trousers"})
    assert not J.judge_text_match([SHIRT], {"colour": "navy blue"})
    assert J.judge_text_match([SHIRT], {}) is None
    photo = row("30", "shirts", "top", colour="blue")
    assert J.judge_photo_match([("top", SHIRT), ("bottom", TROUSERS)], photo, "category") is True
    assert J.judge_photo_match([("top", SHIRT)], photo, "colour") is False
    assert J.judge_photo_match([("bottom", TROUSERS)], photo, "category") is None


def test_tagging_correct_skips_unknown_truth():
    pred = {"category": {"value": "shirts", "confidence": 0.9}, "colour": "blue", "pattern": "solid"}
    assert J.tagging_correct(pred, SHIRT, ["category", "colour", "pattern"]) == {
        "category": True, "colour": False}


def test_ranking_and_retrieval_metrics():
    m = S.ranking_metrics([0.9, 0.1, 0.5, 0.2], [1, 0, 0, 0], k=2)
    assert m == {"ndcg": 1.0, "hit": 1.0, "auc": 1.0}
    m = S.ranking_metrics([0.1, 0.9, 0.5], [1, 0, 0], k=2)
    assert m["hit"] == 0.0 and m["auc"] == 0.0 and m["ndcg"] == 0.0
    m = S.ranking_metrics([0.2, 0.9, 0.5], [0, 0, 1], k=10)  # positive second
    assert m["ndcg"] == pytest.approx(1 / __import__("math").log2(3)) and m["auc"] == 0.5
    # all tied: ties go against the positive
    assert S.ranking_metrics([0.5, 0.5, 0.5], [0, 1, 0], k=1)["hit"] == 0.0
    assert S.ranking_metrics([0.5], [1]) is None
    with pytest.raises(ValueError):
        S.ranking_metrics([0.5, 0.2], [1])
    assert S.recall_at(["a", "b", "c"], ["c", "d"], 3) == 0.5
    assert S.precision_at(["a", "b"], {"a": True}, 10) == 0.5
    assert S.precision_at([], {}, 10) is None


def test_latency_summary():
    s = S.latency_summary([float(i) for i in range(1, 101)])
    assert s["p50"] == pytest.approx(50.5) and s["p99"] == pytest.approx(99.01)
    assert s["count"] == 100 and s["max"] == 100
    assert S.latency_summary([])["p50"] is None
