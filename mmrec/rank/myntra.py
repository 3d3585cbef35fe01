"""Features of the served ranker (Myntra catalog): items, log statistics, user state, context.

One code path for training and serving: `featurize` maps per-request arrays (user state,
context) and per-candidate arrays (item rows, statistics snapshot, recall, position) to the
design matrix. Training calls it for thousands of requests at once with weekly statistics
snapshots; `Ranker.score` calls it for one request with the final snapshot. Item codes and
statistics are precomputed once (`ItemTable`, `ItemStats`), so a request costs a few gathers.

Cold start is built in: a user without history has zero counts (affinities fall back to
uniform shares) and is still described by profile and segment popularity; an item without
statistics has zero counts (CTRs fall back to the prior) and is described by its content.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mmrec.rank import features as F

ITEM_FIELDS = ("category", "slot", "colour", "family", "usage", "gender", "season")
AFFINITY_FIELDS = ("category", "family", "usage", "brand")
CHANNELS = ("app", "kiosk", "web")
SEASONS = ("spring", "summer", "fall", "winter")
GENDERS = ("men", "women")
AGE_BANDS = ("<25", "25-34", "35-44", "45-54", "55+")   # as interactions.age_band
AGE_EDGES = np.array([0, 25, 35, 45, 55])
SMOOTH_CTR = 20.0       # pseudo-impressions behind every CTR
SMOOTH_AFF = 2.0        # pseudo-clicks behind every affinity share
US_PER_DAY = 86_400_000_000
US_PER_WEEK = 7 * US_PER_DAY


N_SEGMENTS = len(GENDERS) * len(AGE_BANDS)


# -- items ---------------------------------------------------------------------------------

@dataclass
class ItemTable:
    """Catalog items as integer codes (vocabularies fixed at training time)."""

    item_ids: np.ndarray            # object array of str
    codes: dict[str, np.ndarray]    # field -> int32 per item (ITEM_FIELDS + "brand")
    year: np.ndarray                # float32
    vocabs: dict[str, list[str]]

    @classmethod
    def build(cls, items: pa.Table, colour_family, *, vocabs: dict[str, list[str]] | None = None,
              brands: int = 150) -> "ItemTable":
        cols = {f: items[f].to_pylist() for f in ("category", "slot", "colour", "usage", "gender",
                                                   "season", "brand")}
        cols["family"] = [colour_family(c) if c else None for c in cols["colour"]]
        if vocabs is None:
            vocabs = {f: F.build_vocab(cols[f]) for f in ITEM_FIELDS}
            vocabs["brand"] = F.build_vocab(cols["brand"], min_count=5, limit=brands)
        codes = {f: F.encode(cols[f], vocabs[f]) for f in (*ITEM_FIELDS, "brand")}
        year = np.array([np.nan if y is None else y for y in items["year"].to_pylist()], np.float32)
        return cls(np.array(items["item_id"].to_pylist(), dtype=object), codes, year, vocabs)

    @property
    def season_map(self) -> np.ndarray:
        """Context season code (SEASONS) -> item season code (-1 if the catalog lacks it)."""
        cached = getattr(self, "_season_map", None)
        if cached is None:
            names = self.vocabs["season"]
            cached = np.array([names.index(s) if s in names else -1 for s in SEASONS])
            self._season_map = cached
        return cached

    def rows_of(self, item_ids) -> np.ndarray:
        """Row per id, -1 for ids outside this catalog."""
        index = getattr(self, "_index", None)
        if index is None:
            index = {v: i for i, v in enumerate(self.item_ids)}
            self._index = index
        get = index.get
        return np.array([get(i, -1) for i in item_ids], np.int64)


# -- log statistics --------------------------------------------------------------------------

@dataclass
class ItemStats:
    """Impression/click/purchase counts per item: [T, I] (+ segment / occasion axes).

    For training, T = weeks + 1 and snapshot t holds the weeks before t; for serving, T = 1
    (everything logged). Counts of held-out products are never included.
    """

    impr: np.ndarray
    click: np.ndarray
    buy: np.ndarray
    seg_impr: np.ndarray
    seg_click: np.ndarray
    occ_impr: np.ndarray
    occ_click: np.ndarray

    @classmethod
    def from_events(cls, item_row: np.ndarray, period: np.ndarray, n_periods: int, n_items: int,
                    seg: np.ndarray, occ: np.ndarray, n_occ: int, clicked: np.ndarray,
                    bought: np.ndarray) -> "ItemStats":
        """Cumulative snapshots from impression rows (one per impression, with its outcome)."""
        def cc(w=None, segment=None, n_seg=1):
            return F.cumulative_counts(period, item_row, n_periods, n_items, segment=segment,
                                       n_segments=n_seg, weights=w)
        c = clicked.astype(np.float64)
        return cls(cc()[..., 0], cc(c)[..., 0], cc(bought.astype(np.float64))[..., 0],
                   cc(None, seg, N_SEGMENTS), cc(c, seg, N_SEGMENTS),
                   cc(None, occ, n_occ), cc(c, occ, n_occ))

    def prior_ctr(self) -> np.ndarray:
        """Catalog-wide CTR per snapshot (cached): the value unknown items shrink towards."""
        cached = getattr(self, "_prior", None)
        if cached is None:
            cached = ((self.click.sum(axis=1) + 1.0) / (self.impr.sum(axis=1) + 10.0)).astype(np.float32)
            self._prior = cached
        return cached

    def click_share(self, field: str, codes: np.ndarray, n_values: int) -> np.ndarray:
        """[T, n_values]: each value's share of all clicks per snapshot (cached per field)."""
        cache = self.__dict__.setdefault("_shares", {})
        if field not in cache:
            onehot = np.zeros((len(codes), n_values), np.float32)
            ok = codes >= 0
            onehot[np.nonzero(ok)[0], codes[ok]] = 1.0
            clicks = self.click @ onehot                                   # [T, n_values]
            cache[field] = ((clicks + 1.0) / (clicks.sum(axis=1, keepdims=True) + n_values)
                            ).astype(np.float32)
        return cache[field]

    def last(self) -> "ItemStats":
        """The final snapshot only (what serving keeps)."""
        return ItemStats(*(a[-1:] for a in self.arrays()))

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.impr, self.click, self.buy, self.seg_impr, self.seg_click, self.occ_impr,
                self.occ_click)

    def save(self, path, item_ids: np.ndarray) -> None:
        np.savez_compressed(path, item_ids=np.asarray(item_ids, dtype=str),
                            **dict(zip(_STAT_NAMES, self.arrays())))

    @classmethod
    def load_for(cls, path, items: ItemTable) -> "ItemStats":
        """Load a saved snapshot and align it to ``items`` (new items get zero counts)."""
        z = np.load(path, allow_pickle=False)
        rows = items.rows_of(list(z["item_ids"]))
        keep = rows >= 0
        out = []
        for name in _STAT_NAMES:
            a = z[name]
            full = np.zeros((a.shape[0], len(items.item_ids)) + a.shape[2:], np.float32)
            full[:, rows[keep]] = a[:, keep]
            out.append(full)
        return cls(*out)


_STAT_NAMES = ("impr", "click", "buy", "seg_impr", "seg_click", "occ_impr", "occ_click")


# -- users ---------------------------------------------------------------------------------

@dataclass
class UserState:
    """Per-request user arrays (n requests)."""

    age: np.ndarray                   # float32, NaN unknown
    gender: np.ndarray                # int32 code into GENDERS, -1 unknown
    preferred: np.ndarray             # bool [n, n_usage]
    counts: dict[str, np.ndarray]     # field -> float32 [n, len(vocab)] past clicks by value
    n_clicks: np.ndarray              # float32
    n_requests: np.ndarray            # float32 (activity)
    days_since_last: np.ndarray       # float32, NaN when no history

    @property
    def segment(self) -> np.ndarray:
        """gender x age band -> 0..9 (N_SEGMENTS); -1 when either is unknown."""
        age = self.age.astype(np.float64)
        a = np.clip(np.searchsorted(AGE_EDGES, np.nan_to_num(age), side="right") - 1, 0, len(AGE_BANDS) - 1)
        ok = (self.gender >= 0) & np.isfinite(age)
        return np.where(ok, np.maximum(self.gender, 0) * len(AGE_BANDS) + a, -1).astype(np.int32)


@dataclass
class Context:
    occasion: np.ndarray   # int32 code into the usage vocab, -1 unknown
    season: np.ndarray     # int32 code into SEASONS
    channel: np.ndarray    # int32 code into CHANNELS


FEATURES = [
    "u_age", "u_gender", "u_log_clicks", "u_log_requests", "u_days_since_last",
    "c_occasion", "c_season", "c_channel",
    "i_category", "i_slot", "i_colour", "i_usage", "i_gender", "i_season", "i_year",
    "i_log_impr", "i_ctr", "i_buy_rate", "i_seg_ctr", "i_occ_ctr",
    "x_aff_category", "x_aff_family", "x_aff_usage", "x_aff_brand",
    "x_lift_category", "x_lift_family", "x_lift_usage",
    "x_occasion_match", "x_preferred_occasion", "x_season_match", "x_gender_match",
    "r_rank_frac", "r_routes", "log_position",
]
CATEGORICAL = ["u_gender", "c_occasion", "c_season", "c_channel", "i_category", "i_slot",
               "i_colour", "i_usage", "i_gender", "i_season"]


ITEM_ONLY = ("i_category", "i_slot", "i_colour", "i_usage", "i_gender", "i_season", "i_year",
             "i_log_impr", "i_ctr", "i_buy_rate")
CODE_FIELDS = ("category", "slot", "colour", "family", "usage", "gender", "season", "brand")


@dataclass
class ItemBlock:
    """The item-only part of the design matrix for a list of item rows (-1: unknown item)."""

    cols: dict[str, np.ndarray]     # ITEM_ONLY columns
    codes: dict[str, np.ndarray]    # CODE_FIELDS -> code, MISSING for unknown items

    def take(self, rows: np.ndarray) -> "ItemBlock":
        return ItemBlock({k: v[rows] for k, v in self.cols.items()},
                         {k: v[rows] for k, v in self.codes.items()})


def item_block(items: ItemTable, stats: ItemStats, t: np.ndarray, it: np.ndarray) -> ItemBlock:
    """Content codes and log statistics of items ``it`` at snapshots ``t``.

    Unknown items have missing content and zero counts, so their rates fall to the prior.
    """
    known = it >= 0
    iti = np.where(known, it, 0)
    codes = {f: np.where(known, items.codes[f][iti], F.MISSING).astype(np.int32) for f in CODE_FIELDS}
    cols = {f"i_{f}": codes[f] for f in ("category", "slot", "colour", "usage", "gender", "season")}
    cols["i_year"] = np.where(known, items.year[iti], np.nan)
    impr = np.where(known, stats.impr[t, iti], 0.0)
    click = np.where(known, stats.click[t, iti], 0.0)
    buy = np.where(known, stats.buy[t, iti], 0.0)
    prior = stats.prior_ctr()[t]
    cols["i_log_impr"] = np.log1p(impr)
    cols["i_ctr"] = F.smoothed_share(click, impr, prior, SMOOTH_CTR)
    cols["i_buy_rate"] = F.smoothed_share(buy, impr, prior * 0.3, SMOOTH_CTR)
    return ItemBlock(cols, codes)


def segment_ctr(stats: ItemStats, t: np.ndarray, it: np.ndarray, seg: np.ndarray,
                by: str = "seg") -> np.ndarray:
    """CTR of items ``it`` among users of segment ``seg`` (``by="occ"``: in occasion ``seg``)."""
    clicks, imprs = (stats.seg_click, stats.seg_impr) if by == "seg" else (stats.occ_click, stats.occ_impr)
    prior = stats.prior_ctr()[t]
    return F.smoothed_share(F.gather(clicks, t, it, seg, fill=0.0),
                            F.gather(imprs, t, it, seg, fill=0.0), prior, SMOOTH_CTR)


@dataclass
class ServingCache:
    """Everything per item precomputed for the final snapshot (t = 0): one gather per request."""

    block: ItemBlock            # n_items + 1 rows, the last one = unknown item
    seg_ctr: np.ndarray         # [n_items + 1, N_SEGMENTS + 1], last column = unknown segment
    occ_ctr: np.ndarray         # [n_items + 1, n_usage + 1]

    @classmethod
    def build(cls, items: ItemTable, stats: ItemStats) -> "ServingCache":
        n = len(items.item_ids)
        rows = np.r_[np.arange(n), -1]
        t0 = np.zeros(len(rows), np.int64)
        tables = []
        for by, k in (("seg", N_SEGMENTS), ("occ", len(items.vocabs["usage"]))):
            seg = np.r_[np.arange(k), -1]
            it = np.repeat(rows, len(seg))
            tables.append(segment_ctr(stats, np.zeros(len(it), np.int64), it, np.tile(seg, len(rows)),
                                      by).reshape(len(rows), len(seg)).astype(np.float32))
        return cls(item_block(items, stats, t0, rows), *tables)

    def lookup(self, item_row: np.ndarray, seg: int, occ: int):
        r = np.where(item_row >= 0, item_row, len(self.block.cols["i_year"]) - 1)
        return self.block.take(r), self.seg_ctr[r, seg], self.occ_ctr[r, occ]


def featurize(items: ItemTable, stats: ItemStats, req: np.ndarray, item_row: np.ndarray,
              t: np.ndarray, users: UserState, ctx: Context, *, recall_rank: np.ndarray,
              recall_routes: np.ndarray, n_candidates: np.ndarray, position: np.ndarray,
              cache: ServingCache | None = None) -> F.FeatureSet:
    """Design matrix for candidates ``item_row`` (-1: unknown item) of requests ``req``.

    ``t`` is the statistics snapshot per candidate; ``recall_rank`` (1-based, <=0 unknown),
    ``recall_routes`` (<0 unknown), ``n_candidates`` per candidate; ``position`` is the shown
    slot in logs and 0 when scoring (the examination bias it absorbs in training is then the
    same for every candidate). ``cache`` (serving, one request, t = 0) replaces the per-item
    computations by lookups of the same values.
    """
    req = np.asarray(req)
    it = np.asarray(item_row)
    seg = users.segment[req]
    occ = ctx.occasion[req]
    if cache is not None:
        blk, seg_ctr, occ_ctr = cache.lookup(it, int(seg[0]), int(occ[0]))
    else:
        blk = item_block(items, stats, t, it)
        seg_ctr = segment_ctr(stats, t, it, seg, "seg")
        occ_ctr = segment_ctr(stats, t, it, occ, "occ")
    code = blk.codes
    cols: dict[str, np.ndarray] = {
        "u_age": users.age[req], "u_gender": users.gender[req],
        "u_log_clicks": np.log1p(users.n_clicks[req]),
        "u_log_requests": np.log1p(users.n_requests[req]),
        "u_days_since_last": users.days_since_last[req],
        "c_occasion": occ, "c_season": ctx.season[req], "c_channel": ctx.channel[req],
        **blk.cols, "i_seg_ctr": seg_ctr, "i_occ_ctr": occ_ctr,
    }
    for f in AFFINITY_FIELDS:
        counts = users.counts[f]
        c = code[f]
        own = F.gather(counts, req, c, fill=0.0)
        total = counts.sum(axis=1)[req]
        share = F.smoothed_share(own, total, 1.0 / max(counts.shape[1], 1), SMOOTH_AFF)
        cols[f"x_aff_{f}"] = np.where(c >= 0, share, np.nan)
        if f != "brand":
            # the user's share relative to everyone's: a taste, not just a popular value
            base = F.gather(stats.click_share(f, items.codes[f], counts.shape[1]), t, c, fill=np.nan)
            cols[f"x_lift_{f}"] = np.where(c >= 0, share / base, np.nan)
    u_use = code["usage"]
    cols["x_occasion_match"] = np.where((u_use >= 0) & (occ >= 0), (u_use == occ), np.nan)
    cols["x_preferred_occasion"] = np.where(u_use >= 0, F.gather(users.preferred, req, u_use, fill=0.0), np.nan)
    i_season = code["season"]
    cs = ctx.season[req]
    cs_item = np.where(cs >= 0, items.season_map[np.maximum(cs, 0)], -1)
    cols["x_season_match"] = np.where((i_season >= 0) & (cs_item >= 0), i_season == cs_item, np.nan)
    cols["x_gender_match"] = _gender_match(items, code["gender"], users.gender[req])
    rr = np.asarray(recall_rank, np.float32)
    cols["r_rank_frac"] = np.where(rr > 0, rr / np.maximum(n_candidates, 1), np.nan)
    cols["r_routes"] = np.where(np.asarray(recall_routes) >= 0, recall_routes, np.nan)
    cols["log_position"] = np.log1p(np.asarray(position, np.float32))
    return F.stack({n: cols[n] for n in FEATURES}, CATEGORICAL)


def _gender_match(items: ItemTable, item_gender: np.ndarray, user_gender: np.ndarray) -> np.ndarray:
    """1 same gender, 0.5 unisex, 0 other; NaN when either is unknown."""
    names = items.vocabs["gender"]
    uni = names.index("unisex") if "unisex" in names else -2
    ug_item = np.array([names.index(g) if g in names else -2 for g in GENDERS])
    same = (user_gender >= 0) & (item_gender == ug_item[np.maximum(user_gender, 0)])
    out = np.where(same, 1.0, np.where(item_gender == uni, 0.5, 0.0))
    return np.where((item_gender >= 0) & (user_gender >= 0), out, np.nan).astype(np.float32)


def context_codes(items: ItemTable, occasion, season, channel) -> Context:
    return Context(F.encode(list(occasion), items.vocabs["usage"]),
                   F.encode(list(season), SEASONS), F.encode(list(channel), CHANNELS))
