"""`mmrec rank train --dataset rtr|hm|myntra-sim`: build features, fit, calibrate, save.

Artifact kinds (each version records its interactions input and full config):
- ``ranker``: the Myntra-sim model that serving loads by default (`Ranker.load`).
- ``ranker_rtr``, ``ranker_hm``: the models of the real-data offline evaluations.
Each holds LightGBM text models (lambdarank + binary [+ rated10 for RTR]), their calibrators,
the feature contract and a feature-importance report (`bundle.json`, `importance.json`).
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import numpy as np

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.errors import InputError
from mmrec.rank import lgbm
from mmrec.rank import rtr as R
from mmrec.rank.config import RankConfig
from mmrec.rank.fit import fit_pair, write_ranker
from mmrec.rank.interactions import load_tables

DATASETS = ("rtr", "hm", "myntra-sim")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train_rtr(store: ArtifactStore, cfg: RankConfig, *, interactions: str | None = None,
              log: Callable = _log) -> Artifact:
    """Rent the Runway: held-out-user split, sampled candidates, three models."""
    t0 = time.perf_counter()
    art_in, tables = load_tables(store, "rtr", interactions)
    c = cfg.rtr
    prep = R.prepare(tables, c)
    d, sp, st, hist = prep.d, prep.split, prep.stats, prep.hist
    rng = np.random.default_rng([c.seed, 1])
    gtr = R.sample_groups(d, sp.train, c.negatives_train, c.sampling, rng)
    gva = R.sample_groups(d, sp.val, c.negatives_eval, c.sampling, rng)
    ftr = R.features(d, st, gtr.row, gtr.item, hist)
    fva = R.features(d, st, gva.row, gva.item, hist)
    log(f"rtr: {gtr.n_groups} training lists ({len(gtr.row)} rows), {gva.n_groups} validation "
        f"lists; features {len(ftr.names)} ({time.perf_counter() - t0:.1f}s)")
    boosters, cals, info = fit_pair(ftr, gtr.label, np.diff(gtr.offsets), fva, gva.label,
                                    np.diff(gva.offsets), cfg, log)

    # "rated 10/10" among the rentals themselves: what the rating says beyond the choice
    rtr_rows, ytr10 = R.rated_top(d, sp.train)
    rva_rows, yva10 = R.rated_top(d, sp.val)
    f10 = R.features(d, st, rtr_rows, d.item[rtr_rows], hist)
    f10v = R.features(d, st, rva_rows, d.item[rva_rows], hist)
    res10 = lgbm.train_model("binary", f10, ytr10, f10v, yva10, cfg.lgbm)
    boosters["rated10"] = res10.booster
    cals["rated10"] = lgbm.fit_calibrator(cfg.calibration, lgbm.predict(res10.booster, f10v.X), yva10)
    info["rated10"] = {"best_iteration": res10.best_iteration,
                       "val_metric": round(res10.best_score, 5), "val_metric_name": "logloss"}
    log(f"  rated10: {res10.best_iteration} trees, val logloss {res10.best_score:.4f}")

    bundle = lgbm.Bundle(boosters, cals, ftr.names, ftr.categorical, {
        "dataset": "rtr", "vocabs": d.vocabs, "label": "rented (vs sampled candidates)",
        "negative_sampling": f"{c.negatives_train} per training rental, {c.sampling}: items "
                             f"rented by anyone in the same calendar month",
    })
    sizes = {"train_lists": gtr.n_groups, "train_rows": int(len(gtr.row)),
             "val_lists": gva.n_groups, "rated10_train_rows": int(len(rtr_rows))}
    return write_ranker(store, "rtr", cfg, art_in, bundle, info, sizes, time.perf_counter() - t0)


def train(dataset: str, store: ArtifactStore, cfg: RankConfig, *, interactions: str | None = None,
          log: Callable = _log) -> Artifact:
    if dataset == "rtr":
        return train_rtr(store, cfg, interactions=interactions, log=log)
    if dataset == "hm":
        from mmrec.rank.hm import train_hm

        return train_hm(store, cfg, interactions=interactions, log=log)
    if dataset == "myntra-sim":
        from mmrec.rank.myntra_train import train_myntra

        return train_myntra(store, cfg, interactions=interactions, log=log)
    raise InputError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")


def build_served_ranker(store: ArtifactStore, cfg: RankConfig, *, force: bool = False,
                        log: Callable = _log) -> Artifact:
    """What `mmrec demo` needs: the served ``ranker``, reusing existing artifacts.

    Simulates the Myntra logs when no ``interactions_sim`` exists (needs the items artifact and
    the real RTR/H&M profile files), then trains unless a ``ranker`` already exists.
    """
    from mmrec.rank.simulator import run_simulation

    if not force and store.current_version(kinds.RANKER) is not None:
        return store.load(kinds.RANKER)
    if force or store.current_version(kinds.INTERACTIONS_SIM) is None:
        sim = run_simulation(store, cfg)
        log(f"interactions_sim/{sim.version}: SIMULATED logs written")
    return train("myntra-sim", store, cfg, log=log)
