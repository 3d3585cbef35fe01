"""How rankers order a whole candidate pool, judged by the simulator's hidden utility.

Offline evaluation on logged answers sees only the items some ranker already chose; at serving a
ranker orders every recall candidate. This scores emulated pools (for a simulated shopper in a
scene of the kind the loop's shoppers ask for: half the pool items of the scene's occasion, half
any item of a compatible gender, as the simulator's recall) with each given ranker, and measures
NDCG@10 with the true click probability sigmoid(u - click_bias) as gain (1 = the oracle's order)
and the mean true click probability of each ranker's top 10.

    .venv/bin/python -m lab.feedback.pool_eval --root /tmp/fl/run3/artifacts \
        --ranker base=/tmp/fl/run3/artifacts:VERSION --ranker new=/tmp/fl/run3/artifacts:VERSION

Approximations: no recall ranks are passed (serving passes them; r_* features are missing
here), the pools are emulated, not the server's. The shoppers' season is today's. Prints JSON.
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
    ap.add_argument("--root", type=Path, required=True, help="artifact root with items and interactions_sim")
    ap.add_argument("--ranker", action="append", required=True, metavar="NAME=ROOT:VERSION")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--users", type=int, default=1000, help="the first N simulated shoppers")
    ap.add_argument("--pool", type=int, default=300)
    ap.add_argument("--occasion-share", type=float, default=0.5,
                    help="share of the pool drawn from the scene's occasion (the rest: any item)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from mmrec.artifacts import ArtifactStore
    from mmrec.config import load_config
    from mmrec.outfit.scenes import SceneBook
    from mmrec.rank import metrics as M
    from mmrec.rank.api_shoppers import population_for_server
    from mmrec.rank.ranker import RankContext, Ranker
    from mmrec.rank.simulator import GENDER_POOL, _season_of, utility
    from mmrec.rank.users import UserStore

    store = ArtifactStore(args.root)
    pop, sim = population_for_server(store, load_config("rank"))
    users = UserStore.load(store)
    rankers = {}
    for spec in args.ranker:
        name, where = spec.split("=", 1)
        root, version = where.rsplit(":", 1)
        rankers[name] = Ranker.load(ArtifactStore(Path(root)), version)
    book = SceneBook.load()
    names = sorted(book.names())
    by_occ: dict[str, list[str]] = {}
    for n in names:
        by_occ.setdefault(book.get(n).usages[0], []).append(n)
    season = _season_of(dt.datetime.now(dt.timezone.utc).date())
    rng = np.random.default_rng(args.seed)
    scores = {k: [] for k in rankers}
    gains, sizes = [], []
    any_rk = next(iter(rankers.values()))
    slot_code = any_rk.items.codes["slot"]
    for _ in range(args.requests):
        u = int(rng.integers(args.users))
        own = [n for o in pop.preferred[u] for n in by_occ.get(o, [])]
        scene = str(rng.choice(own)) if own and rng.random() < 0.7 else names[int(rng.integers(len(names)))]
        occ = book.get(scene).usages[0]
        ok = np.nonzero(np.isin(pop.gender, GENDER_POOL[pop.ugender[u]]))[0]
        same = ok[np.array([pop.usage[i] == occ for i in ok])]
        half = min(int(round(args.pool * args.occasion_share)), len(same))
        rest = args.pool - half
        pool = np.unique(np.r_[rng.choice(same, half, replace=False) if half else np.zeros(0, int),
                               rng.choice(ok, rest, replace=False) if rest else np.zeros(0, int)])
        # the composer fills each slot from its own pool: rank within a slot, as it reads scores
        slot = slot_code[any_rk.items.rows_of([str(pop.item_ids[i]) for i in pool])]
        pool = pool[np.argsort(slot, kind="stable")]
        occ_code = pop.usages.index(occ) if occ in pop.usages else -1
        ut = utility(pop, sim.utility, np.full(len(pool), u), pool, np.full(len(pool), occ_code),
                     np.full(len(pool), season, dtype=object))
        gains.append(1 / (1 + np.exp(-(ut - sim.utility.click_bias))))
        sizes.extend(np.unique(np.sort(slot), return_counts=True)[1].tolist())
        prof = users.get(f"sim_u{u:05d}")
        ids = [str(pop.item_ids[i]) for i in pool]
        for k, rk in rankers.items():
            scores[k].append(rk.score(prof, RankContext(scene=scene, occasion=occ), ids))
    g = np.concatenate(gains)
    off = M.offsets_from_sizes(np.array(sizes))
    out = {"requests": args.requests, "pool": args.pool, "occasion_share": args.occasion_share,
           "season": season,
           "lists": "one per (request, slot): the composer ranks within a slot", "rankers": {}}
    for k in rankers:
        s = np.concatenate(scores[k])
        top = [float(np.mean(g[a:b][np.argsort(-s[a:b])[:10]])) for a, b in zip(off[:-1], off[1:])]
        out["rankers"][k] = {"version": rankers[k].version,
                             "utility_ndcg@10": round(M.summarise(M.ndcg_at_k(s, g, off, 10)), 4),
                             "top10_true_click_prob": round(float(np.mean(top)), 4),
                             # the composer multiplies propensity ** w by scene fit: the spread of
                             # log propensity within a list is how much the ranker weighs there
                             "mean_propensity": round(float(np.mean(s)), 4),
                             "within_list_std_log_propensity": round(float(np.mean(
                                 [np.std(np.log(np.clip(s[a:b], 1e-6, 1))) for a, b in zip(off[:-1], off[1:])])), 4)}
    rand = [float(np.mean(g[a:b])) for a, b in zip(off[:-1], off[1:])]
    out["random_top10_true_click_prob"] = round(float(np.mean(rand)), 4)
    out["random_utility_ndcg@10"] = round(M.summarise(M.ndcg_at_k(
        np.random.default_rng(1).random(len(g)), g, off, 10)), 4)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
