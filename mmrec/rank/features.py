"""Pure, vectorised feature primitives shared by the RTR, H&M and Myntra-sim feature builders.

Nothing here reads files or keeps state: every function maps numpy arrays to numpy arrays, so
each one is tested on hand-made tables with known answers (tests/test_rank_features.py).

Time discipline: statistics are *cumulative by period* (``cumulative_counts`` returns, for
period p, the counts over periods strictly before p), so a feature computed for an event in
period p never sees that period or any later one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mmrec.rank.interactions import REVIEW_TIME_FIELDS

MISSING = -1  # code of a value outside the vocabulary (LightGBM treats negatives as missing)


# -- encoding ------------------------------------------------------------------------------

def build_vocab(values: Sequence, *, min_count: int = 1, limit: int | None = None) -> list[str]:
    """Distinct non-null values, most frequent first (ties by name), at least ``min_count``."""
    vals, counts = np.unique(np.array([v for v in values if v is not None], dtype=str),
                             return_counts=True)
    order = np.lexsort((vals, -counts))
    out = [str(vals[i]) for i in order if counts[i] >= min_count]
    return out[:limit] if limit is not None else out


def encode(values: Sequence, vocab: Sequence[str]) -> np.ndarray:
    """Codes 0..len(vocab)-1; None or unknown values -> ``MISSING``."""
    index = {v: i for i, v in enumerate(vocab)}
    return np.fromiter((index.get(v, MISSING) if v is not None else MISSING for v in values),
                       dtype=np.int32, count=len(values))


def month_index(ts_us: np.ndarray, origin_year: int, origin_month: int = 1) -> np.ndarray:
    """Calendar month number since origin (timestamps as int64 microseconds since epoch)."""
    m = ts_us.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64)
    origin = (origin_year - 1970) * 12 + (origin_month - 1)
    return (m - origin).astype(np.int32)


def calendar_month(ts_us: np.ndarray) -> np.ndarray:
    """1..12 from int64 microseconds."""
    return (ts_us.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64) % 12 + 1
            ).astype(np.int32)


SEASONS = ("winter", "spring", "summer", "fall")


def season_of_month(month: np.ndarray) -> np.ndarray:
    """Northern-hemisphere season code 0..3 (winter = Dec-Feb) of calendar months 1..12."""
    return ((np.asarray(month) % 12) // 3).astype(np.int32)


# -- time-respecting statistics ------------------------------------------------------------

def cumulative_counts(period: np.ndarray, key: np.ndarray, n_periods: int, n_keys: int, *,
                      segment: np.ndarray | None = None, n_segments: int = 1,
                      weights: np.ndarray | None = None) -> np.ndarray:
    """Counts (or weight sums) strictly before each period.

    Returns ``out`` of shape (n_periods + 1, n_keys, n_segments): ``out[p, k, s]`` sums the
    events of key k (and segment s) in periods < p. Events with a negative key, segment or
    period are ignored (unknown values do not count).
    """
    period = np.asarray(period)
    key = np.asarray(key)
    seg = np.zeros_like(key) if segment is None else np.asarray(segment)
    w = np.ones(len(key), np.float64) if weights is None else np.asarray(weights, np.float64)
    ok = (key >= 0) & (seg >= 0) & (period >= 0) & (period < n_periods) & np.isfinite(w)
    per = np.zeros((n_periods + 1, n_keys, n_segments), np.float64)
    np.add.at(per, (period[ok] + 1, key[ok], seg[ok]), w[ok])
    return np.cumsum(per, axis=0).astype(np.float32)


def smoothed_share(count: np.ndarray, total: np.ndarray, prior: np.ndarray | float,
                   strength: float) -> np.ndarray:
    """(count + strength * prior) / (total + strength): shares that stay sane for small totals."""
    return (count + strength * prior) / (total + strength)


def smoothed_mean(sums: np.ndarray, counts: np.ndarray, prior: np.ndarray | float,
                  strength: float) -> np.ndarray:
    """Mean shrunk towards ``prior`` by ``strength`` pseudo-observations; NaN when prior is NaN."""
    return (sums + strength * prior) / (counts + strength)


def first_period(cum_counts: np.ndarray) -> np.ndarray:
    """Per key, the first index p of ``cum`` (n_periods + 1, n_keys[, n_seg]) with a count
    before it, i.e. one past the key's first active period; -1 if never active."""
    c = cum_counts if cum_counts.ndim == 2 else cum_counts.sum(axis=2)
    has = c > 0
    return np.where(has.any(axis=0), np.argmax(has, axis=0), -1).astype(np.int32)


# -- joins ---------------------------------------------------------------------------------

def asof_index(prof_user: np.ndarray, prof_ts: np.ndarray, q_user: np.ndarray,
               q_ts: np.ndarray) -> np.ndarray:
    """Row of the latest profile with ``prof_ts <= q_ts`` for the same user, or -1.

    Users are integer codes in [0, 2^31); timestamps int64 (static profiles: the minimum
    int64). Vectorised: timestamps become dense ranks so (user, rank) packs into one int64,
    then one sort and one ``searchsorted``. Ties at the same time take the last row given.
    """
    prof_user = np.asarray(prof_user, np.int64)
    q_user = np.asarray(q_user, np.int64)
    all_ts = np.unique(np.concatenate([np.asarray(prof_ts, np.int64), np.asarray(q_ts, np.int64)]))
    pkey = (prof_user << 32) | np.searchsorted(all_ts, np.asarray(prof_ts, np.int64))
    qkey = (q_user << 32) | np.searchsorted(all_ts, np.asarray(q_ts, np.int64))
    order = np.argsort(pkey, kind="stable")
    sk = pkey[order]
    pos = np.searchsorted(sk, qkey, side="right") - 1
    ok = (pos >= 0) & (q_user >= 0)
    ok[ok] = (sk[pos[ok]] >> 32) == q_user[ok]
    return np.where(ok, order[np.clip(pos, 0, None)], -1)


def history_counts(user: np.ndarray, period: np.ndarray, q_user: np.ndarray,
                   q_period: np.ndarray, *, key: np.ndarray | None = None,
                   q_key: np.ndarray | None = None) -> np.ndarray:
    """How many events each query's user had strictly before the query period (and key)."""
    user = np.asarray(user, np.int64)
    period = np.asarray(period, np.int64)
    k = np.zeros_like(user) if key is None else np.asarray(key, np.int64)
    qk = np.zeros(len(q_user), np.int64) if q_key is None else np.asarray(q_key, np.int64)
    # pack (user, key, period) into one sortable int64: users < 2^31, keys < 2^12, periods < 2^20
    pack = (user << 32) | (k << 20) | period
    pack.sort()
    q_user = np.asarray(q_user, np.int64)
    q_lo = (q_user << 32) | (qk << 20)
    q_hi = q_lo | np.asarray(q_period, np.int64)
    out = np.searchsorted(pack, q_hi, side="left") - np.searchsorted(pack, q_lo, side="left")
    return np.where((q_user >= 0) & (qk >= 0), out, 0).astype(np.float32)


# -- crosses -------------------------------------------------------------------------------

def gather(table: np.ndarray, *index: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """``table[index...]`` where any negative index yields ``fill``."""
    ok = np.ones(len(index[0]), bool)
    for ix in index:
        ok &= np.asarray(ix) >= 0
    safe = tuple(np.where(ok, ix, 0) for ix in index)
    return np.where(ok, table[safe], fill).astype(np.float32)


def diff(user_value: np.ndarray, item_mean: np.ndarray) -> np.ndarray:
    """Signed user - item-typical difference (NaN propagates: unknown stays unknown)."""
    return (np.asarray(user_value, np.float32) - np.asarray(item_mean, np.float32))


def zscore(user_value: np.ndarray, item_mean: np.ndarray, item_std: np.ndarray,
           floor: float = 1e-3) -> np.ndarray:
    return diff(user_value, item_mean) / np.maximum(np.asarray(item_std, np.float32), floor)


def std_from_moments(s1: np.ndarray, s2: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Population std from sums and sums of squares; NaN where n < 2."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, 0.0)
    return np.where(n >= 2, np.sqrt(var), np.nan).astype(np.float32)


# -- feature sets and the leakage guard ------------------------------------------------------

@dataclass
class FeatureSet:
    """A design matrix with names; ``categorical`` names integer-coded columns."""

    X: np.ndarray
    names: list[str]
    categorical: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.X.ndim != 2 or self.X.shape[1] != len(self.names):
            raise ValueError(f"X has shape {self.X.shape} but {len(self.names)} names")
        check_no_leakage(self.names)

    def column(self, name: str) -> np.ndarray:
        return self.X[:, self.names.index(name)]


_CHECKED: set[tuple[str, ...]] = set()  # name lists already checked (serving builds one per request)


def check_no_leakage(names: Sequence[str]) -> None:
    """Refuse feature names built from review-time fields (rating, fit, ...): they leak labels."""
    key = tuple(names)
    if key in _CHECKED:
        return
    bad = [n for n in names for f in REVIEW_TIME_FIELDS if n == f or n.startswith(f + "_")
           or n.endswith("_" + f)]
    if bad:
        raise ValueError(f"features {bad} come from review-time fields {list(REVIEW_TIME_FIELDS)}; "
                         f"they are written after the event and would leak the label")
    _CHECKED.add(key)


def stack(columns: dict[str, np.ndarray], categorical: Sequence[str] = ()) -> FeatureSet:
    names = list(columns)
    X = np.empty((len(next(iter(columns.values()))), len(names)), np.float32)
    for j, n in enumerate(names):
        X[:, j] = columns[n]
    return FeatureSet(X, names, [c for c in categorical if c in columns])


def prefix_counts(ev_user: np.ndarray, ev_ts: np.ndarray, ev_code: np.ndarray, n_values: int,
                  q_user: np.ndarray, q_ts: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query, the user's events strictly before ``q_ts``: counts by code, total, last ts.

    Returns ``(counts [n_q, n_values], n_before [n_q], last_ts [n_q] (int64, -1 if none))``.
    Codes < 0 count in the total but in no column. Vectorised: one sort, one cumulative sum.
    """
    ev_user = np.asarray(ev_user, np.int64)
    ev_ts = np.asarray(ev_ts, np.int64)
    ev_code = np.asarray(ev_code, np.int64)
    q_user = np.asarray(q_user, np.int64)
    q_ts = np.asarray(q_ts, np.int64)
    order = np.lexsort((ev_ts, ev_user))
    u, t, c = ev_user[order], ev_ts[order], ev_code[order]
    cum = np.zeros((len(u) + 1, n_values), np.float32)
    ok = c >= 0
    np.add.at(cum, (np.nonzero(ok)[0] + 1, c[ok]), 1.0)
    np.cumsum(cum, axis=0, out=cum)
    all_ts = np.unique(np.concatenate([t, q_ts]))
    key = (u << 32) | np.searchsorted(all_ts, t)
    start = np.searchsorted(key, q_user << 32, side="left")
    end = np.searchsorted(key, (q_user << 32) | np.searchsorted(all_ts, q_ts), side="left")
    end = np.maximum(end, start)
    last = np.where(end > start, t[np.clip(end - 1, 0, None)] if len(t) else -1, -1)
    return cum[end] - cum[start], (end - start).astype(np.float32), last.astype(np.int64)
