"""Rent the Runway features: decoding, time-respecting item statistics, candidate sampling.

The honest question asked of RTR: for a rental by a user the model has never seen, how high
does the rented item rank among items on offer that month? Personal signal comes from the
declared body profile and the occasion; item statistics (popularity overall, by occasion, by
body type and size band, the typical renter's age/size/height/weight/bust) come from the
training users' rentals in the months strictly before the rental's month.

Review-time fields (rating, fit) are never read here, except ``value`` which is returned as a
label for the "rated 10/10" model; `features` cannot reach it (a test shuffles it and checks
that the features do not move).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmrec.errors import InputError
from mmrec.rank import features as F
from mmrec.rank.interactions import SourceTables

ORIGIN = (2010, 1)                                  # month 0 of the period index
SIZE_EDGES = np.array([0, 4, 8, 12, 16, 20])        # size band b: size >= SIZE_EDGES[b]
PROFILE_FIELDS = ("age", "size", "height_cm", "weight_kg", "bust_band")
RECENT_MONTHS = (3, 12)
SMOOTH = 5.0                                        # pseudo-rentals behind every share/mean

# Only these input columns ever reach `features`: the leakage guard is structural.
FEATURE_INPUT_COLUMNS = ("user_id", "item_id", "ts", "occasion") + PROFILE_FIELDS + ("cup", "body_type")


@dataclass
class RtrData:
    """Rentals decoded to integer codes, each with the renter's profile at that time."""

    user: np.ndarray          # int32 user code
    item: np.ndarray          # int32 item code (index into item_ids)
    ts: np.ndarray            # int64 microseconds
    period: np.ndarray        # int32 month index since ORIGIN
    cal_month: np.ndarray     # 1..12
    occasion: np.ndarray      # int32 code into vocabs["occasion"]
    bucket: np.ndarray        # int16 0..99: the user's split bucket
    profile: dict[str, np.ndarray]   # float32 per rental (PROFILE_FIELDS + cup), body_type code
    value: np.ndarray         # rating / 10: LABEL ONLY (review time)
    item_ids: np.ndarray      # str per item code
    item_category: np.ndarray  # int32 per item code
    vocabs: dict[str, list[str]]

    @property
    def n_periods(self) -> int:
        return int(self.period.max()) + 1

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def _np(col, fill=None) -> np.ndarray:
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if fill is not None:
        col = col.fill_null(fill)
    return col.to_numpy(zero_copy_only=False)


def decode(tables: SourceTables) -> RtrData:
    """Decode the ``interactions_rtr`` tables; profiles are joined as of each rental's time."""
    inter = tables.interactions.filter(pc.equal(tables.interactions["event"], "rental"))
    if inter.num_rows == 0:
        raise InputError("no rental events in the RTR interactions table")
    prof = tables.profiles
    users_all = pc.unique(pa.chunked_array(inter["user_id"].chunks + prof["user_id"].chunks))
    u_code = np.asarray(pc.index_in(inter["user_id"], users_all), np.int64)
    pu_code = np.asarray(pc.index_in(prof["user_id"], users_all), np.int64)
    ts = _np(pc.cast(inter["ts"], pa.int64()))
    pts = _np(pc.cast(prof["as_of"], pa.int64()), fill=np.iinfo(np.int64).min)
    prow = F.asof_index(pu_code, pts, u_code, ts)
    if (prow < 0).any():
        raise InputError(f"{int((prow < 0).sum())} rentals have no profile at their time")

    item_ids = np.array(sorted(set(tables.items["item_id"].to_pylist())
                               | set(pc.unique(inter["item_id"]).to_pylist())), dtype=object)
    item = np.searchsorted(item_ids, _np(inter["item_id"]).astype(object)).astype(np.int32)
    cat_of = dict(zip(tables.items["item_id"].to_pylist(), tables.items["category"].to_pylist()))
    vocabs = {
        "occasion": F.build_vocab(inter["occasion"].to_pylist()),
        "body_type": F.build_vocab(prof["body_type"].to_pylist()),
        "category": F.build_vocab([cat_of.get(i) for i in item_ids]),
    }
    profile = {f: _np(pc.cast(prof[f], pa.float32()), fill=np.nan)[prow].astype(np.float32)
               for f in PROFILE_FIELDS + ("cup",)}
    profile["body_type"] = F.encode(prof["body_type"].to_pylist(), vocabs["body_type"])[prow]
    return RtrData(
        user=u_code.astype(np.int32), item=item, ts=ts,
        period=F.month_index(ts, *ORIGIN), cal_month=F.calendar_month(ts),
        occasion=F.encode(inter["occasion"].to_pylist(), vocabs["occasion"]),
        bucket=_np(prof["split_bucket"])[prow].astype(np.int16),
        profile=profile,
        value=_np(pc.cast(inter["value"], pa.float32()), fill=np.nan).astype(np.float32),
        item_ids=item_ids,
        item_category=F.encode([cat_of.get(i) for i in item_ids], vocabs["category"]),
        vocabs=vocabs,
    )


def size_band(size: np.ndarray) -> np.ndarray:
    s = np.asarray(size, np.float64)
    return np.where(np.isnan(s), -1, np.searchsorted(SIZE_EDGES, np.nan_to_num(s), side="right") - 1
                    ).astype(np.int32)


@dataclass
class RtrStats:
    """Cumulative item statistics: index [p] holds everything from months < p."""

    count: np.ndarray        # [P+1, I]
    occ: np.ndarray          # [P+1, I, O]
    bt: np.ndarray           # [P+1, I, B]
    sb: np.ndarray           # [P+1, I, S]
    cat_occ: np.ndarray      # [P+1, C, O]
    moments: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # field -> (sum, sumsq, n)
    first: np.ndarray        # [I] first cum index with a rental, -1 never
    global_mean: dict[str, float]


def build_stats(d: RtrData, rows: np.ndarray) -> RtrStats:
    """Statistics from the rentals ``rows`` (the training users' rentals, every month)."""
    P, I = d.n_periods, d.n_items
    p, it = d.period[rows], d.item[rows]
    count = F.cumulative_counts(p, it, P, I)[..., 0]
    occ = F.cumulative_counts(p, it, P, I, segment=d.occasion[rows],
                              n_segments=len(d.vocabs["occasion"]))
    bt = F.cumulative_counts(p, it, P, I, segment=d.profile["body_type"][rows],
                             n_segments=len(d.vocabs["body_type"]))
    sb = F.cumulative_counts(p, it, P, I, segment=size_band(d.profile["size"][rows]),
                             n_segments=len(SIZE_EDGES))
    cat_occ = F.cumulative_counts(p, d.item_category[it], P, len(d.vocabs["category"]),
                                  segment=d.occasion[rows], n_segments=len(d.vocabs["occasion"]))
    moments, gmean = {}, {}
    for f in PROFILE_FIELDS:
        v = d.profile[f][rows].astype(np.float64)
        ok = np.isfinite(v)
        s1 = F.cumulative_counts(p[ok], it[ok], P, I, weights=v[ok])[..., 0]
        s2 = F.cumulative_counts(p[ok], it[ok], P, I, weights=v[ok] ** 2)[..., 0]
        n = F.cumulative_counts(p[ok], it[ok], P, I)[..., 0]
        moments[f] = (s1, s2, n)
        gmean[f] = float(v[ok].mean()) if ok.any() else float("nan")
    return RtrStats(count, occ, bt, sb, cat_occ, moments, F.first_period(count), gmean)


def feature_names() -> list[str]:
    return list(_names)


_names = (
    ["u_age", "u_height", "u_weight", "u_size", "u_bust", "u_cup", "u_body_type",
     "c_occasion", "c_month", "c_season",
     "i_category", "i_share_all", *[f"i_share_{m}m" for m in RECENT_MONTHS], "i_months_active",
     "i_occ_share", "i_occ_lift", "i_occ_share_12m", "i_bt_lift", "i_sb_lift", "cat_occ_share"]
    + [f"i_mean_{f}" for f in PROFILE_FIELDS]
    + [f"x_d_{f}" for f in PROFILE_FIELDS] + ["x_z_size", "x_z_age"]
    + ["h_prev_rentals", "h_cat_share"]
)
CATEGORICAL = ["u_body_type", "c_occasion", "c_season", "i_category"]


@dataclass
class History:
    """Past rentals usable as user history (the training users' rentals)."""

    user: np.ndarray
    period: np.ndarray
    category: np.ndarray


def history_of(d: RtrData, rows: np.ndarray) -> History:
    return History(d.user[rows], d.period[rows], d.item_category[d.item[rows]])


def features(d: RtrData, st: RtrStats, row: np.ndarray, item: np.ndarray,
             hist: History | None = None) -> F.FeatureSet:
    """Features of candidate ``item`` for the rental context of ``row`` (vectorised)."""
    row = np.asarray(row)
    item = np.asarray(item)
    p = d.period[row]
    occ = d.occasion[row]
    prof = {k: v[row] for k, v in d.profile.items()}
    total = st.count.sum(axis=1)                                   # [P+1]
    cols: dict[str, np.ndarray] = {
        "u_age": prof["age"], "u_height": prof["height_cm"], "u_weight": prof["weight_kg"],
        "u_size": prof["size"], "u_bust": prof["bust_band"], "u_cup": prof["cup"],
        "u_body_type": prof["body_type"],
        "c_occasion": occ, "c_month": d.cal_month[row],
        "c_season": F.season_of_month(d.cal_month[row]),
        "i_category": d.item_category[item],
    }
    cnt = st.count[p, item]
    cols["i_share_all"] = 1000.0 * cnt / np.maximum(total[p], 1.0)
    for m in RECENT_MONTHS:
        lo = np.clip(p - m, 0, None)
        win = st.count[p, item] - st.count[lo, item]
        cols[f"i_share_{m}m"] = 1000.0 * win / np.maximum(total[p] - total[lo], 1.0)
    first = st.first[item]
    # -1: not rented before this month (a new item, whose statistics are all empty)
    cols["i_months_active"] = np.where((first >= 0) & (first <= p), p - first + 1, -1
                                       ).astype(np.float32)

    n_occ = st.occ.shape[2]
    occ_total = st.occ.sum(axis=1)                                 # [P+1, O]
    prior_occ = F.smoothed_share(F.gather(occ_total, p, occ, fill=0.0),
                                 occ_total[p].sum(axis=1), 1.0 / n_occ, 1.0)
    own_occ = F.gather(st.occ, p, item, occ, fill=np.nan)
    share = F.smoothed_share(own_occ, cnt, prior_occ, SMOOTH)
    cols["i_occ_share"] = share
    cols["i_occ_lift"] = share / prior_occ
    lo12 = np.clip(p - 12, 0, None)
    own12 = own_occ - F.gather(st.occ, lo12, item, occ, fill=np.nan)
    cols["i_occ_share_12m"] = F.smoothed_share(own12, cnt - st.count[lo12, item], prior_occ, SMOOTH)

    cols["i_bt_lift"] = _segment_lift(st.bt, p, item, prof["body_type"], cnt)
    cols["i_sb_lift"] = _segment_lift(st.sb, p, item, size_band(prof["size"]), cnt)

    cat = d.item_category[item]
    n_cat = st.cat_occ.shape[1]
    cat_occ_own = F.gather(st.cat_occ, p, cat, occ, fill=np.nan)
    cat_occ_tot = F.gather(st.cat_occ.sum(axis=1), p, occ, fill=np.nan)
    cols["cat_occ_share"] = F.smoothed_share(cat_occ_own, cat_occ_tot, 1.0 / n_cat, 1.0)

    means, stds = {}, {}
    for f in PROFILE_FIELDS:
        s1, s2, n = (m[p, item] for m in st.moments[f])
        means[f] = F.smoothed_mean(s1, n, st.global_mean[f], SMOOTH).astype(np.float32)
        stds[f] = F.std_from_moments(s1, s2, n)
        cols[f"i_mean_{f}"] = means[f]
    user_val = {"age": prof["age"], "size": prof["size"], "height_cm": prof["height_cm"],
                "weight_kg": prof["weight_kg"], "bust_band": prof["bust_band"]}
    for f in PROFILE_FIELDS:
        cols[f"x_d_{f}"] = F.diff(user_val[f], means[f])
    cols["x_z_size"] = F.zscore(prof["size"], means["size"], stds["size"])
    cols["x_z_age"] = F.zscore(prof["age"], means["age"], stds["age"])

    if hist is not None and len(hist.user):
        prev = F.history_counts(hist.user, hist.period, d.user[row], p)
        prev_cat = F.history_counts(hist.user, hist.period, d.user[row], p,
                                    key=hist.category, q_key=cat)
    else:
        prev = prev_cat = np.zeros(len(row), np.float32)
    cols["h_prev_rentals"] = prev
    cols["h_cat_share"] = F.smoothed_share(prev_cat, prev, 1.0 / n_cat, 1.0)
    fs = F.stack({n: cols[n] for n in _names}, CATEGORICAL)
    return fs


def _segment_lift(table: np.ndarray, p: np.ndarray, item: np.ndarray, seg: np.ndarray,
                  cnt: np.ndarray) -> np.ndarray:
    """P(segment | item renters) / P(segment | all renters), smoothed; NaN for unknown segment."""
    seg_total = table.sum(axis=1)                                   # [P+1, S]
    prior = F.smoothed_share(F.gather(seg_total, p, seg, fill=np.nan),
                             seg_total[p].sum(axis=1), 1.0 / table.shape[2], 1.0)
    own = F.gather(table, p, item, seg, fill=np.nan)
    return (F.smoothed_share(own, cnt, prior, SMOOTH) / prior).astype(np.float32)


# -- candidates ----------------------------------------------------------------------------

@dataclass
class Groups:
    """Candidate lists: group g is rows offsets[g]:offsets[g+1], in random order."""

    row: np.ndarray       # rental row giving user/context/time, per candidate
    item: np.ndarray      # candidate item code
    label: np.ndarray     # 1 for the rented item
    offsets: np.ndarray

    @property
    def n_groups(self) -> int:
        return len(self.offsets) - 1


def sample_groups(d: RtrData, pos_rows: np.ndarray, n_neg: int, scheme: str,
                  rng: np.random.Generator, chunk: int = 1024) -> Groups:
    """For each rental, ``n_neg`` other items rented by anyone in the same calendar month.

    ``uniform_active``: uniform over those items; ``popularity_active``: proportional to their
    rentals that month (Gumbel top-k, without replacement). Months with fewer active items give
    shorter lists. The active set uses every user's rentals: it stands for what was on offer.
    """
    active = F.cumulative_counts(d.period, d.item, d.n_periods, d.n_items)[..., 0]
    month_counts = np.diff(active, axis=0)                           # [P, I]
    rows_out, items_out, labels_out, sizes = [], [], [], []
    pos_rows = np.asarray(pos_rows)
    order = np.argsort(d.period[pos_rows], kind="stable")
    pos_rows = pos_rows[order]
    for p in np.unique(d.period[pos_rows]):
        rp = pos_rows[d.period[pos_rows] == p]
        act = np.nonzero(month_counts[p] > 0)[0]
        w = np.ones(len(act)) if scheme == "uniform_active" else month_counts[p, act].astype(np.float64)
        k = min(n_neg, len(act) - 1)
        for s in range(0, len(rp), chunk):
            r = rp[s:s + chunk]
            keys = np.log(w)[None, :] - np.log(-np.log(rng.random((len(r), len(act)))))
            own = np.searchsorted(act, d.item[r])
            keys[np.arange(len(r)), own] = -np.inf
            neg = act[np.argpartition(-keys, k - 1, axis=1)[:, :k]] if k > 0 else np.zeros((len(r), 0), int)
            cand = np.concatenate([d.item[r][:, None], neg], axis=1)
            lab = np.zeros((len(r), k + 1), np.int8)
            lab[:, 0] = 1
            # shuffle within each list: LightGBM's NDCG breaks score ties by row order, so a
            # positive-first layout would reward models that tie everything
            perm = np.argsort(rng.random(cand.shape), axis=1)
            cand = np.take_along_axis(cand, perm, axis=1)
            lab = np.take_along_axis(lab, perm, axis=1)
            rows_out.append(np.repeat(r, k + 1))
            items_out.append(cand.ravel())
            labels_out.append(lab.ravel())
            sizes.append(np.full(len(r), k + 1))
    if not rows_out:
        return Groups(np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.int8), np.zeros(1, int))
    return Groups(np.concatenate(rows_out), np.concatenate(items_out).astype(np.int32),
                  np.concatenate(labels_out), np.concatenate([[0], np.cumsum(np.concatenate(sizes))]))


def baseline_scores(d: RtrData, st: RtrStats, g: Groups) -> dict[str, np.ndarray]:
    """Scores of the non-learned baselines for the candidates of ``g`` (same time discipline)."""
    p, it, occ = d.period[g.row], g.item, d.occasion[g.row]
    lo = np.clip(p - 3, 0, None)
    return {
        "random": np.random.default_rng(0).random(len(it)),
        "popularity": st.count[p, it],
        "popularity_3m": st.count[p, it] - st.count[lo, it],
        "occasion_popularity": F.gather(st.occ, p, it, occ, fill=0.0),
    }


# -- the split -----------------------------------------------------------------------------

def _us(day) -> int:
    return int((np.datetime64(day, "D") - np.datetime64("1970-01-01", "D"))
               .astype("timedelta64[us]").astype(np.int64))


@dataclass
class RtrSplit:
    """Rows of each role. Users are held out by bucket, time by the configured dates."""

    stats: np.ndarray       # training users' rentals, all months: statistics and history
    train: np.ndarray       # training users, [train_start, test_start), subsampled
    val: np.ndarray         # validation users, [val_start, test_start)
    test_new: np.ndarray    # held-out users, >= test_start: never seen in training
    test_returning: np.ndarray  # training users with earlier rentals, >= test_start


def split(d: RtrData, c, rng: np.random.Generator) -> RtrSplit:
    """Deterministic given the config (``c``: RtrConfig) and ``rng``."""
    cut_test = int(round(c.test_user_share * 100))
    cut_val = cut_test + int(round(c.val_user_share * 100))
    test_u = d.bucket < cut_test
    val_u = (d.bucket >= cut_test) & (d.bucket < cut_val)
    train_u = ~(test_u | val_u)
    t_train, t_val, t_test = _us(c.train_start), _us(c.val_start), _us(c.test_start)
    stats = np.nonzero(train_u)[0]
    train = np.nonzero(train_u & (d.ts >= t_train) & (d.ts < t_test))[0]
    if len(train) > c.max_train_groups:
        train = np.sort(rng.choice(train, c.max_train_groups, replace=False))
    val = np.nonzero(val_u & (d.ts >= t_val) & (d.ts < t_test))[0]
    test_new = np.nonzero(test_u & (d.ts >= t_test))[0]
    later = np.nonzero(train_u & (d.ts >= t_test))[0]
    h = history_of(d, stats)
    prev = F.history_counts(h.user, h.period, d.user[later], d.period[later])
    returning = later[prev > 0]
    for name, rows in (("test_new", test_new), ("test_returning", returning)):
        if len(rows) > c.max_eval_groups:
            rows = np.sort(rng.choice(rows, c.max_eval_groups, replace=False))
        if name == "test_new":
            test_new = rows
        else:
            returning = rows
    if min(len(train), len(val), len(test_new)) == 0:
        raise InputError(f"RTR split is empty (train {len(train)}, val {len(val)}, test "
                         f"{len(test_new)} rentals): check rtr.*_start dates and user shares")
    return RtrSplit(stats, train, val, test_new, returning)


@dataclass
class Prepared:
    d: RtrData
    split: RtrSplit
    stats: RtrStats
    hist: History


def prepare(tables: SourceTables, c) -> Prepared:
    """Decode, split and compute statistics exactly as training did (seeded by ``c.seed``)."""
    d = decode(tables)
    sp = split(d, c, np.random.default_rng([c.seed, 0]))
    return Prepared(d, sp, build_stats(d, sp.stats), history_of(d, sp.stats))


def rated_top(d: RtrData, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a rating and their "rated 10/10" label (the label is review-time, by design)."""
    v = d.value[rows]
    ok = np.isfinite(v)
    return rows[ok], (v[ok] >= 0.999).astype(np.int8)
