"""Training from logs featurises each answer as serving did (`mmrec.rank.logs_served`): the
user store's state, the warm start from the ranker that answered, the seen rows; and the
logs-trained ranker's recency measured to now."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from mmrec.artifacts import ArtifactStore
from mmrec.config import load_config
from mmrec.errors import InputError
from mmrec.feedback.export import _event_rows, _impression_rows
from rank_fixtures import profile_pool, write_items

KEY = "cd" * 32
H = 3_600_000_000
T0 = int(dt.datetime(2024, 6, 3, 9, tzinfo=dt.timezone.utc).timestamp() * 1e6)
LIKED = {"jeans", "dresses", "heels", "watches"}
STAT_COLUMNS = {"i_log_impr", "i_ctr", "i_buy_rate", "i_seg_ctr", "i_occ_ctr",
                "x_lift_category", "x_lift_family", "x_lift_usage"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A served world: items, simulated users (the user store), the ranker that answered, and
    three days of its logged answers to those users (3 outfits x 4 items; the app reports the
    first two outfits seen; clicks on liked categories among them)."""
    from mmrec.catalog.ingest import load_items
    from mmrec.feedback.events import NAMESPACE
    from mmrec.rank.interactions import Pseudonymiser
    from mmrec.rank.myntra_train import train_myntra
    from mmrec.rank.simulator import run_simulation

    tmp = tmp_path_factory.mktemp("served")
    store = ArtifactStore(tmp / "art")
    write_items(store)
    cfg = load_config("rank", profile="tiny")
    sim = run_simulation(store, cfg, pool=profile_pool())
    base = train_myntra(store, cfg, log=lambda m: None)
    from mmrec.rank.users import UserStore

    users = UserStore.load(store).ids()
    pseudo = Pseudonymiser(bytes.fromhex(KEY), namespace=NAMESPACE).one
    items = load_items(store).to_pylist()
    ids = [it["item_id"] for it in items]
    liked = {it["item_id"] for it in items if it["category"] in LIKED}
    versions = json.dumps({"ranker": base.version, "users": f"{sim.version} (simulated)"})
    rng = np.random.default_rng(0)
    for day in range(3):
        answers, events = [], []
        for r in range(60):
            rid, raw = f"d{day}r{r}", users[int(rng.integers(len(users)))]
            t = T0 + day * 24 * H + r * 60_000_000
            shown = list(rng.choice(ids, 12, replace=False))
            rows = [[i // 4, i % 4, it, "top", 0.5] for i, it in enumerate(shown)]
            answers.append((rid, t, pseudo(raw), "app", "office", None, json.dumps(rows), versions, None))
            for i, it in enumerate(shown[:8]):  # outfits 0 and 1 looked at
                events.append((f"{rid}-{it}-s", t + 1_000_000, t + 1_000_000, pseudo(raw), rid, it,
                               "impression_seen", None))
                if rng.random() < (0.7 if it in liked else 0.1):
                    events.append((f"{rid}-{it}-c", t + 5_000_000, t + 5_000_000, pseudo(raw), rid, it,
                                   "click", None))
        date = dt.datetime.fromtimestamp((T0 + day * 24 * H) / 1e6, dt.timezone.utc).date()
        for name, table in (("impressions", _impression_rows(answers)), ("events", _event_rows(events))):
            (tmp / "export" / name / f"date={date}").mkdir(parents=True)
            pq.write_table(table, tmp / "export" / name / f"date={date}" / "part-0.parquet")
    return store, cfg, base, sim, tmp / "export"


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("MMREC_PSEUDONYM_KEY", KEY)


def _serving_features(store, version, lg, rows):
    """`Ranker.features` of each logged answer of ``rows``, as the server would build them."""
    from mmrec.feedback.events import NAMESPACE
    from mmrec.rank.interactions import Pseudonymiser
    from mmrec.rank.ranker import RankContext, Ranker
    from mmrec.rank.users import UserStore

    rk = Ranker.load(store, version)
    users = UserStore.load(store)
    pseudo = Pseudonymiser(bytes.fromhex(KEY), namespace=NAMESPACE).one
    raw_of = {pseudo(u): u for u in users.ids()}
    user_of = dict(zip(lg.joined["request_id"].to_pylist(), lg.joined["user_id"].to_pylist()))
    d = lg.d
    out = None
    for q in np.unique(d.req[rows]):
        at = np.nonzero(d.req[rows] == q)[0]
        now = dt.datetime.fromtimestamp(d.req_ts[q] / 1e6, dt.timezone.utc)
        fs = rk.features(users.get(raw_of[user_of[d.request_ids[q]]]), RankContext(occasion="formal", now=now),
                         [d.items.item_ids[i] for i in d.item_row[rows[at]]])
        out = np.empty((len(rows), fs.X.shape[1]), np.float32) if out is None else out
        out[at] = fs.X
    return fs.names, out


@pytest.mark.parametrize("user_state", ["served", "logs"])
def test_training_features_are_the_serving_features(served, key, user_state):
    from mmrec.rank.logs_train import featurise_logs
    from mmrec.rank.myntra_train import features_for

    store, cfg, base, _, export = served
    cfg = cfg.model_copy(update={"logs": cfg.logs.model_copy(update={"user_state": user_state})})
    lg = featurise_logs(store, cfg, export_dir=export, log=lambda m: None)
    rows = np.nonzero(lg.d.req >= lg.d.req.max() - 40)[0]
    train = features_for(lg.d, rows, serve_position=True)
    names, serve = _serving_features(store, base.version, lg, rows)
    assert names == train.names
    differ = {n for j, n in enumerate(names) if not n.startswith("r_") and n not in STAT_COLUMNS
              and not np.allclose(train.X[:, j], serve[:, j], equal_nan=True, rtol=1e-5)}
    if user_state == "served":
        assert differ == set()
    else:  # the logged history is not what the server read: the skew this mode carries
        assert {"u_log_clicks", "u_log_requests", "u_days_since_last", "x_aff_category"} <= differ


def test_warm_start_continues_the_ranker_that_answered(served, key):
    from mmrec.catalog.ingest import load_items
    from mmrec.rank import lgbm
    from mmrec.rank import myntra as Y
    from mmrec.rank.logs_train import featurise_logs, train_logs
    from mmrec.rank.myntra_train import STATS_FILE
    from mmrec.rank.ranker import RankContext, Ranker

    store, cfg, base, _, export = served
    art = train_logs(store, cfg, export_dir=export, eval_days=1, log=lambda m: None)
    new, old = lgbm.Bundle.load(art), lgbm.Bundle.load(base)
    assert new.meta["warm_start"] == base.version and new.meta["negatives"] == "seen"
    assert base.version in {i.get("version") for i in art.manifest["inputs"]}
    for m in ("lambdarank", "binary"):
        assert new.boosters[m].num_trees() >= old.boosters[m].num_trees()
        assert art.metrics["models"][m]["warm_start_trees"] == old.boosters[m].num_trees()
    assert art.metrics["served_as"]["users"]["known_to_the_user_store"] == 180
    # the statistics served next are the base's plus every logged shown item
    lg = featurise_logs(store, cfg, export_dir=export, log=lambda m: None)
    items = Y.ItemTable.build(load_items(store), lambda c: c, vocabs=old.meta["item_vocabs"])
    b = Y.ItemStats.load_for(base.file(STATS_FILE), items)
    n = Y.ItemStats.load_for(art.file(STATS_FILE), items)
    logged = int((~lg.d.item_held_out & (lg.d.item_row >= 0)).sum())
    assert n.impr.sum() == pytest.approx(b.impr.sum() + logged)
    # only the seen outfits (0 and 1) train
    assert lg.keep.sum() == 3 * 60 * 8 and not lg.keep[lg.d.position == 2].any()
    # the continued model still prefers the categories shoppers clicked
    rk = Ranker.load(store, art.version)
    cats = {i: rk.items.vocabs["category"][c] for i, c in zip(rk.items.item_ids, rk.items.codes["category"])}
    ids = list(rk.items.item_ids[:80])
    s = rk.score(None, RankContext(occasion="formal"), ids)
    liked = np.array([cats[i] in LIKED for i in ids])
    assert s[liked].mean() > s[~liked].mean()


def test_a_different_pseudonym_key_is_refused_with_the_fix(served, monkeypatch):
    from mmrec.rank.logs_train import featurise_logs

    store, cfg, _, _, export = served
    monkeypatch.setenv("MMREC_PSEUDONYM_KEY", "ef" * 32)
    with pytest.raises(InputError, match="MMREC_PSEUDONYM_KEY.*logs.user_state=logs"):
        featurise_logs(store, cfg, export_dir=export, log=lambda m: None)


def test_logs_ranker_measures_recency_to_now(served, key):
    from mmrec.rank.logs_train import train_logs
    from mmrec.rank.ranker import RankContext, Ranker
    from mmrec.rank.users import UserProfile

    store, cfg, base, _, export = served
    art = train_logs(store, cfg, export_dir=export, eval_days=1, log=lambda m: None)
    user = UserProfile(user_id="x", n_clicks=3,
                       last_event_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2))
    days = {}
    for version in (art.version, base.version):
        fs = Ranker.load(store, version).features(user, RankContext(), ["1001"])
        days[version] = fs.column("u_days_since_last")[0]
    assert days[art.version] == pytest.approx(2.0, abs=0.01)
    # the simulated ranker keeps its world's now, the end of its simulated log (in the past)
    assert days[base.version] == 0.0


def test_refit_ships_a_model_of_every_day_and_keeps_the_evaluated_fit_on_record(served, key):
    from mmrec.rank import lgbm
    from mmrec.rank.logs_train import train_logs

    store, cfg, *_, export = served
    cfg = cfg.model_copy(update={"logs": cfg.logs.model_copy(update={"refit_all_days": True})})
    art = train_logs(store, cfg, export_dir=export, eval_days=1, log=lambda m: None)
    m = art.metrics
    # 180 answers: the evaluated fit trained on days 1-2 (less its validation), the shipped one on all
    assert m["evaluated_fit"]["train_requests"] + m["evaluated_fit"]["val_requests"] == 120
    assert m["train_requests"] + m["val_requests"] == 180 and m["eval_later_days"]["days"] == ["2024-06-05"]
    assert lgbm.Bundle.load(art).meta["fit"].startswith("refit on every logged day")
