"""Suite format, case expansion and persona resolution."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

import bench_fixtures as BF
from mmrec.bench.personas import PersonaDef, UserDirectory, load_persona_file, resolve_personas
from mmrec.bench.runner import prepare
from mmrec.bench.suite import check_against_scenes, load_suite
from mmrec.errors import ConfigError
from mmrec.outfit.scenes import SceneBook
from mmrec.splits import is_held_out

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_world")
    store, suite = BF.write_world(root)
    return root, store, suite


def test_expansion_covers_scene_persona_mode_and_is_stable(world):
    root, store, suite = world
    a = prepare(suite, store)
    b = prepare(suite, store)
    assert len(a.cases) == 2 * 2 * 3 * 2  # scenes x personas x modes x repeats
    assert [c.model_dump() for c in a.cases] == [c.model_dump() for c in b.cases]
    assert len({c.case_id for c in a.cases}) == len(a.cases)
    scenes = SceneBook.load(root / "scenes.yaml").scenes
    for c in a.cases:
        if c.mode == "photo":
            row = a.truth.rows[c.photo_item]
            assert is_held_out(c.photo_item)
            assert row["gender"] in (c.gender, "unisex")
            from mmrec.bench.judges import rule_failures
            assert rule_failures(scenes[c.scene], row, row["slot"]) == []
        if c.mode == "text":
            assert c.text and c.expect
        else:
            assert c.text is None
    # both weekend texts are used across repeats
    texts = {c.text for c in a.cases if c.scene == "weekend" and c.mode == "text"}
    assert texts == {"blue jeans", "black tshirt"}


def test_personas_per_scene_rotates(world, tmp_path):
    root, store, suite = world
    raw = yaml.safe_load(suite.read_text())
    raw.update(personas_per_scene=1, repeats=1, modes=["scene"])
    for name in ("scenes.yaml", "personas.yaml"):
        (tmp_path / name).write_text((root / name).read_text())
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(raw))
    cases = prepare(p, store).cases
    assert [(c.scene, c.persona) for c in cases] == [("office", "man_office"), ("weekend", "woman_casual")]


@pytest.mark.parametrize("patch, message", [
    ({"modes": ["scene", "video"]}, "modes"),
    ({"colour": "red"}, "colour"),
    ({"k": 0}, "k"),
])
def test_invalid_suites_name_the_problem(tmp_path, patch, message):
    raw = {"schema_version": 1, "name": "x", "personas": "p.yaml", **patch}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_suite(p)


def test_unknown_scene_and_missing_texts(tmp_path):
    raw = {"schema_version": 1, "name": "x", "personas": "p.yaml", "scenes": ["office", "moon"]}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="moon"):
        check_against_scenes(load_suite(p).suite, ["office", "party"])
    raw["scenes"] = ["office"]
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="needs texts for scenes"):
        check_against_scenes(load_suite(p).suite, ["office", "party"])


def test_shipped_suites_are_valid_and_default_has_300_cases():
    scenes = SceneBook.load().names()
    default = load_suite(REPO / "benchmark/suites/default.yaml")
    smoke = load_suite(REPO / "benchmark/suites/smoke.yaml")
    personas = load_persona_file(default.resolve(default.suite.personas)).personas
    for s in (default, smoke):
        assert check_against_scenes(s.suite, scenes) == scenes  # all scenes, all with texts
    d = default.suite
    assert len(scenes) * len(personas) * len(d.modes) * d.repeats >= 300
    catalog_modes = [m for m in smoke.suite.modes if m in ("scene", "text", "photo")]
    assert len(scenes) * smoke.suite.personas_per_scene * len(catalog_modes) <= 40


def _ts(day: int):
    return dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=day)


def test_user_directory_time_cut_and_resolution():
    profiles = [
        {"user_id": "u1", "source": "sim", "gender": "men", "age": 30.0, "body_type": None,
         "preferred_occasions": ["formal"], "segment": "men:25-34", "as_of": None,
         "extra": [("from", "hm")]},
        {"user_id": "u2", "source": "sim", "gender": "men", "age": 31.0, "body_type": None,
         "preferred_occasions": ["formal"], "segment": "men:25-34", "as_of": None, "extra": None},
        {"user_id": "u3", "source": "sim", "gender": "women", "age": 40.0, "body_type": "pear",
         "preferred_occasions": ["casual"], "segment": "women:35-44", "as_of": None, "extra": None},
    ]
    inter = []
    for day in range(10):  # u1: 10 clicks over days 0..9; u2: clicks on days 8, 9; u3: day 1
        inter.append({"user_id": "u1", "item_id": f"i{day}", "event": "click", "ts": _ts(day)})
    inter += [{"user_id": "u2", "item_id": "j8", "event": "click", "ts": _ts(8)},
              {"user_id": "u2", "item_id": "j9", "event": "purchase", "ts": _ts(9)},
              {"user_id": "u2", "item_id": "j0", "event": "impression", "ts": _ts(9)},
              {"user_id": "u3", "item_id": "k1", "event": "click", "ts": _ts(1)}]
    users = UserDirectory(profiles, inter, "interactions_sim/v1", test_share=0.25)
    # 14 events: the cut is the timestamp at index int(14 * 0.75) = 10 of the sorted stamps
    assert users.cut == _ts(8).timestamp()
    assert users.heldout["u1"] == ["i8", "i9"] and users.history["u1"][:2] == ["i0", "i1"]
    assert users.heldout["u2"] == ["j8", "j9"]  # impressions are not positives
    assert "u3" not in users.heldout

    defs = [PersonaDef(id="hm_man", label="man from H&M", source="hm",
                       match={"gender": "men", "age": (25, 34)}),
            PersonaDef(id="any_man", label="another man", match={"gender": "men"}),
            PersonaDef(id="woman", label="woman 35-44", match={"gender": "women"},
                       fallback={"gender": "women", "age": 40})]
    got = resolve_personas(defs, users)
    # u1 and u2 tie on held-out positives; only u1 carries the H&M origin
    assert got[0].user_id == "u1" and got[0].resolved_from == "interactions_sim/v1"
    assert got[0].segment == "men:25-34" and got[0].heldout == ["i8", "i9"]
    assert got[1].user_id == "u2"  # each user serves one persona
    assert got[2].resolved_from == "archetype" and "held-out" in got[2].note  # u3 has none
    assert got[2].gender == "women" and got[2].segment == "women:35-44"
    # nobody left records an RTR origin: matched on the profile fields, and said so
    rtr = resolve_personas([PersonaDef(id="rtr_man", label="man (RTR)", source="rtr",
                                       match={"gender": "men"})], users)[0]
    assert rtr.user_id in ("u1", "u2") and "source 'rtr'" in rtr.note
    anon = resolve_personas(defs, None)
    assert all(p.resolved_from == "archetype" and p.user_id is None for p in anon)


def test_split_follows_requests_and_prefers_new_users():
    # 5 requests; the last 2 (by first event) are the test window, whatever the event times
    inter = [{"user_id": "a", "item_id": f"i{r}", "event": "click", "ts": _ts(r), "request_id": f"r{r}"}
             for r in range(5)]
    inter.append({"user_id": "a", "item_id": "late", "event": "click", "ts": _ts(9), "request_id": "r1"})
    inter.append({"user_id": "b", "item_id": "x", "event": "purchase", "ts": _ts(4), "request_id": "r4"})
    prof = [{"user_id": u, "gender": "men", "age": 30.0, "split_bucket": bucket, "source": "sim"}
            for u, bucket in (("a", 50), ("b", 3))]
    users = UserDirectory(prof, inter, "v", test_share=0.4)
    assert users.test_requests == {"r3", "r4"} and users.cut == _ts(3).timestamp()
    assert users.heldout["a"] == ["i3", "i4"] and "late" in users.history["a"]
    # b has fewer held-out positives but never trained the ranker: preferred
    got = resolve_personas([PersonaDef(id="man", label="man", match={"gender": "men"})], users)[0]
    assert got.user_id == "b"
    import pyarrow as pa
    table = pa.table({"request_id": pa.array(["r0", "r3", None, None], pa.string()),
                      "ts": pa.array([_ts(0), _ts(3), _ts(1), _ts(5)], pa.timestamp("us", tz="UTC"))})
    assert users.visible_interactions(table)["ts"].to_pylist() == [_ts(0), _ts(1)]
