"""H&M sample: MAP@12 on a time split of 5,000 purchases (tiny; read its numbers as such).

4,946 customers made 5,000 purchases, so almost every test customer is new: the personal
signal is the customer's age and club/newsletter status crossed with article features and the
typical buyer's age of each article. Statistics come from training purchases in the months
strictly before each purchase (and never from the test window). Each test customer's
candidates are the whole 1,000-article sample; MAP@12 as in the Kaggle competition.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmrec import kinds
from mmrec.artifacts import ArtifactStore
from mmrec.errors import InputError
from mmrec.rank import features as F
from mmrec.rank import lgbm
from mmrec.rank import metrics as M
from mmrec.rank.config import RankConfig
from mmrec.rank.fit import fit_pair, write_ranker
from mmrec.rank.interactions import load_tables

ORIGIN = (2018, 1)
AGE_EDGES = np.array([0, 25, 35, 45, 55])
ITEM_CATS = ("product_type_name", "product_group_name", "colour_group_name",
             "perceived_colour_master_name", "index_group_name", "garment_group_name",
             "section_name")
EXTRA_KEYS = ("club", "news", "fn", "active")
SMOOTH = 3.0


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class HmData:
    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    period: np.ndarray
    user_age: np.ndarray          # per user code
    user_extra: dict[str, np.ndarray]
    item_codes: dict[str, np.ndarray]
    vocabs: dict[str, list[str]]
    n_items: int
    n_periods: int


def decode(tables) -> HmData:
    inter, prof, items = tables.interactions, tables.profiles, tables.items
    users = prof["user_id"].to_pylist()
    uindex = {u: i for i, u in enumerate(users)}
    user = np.array([uindex.get(u, -1) for u in inter["user_id"].to_pylist()], np.int64)
    if (user < 0).any():
        raise InputError(f"{int((user < 0).sum())} H&M purchases have no customer profile")
    item_ids = items["item_id"].to_pylist()
    iindex = {v: i for i, v in enumerate(item_ids)}
    item = np.array([iindex.get(v, -1) for v in inter["item_id"].to_pylist()], np.int64)
    keep = item >= 0
    ts = pc.cast(inter["ts"], pa.int64()).to_numpy()[keep]
    vocabs = {c: F.build_vocab(items[c].to_pylist()) for c in ITEM_CATS}
    extra_rows = [dict(e or []) for e in prof["extra"].to_pylist()]
    for k in EXTRA_KEYS:
        vocabs[f"u_{k}"] = F.build_vocab([e.get(k) for e in extra_rows])
    return HmData(
        user=user[keep], item=item[keep], ts=ts, period=F.month_index(ts, *ORIGIN),
        user_age=prof["age"].to_numpy(zero_copy_only=False).astype(np.float32),
        user_extra={k: F.encode([e.get(k) for e in extra_rows], vocabs[f"u_{k}"]) for k in EXTRA_KEYS},
        item_codes={c: F.encode(items[c].to_pylist(), vocabs[c]) for c in ITEM_CATS},
        vocabs=vocabs, n_items=len(item_ids), n_periods=int(F.month_index(ts, *ORIGIN).max()) + 1)


@dataclass
class HmStats:
    count: np.ndarray      # [P+1, I]
    band: np.ndarray       # [P+1, I, bands]
    age_sum: np.ndarray    # [P+1, I]
    age_n: np.ndarray
    global_age: float


def build_stats(d: HmData, rows: np.ndarray) -> HmStats:
    P, I = d.n_periods, d.n_items
    age = d.user_age[d.user[rows]].astype(np.float64)
    ok = np.isfinite(age)
    band = np.where(ok, np.searchsorted(AGE_EDGES, np.nan_to_num(age), side="right") - 1, -1)
    cc = F.cumulative_counts
    return HmStats(cc(d.period[rows], d.item[rows], P, I)[..., 0],
                   cc(d.period[rows], d.item[rows], P, I, segment=band, n_segments=len(AGE_EDGES)),
                   cc(d.period[rows][ok], d.item[rows][ok], P, I, weights=age[ok])[..., 0],
                   cc(d.period[rows][ok], d.item[rows][ok], P, I)[..., 0],
                   float(age[ok].mean()) if ok.any() else float("nan"))


NAMES = (["u_age", *[f"u_{k}" for k in EXTRA_KEYS]]
         + [f"i_{c}" for c in ITEM_CATS]
         + ["i_share_all", "i_share_3m", "i_mean_age", "x_d_age", "i_band_lift"])
CATEGORICAL = [f"u_{k}" for k in EXTRA_KEYS] + [f"i_{c}" for c in ITEM_CATS]


def features(d: HmData, st: HmStats, user: np.ndarray, period: np.ndarray, item: np.ndarray
             ) -> F.FeatureSet:
    """Features of (customer, candidate article) at statistics snapshot ``period``."""
    age = d.user_age[user]
    cols = {"u_age": age, **{f"u_{k}": d.user_extra[k][user] for k in EXTRA_KEYS},
            **{f"i_{c}": d.item_codes[c][item] for c in ITEM_CATS}}
    total = st.count.sum(axis=1)
    lo = np.clip(period - 3, 0, None)
    cols["i_share_all"] = 1000 * st.count[period, item] / np.maximum(total[period], 1)
    cols["i_share_3m"] = 1000 * (st.count[period, item] - st.count[lo, item]) / np.maximum(
        total[period] - total[lo], 1)
    mean_age = F.smoothed_mean(st.age_sum[period, item], st.age_n[period, item], st.global_age, SMOOTH)
    cols["i_mean_age"] = mean_age
    cols["x_d_age"] = F.diff(age, mean_age)
    band = np.where(np.isfinite(age), np.searchsorted(AGE_EDGES, np.nan_to_num(age), side="right") - 1, -1)
    band_tot = st.band.sum(axis=1)
    prior = F.smoothed_share(F.gather(band_tot, period, band, fill=np.nan), total[period],
                             1.0 / len(AGE_EDGES), 1.0)
    own = F.gather(st.band, period, item, band, fill=np.nan)
    cols["i_band_lift"] = F.smoothed_share(own, st.count[period, item], prior, SMOOTH) / prior
    return F.stack({n: np.asarray(cols[n], np.float32) for n in NAMES}, CATEGORICAL)


def _us(day) -> int:
    return int((np.datetime64(day, "D") - np.datetime64("1970-01-01", "D")).astype("timedelta64[us]").astype(np.int64))


def _groups(d: HmData, rows: np.ndarray, n_neg: int, rng: np.random.Generator):
    """Each purchase + ``n_neg`` uniform other articles (training lists), in random order."""
    neg = rng.integers(0, d.n_items - 1, (len(rows), n_neg))
    neg = neg + (neg >= d.item[rows][:, None])          # skip the bought article
    cand = np.concatenate([d.item[rows][:, None], neg], axis=1)
    lab = np.zeros(cand.shape, np.int8)
    lab[:, 0] = 1
    perm = np.argsort(rng.random(cand.shape), axis=1)
    cand = np.take_along_axis(cand, perm, axis=1)
    lab = np.take_along_axis(lab, perm, axis=1)
    r = np.repeat(rows, n_neg + 1)
    return r, cand.ravel(), lab.ravel(), np.full(len(rows), n_neg + 1)


@dataclass
class HmSplit:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_period: int


def split(d: HmData, c) -> HmSplit:
    t_test = _us(c.test_start)
    before = np.nonzero(d.ts < t_test)[0]
    test = np.nonzero(d.ts >= t_test)[0]
    if len(before) < 10 or len(test) == 0:
        raise InputError(f"H&M split empty around {c.test_start}: {len(before)} before, {len(test)} after")
    cut = np.quantile(d.ts[before], 1 - c.val_share)
    train = before[d.ts[before] < cut]
    val = before[d.ts[before] >= cut]
    test_period = int(F.month_index(np.array([t_test]), *ORIGIN)[0])
    return HmSplit(train, val, test, test_period)


def train_hm(store: ArtifactStore, cfg: RankConfig, *, interactions: str | None = None,
             log: Callable = _log):
    t0 = time.perf_counter()
    art_in, tables = load_tables(store, "hm", interactions)
    d = decode(tables)
    sp = split(d, cfg.hm)
    st = build_stats(d, np.concatenate([sp.train, sp.val]))
    rng = np.random.default_rng(cfg.hm.seed)
    sets = {}
    for name, rows in (("train", sp.train), ("val", sp.val)):
        r, it, lab, sizes = _groups(d, rows, cfg.hm.negatives_train, rng)
        sets[name] = (features(d, st, d.user[r], d.period[r], it), lab, sizes)
    log(f"hm: {len(sp.train)} training purchases, {len(sp.val)} validation, {len(sp.test)} test")
    boosters, cals, info = fit_pair(*sets["train"][:2], sets["train"][2], *sets["val"][:2],
                                    sets["val"][2], cfg, log, lgbm_cfg=cfg.hm.lgbm.apply(cfg.lgbm))
    bundle = lgbm.Bundle(boosters, cals, sets["train"][0].names, sets["train"][0].categorical, {
        "dataset": "hm", "vocabs": d.vocabs,
        "negative_sampling": f"{cfg.hm.negatives_train} uniform articles per training purchase"})
    return write_ranker(store, "hm", cfg, art_in, bundle, info,
                  {"train_purchases": int(len(sp.train)), "val_purchases": int(len(sp.val))},
                  time.perf_counter() - t0)


def eval_hm(store: ArtifactStore, version: str | None = None, log: Callable = _log) -> dict:
    """MAP@12 over all articles for each test customer vs popularity baselines."""
    art = store.load(kinds.RANKER_HM, version)
    cfg = RankConfig.model_validate(art.config)
    inter_version = next(i["version"] for i in art.manifest["inputs"] if i.get("kind") == kinds.INTERACTIONS_HM)
    _, tables = load_tables(store, "hm", inter_version)
    d = decode(tables)
    sp = split(d, cfg.hm)
    st = build_stats(d, np.concatenate([sp.train, sp.val]))
    bundle = lgbm.Bundle.load(art)
    users = np.unique(d.user[sp.test])
    truth = {u: set() for u in users}
    for u, i in zip(d.user[sp.test], d.item[sp.test]):
        truth[u].add(i)
    U, I = len(users), d.n_items
    uu = np.repeat(users, I)
    it = np.tile(np.arange(I), U)
    # statistics frozen at the test start: nothing from the test window
    per = np.full(len(uu), sp.test_period)
    fs = features(d, st, uu, per, it)
    labels = np.zeros(len(uu), np.int8)
    pos = np.concatenate([np.searchsorted(users, u) * I + np.fromiter(truth[u], int) for u in users])
    labels[pos] = 1
    offsets = np.arange(U + 1) * I
    scores = {name: lgbm.predict(bundle.boosters[name], fs.X) for name in ("lambdarank", "binary")}
    scores["popularity"] = st.count[per, it]
    scores["popularity_3m"] = st.count[per, it] - st.count[np.clip(per - 3, 0, None), it]
    scores["random"] = np.random.default_rng(0).random(len(uu))
    k = cfg.hm.k
    def ap_se(s):
        ap = M.average_precision_at_k(s, labels, offsets, k)
        return round(float(np.nanstd(ap, ddof=1) / np.sqrt(np.isfinite(ap).sum())), 5)

    table = {n: {f"map@{k}": round(M.summarise(M.average_precision_at_k(s, labels, offsets, k)), 5),
                 f"map@{k}_se": ap_se(s),
                 "recall@12": round(M.summarise(M.recall_at_k(s, labels, offsets, 12)), 5),
                 "ndcg@10": round(M.summarise(M.ndcg_at_k(s, labels, offsets, 10)), 5)}
             for n, s in scores.items()}
    bought_before = np.isin(d.item[sp.test], d.item[np.concatenate([sp.train, sp.val])])
    out = {"model_version": art.version, "test_customers": int(U), "test_purchases": int(len(sp.test)),
           "candidates_per_customer": int(I),
           "share_of_test_purchases_of_articles_seen_in_training": round(float(bought_before.mean()), 4),
           "scorers": table,
           "note": "tiny sample (5,000 purchases; ~1 per customer): differences of a few 0.001 "
                   "are noise"}
    log("hm MAP@12: " + ", ".join(f"{n} {t[f'map@{k}']:.4f}" for n, t in table.items()))
    return out
