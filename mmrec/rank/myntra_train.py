"""Training and evaluation of the served ranker on the SIMULATED Myntra logs.

Split: requests ordered by time; the last ``test_share`` are the test window, the
``val_share`` before it validate (early stopping, calibration), the rest train. Users in
split buckets 0-9 are held out entirely (never in training rows or statistics: the test's
"new users"), and held-out products (`mmrec.splits`, id % 10 == 0) are never in training
rows or statistics either, so they are scored as new items from their content alone.

Position bias: training and validation rows carry the logged position as a feature (their
click labels were generated under it), which absorbs the examination bias; ranking for
serving and the utility evaluation use position 0 for every candidate, so the score is the
propensity to engage if shown first. Click AUC/ECE are measured at the logged positions.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmrec import kinds
from mmrec.artifacts import ArtifactStore
from mmrec.errors import InputError
from mmrec.rank import lgbm
from mmrec.rank import metrics as M
from mmrec.rank import myntra as Y
from mmrec.rank.config import RankConfig
from mmrec.rank.features import FeatureSet, encode, prefix_counts
from mmrec.rank.fit import choose_serve_model, fit_pair, write_ranker
from mmrec.rank.interactions import load_tables
from mmrec.rank.simulator import HIDDEN_FILE
from mmrec.splits import is_held_out

STATS_FILE = "item_stats.npz"
# Every weekly snapshot (snapshot t holds the weeks before t), so that an evaluation can serve
# the statistics as they stood before its test window (`Ranker.use_stats_before`).
WEEKLY_STATS_FILE = "item_stats_weekly.npz"
NEW_USER_BUCKETS = 10  # split buckets 0..9: users held out of training (10%)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _np(col):
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return col.to_numpy(zero_copy_only=False)


@dataclass
class SimData:
    items: Y.ItemTable
    # impressions (one row each), sorted by request then position
    req: np.ndarray
    item_row: np.ndarray
    position: np.ndarray
    recall_rank: np.ndarray
    recall_routes: np.ndarray
    clicked: np.ndarray
    bought: np.ndarray
    item_held_out: np.ndarray      # per impression
    # requests
    request_ids: np.ndarray
    req_user: np.ndarray
    req_ts: np.ndarray
    req_week: np.ndarray
    req_new: np.ndarray
    n_candidates: np.ndarray
    users: Y.UserState             # per request: state just before the request
    ctx: Y.Context
    stats: Y.ItemStats             # weekly snapshots, training users and products only
    n_weeks: int
    log_end_us: int

    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(np.bincount(self.req, minlength=len(self.request_ids)))])


def load_sim(store: ArtifactStore, cfg: RankConfig, version: str | None = None,
             vocabs: dict | None = None):
    """Read ``interactions_sim`` and its items artifact; decode everything to arrays."""
    from mmrec.catalog.ingest import load_items
    from mmrec.taxonomy import default_taxonomy

    art, tables = load_tables(store, "sim", version)
    items_ref = next((i for i in art.manifest["inputs"] if i.get("kind") == kinds.ITEMS), None)
    items = load_items(store, items_ref["version"] if items_ref else None)
    table = Y.ItemTable.build(items, default_taxonomy().colour_family, vocabs=vocabs,
                              brands=cfg.myntra.brands)
    return art, tables, table, items_ref


def decode(tables, items: Y.ItemTable, *, period_us: int = Y.US_PER_WEEK,
           click_ts_column: str | None = None) -> SimData:
    """Arrays of the impressions of ``tables`` (``interactions`` with impression/click/purchase
    rows sharing request_id, and ``profiles`` of every user they mention).

    Args:
        period_us: length of a statistics snapshot period (weeks for the simulated months,
            days for a few days of served logs: `mmrec.rank.logs_train`).
        click_ts_column: an impression-row column holding the time of its first click; user
            histories then count a click from that time on, not from its impression's (served
            logs: a click can come minutes after the answer, after the user's next request).
    """
    inter = tables.interactions
    imp = inter.filter(pc.equal(inter["event"], "impression"))
    key = lambda t: pc.binary_join_element_wise(t["request_id"], t["item_id"], "|")  # noqa: E731
    clicks = pc.is_in(key(imp), value_set=key(inter.filter(pc.equal(inter["event"], "click"))))
    buys = pc.is_in(key(imp), value_set=key(inter.filter(pc.equal(inter["event"], "purchase"))))
    imp = imp.append_column("clicked", clicks).append_column("bought", buys)
    imp = imp.sort_by([("request_id", "ascending"), ("position", "ascending")])
    enc = pc.dictionary_encode(imp["request_id"]).combine_chunks()
    req = np.asarray(enc.indices, np.int64)
    request_ids = np.array(enc.dictionary.to_pylist(), dtype=object)
    first = np.r_[0, np.nonzero(np.diff(req))[0] + 1]
    ts = _np(pc.cast(imp["ts"], pa.int64())).astype(np.int64)
    item_ids = _np(imp["item_id"]).astype(object)

    prof = tables.profiles
    puser = _np(prof["user_id"]).astype(object)
    pindex = {u: i for i, u in enumerate(puser)}
    user_of_imp = _np(imp["user_id"]).astype(object)
    req_user = np.array([pindex.get(u, -1) for u in user_of_imp[first]], np.int64)
    if (req_user < 0).any():
        raise InputError("simulated logs mention users without a profile")
    req_ts = ts[first]
    t_min = int(req_ts.min())
    req_week = ((req_ts - t_min) // period_us).astype(np.int64)
    n_weeks = int(req_week.max()) + 1

    # per-request user state from clicks strictly before the request
    item_row = items.rows_of(list(item_ids))
    clicked = _np(imp["clicked"]).astype(bool)
    bought = _np(imp["bought"]).astype(bool)
    cl = np.nonzero(clicked)[0]
    ev_user = req_user[req[cl]]
    ev_ts = ts[cl]
    if click_ts_column is not None:
        ev_ts = _np(pc.cast(imp[click_ts_column], pa.int64()).fill_null(0)).astype(np.int64)[cl]
    counts = {}
    for f in Y.AFFINITY_FIELDS:
        codes = np.where(item_row[cl] >= 0, items.codes[f][np.maximum(item_row[cl], 0)], -1)
        counts[f], n_clicks, last = prefix_counts(ev_user, ev_ts, codes, len(items.vocabs[f]),
                                                  req_user, req_ts)
    _, n_requests, _ = prefix_counts(req_user, req_ts, np.full(len(req_ts), -1), 1, req_user, req_ts)
    age = _np(pc.cast(prof["age"], pa.float32()).fill_null(np.nan)).astype(np.float32)
    gender = encode(prof["gender"].to_pylist(), Y.GENDERS)
    pref = np.zeros((len(puser), len(items.vocabs["usage"])), bool)
    for u, occ in enumerate(prof["preferred_occasions"].to_pylist()):
        for o in occ or []:
            if o in items.vocabs["usage"]:
                pref[u, items.vocabs["usage"].index(o)] = True
    users = Y.UserState(age=age[req_user], gender=gender[req_user], preferred=pref[req_user],
                        counts=counts, n_clicks=n_clicks, n_requests=n_requests,
                        days_since_last=np.where(last >= 0, (req_ts - last) / Y.US_PER_DAY, np.nan
                                                 ).astype(np.float32))
    ctx = Y.context_codes(items, _np(imp["occasion"])[first], _np(imp["season"])[first],
                          _np(imp["channel"])[first])
    bucket = _np(prof["split_bucket"]).astype(np.int64)
    req_new = bucket[req_user] < NEW_USER_BUCKETS
    held = np.array([is_held_out(i) for i in item_ids], bool)

    # statistics: training users and non-held-out products only, weekly snapshots
    ok = ~req_new[req] & ~held & (item_row >= 0)
    stats = Y.ItemStats.from_events(item_row[ok], req_week[req[ok]], n_weeks, len(items.item_ids),
                                    users.segment[req[ok]], ctx.occasion[req[ok]],
                                    len(items.vocabs["usage"]), clicked[ok], bought[ok])
    rr = _np(imp["recall_rank"].fill_null(-1)).astype(np.int64)
    rt = _np(imp["recall_routes"].fill_null(-1)).astype(np.int64)
    return SimData(items, req, item_row, _np(imp["position"]).astype(np.int64), rr, rt, clicked,
                   bought, held, request_ids, req_user, req_ts, req_week, req_new,
                   np.bincount(req, minlength=len(first)).astype(np.float32), users, ctx, stats,
                   n_weeks, int(ts.max()))


def roles(d: SimData, cfg: RankConfig) -> dict[str, np.ndarray]:
    """Request indices of train / val / test (time order); train and val exclude new users."""
    order = np.argsort(d.req_ts, kind="stable")
    n = len(order)
    n_test = int(round(n * cfg.myntra.test_share))
    n_val = int(round(n * cfg.myntra.val_share))
    test = order[n - n_test:]
    val = order[n - n_test - n_val: n - n_test]
    train = order[: n - n_test - n_val]
    train = train[~d.req_new[train]]
    val = val[~d.req_new[val]]
    if len(train) > cfg.myntra.max_train_requests:
        train = train[-cfg.myntra.max_train_requests:]  # the most recent ones
    if min(len(train), len(val), len(test)) == 0:
        raise InputError(f"simulated log too small to split: train {len(train)}, val {len(val)}, "
                         f"test {len(test)} requests")
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def rows_of(d: SimData, requests: np.ndarray, *, drop_held_out_items: bool,
            seed: int = 0) -> np.ndarray:
    """Impression rows of ``requests``, grouped by request, in random order within each list.

    Logged order would put the clicked (top) positions first, and LightGBM's NDCG breaks score
    ties by row order: early stopping would then reward trees that tie everything.
    """
    mask = np.isin(d.req, requests)
    if drop_held_out_items:
        mask &= ~d.item_held_out
    rows = np.nonzero(mask)[0]
    shuffle = np.random.default_rng(seed).random(len(rows))
    return rows[np.lexsort((shuffle, d.req[rows]))]


def features_for(d: SimData, rows: np.ndarray, *, serve_position: bool) -> FeatureSet:
    r = d.req[rows]
    return Y.featurize(d.items, d.stats, r, d.item_row[rows], d.req_week[r], d.users, d.ctx,
                       recall_rank=d.recall_rank[rows], recall_routes=d.recall_routes[rows],
                       n_candidates=d.n_candidates[r],
                       position=np.zeros(len(rows)) if serve_position else d.position[rows])


def _sizes(req_rows: np.ndarray) -> np.ndarray:
    _, counts = np.unique(req_rows, return_counts=True)
    return counts


def label_of(d: SimData, cfg: RankConfig) -> np.ndarray:
    return (d.bought if cfg.myntra.label == "purchase" else d.clicked).astype(np.int8)


def fit_roles(d: SimData, rl: dict[str, np.ndarray], cfg: RankConfig, name: str,
              log: Callable = _log, t0: float | None = None, *, keep: np.ndarray | None = None,
              init: dict | None = None):
    """Fit the lambdarank + binary pair on the train / val requests of ``rl``.

    ``keep``: impression rows that may train or validate (None: all); ``init``: boosters to
    continue (`fit_pair`).

    Returns ``(boosters, calibrators, info, training FeatureSet, training rows)``; the served
    ranker's trainers (simulated logs, served logs) share it.
    """
    t0 = time.perf_counter() if t0 is None else t0
    y = label_of(d, cfg)
    tr = rows_of(d, rl["train"], drop_held_out_items=True)
    if keep is not None:
        tr = tr[keep[tr]]
    # lambdarank learns nothing from lists without a positive: keep them for binary only
    has_pos = np.bincount(d.req[tr], weights=y[tr], minlength=len(d.request_ids)) > 0
    tr_rank = tr[has_pos[d.req[tr]]]
    va = rows_of(d, rl["val"], drop_held_out_items=True)
    if keep is not None:
        va = va[keep[va]]
    va = va[(np.bincount(d.req[va], weights=y[va], minlength=len(d.request_ids)) > 0)[d.req[va]]]
    ftr = features_for(d, tr_rank, serve_position=False)
    # validation rows keep their logged positions: their labels were generated under them
    fva = features_for(d, va, serve_position=False)
    log(f"{name}: {len(rl['train'])} training requests ({len(tr_rank)} rows "
        f"in lists with a {cfg.myntra.label}), {len(rl['val'])} validation requests "
        f"({time.perf_counter() - t0:.1f}s)")
    b, c, i = fit_pair(ftr, y[tr_rank], _sizes(d.req[tr_rank]), fva, y[va], _sizes(d.req[va]), cfg,
                       log, lgbm_cfg=cfg.myntra.lgbm.apply(cfg.lgbm), init=init)
    return b, c, i, ftr, int(len(tr_rank))


def train_myntra(store: ArtifactStore, cfg: RankConfig, *, interactions: str | None = None,
                 log: Callable = _log):
    t0 = time.perf_counter()
    art_in, tables, items, items_ref = load_sim(store, cfg, interactions)
    d = decode(tables, items)
    rl = roles(d, cfg)
    boosters, cals, info, ftr, n_rows = fit_roles(d, rl, cfg, "myntra-sim (SIMULATED logs)", log, t0)
    bundle = lgbm.Bundle(boosters, cals, ftr.names, ftr.categorical, {
        "dataset": "myntra-sim", "simulated": True, "label": cfg.myntra.label,
        "serve_model": choose_serve_model(cfg, info), "item_vocabs": items.vocabs,
        "log_end_us": d.log_end_us, "n_candidates_logged": float(d.n_candidates.mean()),
        "stats_t0_us": int(d.req_ts.min()),
        "negative_sampling": "none: negatives are the logged impressions that were not "
                            f"{cfg.myntra.label}ed (lists without any are left out of lambdarank)",
    })
    final = Y.ItemStats(*(a[-1:] for a in d.stats.arrays()))
    import io

    buf = io.BytesIO()
    final.save(buf, items.item_ids)
    weekly = io.BytesIO()
    d.stats.save(weekly, items.item_ids)
    sizes = {"train_requests": int(len(rl["train"])), "train_rows": n_rows,
             "val_requests": int(len(rl["val"])), "simulated": True}
    items_art = store.load(kinds.ITEMS, items_ref["version"]) if items_ref else None
    return write_ranker(store, "myntra-sim", cfg, art_in, bundle, info, sizes, time.perf_counter() - t0,
                  extra_files={STATS_FILE: buf.getvalue(), WEEKLY_STATS_FILE: weekly.getvalue()},
                  extra_inputs=[items_art] if items_art else [])


def eval_myntra(store: ArtifactStore, version: str | None = None, log: Callable = _log) -> dict:
    """Recovery of the hidden utility on the test window (NDCG with true click probability)."""
    art = store.load(kinds.RANKER, version)
    cfg = RankConfig.model_validate(art.config)
    bundle = lgbm.Bundle.load(art)
    sim_version = next(i["version"] for i in art.manifest["inputs"] if i.get("kind") == kinds.INTERACTIONS_SIM)
    sim_art, tables, items, _ = load_sim(store, cfg, sim_version, vocabs=bundle.meta["item_vocabs"])
    d = decode(tables, items)
    rl = roles(d, cfg)
    y = label_of(d, cfg)
    te = rows_of(d, rl["test"], drop_held_out_items=False)
    fte = features_for(d, te, serve_position=True)
    fte_logged = features_for(d, te, serve_position=False)
    hidden = pq.read_table(sim_art.file(HIDDEN_FILE))
    p_true = _join_hidden(hidden, d, te)
    offsets = np.concatenate([[0], np.cumsum(_sizes(d.req[te]))])
    r = d.req[te]
    scores = {name: lgbm.predict(bundle.boosters[name], fte.X) for name in ("lambdarank", "binary")}
    scores.update({
        "oracle": p_true,
        "random": np.random.default_rng(0).random(len(te)),
        "popularity": d.stats.click[d.req_week[r], np.maximum(d.item_row[te], 0)],
        "segment_popularity": fte.column("i_seg_ctr"),
        "logged_order": -d.position[te].astype(np.float64),
    })
    out: dict = {"model_version": art.version, "simulated": True,
                 "protocol": {"test": f"last {cfg.myntra.test_share:.0%} of requests in time",
                              "gain": "true click probability sigmoid(utility - click_bias) from "
                                      "the simulator's hidden utility (oracle NDCG = 1)",
                              "new_users": f"split buckets < {NEW_USER_BUCKETS}: never in "
                                           "training or statistics",
                              "new_items": "held-out products (id % 10 == 0): never in training "
                                           "or statistics"}}
    out["utility_ndcg@10"] = {k: round(M.summarise(M.ndcg_at_k(s, p_true, offsets, 10)), 5)
                              for k, s in scores.items()}
    out["click_ndcg@10"] = {k: round(M.summarise(M.ndcg_at_k(s, y[te], offsets, 10)), 5)
                            for k, s in scores.items()}
    segs = {"new_users": d.req_new[r], "cold_requests": d.users.n_clicks[r] == 0,
            "returning": (~d.req_new[r]) & (d.users.n_clicks[r] > 0)}
    out["segments"] = {}
    for name, mask in segs.items():
        lists = np.unique(r[mask])
        keep = np.isin(r, lists)
        if not keep.any():
            continue
        off = np.concatenate([[0], np.cumsum(_sizes(r[keep]))])
        out["segments"][name] = {"requests": int(len(lists)), **{
            k: round(M.summarise(M.ndcg_at_k(scores[k][keep], p_true[keep], off, 10)), 5)
            for k in ("lambdarank", "binary", "popularity", "segment_popularity", "random")}}
    held = d.item_held_out[te]
    if held.any():
        off = np.concatenate([[0], np.cumsum(_sizes(r[held]))])
        out["new_items_only_lists"] = {"lists": int(len(off) - 1), **{
            k: round(M.summarise(M.ndcg_at_k(scores[k][held], p_true[held], off, 10)), 5)
            for k in ("lambdarank", "binary", "random", "oracle")}}
    logged = {k: lgbm.predict(bundle.boosters[k], fte_logged.X) for k in ("lambdarank", "binary")}
    out["propensity_at_logged_positions"] = {k: {"auc": round(M.auc(s, y[te]), 5), **{
        m: round(v, 5) for m, v in M.expected_calibration_error(bundle.calibrators[k](s), y[te]).items()}}
        for k, s in logged.items()}
    ut = out["utility_ndcg@10"]
    out["recovered_share"] = {k: round((ut[k] - ut["random"]) / (1.0 - ut["random"]), 4)
                              for k in ("lambdarank", "binary", "popularity", "segment_popularity")}
    out["served_model"] = bundle.meta.get("serve_model")
    log("myntra-sim utility NDCG@10: " + ", ".join(f"{k} {v:.4f}" for k, v in out["utility_ndcg@10"].items()))
    return out


def _join_hidden(hidden: pa.Table, d: SimData, rows: np.ndarray) -> np.ndarray:
    """True click probability of each evaluated impression (from the oracle file)."""
    hk = pc.binary_join_element_wise(hidden["request_id"], hidden["item_id"], "|").to_pylist()
    look = dict(zip(hk, _np(hidden["p_click"])))
    ids = d.items.item_ids
    keys = [f"{d.request_ids[q]}|{ids[i] if i >= 0 else ''}" for q, i in zip(d.req[rows], d.item_row[rows])]
    missing = [k for k in keys if k not in look]
    if missing:
        raise InputError(f"{len(missing)} evaluated impressions have no hidden utility "
                         f"(first {missing[0]!r}); was the log simulated over another catalog?")
    return np.array([look[k] for k in keys], np.float64)
