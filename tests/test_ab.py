"""A/B variants (#24 item 4): config, stable bucketing, routing, the logged variant, the report."""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import zlib

import pytest
from fastapi.testclient import TestClient

from mmrec.ab.config import ABConfig, bucket_point
from mmrec.ab.report import report, wilson
from mmrec.ab.router import VariantRecommender
from mmrec.cli import main
from mmrec.config import load_config
from mmrec.errors import ConfigError
from mmrec.feedback.store import IMPRESSION_COLUMNS, FeedbackStore, connect
from mmrec.serving.app import create_app
from mmrec.serving.settings import FeedbackSettings, ServeSettings
from outfit_fixtures import jpeg_bytes, write_items

KEY = "ab-key-1"
AB = {"experiment": "ranker-v2", "variants": [{"name": "control", "weight": 1},
                                              {"name": "treat", "weight": 3}]}


@pytest.fixture(scope="module", autouse=True)
def _key():
    mp = pytest.MonkeyPatch()
    mp.setenv("MMREC_PSEUDONYM_KEY", "cd" * 32)  # never the developer's key file
    yield
    mp.undo()


# ------------------------------------------------------------------ bucketing
def test_bucketing_is_pinned_stable_and_follows_weights():
    ab = ABConfig.model_validate(AB)
    # pinned: sha256-based, so the same in every process, replica and Python version
    assert [round(bucket_point("ranker-v2", u), 6) for u in ("alice", "bob", "carol")] == \
        [0.789421, 0.461286, 0.031745]  # control owns [0, 0.25), treat [0.25, 1)
    pinned = {u: ab.assign(u) for u in ("alice", "bob", "carol", "dave", "u-17", "u-18")}
    assert pinned == PINNED, pinned
    assert all(ab.assign(u) == v for u, v in pinned.items())  # again: no state between calls
    ids = [f"user-{i}" for i in range(10_000)]
    share = sum(ab.assign(u) == "treat" for u in ids) / len(ids)
    assert abs(share - 0.75) < 0.02, share
    # another experiment name reshuffles independently: about 3/4 x 3/4 + 1/4 x 1/4 agree
    other = ab.model_copy(update={"experiment": "colour-test"})
    agree = sum(ab.assign(u) == other.assign(u) for u in ids) / len(ids)
    assert abs(agree - 0.625) < 0.03, agree
    assert ab.assign(None) == "control"
    assert ABConfig.model_validate({**AB, "anonymous_variant": "treat"}).assign(None) == "treat"


PINNED = {"alice": "treat", "bob": "treat", "carol": "control", "dave": "treat",
          "u-17": "treat", "u-18": "treat"}


@pytest.mark.parametrize("ab, words", [
    ({"experiment": "x", "variants": [{"name": "a"}, {"name": "a"}]}, "repeated: ['a']"),
    ({"experiment": "x", "variants": [{"name": "a", "weight": 0}, {"name": "b"}]}, "greater than 0"),
    ({"experiment": "x", "variants": [{"name": "a", "weight": -1}, {"name": "b"}]}, "greater than 0"),
    ({"experiment": "x", "variants": [{"name": "a"}]}, "at least 2"),
    ({"experiment": "x", "variants": [{"name": "a"}, {"name": "b"}], "anonymous_variant": "c"},
     "'c' is not a variant"),
    ({"experiment": "x", "variants": [{"name": "a", "compose": {"w_fun": 1}}, {"name": "b"}]},
     "unknown compose setting(s) ['w_fun']"),
    ({"experiment": "x", "variants": [{"name": "a", "compose": {"w_compat": -1}}, {"name": "b"}]},
     "greater than or equal to 0"),
    ({"experiment": "x", "variants": [{"name": "a", "ranker": "artifacts/ranker/v1"}, {"name": "b"}]},
     "not a path"),
    ({"experiment": "x", "variants": [{"name": "a", "colour": 1}, {"name": "b"}]}, "unknown key"),
])
def test_config_refuses_nonsense_with_the_field_named(ab, words):
    with pytest.raises(ConfigError) as e:
        load_config("serve", overrides=[f"ab={json.dumps(ab)}"])
    assert words in str(e.value) and "ab" in str(e.value)


def test_no_ab_section_serves_as_before():
    assert load_config("serve").ab is None


# ------------------------------------------------------------------ routing and the log
class Photos:
    async def analyze(self, image):
        from mmrec.outfit.photo import PhotoAnalysis

        return PhotoAnalysis(attributes={"category": {"value": "shirts", "confidence": 0.9}},
                             versions={"tagger": "fixed"})


class StubRanker:
    """Scores items by a hash of their id: a ranker that orders differently from recall."""

    version = "stub-2"

    def score(self, user, context, item_ids, recall=None):
        return [zlib.crc32(i.encode()) % 1000 / 1000 for i in item_ids]


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    from mmrec.artifacts import ArtifactStore
    from mmrec.recommend import Recommender

    root = tmp_path_factory.mktemp("ab")
    st = ArtifactStore(root / "artifacts")
    write_items(st, images_dir=root / "images")
    base = Recommender.from_store(st)
    ab = ABConfig.model_validate({**AB, "variants": [
        {"name": "control"}, {"name": "treat", "weight": 3, "compose": {"w_compat": 2.0}}]})
    return VariantRecommender(base, ab, {"treat": StubRanker()})


def test_variants_share_the_catalog_and_differ_in_ranker_and_compose(routed):
    c, t = routed.variants["control"], routed.variants["treat"]
    assert c.items is t.items is routed.items and c.candidates is t.candidates
    assert c.recall is t.recall and c.photo is t.photo
    assert t.ranker.version == "stub-2" and c.ranker is None
    assert t.composer.cfg.w_compat == 2.0 and c.composer.cfg.w_compat != 2.0
    assert t.composer._pairs is c.composer._pairs  # pair matrices do not depend on weights
    assert (c.versions["variant"], t.versions["variant"]) == ("control", "treat")
    assert t.versions["ranker"] == "stub-2" and t.versions["compose"] == "w_compat=2.0"


def test_stock_changes_through_the_router_reach_every_variant(routed):
    from mmrec.recommend.inventory import apply_stock

    item = routed.items.ids[0]
    was, gen = bool(routed.items.in_stock[0]), routed.generation
    try:
        assert apply_stock(routed, [(item, not was, None)]) == 1
        assert all(bool(v.items.in_stock[0]) is (not was) for v in routed.variants.values())
        assert routed.generation != gen  # the API's response cache starts afresh
    finally:
        apply_stock(routed, [(item, was, None)])


def test_load_recommender_builds_variants_from_the_store(tmp_path):
    from mmrec.ab.router import load_recommender
    from mmrec.artifacts import ArtifactStore
    from mmrec.errors import ArtifactNotFound
    from mmrec.recommend import Recommender

    st = ArtifactStore(tmp_path / "artifacts")
    write_items(st, images_dir=tmp_path / "images")
    assert isinstance(load_recommender(st, None), Recommender)  # no experiment: as before
    ab = ABConfig.model_validate({"experiment": "e", "variants": [{"name": "control"},
                                                                  {"name": "plain", "ranker": "none"}]})
    routed = load_recommender(st, ab)
    assert routed.variants["plain"].versions["ranker"].startswith("absent")
    bad = ABConfig.model_validate({"experiment": "e", "variants": [{"name": "control"},
                                                                   {"name": "v9", "ranker": "v9"}]})
    with pytest.raises(ArtifactNotFound, match="v9"):
        load_recommender(st, bad)


def test_variant_in_every_response_and_in_the_impression_log(routed, tmp_path):
    settings = ServeSettings(response_cache_size=16, feedback=FeedbackSettings(
        enabled=True, path=str(tmp_path / "fb.sqlite"))).with_key(KEY)
    app = create_app(routed, settings, photo=Photos())
    sent = []
    with TestClient(app) as client:
        client.headers.update({"X-API-Key": KEY})
        for user in ("alice", "carol", "alice", None):  # the second alice is a cache hit
            body = {"scene": "office", "k": 2, "filters": {"genders": ["men"]},
                    **({"user_id": user} if user else {})}
            r = client.post("/v1/recommend", json=body)
            assert r.status_code == 200, r.text
            v = r.json()["versions"]
            assert v["variant"] == routed.ab.assign(user) and v["experiment"] == "ranker-v2"
            sent.append((r.json()["request_id"], v["variant"]))
        p = client.post("/v1/recommend/photo", files={"image": ("p.jpg", jpeg_bytes(), "image/jpeg")},
                        data={"scene": "office", "k": "1", "user_id": "carol"})
        assert p.status_code == 200, p.text
        assert p.json()["versions"]["variant"] == routed.ab.assign("carol")
        sent.append((p.json()["request_id"], p.json()["versions"]["variant"]))
        assert app.state.feedback.logger.flush(5)
        logged = {row[0]: row for chunk in app.state.feedback.store.rows("impressions") for row in chunk}
    assert {"treat", "control"} == {v for _, v in sent}
    for rid, variant in sent:
        row = dict(zip(IMPRESSION_COLUMNS, logged[rid]))
        assert row["variant"] == variant and json.loads(row["versions"])["variant"] == variant


# ------------------------------------------------------------------ the report
T0 = dt.datetime(2026, 12, 1, 10, tzinfo=dt.timezone.utc)


def write_store(path, rows: list[tuple], events: list[tuple]) -> None:
    """A feedback store at ``path`` holding impression ``rows`` and ``events``."""
    con = connect(path)
    store = FeedbackStore(path)
    con.execute("BEGIN")
    con.executemany(f"INSERT INTO impressions VALUES ({','.join('?' * len(IMPRESSION_COLUMNS))})", rows)
    con.execute("COMMIT")
    con.close()
    store.add_events(events)
    store.close()


def plant(path, rates: dict[str, float], *, users=300, answers=4, experiment="ranker-v2",
          anonymous=0) -> None:
    """A store where each variant's answers are clicked at exactly ``rates[variant]``; clicks
    carry the request_id on even answers and only user + item on odd ones (fallback rule)."""
    rows, events, n = [], [], 0
    for variant, rate in rates.items():
        for u in range(users):
            for a in range(answers):
                rid = f"{variant}-{u}-{a}"
                ts = int((T0 + dt.timedelta(minutes=n)).timestamp() * 1e6)
                user = f"u_{variant}{u}" if u >= anonymous else None
                item = f"i{n % 7}"
                rows.append((rid, ts, user, "app", "office", None, json.dumps([[0, 0, item, "top", 0.5]]),
                             json.dumps({"experiment": experiment, "variant": variant}), variant))
                # clicked answers spread over users: answer n is clicked when frac(n * rate) wraps
                if int((n + 1) * rate) > int(n * rate):
                    events.append((f"e{n}", ts + 60_000_000, ts + 61_000_000, user,
                                   rid if a % 2 == 0 or user is None else None, item, "click", None))
                    if int((n + 1) * rate / 2) > int(n * rate / 2):
                        events.append((f"p{n}", ts + 90_000_000, ts + 91_000_000, user, rid, item,
                                       "purchase", None))
                n += 1
    write_store(path, rows, events)


def test_report_finds_a_clear_winner(tmp_path, capsys):
    path = tmp_path / "fb.sqlite"
    plant(path, {"control": 0.10, "treat": 0.25})
    out = tmp_path / "ab.json"
    assert main(["ab", "report", "--store", str(path), "--out", str(out), "--resamples", "500"]) == 0
    printed = capsys.readouterr().out
    rep = json.loads(out.read_text())
    c, t = rep["variants"]["control"], rep["variants"]["treat"]
    assert (c["answers"], c["users"], t["answers"]) == (1200, 300, 1200)
    assert c["ctr"]["rate"] == pytest.approx(0.10, abs=0.002) and t["ctr"]["rate"] == pytest.approx(0.25, abs=0.002)
    assert c["ctr"]["ci95"][0] < 0.10 < c["ctr"]["ci95"][1]
    d = t["ctr"]["diff_vs_control"]
    assert d["diff"] == pytest.approx(0.15, abs=0.003) and d["excludes_0"] and 0.10 < d["ci95"][0] < d["ci95"][1] < 0.20
    assert t["purchase_rate"]["rate"] == pytest.approx(0.125, abs=0.002)
    assert t["add_to_cart_rate"]["rate"] == 0.0
    assert re.search(r"^ctr +treat +300 +1200 +25\.00% .* \+15\.00 pp .* \*$", printed, re.M), printed


def test_report_with_equal_variants_covers_zero_and_leaves_out_anonymous(tmp_path):
    path = tmp_path / "fb.sqlite"
    plant(path, {"control": 0.2, "treat": 0.2}, anonymous=10)
    import mmrec.feedback.attribution as attr

    imp, ev = attr.read_store(path)
    rep = report(imp, ev, resamples=500)
    d = rep["variants"]["treat"]["ctr"]["diff_vs_control"]
    assert d["ci95"][0] < 0 < d["ci95"][1] and not d["excludes_0"]
    assert rep["excluded_anonymous"] == 2 * 10 * 4 and rep["variants"]["control"]["users"] == 290
    # a window shorter than the click delay (60 s) loses the clicks that carry no request_id
    short = report(imp, ev, resamples=100, window=dt.timedelta(seconds=30))
    assert short["variants"]["control"]["ctr"]["rate"] < rep["variants"]["control"]["ctr"]["rate"]


def test_report_reads_an_export_and_filters_by_time(tmp_path):
    path = tmp_path / "fb.sqlite"
    plant(path, {"control": 0.1, "treat": 0.3}, users=50, answers=2)
    assert main(["feedback", "export", "--store", str(path), "--out", str(tmp_path / "x")]) == 0
    out = tmp_path / "r.json"
    until = (T0 + dt.timedelta(minutes=100)).isoformat()
    assert main(["ab", "report", "--export", str(tmp_path / "x"), "--until", until, "--out", str(out),
                 "--resamples", "100"]) == 0
    rep = json.loads(out.read_text())
    assert rep["variants"]["control"]["answers"] == 100 and "treat" not in rep["variants"]


def test_report_errors_are_exit_2_with_the_reason(tmp_path, capsys):
    empty = tmp_path / "empty.sqlite"
    FeedbackStore(empty).close()
    assert main(["ab", "report", "--store", str(empty)]) == 2
    assert "no impression has an A/B variant" in capsys.readouterr().err
    assert main(["ab", "report", "--store", str(tmp_path / "missing.sqlite")]) == 2
    assert "no feedback store" in capsys.readouterr().err
    two = tmp_path / "two.sqlite"
    plant(two, {"a": 0.1, "b": 0.1}, users=5, experiment="one")
    con = sqlite3.connect(two)
    con.execute("UPDATE impressions SET versions = '{\"experiment\": \"two\"}' WHERE request_id LIKE 'b-%'")
    con.commit()
    con.close()
    assert main(["ab", "report", "--store", str(two)]) == 2
    assert "several experiments ['one', 'two']" in capsys.readouterr().err


def test_a_schema_1_store_keeps_its_variants_when_upgraded_and_reports(tmp_path):
    # the variant column is in schema 1 (no migration needed for it); a store written before
    # schema 2 opens, migrates forward and still reports every planted answer
    from mmrec.feedback.store import MIGRATIONS, SCHEMA_VERSION

    plant(tmp_path / "new.sqlite", {"control": 0.1, "treat": 0.3}, users=20, answers=2)
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)  # a schema-1 file holding the same rows
    for stmt in MIGRATIONS[1]:
        con.execute(stmt)
    con.execute("PRAGMA user_version=1")
    con.execute(f"ATTACH '{tmp_path / 'new.sqlite'}' AS new")
    con.execute("INSERT INTO impressions SELECT * FROM new.impressions")
    con.execute("INSERT INTO events SELECT * FROM new.events")
    con.commit()
    con.close()
    FeedbackStore(path).close()  # opening migrates forward
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("SELECT COUNT(*), COUNT(variant) FROM impressions").fetchone() == (80, 80)
    con.close()
    import mmrec.feedback.attribution as attr

    rep = report(*attr.read_store(path), resamples=100)
    assert {v: r["answers"] for v, r in rep["variants"].items()} == {"control": 40, "treat": 40}
    assert rep["variants"]["treat"]["ctr"]["rate"] == pytest.approx(0.3, abs=0.03)  # events kept too


def test_item_click_rate_separates_variants_whose_answers_all_get_a_click(tmp_path, capsys):
    # every answer of both variants gets at least one click (per-answer CTR 100% each), but
    # treat's answers hold 6 clicked items of 10 and control's 3: only the item rate sees it
    path = tmp_path / "fb.sqlite"
    rows, events, n = [], [], 0
    for variant, k in (("control", 3), ("treat", 6)):
        for u in range(39):
            for a in range(3):
                rid = f"{variant}-{u}-{a}"
                ts = int((T0 + dt.timedelta(minutes=n)).timestamp() * 1e6)
                shown = [[i // 4, i % 4, f"i{i}", "top", 0.5] for i in range(10)]
                rows.append((rid, ts, f"u_{variant}{u}", "app", "office", None, json.dumps(shown),
                             json.dumps({"experiment": "e", "variant": variant}), variant))
                for i in range(k + (u % 3) - 1):  # users differ a little around k
                    events.append((f"{rid}-{i}", ts + 60_000_000, ts + 61_000_000, f"u_{variant}{u}",
                                   rid, f"i{i}", "click", None))
                n += 1
    write_store(path, rows, events)
    out = tmp_path / "r.json"
    assert main(["ab", "report", "--store", str(path), "--out", str(out), "--resamples", "300"]) == 0
    printed = capsys.readouterr().out
    rep = json.loads(out.read_text())
    c, t = rep["variants"]["control"], rep["variants"]["treat"]
    assert c["ctr"]["rate"] == t["ctr"]["rate"] == 1.0 and not t["ctr"]["diff_vs_control"]["excludes_0"]
    assert (c["shown_items"], c["item_ctr"]["unit"], c["ctr"]["unit"]) == (1170, "shown item", "answer")
    assert c["item_ctr"]["rate"] == pytest.approx(0.3) and t["item_ctr"]["rate"] == pytest.approx(0.6)
    d = t["item_ctr"]["diff_vs_control"]
    assert d["excludes_0"] and 0.25 < d["ci95"][0] < 0.3 < d["diff"] + 1e-9 < d["ci95"][1] < 0.35
    assert re.search(r"^item_ctr +treat +39 +1170 +60\.00% .* \+30\.00 pp .* \*$", printed, re.M), printed
    assert "per shown item" in printed


def test_wilson_matches_the_textbook_values():
    lo, hi = wilson(10, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.0552, 0.1744)
    assert wilson(0, 0) == (0.0, 1.0) and wilson(0, 50)[0] == 0.0
