"""The Recommender over the real components the other stages build (here: the simulated
shoppers and the LightGBM propensity ranker, trained in-process on a small catalog)."""

from __future__ import annotations

import numpy as np
import pytest

from mmrec.api_models import RecommendRequest
from mmrec.recommend import SIMULATED_USERS_NOTE, Recommender


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mmrec.artifacts import ArtifactStore
    from mmrec.config import load_config
    from mmrec.rank.myntra_train import train_myntra
    from mmrec.rank.simulator import run_simulation
    from rank_fixtures import profile_pool, write_items

    st = ArtifactStore(tmp_path_factory.mktemp("components") / "artifacts")
    write_items(st)
    cfg = load_config("rank", profile="tiny")
    run_simulation(st, cfg, pool=profile_pool())
    train_myntra(st, cfg, log=lambda m: None)
    return st


@pytest.fixture(scope="module")
def rec(store):
    return Recommender.from_store(store)


def test_ranker_and_users_are_loaded_and_reported(rec, store):
    assert rec.versions["ranker"] == store.current_version("ranker")
    assert rec.versions["users"].endswith("(simulated)")
    assert not any("ranker" in n for n in rec.load_notes)


def test_personalised_outfits_keep_rules_and_say_users_are_simulated(rec):
    users = rec.users.ids()
    shopper = next(u for u in users if rec.users.history(u))
    resp = rec.recommend(RecommendRequest(scene="casual weekend", user_id=shopper, k=2))
    assert resp.outfits and SIMULATED_USERS_NOTE in resp.notes
    sc = rec.scenes.get("casual weekend")
    for o in resp.outfits:
        assert sc.outfit_violations([rec.items.row(i.item_id) for i in o.items]) == []
        assert o.explanation.supported == o.explanation.statements
        assert all(0.0 <= i.score <= 1.0 for i in o.items)
    anon = rec.recommend(RecommendRequest(scene="casual weekend", k=2))
    assert SIMULATED_USERS_NOTE not in anon.notes


def test_item_scores_are_the_rankers_propensities(rec):
    # the same catalog and scene without the ranker: scores fall back to the recall order
    plain = Recommender(rec.items, rec.scenes, priors=rec.priors, config=rec.cfg)
    req = RecommendRequest(scene="casual weekend", k=2)
    ranked = [i.score for o in rec.recommend(req).outfits for i in o.items]
    unranked = [i.score for o in plain.recommend(req).outfits for i in o.items]
    assert ranked != unranked
    assert plain.versions["ranker"].startswith("absent")
    # and they are calibrated propensities of the candidates, as the ranker computes them
    from mmrec.rank.ranker import RankContext

    ids = [i.item_id for o in rec.recommend(req).outfits for i in o.items]
    direct = rec.ranker.score(None, RankContext(scene="casual_weekend", occasion="casual"), ids)
    assert np.all((direct >= 0) & (direct <= 1))
