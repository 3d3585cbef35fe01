"""Scenes: the shipped file validates against the taxonomy; rules mean what the docs say."""

from __future__ import annotations

import copy

import pytest
import yaml

from mmrec.errors import ConfigError, InputError
from mmrec.outfit.scenes import DEFAULT_SCENES_PATH, SceneBook, genders_compatible

ISSUE_SCENES = ["office", "business formal", "casual weekend", "date night", "wedding guest",
                "party", "sports/gym", "beach holiday", "winter outdoor", "festive/ethnic", "travel"]


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(DEFAULT_SCENES_PATH.read_text())


def test_shipped_scenes_cover_the_issue_list():
    book = SceneBook.load()
    assert len(book.names()) == 11
    for label in ISSUE_SCENES:
        book.get(label)  # label, name or alias in any spacing/case
    assert book.get("Sports / Gym").name == "sports_gym"
    assert book.get("gym").name == "sports_gym"
    for sc in book.scenes.values():
        assert sc.templates and all(s in sc.slots for t in sc.templates for s in t)


def test_unknown_scene_names_the_valid_ones():
    with pytest.raises(InputError, match="choose one of.*office"):
        SceneBook.load().get("moon landing")


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s["office"]["slots"]["top"]["categories"].append("spacesuits"), "spacesuits"),
    (lambda s: s["office"]["slots"]["top"]["categories"].append("jeans"), "belong to other slots"),
    (lambda s: s["office"]["must_not"].append({"field": "vibe", "values": ["x"], "reason": "nope"}),
     "unknown field 'vibe'"),
    (lambda s: s["office"]["must_not"].append({"field": "colour", "values": ["blurple"], "reason": "nope"}),
     "blurple"),
    (lambda s: s["office"]["templates"].append(["top", "hat"]), "no 'slots' entry"),
    (lambda s: s["office"].update(usages=["gala"]), "gala"),
    (lambda s: s["office"].update(colour="blue"), "colour"),  # unknown key
])
def test_invalid_scene_is_refused_with_the_scene_named(raw, mutate, message):
    bad = copy.deepcopy(raw)
    mutate(bad["scenes"])
    with pytest.raises(ConfigError, match=message) as e:
        SceneBook.from_dict(bad)
    assert "office" in str(e.value)


def test_rule_semantics_on_catalog_truth():
    sc = SceneBook.load().get("office")
    shirt = {"item_id": "1", "slot": "top", "category": "shirts", "usage": "formal", "pattern": None}
    assert sc.item_violations(shirt) == []  # unknown pattern: must_not cannot be shown broken
    assert any("must not: usage" in v for v in sc.item_violations({**shirt, "usage": "sports"}))
    assert any("category 'tshirts'" in v for v in sc.item_violations({**shirt, "category": "tshirts"}))
    gym = SceneBook.load().get("gym")
    tee = {"item_id": "2", "slot": "top", "category": "tshirts", "usage": None}
    assert any("must: usage" in v for v in gym.item_violations(tee))  # unknown usage fails a must
    assert gym.item_violations({**tee, "usage": "sports"}) == []
    reasons = [r.reason for r in sc.satisfied_rules(shirt)]
    assert "no sportswear at the office" in reasons
    assert "no loud prints at work" not in reasons  # pattern unknown: not cited as satisfied


def test_outfit_violations_template_and_gender():
    sc = SceneBook.load().get("office")
    top = {"item_id": "t", "slot": "top", "category": "shirts", "usage": "formal", "gender": "men"}
    bottom = {"item_id": "b", "slot": "bottom", "category": "trousers", "usage": "formal", "gender": "women"}
    shoes = {"item_id": "s", "slot": "shoes", "category": "formal shoes", "usage": "formal", "gender": "unisex"}
    belt = {"item_id": "a", "slot": "accessory", "category": "belts", "usage": "formal", "gender": "men"}
    out = sc.outfit_violations([top, bottom, shoes, belt])
    assert any("mixed genders" in v for v in out)
    assert sc.outfit_violations([top, {**bottom, "gender": "men"}, shoes, belt]) == []
    assert any("match no template" in v for v in sc.outfit_violations([top, shoes]))


def test_genders_compatible():
    assert genders_compatible(["men", "unisex", None])
    assert not genders_compatible(["men", "women"])
    assert not genders_compatible(["boys", "men"])


def test_rule_reasons_claim_no_attribute_value():
    """Reasons are quoted in explanations; a value inside one ("casual") would read as a
    claim about the outfit, so only the scene's own usages and seasons may appear."""
    import re

    from mmrec.taxonomy import default_taxonomy, normalize

    tax = default_taxonomy()
    fields = ("category", "colour", "pattern", "material", "fit", "sleeve", "neckline", "season", "usage")
    terms = {}
    for f in fields:
        for v in tax.values(f):
            key = normalize(v)
            for form in {key, key[:-1] if key.endswith("s") else key + "s",
                         key[:-2] if key.endswith("es") else key}:
                terms.setdefault(form, v)
    for sc in SceneBook.load().scenes.values():
        allowed = set(sc.usages) | set(sc.seasons)
        for r in [*sc.must, *sc.must_not]:
            text = f" {normalize(r.reason)} "
            named = {v for t, v in terms.items() if len(t) > 2 and re.search(rf"(?<= ){re.escape(t)}(?= )", text)}
            assert named <= allowed, (sc.name, r.reason, named - allowed)
