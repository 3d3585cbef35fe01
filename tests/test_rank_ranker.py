"""The served ranker end to end on a tiny simulated log: scores, save/load, cold start, users."""

from __future__ import annotations

import datetime as _dt

import numpy as np
import pytest

from mmrec.config import load_config
from mmrec.errors import InputError
from mmrec.rank import lgbm
from mmrec.rank import myntra as Y
from mmrec.rank.features import FeatureSet
from mmrec.rank.myntra_train import eval_myntra, train_myntra
from mmrec.rank.ranker import RankContext, Ranker
from mmrec.rank.simulator import run_simulation
from mmrec.rank.users import UserProfile, UserStore
from rank_fixtures import profile_pool, write_items


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from mmrec.artifacts import ArtifactStore

    store = ArtifactStore(tmp_path_factory.mktemp("rank") / "artifacts")
    write_items(store)
    cfg = load_config("rank", profile="tiny")
    run_simulation(store, cfg, pool=profile_pool())
    art = train_myntra(store, cfg, log=lambda m: None)
    return store, cfg, art


def test_scores_are_calibrated_propensities(trained):
    store, _, art = trained
    r = Ranker.load(store)
    assert r.version == art.version and r.simulated
    users = UserStore.load(store)
    ids = list(r.items.item_ids[:50])
    s = r.score(users.get(users.ids()[0]), RankContext(occasion="formal", season="summer"), ids)
    assert s.shape == (50,) and np.all((s >= 0) & (s <= 1)) and s.std() > 0
    assert r.score(None, RankContext(), []).shape == (0,)


def test_save_load_gives_identical_scores(trained, tmp_path):
    store, _, _ = trained
    a, b = Ranker.load(store), Ranker.load(store)
    users = UserStore.load(store)
    ctx = RankContext(occasion="casual", channel="kiosk")
    ids = list(a.items.item_ids[::3])
    u = users.get(users.ids()[5])
    np.testing.assert_array_equal(a.score(u, ctx, ids), b.score(u, ctx, ids))
    # the booster written to disk predicts exactly what the in-memory one did
    X = np.random.default_rng(0).random((300, 3))
    y = (X[:, 0] + 0.3 * np.random.default_rng(1).random(300) > 0.7).astype(int)
    fs = FeatureSet(X, ["a", "b", "c"])
    res = lgbm.train_model("binary", fs, y, fs, y, load_config("rank", profile="tiny").lgbm)
    bundle = lgbm.Bundle({"binary": res.booster}, {"binary": lgbm.fit_platt(
        lgbm.predict(res.booster, X), y)}, fs.names, [], {"dataset": "t"})
    with store.write("ranker_test", config={}) as w:
        bundle.save(w.path)
    loaded = lgbm.Bundle.load(store.load("ranker_test"))
    np.testing.assert_array_equal(lgbm.predict(loaded.boosters["binary"], X), lgbm.predict(res.booster, X))
    assert loaded.calibrators["binary"] == bundle.calibrators["binary"]


def test_serving_cache_gives_the_training_features(trained):
    store, _, _ = trained
    r = Ranker.load(store)
    users = UserStore.load(store)
    ids = list(r.items.item_ids[::2]) + ["no-such-item"]
    for user, ctx in ((users.get(users.ids()[1]), RankContext(occasion="formal", season="winter")),
                      (None, RankContext())):
        np.testing.assert_array_equal(r.features(user, ctx, ids).X,
                                      r.features(user, ctx, ids, cached=False).X)


def test_cold_start_new_user_profile_only(trained):
    store, _, _ = trained
    r = Ranker.load(store)
    ids = list(r.items.item_ids[:40])
    ctx = RankContext(occasion="ethnic")
    anon = r.score(None, ctx, ids)
    new = UserProfile(user_id="sim_new", simulated=True, age=24, gender="women",
                      preferred_occasions=["casual", "ethnic"])
    fs = r.features(new, ctx, ids)
    n_cat = len(r.items.vocabs["category"])
    assert np.all(fs.column("u_log_clicks") == 0)
    np.testing.assert_allclose(fs.column("x_aff_category"), 1.0 / n_cat, rtol=1e-5)   # uniform
    assert np.isfinite(fs.column("i_seg_ctr")).all()                                  # segment popularity
    cold = r.score(new, ctx, ids)
    assert np.isfinite(anon).all() and np.isfinite(cold).all()
    # a history of kurtas raises the kurta affinity and the profile is all it takes
    hist = new.model_copy(update={"n_clicks": 12, "history_counts": {"category": {"kurtas": 12.0}}})
    fh = r.features(hist, ctx, ids)
    kurta = np.array([r.items.vocabs["category"][c] == "kurtas" if c >= 0 else False
                      for c in fs.column("i_category").astype(int)])
    assert kurta.any() and (fh.column("x_aff_category")[kurta] > fs.column("x_aff_category")[kurta]).all()


def test_cold_start_new_item_uses_content_only(trained):
    store, _, _ = trained
    r = Ranker.load(store)
    # a product the logs never showed (held out: id % 10 == 0) has no statistics
    held = [i for i in r.items.item_ids if int(i) % 10 == 0][:5]
    fs = r.features(None, RankContext(), held + ["no-such-item"])
    assert np.all(fs.column("i_log_impr") == 0)
    assert np.all(fs.column("i_category")[:-1] >= 0) and fs.column("i_category")[-1] == -1
    prior = r.stats.prior_ctr()[0]
    np.testing.assert_allclose(fs.column("i_ctr"), prior, rtol=1e-5)
    s = r.score(None, RankContext(), held + ["no-such-item"])
    assert np.isfinite(s).all() and ((s >= 0) & (s <= 1)).all()


def test_recall_features_and_bad_input(trained):
    store, _, _ = trained
    r = Ranker.load(store)
    ids = list(r.items.item_ids[:4])
    recall = {ids[0]: {"score": 0.01, "routes": {"text": 3}},
              ids[1]: {"score": 0.05, "routes": {"text": 1, "image": 2}}}
    fs = r.features(None, RankContext(), ids, recall)
    rank = fs.column("r_rank_frac")
    assert rank[1] == pytest.approx(1 / 4) and rank[0] == pytest.approx(2 / 4) and np.isnan(rank[2])
    assert fs.column("r_routes")[1] == 2
    with pytest.raises(InputError, match="unknown occasion"):
        r.score(None, RankContext(occasion="moonwalk"), ids)
    with pytest.raises(InputError, match="at most"):
        r.score(None, RankContext(), ["x"] * 10_001)


def test_user_store_profiles_and_history(trained):
    store, _, _ = trained
    users = UserStore.load(store)
    assert len(users) == 80
    uid = max(users.ids(), key=lambda u: users.get(u).n_clicks)
    p = users.get(uid)
    assert p.simulated and p.n_clicks > 0 and p.top_categories
    assert sum(p.history_counts["category"].values()) == p.n_clicks
    h = users.history(uid, limit=3)
    assert len(h) <= 3 and set(h[0]) == {"item_id", "event", "ts", "context"}
    ts = [_dt.datetime.fromisoformat(e["ts"]) for e in users.history(uid, limit=100)]
    assert ts == sorted(ts, reverse=True)
    assert users.get("nobody") is None and users.history("nobody") == []


def test_eval_reports_oracle_and_baselines(trained):
    store, _, _ = trained
    out = eval_myntra(store, log=lambda m: None)
    nd = out["utility_ndcg@10"]
    assert nd["oracle"] == pytest.approx(1.0) and out["simulated"] is True
    assert set(nd) >= {"lambdarank", "binary", "random", "popularity", "segment_popularity"}
    assert 0 < nd["random"] < 1 and out["served_model"] in ("lambdarank", "binary")
    assert Y.FEATURES == Ranker.load(store).bundle.feature_names
