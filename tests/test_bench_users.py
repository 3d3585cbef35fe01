"""Personas from simulated users, histories cut at the held-out split, the ranking probe.

Uses the ranker engineer's real simulator and LightGBM training on the tiny catalog (seconds).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import bench_fixtures as BF
from mmrec.cli import main

pytest.importorskip("lightgbm")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from mmrec.catalog.ingest import load_items
    from mmrec.rank.config import RankConfig, SimConfig
    from mmrec.rank.interactions import write_tables
    from mmrec.rank.myntra_train import train_myntra
    from mmrec.rank.simulator import ProfilePool, simulate
    from mmrec.taxonomy import default_taxonomy

    root = tmp_path_factory.mktemp("bench_users")
    store, suite = BF.write_world(root, modes=("scene", "text"))
    # a small pool standing in for the RTR / H&M profile distributions
    pool = ProfilePool(ages=np.array([22, 30, 41, 60], np.float32),
                       body_type=np.array(["hourglass", "pear"], dtype=object),
                       size=np.array([4, 8], np.float32), height_cm=np.array([160, 170], np.float32),
                       weight_kg=np.array([55, 70], np.float32), occasions=[["work"], ["wedding", "party"]])
    tables, _ = simulate(load_items(store), pool,
                         SimConfig(n_users=60, sessions_per_user=8, candidates=8, days=30),
                         colour_family=default_taxonomy().colour_family)
    write_tables(store, "sim", tables, RankConfig(), key_fingerprint=None)
    train_myntra(store, RankConfig(lgbm={"n_estimators": 20, "min_data_in_leaf": 5}))
    out = root / "run"
    rc = main(["--artifacts", str(store.root), "--quiet", "bench", "run", "--suite", str(suite),
               "--out", str(out), "--no-publish", "--set", f"scenes_path={root / 'scenes.yaml'}"])
    assert rc == 0
    return store, json.loads((out / "metrics.json").read_text()), out


def test_personas_resolve_to_simulated_users_with_heldout(world):
    store, m, out = world
    for p in m["personas"]:
        assert p["resolved_from"].startswith("interactions_sim/") and p["heldout"] > 0
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["request"]["user_id"] and r["request"]["user_id"].startswith("sim_") for r in results)


def test_served_histories_end_before_the_heldout_window(world):
    store, m, out = world
    sysinfo = m["run"]["system"]
    assert "histories before the test window" in sysinfo["versions"]["users"]
    assert any("no leakage" in n for n in sysinfo["notes"])


def test_ranking_probe_scores_heldout_positives(world):
    store, m, out = world
    t = m["totals"]
    for name in ("rank.ndcg@10", "rank.auc", "rank.hit@10"):
        assert 0.0 <= t[name]["value"] <= 1.0 and t[name]["cases"] == m["run"]["n_cases"]
    assert m["totals"]["scene_rules"]["value"] == 1.0
