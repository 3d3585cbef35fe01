"""Training from logs: the attribution join, features as of the answer's time, the logs-trained
ranker on a planted log, the too-small refusal, and simulated shoppers through the HTTP API."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from mmrec.artifacts import ArtifactStore
from mmrec.errors import InputError
from mmrec.feedback.attribution import join, summary
from mmrec.feedback.export import _event_rows, _impression_rows
from mmrec.rank.config import RankConfig
from rank_fixtures import write_items

H = 3_600_000_000  # one hour in microseconds
T0 = int(dt.datetime(2024, 3, 1, 10, tzinfo=dt.timezone.utc).timestamp() * 1e6)


def imps(*answers) -> "pq.Table":
    """answers: (request_id, user, ts_us, [item ids, 4 per outfit], scene)."""
    rows = []
    for rid, user, ts, items, *scene in answers:
        shown = [[i // 4, i % 4, it, "top", 0.5 - 0.01 * i] for i, it in enumerate(items)]
        rows.append((rid, ts, user, "app", scene[0] if scene else "office", None,
                     json.dumps(shown), "{}", None))
    return _impression_rows(rows)


def evs(*events) -> "pq.Table":
    """events: (event_id, ts_us, user, request_id, item_id, type)."""
    return _event_rows([(eid, ts, ts, user, rid, item, typ, None) for eid, ts, user, rid, item, typ in events])


def labels(joined, name="clicked") -> dict:
    return {(r, i): v for r, i, v in zip(joined["request_id"].to_pylist(), joined["item_id"].to_pylist(),
                                         joined[name].to_pylist())}


# -- the join -----------------------------------------------------------------------------

def test_request_id_attribution_and_window():
    im = imps(("r1", "u1", T0, ["a", "b", "c", "d"]), ("r2", "u1", T0 + 2 * H, ["a", "e"]))
    ev = evs(("e1", T0 + 60_000_000, "u1", "r1", "b", "click"),           # r1, shown: counts
             ("e2", T0 + 60_000_000, "u1", "r1", "e", "click"),           # r1 did not show e: ignored
             ("e3", T0 + 30 * H, "u1", "r1", "c", "click"),               # after the 24 h window
             ("e4", T0 - H, "u1", "r1", "d", "click"),                    # before the answer
             ("e5", T0 + 2 * H + 5_000_000, "u1", "r2", "e", "add_to_cart"),
             ("e6", T0 + 2 * H + 9_000_000, "u1", "r2", "e", "purchase"))
    j = join(im, ev, window=dt.timedelta(hours=24))
    assert j.num_rows == 6
    c = labels(j)
    assert c[("r1", "b")] and not c[("r1", "c")] and not c[("r1", "d")] and sum(c.values()) == 1
    assert labels(j, "added")[("r2", "e")] and labels(j, "purchased")[("r2", "e")]
    assert not labels(j, "clicked")[("r2", "e")]
    row = j.to_pylist()[j["request_id"].to_pylist().index("r1") + 1]
    assert row["item_id"] == "b" and row["click_ts"].timestamp() * 1e6 == T0 + 60_000_000
    assert summary(j)["clicked"] == 1 and summary(j)["requests"] == 2


def test_events_without_request_id_go_to_the_latest_answer_in_the_window():
    im = imps(("r1", "u1", T0, ["a", "b"]), ("r2", "u1", T0 + 3 * H, ["a"]),
              ("r3", "u2", T0, ["a"]))
    ev = evs(("e1", T0 + 4 * H, "u1", None, "a", "click"),        # latest answer before it: r2
             ("e2", T0 + 1 * H, "u1", "gone", "b", "click"),      # unknown request id: by user/item
             ("e3", T0 - 1, "u2", None, "a", "click"),            # before any answer to u2
             ("e4", T0 + 2 * H, "u2", None, "a", "click"))        # window 1 h: too late
    c = labels(join(im, ev, window=dt.timedelta(hours=1.5)))
    assert c == {("r1", "a"): False, ("r1", "b"): True, ("r2", "a"): True, ("r3", "a"): False}


def test_duplicates_count_once_and_client_seen_time_is_the_answer_time():
    # the app replayed a day: the server answered now, the client saw it two days earlier
    im = imps(("r1", "u1", T0 + 48 * H, ["a", "b", "a"]))          # "a" in two outfits
    seen = T0
    ev = evs(("s1", seen, "u1", "r1", "a", "impression_seen"),
             ("e1", seen + 10_000_000, "u1", "r1", "a", "click"),
             ("e1", seen + 10_000_000, "u1", "r1", "a", "click"),   # same event exported twice
             ("e2", seen + 20_000_000, "u1", "r1", "a", "click"))   # a second click
    j = join(im, ev)
    assert j.num_rows == 2
    r = {x["item_id"]: x for x in j.to_pylist()}
    assert r["a"]["position"] == 0 and r["a"]["clicked"] and r["a"]["seen"] and not r["b"]["seen"]
    assert r["a"]["ts"].timestamp() * 1e6 == seen and r["a"]["day"] == "2024-03-01"
    assert summary(j)["clicked"] == 1


# -- features as of the answer's time ------------------------------------------------------

def test_history_counts_only_clicks_made_before_the_answer(tmp_path):
    from mmrec.catalog.ingest import load_items
    from mmrec.rank import myntra as Y
    from mmrec.rank.logs_train import to_tables
    from mmrec.rank.myntra_train import decode
    from mmrec.taxonomy import default_taxonomy

    st = ArtifactStore(tmp_path / "art")
    write_items(st)
    items = Y.ItemTable.build(load_items(st), default_taxonomy().colour_family)
    # A at 0 (clicked at +10 min), B at +5 min, C at +20 min: B must not see A's click
    im = imps(("A", "u1", T0, ["1001"]), ("B", "u1", T0 + H // 12, ["1002"]),
              ("C", "u1", T0 + H // 3, ["1003"]))
    ev = evs(("e1", T0 + H // 6, "u1", "A", "1001", "click"))
    d = decode(to_tables(join(im, ev), {"u1": {"age": 30, "gender": "women"}}, {"office": "formal"}),
               items, period_us=Y.US_PER_DAY, click_ts_column="click_ts")
    n = dict(zip(d.request_ids.tolist(), d.users.n_clicks[np.arange(len(d.request_ids))].tolist()))
    assert n == {"A": 0, "B": 0, "C": 1}
    assert d.users.age[0] == 30 and np.isnan(d.users.days_since_last[0])


# -- training on a planted log -----------------------------------------------------------------

LIKED = {"jeans", "dresses", "heels"}


def write_planted_export(root, store: ArtifactStore, days: int = 4, per_day: int = 80, seed: int = 0):
    """Answers of 3 outfits x 4 items; clicks depend on the item's category (and position)."""
    from mmrec.catalog.ingest import load_items

    items = load_items(store).to_pylist()
    ids = [it["item_id"] for it in items]
    liked = {it["item_id"] for it in items if it["category"] in LIKED}
    rng = np.random.default_rng(seed)
    for day in range(days):
        answers, events = [], []
        for r in range(per_day):
            rid, user = f"d{day}r{r}", f"u{rng.integers(25)}"
            t = T0 + day * 24 * H + r * 60_000_000
            shown = list(rng.choice(ids, 12, replace=False))
            answers.append((rid, user, t, shown))
            for i, it in enumerate(shown):
                p = (0.6 if it in liked else 0.04) * (1 + i // 4) ** -0.5
                if rng.random() < p:
                    events.append((f"{rid}-{it}", t + 5_000_000, user, rid, it, "click"))
        date = dt.datetime.fromtimestamp((T0 + day * 24 * H) / 1e6, dt.timezone.utc).date()
        for name, table in (("impressions", imps(*answers)), ("events", evs(*events))):
            (root / name / f"date={date}").mkdir(parents=True)
            pq.write_table(table, root / name / f"date={date}" / "part-0.parquet")
    return root


def test_logs_trained_ranker_beats_random_on_later_days(tmp_path, capsys):
    from mmrec.cli import main
    from mmrec.rank.ranker import Ranker

    art = tmp_path / "art"
    st = ArtifactStore(art)
    write_items(st)
    exp = write_planted_export(tmp_path / "export", st)
    assert main(["--artifacts", str(art), "--profile", "tiny", "--quiet", "rank", "train",
                 "--dataset", "logs", "--export", str(exp), "--eval-days", "1"]) == 0
    version = capsys.readouterr().out.strip()
    a = st.load("ranker", version)
    assert a.manifest["dataset"] == "logs" and a.metrics["provenance"] == "logs"
    ev = a.metrics["eval_later_days"]
    assert ev["days"] == ["2024-03-04"] and ev["answers"] == 80
    nd = ev["ndcg@10"]
    best = max(nd["lambdarank"], nd["binary"])
    assert best > nd["random"] + 0.1 and best > nd["served_ranker"] + 0.1, nd
    assert ev["click_auc_at_logged_positions"]["binary"] > 0.75
    # the server can load it, and it prefers the planted categories
    rk = Ranker.load(st, version)
    from mmrec.rank.ranker import RankContext

    cats = dict(zip(rk.items.item_ids, (rk.items.vocabs["category"][c] for c in rk.items.codes["category"])))
    ids = list(rk.items.item_ids[:60])
    s = rk.score(None, RankContext(occasion="formal"), ids)
    liked = np.array([cats[i] in LIKED for i in ids])
    assert s[liked].mean() > s[~liked].mean() + 0.1


def test_too_small_logs_say_what_was_found_and_what_is_needed(tmp_path, capsys):
    from mmrec.cli import main
    from mmrec.rank.logs_train import train_logs

    art = tmp_path / "art"
    st = ArtifactStore(art)
    write_items(st)
    exp = write_planted_export(tmp_path / "export", st, days=1, per_day=10)
    with pytest.raises(InputError, match=r"found 120 shown items in 10 answers .* over 1 day\(s\).*"
                                         r"Needed: more than 1 day"):
        train_logs(st, RankConfig(), export_dir=exp, eval_days=1, log=lambda m: None)
    code = main(["--artifacts", str(art), "--profile", "tiny", "--quiet", "rank", "train",
                 "--dataset", "logs", "--export", str(tmp_path / "nothing")])
    assert code == 2 and "no export folder" in capsys.readouterr().err


# -- simulated shoppers through the HTTP API -----------------------------------------------------

def test_shoppers_via_api_produce_joinable_logs_on_the_simulated_day(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from mmrec.catalog.ingest import load_items
    from mmrec.feedback.attribution import read_store
    from mmrec.outfit.scenes import SceneBook
    from mmrec.rank.api_shoppers import check_loopback, run_day
    from mmrec.rank.config import SimConfig
    from mmrec.rank.simulator import draw_population
    from mmrec.recommend import Recommender
    from mmrec.serving.app import create_app
    from mmrec.serving.client import MmrecClient
    from mmrec.serving.settings import FeedbackSettings, ServeSettings
    from mmrec.taxonomy import default_taxonomy
    from outfit_fixtures import write_items as write_outfit_items
    from rank_fixtures import profile_pool

    monkeypatch.setenv("MMREC_PSEUDONYM_KEY", "ab" * 32)
    st = ArtifactStore(tmp_path / "art")
    write_outfit_items(st, images_dir=tmp_path / "images")
    pop = draw_population(load_items(st), profile_pool(), SimConfig(n_users=12),
                          default_taxonomy().colour_family)
    book = SceneBook.load()
    scenes = {n: list(book.get(n).usages) for n in book.names()}
    settings = ServeSettings(response_cache_size=0, feedback=FeedbackSettings(
        enabled=True, path=str(tmp_path / "fb.sqlite"))).with_key("k1")
    first = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=2)
    with TestClient(create_app(Recommender.from_store(st), settings)) as http:
        client = MmrecClient("http://testserver", "k1", http=http)
        out = run_day(client, pop, SimConfig(), scenes, day=1, users=12, requests=30, first_day=first)
        assert http.app.state.feedback.logger.flush(timeout=10)
    assert out["requests_sent"] == 30 and out["total"]["answers"] == 30
    assert out["total"]["seen"] > 0 and out["total"]["click"] > 0
    imp, ev = read_store(tmp_path / "fb.sqlite")
    j = join(imp, ev)
    s = summary(j)
    # every answer was seen on the simulated day (client clock), not on the server's today
    assert s["requests"] == 30 and s["days"] == [first.isoformat()]
    assert s["clicked"] == out["total"]["click"] and s["purchased"] == out["total"]["purchase"]
    with pytest.raises(InputError, match="loopback only"):
        check_loopback("http://example.com:8000")
    with pytest.raises(InputError, match="not in the past"):
        run_day(client, pop, SimConfig(), scenes, day=4, users=1, requests=1, first_day=first)
