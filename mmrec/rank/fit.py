"""What every ranker training shares: fit the model pair, pick the served one, write the artifact.

The dataset trainers (`train` for RTR, `hm`, `myntra_train`) build their own features and
lists, then hand them here; `train` only dispatches to them, so these pieces live below all
of them rather than in the dispatcher.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Callable

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.rank import lgbm
from mmrec.rank import metrics as M
from mmrec.rank.config import RankConfig

# the ranker kind each dataset's training writes
# (``logs``, served answers joined with shoppers' events, replaces the served ranker too)
KINDS = {"rtr": kinds.RANKER_RTR, "hm": kinds.RANKER_HM, "myntra-sim": kinds.RANKER,
         "logs": kinds.RANKER}
SCHEMA_VERSION = 1


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fit_pair(ftr, ytr, sizes_tr, fva, yva, sizes_va, cfg: RankConfig, log: Callable = _log,
             lgbm_cfg=None, init: dict | None = None) -> tuple[dict, dict, dict]:
    """Lambdarank + binary propensity with early stopping and calibration on the val slice.

    ``init``: objective -> booster to continue (warm start); its trees stay in the new model.
    """
    out, cals, info = {}, {}, {}
    for objective in ("lambdarank", "binary"):
        t0 = time.perf_counter()
        res = lgbm.train_model(objective, ftr, ytr, fva, yva, lgbm_cfg or cfg.lgbm, sizes=sizes_tr,
                               val_sizes=sizes_va, init_model=(init or {}).get(objective))
        raw = lgbm.predict(res.booster, fva.X)
        # lambdarank scores are only comparable within a list; Platt keeps that order intact
        method = "platt" if objective == "lambdarank" else cfg.calibration
        cals[objective] = lgbm.fit_calibrator(method, raw, yva)
        out[objective] = res.booster
        nd = M.summarise(M.ndcg_at_k(raw, yva, M.offsets_from_sizes(sizes_va), 10))
        base = (init or {}).get(objective)
        info[objective] = {"best_iteration": res.best_iteration, "val_ndcg@10": round(nd, 5),
                           "val_metric": round(res.best_score, 5),
                           "val_metric_name": "ndcg@10" if objective == "lambdarank" else "logloss",
                           "seconds": round(time.perf_counter() - t0, 1)}
        if base is not None:
            info[objective]["warm_start_trees"] = base.num_trees()
        log(f"  {objective}: {res.best_iteration} trees, val "
            f"{info[objective]['val_metric_name']} {res.best_score:.4f} "
            f"({info[objective]['seconds']}s)")
    return out, cals, info


def choose_serve_model(cfg: RankConfig, info: dict) -> str:
    """The configured model, or (auto) the one with the higher validation NDCG@10."""
    if cfg.serve_model != "auto":
        return cfg.serve_model
    return max(("lambdarank", "binary"), key=lambda k: info[k]["val_ndcg@10"])


def write_ranker(store: ArtifactStore, dataset: str, cfg: RankConfig, art_in: Artifact,
                 bundle: lgbm.Bundle, info: dict, sizes: dict, seconds: float,
                 extra_files: dict[str, bytes] | None = None,
                 extra_inputs: list[Artifact] = (), extra_paths: list = ()) -> Artifact:
    """Save ``bundle`` with its importance report as a new version of the dataset's ranker kind."""
    with store.write(KINDS[dataset], config=cfg.model_dump(mode="json"),
                     schema_version=SCHEMA_VERSION) as w:
        bundle.save(w.path)
        imp = {name: lgbm.importance(b) for name, b in bundle.boosters.items()}
        (w.path / "importance.json").write_text(json.dumps(imp, indent=1), encoding="utf-8")
        for name, data in (extra_files or {}).items():
            (w.path / name).write_bytes(data)
        w.add_artifact_input(art_in)
        for a in extra_inputs:
            w.add_artifact_input(a)
        for path in extra_paths:  # inputs that are not artifacts (a log store, an export)
            w.add_input(path)
        w.metrics = {"models": info, **sizes, "train_seconds": round(seconds, 1),
                     "top_features": {k: [r["feature"] for r in v[:8]] for k, v in imp.items()}}
        w.extra["dataset"] = dataset
    return store.load(KINDS[dataset], w.version)
