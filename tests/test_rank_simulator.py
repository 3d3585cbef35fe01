"""The Myntra interaction simulator: seeded determinism, documented behaviour, simulated flags."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc

from mmrec.catalog.ingest import load_items
from mmrec.rank.config import SimConfig
from mmrec.rank.interactions import INTERACTIONS_SCHEMA, PROFILES_SCHEMA
from mmrec.rank.simulator import simulate
from rank_fixtures import profile_pool, write_items

CFG = SimConfig(n_users=60, sessions_per_user=5, candidates=12, days=20)


def _run(store, **kw):
    items = load_items(store)
    return simulate(items, profile_pool(), CFG.model_copy(update=kw))


def test_same_seed_same_logs_other_seed_other_logs(store):
    write_items(store)
    a, ha = _run(store)
    b, hb = _run(store)
    assert a.interactions.equals(b.interactions) and a.profiles.equals(b.profiles)
    assert ha.equals(hb)
    c, _ = _run(store, seed=8)
    assert not c.interactions.equals(a.interactions)


def test_logs_follow_the_contract_and_are_marked_simulated(store):
    write_items(store)
    t, hidden = _run(store)
    assert t.interactions.schema.equals(INTERACTIONS_SCHEMA, check_metadata=False)
    assert t.profiles.schema.equals(PROFILES_SCHEMA, check_metadata=False)
    assert t.notes["simulated"] is True
    assert all(dict(e)["simulated"] == "true" for e in t.profiles["extra"].to_pylist())
    events = set(t.interactions["event"].to_pylist())
    assert events <= {"impression", "click", "purchase"} and "impression" in events
    imp = t.interactions.filter(pc.equal(t.interactions["event"], "impression"))
    # one hidden utility per impression; every list has `candidates` impressions
    assert hidden.num_rows == imp.num_rows
    counts = pc.value_counts(imp["request_id"]).field("counts").to_numpy()
    assert (counts == CFG.candidates).all()
    # genders: users are men or women and only see items of their gender or unisex
    prof = {r["user_id"]: r for r in t.profiles.to_pylist()}
    items = {r["item_id"]: r["gender"] for r in load_items(store).to_pylist()}
    for r in imp.slice(0, 300).to_pylist():
        assert items[r["item_id"]] in (prof[r["user_id"]]["gender"], "unisex")
    # men carry no body profile (RTR has only women); women's come from the pool
    pool = profile_pool()
    for p in prof.values():
        if p["gender"] == "men":
            assert p["size"] is None and p["body_type"] is None
        elif p["size"] is not None:
            assert p["size"] in set(pool.size.tolist())
        assert "casual" in p["preferred_occasions"]


def test_position_bias_and_utility_drive_clicks(store):
    write_items(store)
    t, hidden = _run(store, n_users=150, sessions_per_user=8)
    inter = t.interactions
    imp = inter.filter(pc.equal(inter["event"], "impression"))
    clicks = inter.filter(pc.equal(inter["event"], "click"))
    pos_imp = np.bincount(imp["position"].to_numpy(), minlength=CFG.candidates)
    pos_click = np.bincount(clicks["position"].to_numpy(), minlength=CFG.candidates)
    ctr = pos_click / pos_imp
    assert ctr[:3].mean() > 2 * ctr[-3:].mean()                # examination falls with position
    key = lambda t: pc.binary_join_element_wise(t["request_id"], t["item_id"], "|")  # noqa: E731
    clicked = pc.is_in(key(hidden), value_set=key(clicks)).to_numpy(zero_copy_only=False)
    u = hidden["utility"].to_numpy()
    assert u[clicked].mean() > u[~clicked].mean() + 0.3       # clicks follow the hidden utility
