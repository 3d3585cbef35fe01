"""Rankers on the server's own candidate pools, judged by the simulator's hidden utility.

`pool_eval.py` emulates pools; this runs the real `Recommender` in-process (the artifact root's
CURRENT models, as `mmrec serve` loads them) for simulated shoppers and scenes drawn as the loop's
shoppers draw them, records every slot pool its ranking step receives (candidates, the shopper,
the context, recall ranks), and scores each recorded pool with every given ranker exactly as
`Recommender._rank` would (`Ranker.score` with the recall info). Per (request, slot) list:
NDCG@10 with the true click probability sigmoid(u - click_bias) as gain, and the mean true click
probability of the top 3 (the composer takes few items per slot).

    .venv/bin/python -m lab.feedback.real_pools --root /tmp/fl/run9/artifacts \
        --ranker base=/tmp/fl/run9/artifacts:VERSION --ranker refit=/tmp/fl/run9/artifacts:VERSION

Reads only; the recommender is wrapped, not changed. Prints JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--ranker", action="append", required=True, metavar="NAME=ROOT:VERSION")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from mmrec.api_models import RecommendRequest
    from mmrec.artifacts import ArtifactStore
    from mmrec.config import load_config
    from mmrec.rank import metrics as M
    from mmrec.rank.api_shoppers import population_for_server
    from mmrec.rank.ranker import RankContext, Ranker
    from mmrec.rank.simulator import _season_of, utility
    from mmrec.recommend import Recommender

    store = ArtifactStore(args.root)
    pop, sim = population_for_server(store, load_config("rank"))
    rec = Recommender.from_store(store)
    captured: list[dict] = []
    original = rec._rank

    def record(ctx, cands):
        pools = {slot: [rec.items.ids[p] for p in pool.positions] for slot, pool in cands.pools.items()}
        ids = [i for v in pools.values() for i in v]
        info = {i: cands.info.get(i) or {"score": 0.0, "routes": cands.routes.get(i, {}), "route_scores": {}}
                for i in ids}
        captured.append({"user": ctx.user, "occasion": ctx.scene.usages[0], "scene": ctx.scene.name,
                         "season": ctx.request.filters.season, "channel": ctx.request.channel,
                         "pools": pools, "info": info})
        return original(ctx, cands)

    rec._rank = record
    from mmrec.outfit.scenes import SceneBook

    book = SceneBook.load()  # the loop's shoppers draw scenes from it (`mmrec rank simulate`)
    names = sorted(book.names())
    by_occ: dict[str, list[str]] = {}
    for n in names:
        by_occ.setdefault(book.get(n).usages[0], []).append(n)
    rng = np.random.default_rng(args.seed)
    users = []
    for _ in range(args.requests):
        u = int(rng.integers(args.users))
        own = [n for o in pop.preferred[u] for n in by_occ.get(o, [])]
        scene = str(rng.choice(own)) if own and rng.random() < 0.7 else names[int(rng.integers(len(names)))]
        rec.recommend(RecommendRequest(user_id=f"sim_u{u:05d}", scene=scene, k=3, explain=False))
        users.append(u)
    rankers = {}
    for spec in args.ranker:
        name, where = spec.split("=", 1)
        root, version = where.rsplit(":", 1)
        rankers[name] = Ranker.load(ArtifactStore(Path(root)), version)
    season = _season_of(dt.datetime.now(dt.timezone.utc).date())
    index = {v: i for i, v in enumerate(pop.item_ids)}
    gains, sizes, scores = [], [], {k: [] for k in rankers}
    for u, c in zip(users, captured):
        occ_code = pop.usages.index(c["occasion"]) if c["occasion"] in pop.usages else -1
        rctx = RankContext(scene=c["scene"], occasion=c["occasion"], season=c["season"], channel=c["channel"])
        ids = [i for v in c["pools"].values() for i in v]
        s_all = {k: np.asarray(rk.score(c["user"], rctx, ids, recall=c["info"])) for k, rk in rankers.items()}
        at = 0
        for pool in c["pools"].values():
            rows = np.array([index.get(i, -1) for i in pool])
            n = len(pool)
            if n >= 2 and (rows >= 0).all():
                ut = utility(pop, sim.utility, np.full(n, u), rows, np.full(n, occ_code),
                             np.full(n, season, dtype=object))
                gains.append(1 / (1 + np.exp(-(ut - sim.utility.click_bias))))
                sizes.append(n)
                for k in rankers:
                    scores[k].append(s_all[k][at:at + n])
            at += n
    g = np.concatenate(gains)
    off = M.offsets_from_sizes(np.array(sizes))
    out = {"requests": args.requests, "lists": len(sizes), "mean_pool": round(float(np.mean(sizes)), 1),
           "season": season, "rankers": {}}
    for k in rankers:
        s = np.concatenate(scores[k])
        top3 = [float(np.mean(g[a:b][np.argsort(-s[a:b])[:3]])) for a, b in zip(off[:-1], off[1:])]
        out["rankers"][k] = {"version": rankers[k].version,
                             "utility_ndcg@10": round(M.summarise(M.ndcg_at_k(s, g, off, 10)), 4),
                             "top3_true_click_prob": round(float(np.mean(top3)), 4),
                             "within_list_std_log_propensity": round(float(np.mean(
                                 [np.std(np.log(np.clip(s[a:b], 1e-6, 1))) for a, b in zip(off[:-1], off[1:])])), 4)}
    out["random_utility_ndcg@10"] = round(M.summarise(M.ndcg_at_k(np.random.default_rng(1).random(len(g)), g, off, 10)), 4)
    out["oracle_top3_true_click_prob"] = round(float(np.mean(
        [np.mean(np.sort(g[a:b])[::-1][:3]) for a, b in zip(off[:-1], off[1:])])), 4)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
