"""`mmrec rank train --dataset logs`: the served ranker retrained from the shoppers' own logs.

Input: the feedback store (``--store``) or its export (``--export``): the answers the API
logged and the events the apps sent, joined by `mmrec.feedback.attribution` into one row per
shown item labelled clicked / added / purchased.

The rows become the same arrays as the simulated Myntra logs (`myntra_train.decode`), so the
features, the fit and the artifact are the served ranker's own (`fit_roles`, `write_ranker`).
Each answer is featurised as serving featurised it (`featurise_logs`; `RankConfig.logs`, the
details in `mmrec.rank.logs_served`):
- the shopper's state is what the server's user store gave `Ranker.score` (``user_state:
  served``), or, with ``logs``, rebuilt from the logged profiles and the clicks made before the
  answer (the click's own time, not its answer's);
- item statistics are daily snapshots of the days before, added to the statistics of the ranker
  that answered, whose trees the new ones continue (``warm_start``);
- rows are the shown items the app reported seen (``negatives: seen``), else every shown item;
- the outfit's rank is the logged position, a training feature as for the simulated logs
  (0 when serving), and the scene's first occasion is the context occasion, as the
  recommender passes it;
- the last ``eval_days`` days are the test; the days before are train and validation (the
  last ``rank.myntra.val_share`` of their answers in time validate). With ``refit_all_days``
  the shipped model is then refitted on every day.
The evaluation on the test days compares the new model with the base ranker on the same
features, the item score logged with each answer, the logged order and random order.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.errors import InputError
from mmrec.feedback import attribution as A
from mmrec.rank import lgbm
from mmrec.rank import metrics as M
from mmrec.rank import myntra as Y
from mmrec.rank.config import RankConfig
from mmrec.rank.fit import choose_serve_model, write_ranker
from mmrec.rank import logs_served as S
from mmrec.rank.interactions import INTERACTIONS_SCHEMA, PROFILES_SCHEMA, SourceTables, segment_of
from mmrec.rank.myntra_train import (STATS_FILE, decode, features_for, fit_roles, label_of,
                                     rows_of)
from mmrec.rank.ranker import profile_states

# what a fit and an evaluation need at the least; below it the logs are refused, with counts
MIN_TRAIN_LISTS = 20      # answers with a positive label before the evaluation days
MIN_EVAL_LISTS = 5        # answers with a positive label in the evaluation days


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_profiles(store_path: Path | None) -> dict[str, dict]:
    """Profiles sent with ``PUT /v1/users``, by pseudonym (the export does not carry them)."""
    if store_path is None:
        return {}
    from mmrec.feedback.store import FeedbackStore

    st = FeedbackStore(store_path, synchronous="NORMAL")
    try:
        return {u: json.loads(p) for chunk in st.rows("profiles") for u, _, p in chunk}
    finally:
        st.close()


def load_logs(store_path: Path | None, export_dir: Path | None) -> tuple[pa.Table, pa.Table, dict]:
    """(impressions, events, profiles): the export when given, else the store itself."""
    if store_path is None and export_dir is None:
        raise InputError("training from logs needs --store PATH (the feedback store) or "
                         "--export DIR (`mmrec feedback export --out DIR`)")
    if export_dir is not None:
        if not Path(export_dir).is_dir():
            raise InputError(f"no export folder at {export_dir}; write one with "
                             "`mmrec feedback export --out DIR`")
        imp, ev = A.read_export(export_dir)
    else:
        if not Path(store_path).is_file():
            raise InputError(f"no feedback store at {store_path}; serve with feedback.enabled "
                             "true, or pass --export DIR")
        imp, ev = A.read_store(store_path)
    return imp, ev, read_profiles(store_path)


def to_tables(joined: pa.Table, profiles: dict[str, dict], scene_usage: dict[str, str]
              ) -> SourceTables:
    """Joined rows -> the interactions/profiles tables that `myntra_train.decode` reads.

    Anonymous answers get a user of their own (``anon:<request_id>``): visitors share no history.
    """
    rid = joined["request_id"].to_pylist()
    users = [u if u is not None else f"anon:{r}" for u, r in zip(joined["user_id"].to_pylist(), rid)]
    scenes = joined["scene"].to_pylist()
    n = joined.num_rows
    base = {
        "user_id": pa.array(users, pa.string()), "item_id": joined["item_id"],
        "value": pa.nulls(n, pa.float32()), "ts": joined["ts"], "request_id": joined["request_id"],
        "position": joined["position"],
        "occasion": pa.array([scene_usage.get(s) for s in scenes], pa.string()),
        "scene": joined["scene"], "season": pa.nulls(n, pa.string()), "channel": joined["channel"],
        "recall_rank": pa.nulls(n, pa.int16()), "recall_routes": pa.nulls(n, pa.int8()),
        "review_fit": pa.nulls(n, pa.string()),
    }
    parts = []
    for event, mask in (("impression", None), ("click", joined["clicked"]), ("purchase", joined["purchased"])):
        t = pa.table({**base, "event": pa.array([event] * n, pa.string())}).select(INTERACTIONS_SCHEMA.names)
        t = t.cast(INTERACTIONS_SCHEMA).append_column("click_ts", joined["click_ts"])
        parts.append(t if mask is None else t.filter(mask))
    inter = pa.concat_tables(parts)

    ids = sorted(set(users))
    prof = [profiles.get(u, {}) for u in ids]
    age = np.array([np.nan if p.get("age") is None else float(p["age"]) for p in prof], np.float32)
    gender = [p.get("gender") for p in prof]
    table = pa.table({
        "user_id": pa.array(ids, pa.string()), "as_of": pa.nulls(len(ids), pa.timestamp("us", tz="UTC")),
        "source": pa.array(["logs"] * len(ids), pa.string()), "age": pa.array(age, pa.float32()),
        "gender": pa.array(gender, pa.string()),
        **{c: pa.array([p.get(c) for p in prof], PROFILES_SCHEMA.field(c).type)
           for c in ("body_type", "size", "height_cm", "weight_kg", "price_band")},
        "bust_band": pa.nulls(len(ids), pa.float32()), "cup": pa.nulls(len(ids), pa.float32()),
        "preferred_occasions": pa.array([p.get("preferred_occasions") or [] for p in prof],
                                        pa.list_(pa.string())),
        "segment": pa.array(segment_of(gender, age), pa.string()),
        # no user is held out: the test is the later days
        "split_bucket": pa.array([99] * len(ids), pa.int16()),
        "extra": pa.array([[]] * len(ids), pa.map_(pa.string(), pa.string())),
    }).select(PROFILES_SCHEMA.names).cast(PROFILES_SCHEMA)
    return SourceTables(inter, table, pa.table({}), {"source": "logs"})


def _days(us: np.ndarray) -> np.ndarray:
    return us.astype("datetime64[us]").astype("datetime64[D]").astype(str)


def day_roles(req_ts: np.ndarray, positive: np.ndarray, eval_days: int, val_share: float,
              counts: dict) -> dict[str, np.ndarray]:
    """Request indices: test = the last ``eval_days`` UTC days; val = the last ``val_share`` of
    the answers before them (in time); train = the rest. Refuses logs too small for that."""
    day = _days(req_ts)
    days = sorted(set(day.tolist()))
    test_days = days[-eval_days:] if len(days) > eval_days else []
    test = np.nonzero(np.isin(day, test_days))[0]
    before = np.nonzero(~np.isin(day, test_days))[0] if test_days else np.zeros(0, np.int64)
    before = before[np.argsort(req_ts[before], kind="stable")]
    n_val = int(round(len(before) * val_share))
    val, train = before[len(before) - n_val:], before[:len(before) - n_val]
    n_tr, n_va, n_te = (int(positive[x].sum()) for x in (train, val, test))
    if len(days) <= eval_days or n_tr < MIN_TRAIN_LISTS or n_va < 1 or n_te < MIN_EVAL_LISTS:
        raise InputError(
            f"logs too small to train and evaluate: found {counts['impressions']} shown items "
            f"in {counts['requests']} answers and {counts['events']} events "
            f"({counts['labels']}) over {len(days)} day(s) {days[:1] + days[-1:] if days else []}; "
            f"with --eval-days {eval_days} that leaves {n_tr} training / {n_va} validation / "
            f"{n_te} evaluation answers with a positive label. Needed: more than {eval_days} "
            f"day(s), at least {MIN_TRAIN_LISTS} training, 1 validation and {MIN_EVAL_LISTS} "
            f"evaluation answers with a positive label. Serve more traffic, or lower --eval-days.")
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test),
            "test_days": np.array(test_days)}


def evaluate(d, rows: np.ndarray, y: np.ndarray, bundle: lgbm.Bundle, served: np.ndarray,
             seed: int = 0, base: lgbm.Bundle | None = None) -> dict:
    """Click AUC (at the logged positions) and NDCG@10 over each answer's shown items (lists
    with a positive), for the new models and the baselines, on the evaluation days.

    ``served`` is the item score logged with the answer (the composer's: propensity times scene
    fit); ``base`` (the warm start's ranker) is also scored on the same features as
    ``base_ranker``, the like-for-like comparison."""
    serve = features_for(d, rows, serve_position=True)
    logged = features_for(d, rows, serve_position=False)
    r = d.req[rows]
    scores = {k: lgbm.predict(bundle.boosters[k], serve.X) for k in ("lambdarank", "binary")}
    scores.update({"served_ranker": served, "logged_order": -d.position[rows].astype(np.float64),
                   "random": np.random.default_rng(seed).random(len(rows))})
    base_model = base.boosters[base.meta.get("serve_model") or "lambdarank"] if base is not None else None
    if base_model is not None:
        scores["base_ranker"] = lgbm.predict(base_model, serve.X)
    has = (np.bincount(r, weights=y[rows], minlength=len(d.request_ids)) > 0)[r]
    _, sizes = np.unique(r[has], return_counts=True)
    off = M.offsets_from_sizes(sizes)
    ndcg = {k: round(M.summarise(M.ndcg_at_k(s[has], y[rows][has], off, 10)), 5) for k, s in scores.items()}
    auc = {k: round(M.auc(lgbm.predict(bundle.boosters[k], logged.X), y[rows]), 5)
           for k in ("lambdarank", "binary")}
    auc["served_ranker"] = round(M.auc(served, y[rows]), 5)
    if base_model is not None:
        auc["base_ranker"] = round(M.auc(lgbm.predict(base_model, logged.X), y[rows]), 5)
    return {"answers": int(len(np.unique(r))), "answers_with_positive": int(len(sizes)),
            "rows": int(len(rows)), "positives": int(y[rows].sum()),
            "click_auc_at_logged_positions": auc, "ndcg@10": ndcg}


@dataclass
class Logged:
    """Served logs joined and featurised as serving saw them (`featurise_logs`)."""

    joined: pa.Table
    events: int
    summary: dict
    counts: dict
    d: object                       # myntra_train.SimData, one request per logged answer
    items_art: Artifact
    items: Y.ItemTable
    base: Artifact | None           # the warm start's ranker
    base_bundle: lgbm.Bundle | None
    keep: np.ndarray | None         # rows that train (seen or clicked); None: every shown item
    served_info: dict | None


def featurise_logs(store: ArtifactStore, cfg: RankConfig, *, store_path: Path | None = None,
                   export_dir: Path | None = None, window_hours: float = 24.0,
                   log: Callable = _log) -> Logged:
    """Join the logs and build every answer's arrays as `RankConfig.logs` says (`logs_served`)."""
    from mmrec.catalog.ingest import load_items
    from mmrec.outfit.scenes import SceneBook
    from mmrec.taxonomy import default_taxonomy

    if window_hours <= 0:
        raise InputError(f"--attribution-window-hours must be positive, got {window_hours}")
    imp, ev, profiles = load_logs(store_path, export_dir)
    joined = A.join(imp, ev, window=dt.timedelta(hours=window_hours))
    summ = A.summary(joined)
    labels = ", ".join(f"{v} {k}" for k, v in summ.items() if k in A.LABELS.values())
    counts = {"impressions": joined.num_rows, "requests": summ["requests"], "events": ev.num_rows,
              "labels": labels or "no labels"}
    log(f"logs: {counts['impressions']} shown items in {counts['requests']} answers, "
        f"{ev.num_rows} events ({labels}) over days {summ['days']}")
    lc = cfg.logs
    versions = S.answer_versions(imp)
    base = S.base_ranker(store, versions, set(joined["request_id"].to_pylist()), log) if lc.warm_start else None
    base_bundle = lgbm.Bundle.load(base) if base is not None else None
    if base_bundle is not None and base_bundle.feature_names != Y.FEATURES:
        raise InputError(f"warm start: ranker/{base.version} has other features than this version "
                         "of mmrec computes; train without it: --set logs.warm_start=false")
    items_art = store.load(kinds.ITEMS)
    # a continued model keeps its base's codes: its trees split on them
    items = Y.ItemTable.build(load_items(store, items_art.version), default_taxonomy().colour_family,
                              brands=cfg.myntra.brands,
                              vocabs=base_bundle.meta["item_vocabs"] if base_bundle else None)
    book = SceneBook.load()
    usage = {n: book.get(n).usages[0] for n in book.names()}
    if joined.num_rows == 0:
        return Logged(joined, ev.num_rows, summ, counts, None, items_art, items, base, base_bundle, None, None)
    tables = to_tables(joined, profiles, usage)
    d = decode(tables, items, period_us=Y.US_PER_DAY, click_ts_column="click_ts")
    served_info = None
    if lc.user_state == "served":
        pids = tables.profiles["user_id"].to_pylist()
        users = [None if pids[u].startswith("anon:") else pids[u] for u in d.req_user]
        profs, served_info = S.served_users(store, cfg, d.request_ids, users, versions, log)
        d.users = profile_states(items, profs, d.req_ts)
    if base is not None or lc.user_state == "served":
        d.stats = S.recompute_stats(d, items, Y.ItemStats.load_for(base.file(STATS_FILE), items)
                                    if base is not None else None)
    keep = S.seen_rows(joined, d) if lc.negatives == "seen" else None
    if keep is not None:
        keep |= d.clicked | d.bought  # an app that reported the click saw the item
        log(f"negatives: the {int(keep.sum())} of {len(keep)} shown items reported seen (or clicked)")
    return Logged(joined, ev.num_rows, summ, counts, d, items_art, items, base, base_bundle, keep,
                  served_info)


def train_logs(store: ArtifactStore, cfg: RankConfig, *, store_path: Path | None = None,
               export_dir: Path | None = None, window_hours: float = 24.0, eval_days: int = 1,
               log: Callable = _log) -> Artifact:
    """Join, featurise, fit, evaluate on the later days, write a served ``ranker``."""
    if eval_days < 1:
        raise InputError(f"--eval-days must be at least 1, got {eval_days}")
    t0 = time.perf_counter()
    lg = featurise_logs(store, cfg, store_path=store_path, export_dir=export_dir,
                        window_hours=window_hours, log=log)
    counts, d, keep, base, base_bundle = lg.counts, lg.d, lg.keep, lg.base, lg.base_bundle
    joined, summ, items, items_art, lc = lg.joined, lg.summary, lg.items, lg.items_art, cfg.logs
    if d is None:
        day_roles(np.zeros(0, np.int64), np.zeros(0, bool), eval_days, cfg.myntra.val_share, counts)
    y = label_of(d, cfg)
    positive = np.bincount(d.req, weights=y, minlength=len(d.request_ids)) > 0
    rl = day_roles(d.req_ts, positive, eval_days, cfg.myntra.val_share, counts)
    init = base_bundle.boosters if base_bundle else None
    negatives = "seen" if keep is not None else "shown"

    def fit(roles: dict, name: str):
        boosters, cals, info, ftr, n_rows = fit_roles(d, roles, cfg, name, log, t0, keep=keep, init=init)
        return lgbm.Bundle(boosters, cals, ftr.names, ftr.categorical, {
            "dataset": "logs", "provenance": "logs", "simulated": False, "label": cfg.myntra.label,
            "serve_model": choose_serve_model(cfg, info), "item_vocabs": items.vocabs,
            "log_end_us": d.log_end_us, "n_candidates_logged": float(d.n_candidates.mean()),
            "attribution_window_hours": window_hours,
            "warm_start": base.version if base is not None else None,
            "user_state": lc.user_state, "negatives": negatives,
            "negative_sampling": f"none: negatives are the {negatives} items that were not "
                                f"{cfg.myntra.label}ed within the attribution window",
        }), info, n_rows

    bundle, info, n_rows = fit(rl, "logs")
    te = rows_of(d, rl["test"], drop_held_out_items=False)
    if keep is not None:
        te = te[keep[te]]
    served = _served_scores(joined, d, te)
    ev_out = evaluate(d, te, y, bundle, served, base=base_bundle)
    ev_out["days"] = [str(x) for x in rl["test_days"]]
    ev_out["rows_are"] = "seen (or clicked) shown items" if keep is not None else "shown items"
    ev_out["of"] = "the fit on the days before the evaluation days"
    log(f"  evaluation days {ev_out['days']}: NDCG@10 " + ", ".join(
        f"{k} {v:.4f}" for k, v in ev_out["ndcg@10"].items()))
    sizes = {"train_requests": int(len(rl["train"])), "train_rows": n_rows,
             "val_requests": int(len(rl["val"])), "provenance": "logs",
             "logs": {**summ, "events": lg.events}, "eval_later_days": ev_out,
             "served_as": {"warm_start": base.version if base is not None else None,
                           "user_state": lc.user_state, "users": lg.served_info,
                           "negatives": negatives}}
    if lc.refit_all_days:
        # the evaluated fit never saw the last days; the shipped one does (the freshest traffic)
        order = np.argsort(d.req_ts, kind="stable")
        n_val = max(1, int(round(len(order) * cfg.myntra.val_share)))
        roles = {"train": np.sort(order[:-n_val]), "val": np.sort(order[-n_val:])}
        bundle, refit_info, n_rows = fit(roles, "logs, refit on every day")
        bundle.meta["fit"] = "refit on every logged day after the evaluation"
        sizes.update(evaluated_fit={"models": info, **{k: sizes[k] for k in ("train_requests", "train_rows",
                                                                            "val_requests")}},
                     train_requests=int(len(roles["train"])), train_rows=n_rows,
                     val_requests=int(len(roles["val"])))
        info = refit_info
    buf = io.BytesIO()
    d.stats.last().save(buf, items.item_ids)
    source = Path(export_dir) if export_dir is not None else Path(store_path)
    return write_ranker(store, "logs", cfg, items_art, bundle, info, sizes, time.perf_counter() - t0,
                        extra_files={STATS_FILE: buf.getvalue()}, extra_paths=[source],
                        extra_inputs=[base] if base is not None else [])


def _served_scores(joined: pa.Table, d, rows: np.ndarray) -> np.ndarray:
    """The served ranker's logged score of each evaluated row (NaN -> 0)."""
    key = {(r, i): s for r, i, s in zip(joined["request_id"].to_pylist(), joined["item_id"].to_pylist(),
                                        joined["score"].to_pylist())}
    return np.array([key.get(k) or 0.0 for k in S.row_keys(d, rows)], np.float64)
