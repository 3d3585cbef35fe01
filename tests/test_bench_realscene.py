"""Real-scene judges on hand-made inputs: each catches a planted false statement, a wrong slot,
a broken constraint and a self-retrieved photo; the gate fails on one broken scene rule."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from mmrec.bench.claims import ClaimContext, ClaimJudge, split_statements
from mmrec.bench.compare import Gate, GateRule, compare_runs
from mmrec.bench.photo_sources import load_real_photo_table
from mmrec.bench.queries import constraint_failures, load_queries
from mmrec.bench.score import Truth, score_case
from mmrec.bench.personas import Persona
from mmrec.bench.suite import ANONYMOUS, Case
from mmrec.catalog.arrivals import as_arrival, infer_arrival
from mmrec.errors import ConfigError
from mmrec.outfit.scenes import SceneBook
from mmrec.taxonomy import default_taxonomy

REPO = Path(__file__).resolve().parents[1]
TAX = default_taxonomy()
SCENES = {"version": 1, "scenes": {"office": {
    "label": "Office", "usages": ["formal", "casual"], "seasons": ["summer", "winter"],
    "query": "office shirt", "templates": [["top", "bottom", "shoes"]],
    "slots": {"top": {"categories": ["shirts"]}, "bottom": {"categories": ["trousers"]},
              "shoes": {"categories": ["formal shoes", "heels"]}},
    "must_not": [{"field": "pattern", "values": ["graphic"], "reason": "no loud prints"}]}}}
BOOK = SceneBook.from_dict(SCENES)
OFFICE = BOOK.get("office")


def row(item_id, category, slot, gender="men", colour="white", usage="formal", pattern=None, **kw):
    r = {"item_id": item_id, "title": f"Brand Men {colour} {category}", "category": category,
         "slot": slot, "gender": gender, "colour": colour, "usage": usage, "pattern": pattern,
         "price": None, "season": None, "attributes": {}, "in_stock": True}
    r.update(kw)
    return r


ROWS = {r["item_id"]: r for r in (
    row("1", "shirts", "top", title="Brand Men White Striped Shirt", pattern="striped",
        attributes={"pattern": {"value": "striped", "source": "title"}}),
    row("2", "trousers", "bottom", colour="navy blue"),
    row("3", "formal shoes", "shoes", colour="black"),
    row("4", "shirts", "top", gender="women", colour="red", pattern="graphic"),
    row("5", "heels", "shoes", gender="women", colour="black"),
)}
OUTFIT = [ROWS["1"], ROWS["2"], ROWS["3"]]
JUDGE = ClaimJudge(TAX)


def verdicts(text, ctx=None, rows=OUTFIT):
    return [(c.kind, c.ok) for c in JUDGE.judge(text, rows, ctx or ClaimContext(scene=OFFICE))]


def test_statements_split_outside_quotes():
    assert split_statements('Meets the Office rules: "no loud prints. really". Colours: tonal.') == [
        'Meets the Office rules: "no loud prints. really".', "Colours: tonal."]


def test_true_statements_pass_and_planted_false_ones_are_caught():
    ctx = ClaimContext(scene=OFFICE, rules_held=["no loud prints"],
                       history={"colour": Counter({"navy blue": 3, "red": 1}), "category": Counter()},
                       profile_occasions=["formal"])
    good = ("Office look: white shirt, navy blue trousers and black formal shoes. "
            "Formal wear per the catalog: white shirt. The shirt is striped (from the title). "
            'Meets the Office rules: "no loud prints". From your history, you often choose navy blue. '
            "Your profile lists formal occasions. Colours: neutral colours throughout.")
    got = verdicts(good, ctx)
    assert [ok for _, ok in got] == [True] * 7, got
    planted = {
        "Office look: red shirt, navy blue trousers and black formal shoes.": "outfit",
        "Casual wear per the catalog: white shirt.": "usage",
        "The shirt is checked (from the title).": "title",
        'Meets the Office rules: "formal shirts only".': "scene_rules",
        "From your history, you often choose red.": "history",
        "Your profile lists sports occasions.": "profile",
        "Colours: a few accent colours.": "harmony",
    }
    for text, kind in planted.items():
        assert verdicts(text, ctx) == [(kind, False)], text
    # a statement no judge reads is unchecked, never counted as true
    assert verdicts("Perfect for a sunny day.") == [("unchecked", None)]
    # the title's plural says the detail ("Stripes": stripe, a synonym of striped), as the
    # taxonomy reads it; a plural of another word does not
    stripes = [dict(ROWS["1"], title="Probase Men Stripes White Shirts"), ROWS["2"], ROWS["3"]]
    assert verdicts("The shirt is striped (from the title).", ctx, stripes) == [("title", True)]
    checks = [dict(ROWS["1"], title="Probase Men Stripes White Shirts"), ROWS["2"], ROWS["3"]]
    assert verdicts("The shirt is checked (from the title).", ctx, checks) == [("title", False)]


def test_matches_your_search_needs_items_that_match_the_query_terms():
    red_dress = ClaimContext(scene=OFFICE, query={"categories": ["dresses"], "colour_family": "red"})
    # the outfit holds no dress: a search for a red dress is not matched by the shirt
    assert verdicts('White shirt matches your search "红色连衣裙".', red_dress) == [("query", False)]
    women = ClaimContext(scene=OFFICE, query={"categories": ["shirts"], "gender": "women"})
    assert verdicts('White shirt matches your search "shirt for women".', women) == [("query", False)]
    rows = [ROWS["4"], ROWS["2"], ROWS["5"]]
    assert verdicts('Red shirt matches your search "shirt for women".', women, rows) == [("query", True)]
    # a query stating no item attribute cannot be "matched" by an item
    assert verdicts('White shirt matches your search "something nice".',
                    ClaimContext(scene=OFFICE, query={})) == [("query", False)]


def test_similar_to_your_photo_needs_the_photos_slot_and_colour_family():
    trousers = ClaimContext(scene=OFFICE, photo={"slot": "bottom", "colour_family": "navy"})
    assert verdicts("The navy blue trousers are similar to your photo.", trousers) == [("photo", True)]
    assert verdicts("The black formal shoes are similar to your photo.", trousers) == [("photo", False)]
    grey = ClaimContext(scene=OFFICE, photo={"slot": "bottom", "colour_family": "grey"})
    assert verdicts("The navy blue trousers are similar to your photo.", grey) == [("photo", False)]


def test_query_constraints_each_kind_breaks_on_its_own():
    ok = {"gender": "men", "categories": ["shirts"], "colour_family": "white",
          "not_categories": ["heels"], "not_colour_families": ["red"]}
    assert constraint_failures(OUTFIT, ok, TAX) == []
    assert constraint_failures(OUTFIT, {"categories": ["dresses"]}, TAX)
    assert constraint_failures(OUTFIT, {"categories": ["shirts"], "colour_family": "navy"}, TAX)
    assert constraint_failures(OUTFIT, {"gender": "women"}, TAX)
    assert constraint_failures(OUTFIT, {"not_categories": ["formal shoes"]}, TAX)
    assert constraint_failures(OUTFIT, {"not_colour_families": ["black"]}, TAX)
    assert "no price" in constraint_failures(OUTFIT, {"price_max": 2000}, TAX)[0]
    priced = [dict(r, price=900.0) for r in OUTFIT]
    assert constraint_failures(priced, {"price_max": 2000}, TAX) == []
    assert constraint_failures(priced, {"price_max": 500}, TAX)
    # a catalog without any price: the ceiling is judged apart (query.price_unverifiable),
    # never silently passed as met nor counted against the outfit
    assert constraint_failures(OUTFIT, {"price_max": 2000}, TAX, prices_known=False) == []
    assert constraint_failures(OUTFIT, {"price_max": 2000, "categories": ["dresses"]}, TAX,
                               prices_known=False)


def test_a_ceiling_on_a_catalog_without_prices_is_reported_apart():
    truth = _truth()
    assert not truth.has_prices
    case = Case(case_id="q/1", scene="office", persona=ANONYMOUS, segment=ANONYMOUS, mode="query", k=3,
                text="shirt under 2000", constraints={"price_max": 2000.0})
    told = {"outfits": [], "notes": ["the catalog has no prices: your ceiling of 2000 could not be applied"]}
    obs = score_case(case, told, truth)["obs"]
    assert obs["query.price_unverifiable"] == [1.0] and obs["query.price_disclosed"] == [1.0]
    assert score_case(case, {"outfits": [], "notes": []}, truth)["obs"]["query.price_disclosed"] == [0.0]


def _truth(withheld=frozenset()):
    anon = Persona(id=ANONYMOUS, label="anon", segment=ANONYMOUS, source="none", resolved_from="none")
    return Truth(rows=ROWS, scenes=BOOK.scenes, personas={ANONYMOUS: anon}, taxonomy=TAX,
                 withheld=withheld)


def _response(items, text="", photo=None):
    return {"outfits": [{"items": [{"item_id": i, "slot": ROWS[i]["slot"]} for i in items],
                         "explanation": {"text": text, "facts": []}}],
            "photo": photo, "versions": {}}


def test_outside_photo_reading_wrong_slot_abstention_and_outfit_slot():
    case = Case(case_id="real_photo/a", scene="office", persona=ANONYMOUS, segment=ANONYMOUS,
                mode="real_photo", k=1, photo_truth={"slot": "bottom", "categories": ["trousers"],
                                                     "colour_family": None, "gender": None, "probe": False})
    read_as_top = {"slot": "top", "attributes": {"category": {"value": "shirts", "confidence": 0.9}}}
    rec = score_case(case, _response(["1", "2", "3"], "The white shirt is similar to your photo.",
                                     read_as_top), _truth())
    obs = rec["obs"]
    assert obs["real_photo.slot"] == [0.0] and obs["real_photo.category"] == [0.0]
    assert obs["real_photo.abstain"] == [0.0] and obs["claims.photo"] == [0.0]
    assert rec["photo_reading"]["confidence"] == 0.9
    abstained = score_case(case, _response(["1", "2", "3"], photo={"slot": None, "attributes": {}}),
                           _truth())["obs"]
    assert abstained["real_photo.abstain"] == [1.0] and "real_photo.slot" not in abstained
    probe = case.model_copy(update={"photo_truth": {"probe": True, "slot": None, "categories": []}})
    assert score_case(probe, _response(["1"], photo={"slot": None}), _truth())["obs"][
        "real_photo.probe_abstain"] == [1.0]


def test_calibrated_abstention_is_judged_on_its_guess_and_is_not_an_unanswered_case():
    from mmrec.bench import metrics as M

    case = Case(case_id="real_photo/b", scene="office", persona=ANONYMOUS, segment=ANONYMOUS,
                mode="real_photo", k=1, photo_truth={"slot": "bottom", "categories": ["trousers"],
                                                     "colour_family": None, "gender": None, "probe": False})
    asked = {"slot": None, "slot_guess": "bottom", "slot_confidence": 0.3, "abstained": True,
             "attributes": {"category": {"value": "trousers", "confidence": 0.4}}}
    rec = score_case(case, {"outfits": [], "photo": asked, "versions": {}}, _truth())
    obs, reading = rec["obs"], rec["photo_reading"]
    assert obs["real_photo.abstain"] == [1.0] and obs["real_photo.slot_all"] == [0.0]
    assert "answered" not in obs and "fill_rate" not in obs and "real_photo.slot" not in obs
    assert reading["confidence"] == 0.3 and reading["guess_correct"] is True
    wrong = score_case(case, {"outfits": [], "photo": {**asked, "slot_guess": "top", "slot_confidence": 0.7},
                              "versions": {}}, _truth())["photo_reading"]
    cal = M.calibration([reading, wrong], bins=10)
    assert cal["count"] == 2 and cal["ece"] == pytest.approx((0.7 + 0.7) / 2)  # |0.3-1| and |0.7-0|
    # how well the kiosk asks: where the true slot sits among the choices it offers
    offered = lambda choices: score_case(case, {"outfits": [], "photo": {**asked, "slot_choices": choices},  # noqa: E731
                                               "versions": {}}, _truth())["obs"]
    first = offered(["bottom", "top", "shoes"])
    assert first["real_photo.ask_first"] == [1.0] and first["real_photo.ask_top2"] == [1.0]
    second = offered(["top", "bottom", "shoes"])
    assert second["real_photo.ask_first"] == [0.0] and second["real_photo.ask_top2"] == [1.0]
    assert offered(["top", "shoes", "bottom"])["real_photo.ask_top2"] == [0.0]
    assert "real_photo.ask_first" not in obs  # no choices offered: nothing to judge


def test_self_retrieved_photo_and_withheld_items_are_judged():
    case = Case(case_id="office/p/photo/0", scene="office", persona=ANONYMOUS, segment=ANONYMOUS,
                mode="photo", k=1, photo_item="2", exclude_item_ids=["2"], gender="men")
    rec = score_case(case, _response(["1", "2", "3"], photo={"slot": "bottom"}),
                     _truth(withheld=frozenset({"3"})))
    assert rec["obs"]["photo.self_in_outfit"] == [1.0]
    assert any(f["check"] == "self_retrieved" for f in rec["outfits"][0]["failures"])
    assert rec["obs"]["withheld.item_rules"] == [1.0] and rec["obs"]["withheld.gender_violation"] == [0.0]
    # a withheld item the system placed although its true pattern breaks the scene rule
    broken = score_case(case.model_copy(update={"gender": "women"}),
                        _response(["4", "2", "5"], photo={"slot": "bottom"}),
                        _truth(withheld=frozenset({"4"})))["obs"]
    assert broken["withheld.scene_rules"] == [0.0] and broken["withheld.gender_violation"] == [0.0]


def test_new_arrival_reads_photo_and_title_never_the_catalog():
    full = row("9", "trousers", "bottom", title="Roadster Women Checked Trousers", colour="grey",
               usage="casual", pattern="checked", brand="Roadster")
    arrival = as_arrival(full)
    assert arrival["category"] is None and arrival["colour"] is None and arrival["attributes"] == {}
    tags = {"category": {"value": "jeans", "confidence": 0.7}, "gender": {"value": "men", "confidence": 0.6},
            "colour": {"value": "blue", "confidence": 0.5}}
    got = infer_arrival(arrival, tags, TAX)
    assert (got["category"], got["slot"], got["colour"]) == ("trousers", "bottom", "blue")
    assert got["gender"] == "women" and got["attributes"]["gender"]["source"] == "title"
    assert got["pattern"] == "checked" and got["attributes"]["pattern"]["source"] == "title"
    assert got["attributes"]["category"] == {"value": "trousers", "source": "title", "confidence": None}
    # a title that names no product type leaves the type to the photo's reading
    untyped = infer_arrival(as_arrival({**full, "title": "Roadster Women Checked Grey"}), tags, TAX)
    assert untyped["category"] == "jeans" and untyped["attributes"]["category"]["source"] == "model"


def test_a_new_arrivals_title_keeps_it_out_of_the_slot_its_photo_was_misread_in():
    """A nail polish whose photo the tagger read as men's shorts joined 84 benchmark outfits as
    a bottom; the retailer's title names the type, in the singular or after descriptors."""
    polish = as_arrival(row("5", "nail polish", "accessory",
                            title="Lakme Absolute Fast & Fabulous Aqua Express Nail Polish"))
    shorts = {"category": {"value": "shorts", "confidence": 0.4}, "gender": {"value": "men", "confidence": 0.5}}
    got = infer_arrival(polish, shorts, TAX)
    assert (got["category"], got["slot"]) == ("nail polish", TAX.slot_of("nail polish"))
    assert TAX.slot_of("nail polish") != "bottom"
    watch = infer_arrival(as_arrival(row("6", "watches", "accessory", title="Timex Women Navy Dial Watch M303")),
                          shorts, TAX)
    assert watch["category"] == "watches" and watch["gender"] == "women"
    shoes = infer_arrival(as_arrival(row("7", "sports shoes", "shoes", title="Puma Women Speeder Black Sports Shoes")),
                          shorts, TAX)
    assert shoes["category"] == "sports shoes"  # the longest type ending the title, not a bare "shoes"


def _write_run(path: Path, scene_rules: list[list[float]]) -> Path:
    path.mkdir(parents=True)
    with open(path / "results.jsonl", "w") as f:
        for n, obs in enumerate(scene_rules):
            f.write(json.dumps({"case_id": f"c{n}", "mode": "scene", "status": "ok",
                                "latency_ms": 10.0, "obs": {"scene_rules": obs}}) + "\n")
    return path


def test_gate_fails_on_a_single_broken_scene_rule(tmp_path):
    base = _write_run(tmp_path / "a", [[1.0, 1.0, 1.0]] * 40)
    one_bad = _write_run(tmp_path / "b", [[1.0, 1.0, 1.0]] * 39 + [[1.0, 0.0, 1.0]])
    gate = Gate(metrics={"scene_rules": GateRule(max_drop=0.0)})
    result = compare_runs(base, one_bad, gate)
    assert not result["passed"] and result["failures"][0]["metric"] == "scene_rules"
    assert compare_runs(base, base, gate)["passed"]
    # a positive bound keeps the significance test: one case of noise passes
    soft = Gate(metrics={"scene_rules": GateRule(max_drop=0.001)})
    assert compare_runs(base, one_bad, soft)["passed"]


def test_a_run_that_abstains_on_every_photo_is_judged_by_what_abstaining_cost(tmp_path):
    """Photo outfits exist only for photos the system reads: when run b abstains on all of
    them, a guarantee measured on its outfits holds vacuously (absent_in_b: pass), a metric the
    bench merely lost still fails, and the loss of right readings shows in slot_all."""
    def write(path, rows):
        path.mkdir(parents=True)
        with open(path / "results.jsonl", "w") as f:
            for n, obs in enumerate(rows):
                f.write(json.dumps({"case_id": f"c{n}", "mode": "real_photo", "status": "ok",
                                    "latency_ms": 10.0, "obs": obs}) + "\n")
        return path

    read = write(tmp_path / "a", [{"photo.self_in_outfit": [0.0], "real_photo.slot": [1.0],
                                   "real_photo.slot_all": [1.0]}] * 30)
    abstains = write(tmp_path / "b", [{"real_photo.slot_all": [0.0]}] * 30)
    vacuous = Gate(metrics={"photo.self_in_outfit": GateRule(max_rise=0.0, absent_in_b="pass"),
                            "real_photo.slot": GateRule(max_drop=0.03, absent_in_b="pass")})
    assert compare_runs(read, abstains, vacuous)["passed"]
    lost = compare_runs(read, abstains, Gate(metrics={"real_photo.slot": GateRule(max_drop=0.03)}))
    assert lost["failures"][0]["reason"].startswith("measured in run a (n=30) but not in run b")
    cost = compare_runs(read, abstains, Gate(metrics={"real_photo.slot_all": GateRule(max_drop=0.03)}))
    assert [f["metric"] for f in cost["failures"]] == ["real_photo.slot_all"]


def test_shipped_real_photo_table_and_query_suite_are_valid(tmp_path):
    table = load_real_photo_table(REPO / "benchmark/suites/photos/real_photos.yaml", TAX)
    held = [set(table.senders[s]) for s in ("test", "val", "calibration")]
    assert all(a and not a & b for i, a in enumerate(held) for b in held[i + 1:])
    assert table.labels["Not sure"].probe and table.labels["Pants"].slot == "bottom"
    bad = yaml.safe_load((REPO / "benchmark/suites/photos/real_photos.yaml").read_text())
    bad["labels"]["Pants"]["categories"] = ["sneakers"]
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="sneakers"):
        load_real_photo_table(p, TAX)
    bad = yaml.safe_load((REPO / "benchmark/suites/photos/real_photos.yaml").read_text())
    bad["senders"]["calibration"].append(bad["senders"]["val"][0])  # a val photographer fitted on
    p.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="both (val and calibration|calibration and val)"):
        load_real_photo_table(p, TAX)
    qf = load_queries(REPO / "benchmark/suites/queries/shopper_queries.yaml", TAX,
                      SceneBook.load().names())
    langs = Counter(q.lang for q in qf.queries)
    assert len(qf.queries) >= 150 and langs["zh"] >= 0.4 * len(qf.queries) and langs["mixed"] > 0
    assert len({q.pair for q in qf.queries if q.pair}) >= 50
