"""`mmrec rank eval`: offline evaluation of the trained rankers against baselines.

Writes ``artifacts/rank_eval/<version>/metrics.json`` with one section per dataset that has a
trained model. Every evaluation rebuilds its test lists from the model's recorded
interactions input and config, so the numbers belong to that model version and are
reproducible (seeded sampling).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Callable

import numpy as np

from mmrec import kinds
from mmrec.artifacts import ArtifactStore
from mmrec.errors import ArtifactNotFound, InputError
from mmrec.rank import lgbm
from mmrec.rank import metrics as M
from mmrec.rank import rtr as R
from mmrec.rank.config import RankConfig
from mmrec.rank.interactions import load_tables

TARGETS = {"ndcg_vs_popularity": 1.3, "ndcg_vs_occasion_popularity": 1.1}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def list_metrics(scores: np.ndarray, labels: np.ndarray, offsets: np.ndarray, *,
                 k_ndcg: int = 10, k_map: int = 12, recall_ks=(10, 50)) -> dict[str, float]:
    """Mean NDCG@k (with its standard error), MAP@k and recall@k over candidate lists."""
    nd = M.ndcg_at_k(scores, labels, offsets, k_ndcg)
    nd = nd[np.isfinite(nd)]
    out = {f"ndcg@{k_ndcg}": round(float(nd.mean()), 5),
           f"ndcg@{k_ndcg}_se": round(float(nd.std(ddof=1) / np.sqrt(len(nd))), 5) if len(nd) > 1 else None,
           f"map@{k_map}": round(M.summarise(M.average_precision_at_k(scores, labels, offsets, k_map)), 5)}
    for k in recall_ks:
        out[f"recall@{k}"] = round(M.summarise(M.recall_at_k(scores, labels, offsets, k)), 5)
    return out


def compare(table: dict[str, dict[str, float]], model: str, key: str = "ndcg@10") -> dict[str, float]:
    """Ratio of ``model``'s metric to every other scorer's."""
    m = table[model][key]
    return {other: round(m / v[key], 3) if v[key] else None
            for other, v in table.items() if other != model}


def _input_version(art, kind: str) -> str:
    for inp in art.manifest.get("inputs", []):
        if inp.get("kind") == kind:
            return inp["version"]
    raise InputError(f"{art.kind}/{art.version} records no {kind} input")


def eval_rtr(store: ArtifactStore, version: str | None = None, log: Callable = _log) -> dict:
    """Held-out users (new) and training users' later rentals (returning), 1 + N candidates."""
    art = store.load(kinds.RANKER_RTR, version)
    cfg = RankConfig.model_validate(art.config)
    c = cfg.rtr
    _, tables = load_tables(store, "rtr", _input_version(art, kinds.INTERACTIONS_RTR))
    prep = R.prepare(tables, c)
    d, sp = prep.d, prep.split
    bundle = lgbm.Bundle.load(art)
    out: dict = {"model_version": art.version,
                 "protocol": {
                     "test_users": f"{c.test_user_share:.0%} of users by a stable hash, never in "
                                   f"training, statistics or history",
                     "time": f"rentals on/after {c.test_start}; training before it; statistics "
                             f"from training users' rentals in months before each rental",
                     "candidates": f"the rented item + {c.negatives_eval} items rented by anyone "
                                   f"in the same calendar month, sampled without replacement",
                     "ties": "broken at random (seeded)"},
                 "sampling": {}}
    schemes = [c.sampling] + [s for s in ("uniform_active", "popularity_active") if s != c.sampling]
    for si, scheme in enumerate(schemes):
        res = {}
        segments = [("new_users", sp.test_new), ("returning_users", sp.test_returning)]
        for gi, (seg, rows) in enumerate(segments if si == 0 else segments[:1]):
            if len(rows) == 0:
                continue
            g = R.sample_groups(d, rows, c.negatives_eval, scheme, np.random.default_rng([c.seed, 2, si, gi]))
            fs = R.features(d, prep.stats, g.row, g.item, prep.hist)
            scores = {name: lgbm.predict(bundle.boosters[name], fs.X) for name in ("lambdarank", "binary")}
            scores.update(R.baseline_scores(d, prep.stats, g))
            table = {name: list_metrics(s, g.label, g.offsets) for name, s in scores.items()}
            res[seg] = {"lists": g.n_groups, "candidates_per_list": int(np.diff(g.offsets).max()),
                        "scorers": table, "lambdarank_ndcg_ratio": compare(table, "lambdarank")}
            if si == 0 and seg == "new_users":
                out["propensity"] = {
                    name: {"auc_rented_vs_candidates": round(M.auc(scores[name], g.label), 5),
                           **{k: round(v, 5) for k, v in M.expected_calibration_error(
                               bundle.calibrators[name](scores[name]), g.label).items()}}
                    for name in ("lambdarank", "binary")}
            log(f"rtr {scheme} {seg}: " + ", ".join(
                f"{n} {t['ndcg@10']:.4f}" for n, t in table.items()))
        out["sampling"][scheme] = res
    primary = out["sampling"][c.sampling]["new_users"]["scorers"]
    ratios = {"ndcg_vs_popularity": primary["lambdarank"]["ndcg@10"] / primary["popularity"]["ndcg@10"],
              "ndcg_vs_occasion_popularity":
                  primary["lambdarank"]["ndcg@10"] / primary["occasion_popularity"]["ndcg@10"]}
    out["targets"] = {k: {"ratio": round(v, 3), "target": TARGETS[k], "met": bool(v >= TARGETS[k])}
                      for k, v in ratios.items()}
    rows, y = R.rated_top(d, sp.test_new)
    fs = R.features(d, prep.stats, rows, d.item[rows], prep.hist)
    raw = lgbm.predict(bundle.boosters["rated10"], fs.X)
    out["rated_10"] = {"rentals": int(len(rows)), "auc": round(M.auc(raw, y), 5),
                       **{k: round(v, 5) for k, v in M.expected_calibration_error(
                           bundle.calibrators["rated10"](raw), y).items()},
                       "note": "label = rating 10/10 of the rental (review time), features never "
                               "include the rating or fit"}
    return out


EVALUATORS = {"rtr": (kinds.RANKER_RTR, eval_rtr)}


def run_eval(store: ArtifactStore, cfg: RankConfig, datasets: list[str] | None = None,
             versions: dict[str, str | None] | None = None, log: Callable = _log):
    """Evaluate every dataset with a trained model (or those named) and write rank_eval."""
    from mmrec.rank.hm import eval_hm
    from mmrec.rank.myntra_train import eval_myntra

    evaluators = {**EVALUATORS, "hm": (kinds.RANKER_HM, eval_hm), "myntra-sim": (kinds.RANKER, eval_myntra)}
    chosen = datasets or list(evaluators)
    results, inputs = {}, []
    for ds in chosen:
        if ds not in evaluators:
            raise InputError(f"unknown dataset {ds!r}; choose from {list(evaluators)}")
        kind, fn = evaluators[ds]
        if store.current_version(kind) is None and not (versions or {}).get(ds):
            if datasets:
                raise ArtifactNotFound(f"no {kind} model to evaluate; run `mmrec rank train "
                                       f"--dataset {ds}` first")
            log(f"{ds}: no {kind} artifact, skipped")
            continue
        t0 = time.perf_counter()
        results[ds] = fn(store, (versions or {}).get(ds), log)
        results[ds]["eval_seconds"] = round(time.perf_counter() - t0, 1)
        inputs.append(store.load(kind, results[ds]["model_version"]))
    if not results:
        raise ArtifactNotFound("no ranker artifact to evaluate; run `mmrec rank train` first")
    with store.write(kinds.RANK_EVAL, config=cfg.model_dump(mode="json"), schema_version=1) as w:
        (w.path / "metrics.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        for a in inputs:
            w.add_artifact_input(a)
        w.metrics = _headline(results)
    return store.load(kinds.RANK_EVAL, w.version), results


def _headline(results: dict) -> dict:
    h = {}
    if "rtr" in results:
        r = results["rtr"]
        h["rtr_ndcg@10"] = r["sampling"][next(iter(r["sampling"]))]["new_users"]["scorers"]["lambdarank"]["ndcg@10"]
        h["rtr_targets_met"] = all(t["met"] for t in r["targets"].values())
    if "hm" in results:
        h["hm_map@12"] = results["hm"]["scorers"]["lambdarank"]["map@12"]
    if "myntra-sim" in results:
        h["sim_ndcg_vs_oracle"] = results["myntra-sim"]["utility_ndcg@10"]["lambdarank"]
    return h
