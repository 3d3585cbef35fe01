"""SIMULATED users and interaction logs over the real Myntra catalog (which has no logs).

Everything this module writes is simulated and says so (artifact kind ``interactions_sim``,
``extra.simulated = true`` on every profile, ``simulated: true`` in the manifest).

Users. Gender is women with probability ``share_women``, else men. Ages are drawn from the
real H&M customers' ages; women's body profiles (body type, size, height, weight) are one real
RTR renter's declared profile drawn at random (jointly, so correlations survive); men have no
body profile (RTR rents to women only). Preferred occasions: the Myntra usages that a random
real RTR renter's ``rented_for`` values map to (`RTR_TO_USAGE`), plus ``sports`` with an
age-dependent probability, plus ``casual`` always. Myntra has no prices, so there is no price
taste and no price band.

Hidden utility (the ranker never sees it; only `mmrec rank eval` reads it, as the oracle):

    u(user, item, context) = w.category       * cat_pref[user, item.category]
                           + w.colour         * colour_pref[user, item.colour_family]
                           + w.occasion_match * [item.usage == context.occasion]
                           + w.preferred_occasion * [item.usage in user.preferred]
                           + w.season_match   * [item.season == context.season]
                           + w.quality        * quality[item]           (latent, N(0, 1))
                           + w.age_formality  * (age - 35) / 12 * FORMALITY[item.usage]
                           + w.gender_mismatch * [item gender incompatible with the user]

with ``pref = tanh(log(theta / base) / 2)``, ``theta ~ Dirichlet(alpha * base * n)`` per
user over the categories (colour families) of the user's gender, ``base`` their catalog share.

Requests. Sessions per user ~ 1 + Poisson(mean - 1) at uniform times over ``days``; each has
an occasion (a preferred one with probability 0.7, else catalog-weighted), the season of its
date and a channel (app 85%, kiosk 15%). An emulated recall returns ``candidates`` items of a
compatible gender: a share from the occasion route (items of that usage) and the rest from the
browse route, each route ordered by a weakly quality-aware score; ranks fuse by RRF (k=60).
The logging policy shows them in fused order half of the time and shuffled otherwise.
Position bias: the item at 0-based position p is examined with probability (1 + p)^-eta; an
examined item is clicked with probability sigmoid(u - click_bias), and a click becomes a
purchase with probability sigmoid(u - purchase_bias).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec import kinds
from mmrec.errors import InputError
from mmrec.rank.config import SimConfig
from mmrec.rank.interactions import (INTERACTIONS_SCHEMA, PROFILES_SCHEMA, SourceTables,
                                     segment_of)

RTR_TO_USAGE = {"wedding": "ethnic", "formal affair": "formal", "party": "casual",
                "everyday": "casual", "work": "formal", "date": "casual", "vacation": "casual",
                "other": "casual"}
FORMALITY = {"formal": 1.0, "ethnic": 0.5, "smart casual": 0.5, "party": 0.3, "casual": 0.0,
             "travel": -0.3, "sports": -1.0}
GENDER_POOL = {"men": ("men", "unisex"), "women": ("women", "unisex")}
ROUTE_RRF_K = 60
HIDDEN_FILE = "hidden/utility.parquet"   # oracle only: never read by training or serving


@dataclass
class ProfilePool:
    """Real profile distributions that simulated users are drawn from."""

    ages: np.ndarray                 # H&M customers' ages
    body_type: np.ndarray            # per RTR renter (object, may be None)
    size: np.ndarray
    height_cm: np.ndarray
    weight_kg: np.ndarray
    occasions: list[list[str]]       # per RTR renter: their rented_for values

    @classmethod
    def from_files(cls, rtr_path: str | Path, hm_customers: str | Path) -> "ProfilePool":
        rtr_path, hm_customers = Path(rtr_path), Path(hm_customers)
        for p in (rtr_path, hm_customers):
            if not p.is_file():
                raise InputError(f"simulator needs real profile data, not found: {p} "
                                 f"(set rank.sim.rtr_path / rank.sim.hm_path or shared_data)")
        hm = pq.read_table(hm_customers, columns=["age"])
        ages = hm["age"].drop_null().to_numpy().astype(np.float32)
        ages = ages[(ages >= 16) & (ages <= 80)]
        t = pq.read_table(rtr_path, columns=["user_id", "body_type", "size", "height_in",
                                             "weight_lbs", "rented_for"])
        t = t.sort_by("user_id")
        uid = t["user_id"].to_numpy()
        first = np.r_[0, np.nonzero(np.diff(uid))[0] + 1]
        occ = t["rented_for"].cast(pa.string()).to_pylist()
        bounds = np.r_[first, len(uid)]
        occasions = [sorted({o for o in occ[a:b] if o}) for a, b in zip(bounds[:-1], bounds[1:])]

        def col(name, scale=1.0):
            return (t[name].cast(pa.float32()).fill_null(np.nan).to_numpy()[first] * scale
                    ).astype(np.float32)

        return cls(ages=ages, body_type=np.array(t["body_type"].cast(pa.string()).to_pylist(),
                                                 dtype=object)[first],
                   size=col("size"), height_cm=col("height_in", 2.54),
                   weight_kg=col("weight_lbs", 0.45359237), occasions=occasions)


def _bucket(uid: str) -> int:
    return int.from_bytes(hashlib.sha1(f"sim:{uid}".encode()).digest()[:4], "big") % 100


def _prefs(rng: np.random.Generator, base: np.ndarray, alpha: float) -> np.ndarray:
    """tanh(log(theta / base) / 2) with theta ~ Dirichlet(alpha * base * n); -1 where base is 0."""
    conc = np.maximum(alpha * base * len(base), 1e-3)
    theta = rng.gamma(conc)
    theta = theta / theta.sum()
    with np.errstate(divide="ignore"):
        out = np.tanh(np.log(np.maximum(theta, 1e-12) / np.where(base > 0, base, 1.0)) / 2.0)
    return np.where(base > 0, out, -1.0).astype(np.float32)


def _codes(values, vocab: list[str]) -> np.ndarray:
    idx = {v: i for i, v in enumerate(vocab)}
    return np.array([idx.get(v, -1) for v in values], np.int32)


def _season_of(day: _dt.date) -> str:
    return ("winter", "spring", "summer", "fall")[(day.month % 12) // 3]


@dataclass
class Population:
    """The simulated shoppers and what they (secretly) think of each item: the hidden part of
    the simulation that `simulate` logs from and `mmrec.rank.api_shoppers` replays through the
    HTTP API. ``rng`` continues the seeded stream after the draw."""

    rng: np.random.Generator
    item_ids: np.ndarray
    gender: np.ndarray
    category: list
    usage: list
    season: list
    usages: list
    cat_i: np.ndarray
    fam_i: np.ndarray
    use_i: np.ndarray
    n_items: int
    quality: np.ndarray
    formality: np.ndarray
    U: int
    is_woman: np.ndarray
    ugender: np.ndarray
    age: np.ndarray
    body: np.ndarray
    size: np.ndarray
    height: np.ndarray
    weight: np.ndarray
    preferred: list
    pref_mat: np.ndarray
    pools: dict
    cat_pref: np.ndarray
    fam_pref: np.ndarray


def draw_population(items: pa.Table, pool: ProfilePool, cfg: SimConfig, colour_family=None
                    ) -> Population:
    """Users (profiles and hidden tastes) and the items' hidden quality, from ``cfg.seed``."""
    rng = np.random.default_rng(cfg.seed)
    item_ids = np.array(items["item_id"].to_pylist(), dtype=object)
    gender = np.array(items["gender"].to_pylist(), dtype=object)
    category = items["category"].to_pylist()
    usage = [u or "casual" for u in items["usage"].to_pylist()]
    season = items["season"].to_pylist()
    fam_fn = colour_family or (lambda c: c)
    family = [fam_fn(c) if c else None for c in items["colour"].to_pylist()]
    cats = sorted({c for c in category if c})
    fams = sorted({f for f in family if f})
    usages = sorted(set(usage))
    cat_i, fam_i, use_i = _codes(category, cats), _codes(family, fams), _codes(usage, usages)
    n_items = len(item_ids)
    quality = rng.standard_normal(n_items).astype(np.float32)
    formality = np.array([FORMALITY.get(u, 0.0) for u in usage], np.float32)

    # -- users ---------------------------------------------------------------------------
    U = cfg.n_users
    is_woman = rng.random(U) < cfg.share_women
    ugender = np.where(is_woman, "women", "men").astype(object)
    age = rng.choice(pool.ages, U).astype(np.float32)
    pick = rng.integers(0, len(pool.size), U)
    body = np.where(is_woman, pool.body_type[pick], None)
    size = np.where(is_woman, pool.size[pick], np.nan).astype(np.float32)
    height = np.where(is_woman, pool.height_cm[pick], np.nan).astype(np.float32)
    weight = np.where(is_woman, pool.weight_kg[pick], np.nan).astype(np.float32)
    p_sports = np.where(age < 30, 0.5, np.where(age < 45, 0.3, 0.15))
    preferred = []
    for u in range(U):
        occ = {RTR_TO_USAGE.get(o, "casual") for o in pool.occasions[rng.integers(len(pool.occasions))]}
        occ.add("casual")
        if rng.random() < p_sports[u]:
            occ.add("sports")
        preferred.append(sorted(o for o in occ if o in usages))
    pref_mat = np.zeros((U, len(usages)), bool)
    for u, occ in enumerate(preferred):
        pref_mat[u, [usages.index(o) for o in occ]] = True
    pools = {g: np.nonzero(np.isin(gender, GENDER_POOL[g]))[0] for g in GENDER_POOL}
    cat_pref = np.zeros((U, len(cats)), np.float32)
    fam_pref = np.zeros((U, len(fams)), np.float32)
    for g, ix in pools.items():
        if len(ix) == 0:
            raise InputError(f"the catalog has no items for simulated {g} users")
        cb = np.bincount(cat_i[ix][cat_i[ix] >= 0], minlength=len(cats)) / len(ix)
        fb = np.bincount(fam_i[ix][fam_i[ix] >= 0], minlength=len(fams)) / len(ix)
        for u in np.nonzero(ugender == g)[0]:
            cat_pref[u] = _prefs(rng, cb, cfg.taste_concentration)
            fam_pref[u] = _prefs(rng, fb, cfg.taste_concentration)

    return Population(rng=rng, item_ids=item_ids, gender=gender, category=category, usage=usage, season=season, usages=usages, cat_i=cat_i, fam_i=fam_i, use_i=use_i, n_items=n_items, quality=quality, formality=formality, U=U, is_woman=is_woman, ugender=ugender, age=age, body=body, size=size, height=height, weight=weight, preferred=preferred, pref_mat=pref_mat, pools=pools, cat_pref=cat_pref, fam_pref=fam_pref)



def utility(pop: Population, w, uu: np.ndarray, it: np.ndarray, occ: np.ndarray,
            ctx_season: np.ndarray) -> np.ndarray:
    """Hidden utility of items ``it`` for users ``uu`` in occasion codes ``occ`` (into
    ``pop.usages``) and context seasons ``ctx_season`` (names); see the module docstring."""
    g_item = pop.gender[it]
    woman = pop.is_woman[uu]
    compat = (g_item == "unisex") | ((g_item == "women") & woman) | ((g_item == "men") & ~woman)
    cat_i, fam_i, use_i = pop.cat_i, pop.fam_i, pop.use_i
    return (w.category * np.where(cat_i[it] >= 0, pop.cat_pref[uu, np.maximum(cat_i[it], 0)], 0.0)
            + w.colour * np.where(fam_i[it] >= 0, pop.fam_pref[uu, np.maximum(fam_i[it], 0)], 0.0)
            + w.occasion_match * (use_i[it] == occ)
            + w.preferred_occasion * pop.pref_mat[uu, use_i[it]]
            + w.season_match * (np.array(pop.season, dtype=object)[it] == ctx_season)
            + w.quality * pop.quality[it]
            + w.age_formality * (pop.age[uu] - 35.0) / 12.0 * pop.formality[it]
            + w.gender_mismatch * ~compat).astype(np.float32)



def simulate(items: pa.Table, pool: ProfilePool, cfg: SimConfig, colour_family=None
             ) -> tuple[SourceTables, pa.Table]:
    """Simulate users and logs; returns the tables and the hidden utility (oracle) table."""
    pop = draw_population(items, pool, cfg, colour_family)
    (rng, item_ids, usages, use_i, n_items, quality, U, ugender,
     age, body, size, height, weight, preferred, pref_mat, pools) = (
        pop.rng, pop.item_ids, pop.usages, pop.use_i, pop.n_items, pop.quality, pop.U, pop.ugender,
        pop.age, pop.body, pop.size, pop.height, pop.weight, pop.preferred, pop.pref_mat, pop.pools)
    w = cfg.utility

    # -- requests ------------------------------------------------------------------------
    n_sess = 1 + rng.poisson(max(cfg.sessions_per_user - 1, 0), U)
    req_user = np.repeat(np.arange(U), n_sess)
    t0 = int(_dt.datetime.combine(cfg.start, _dt.time(), _dt.timezone.utc).timestamp() * 1e6)
    req_ts = t0 + (rng.random(len(req_user)) * cfg.days * 86400e6).astype(np.int64)
    order = np.argsort(req_ts, kind="stable")
    req_user, req_ts = req_user[order], req_ts[order]
    R = len(req_user)
    occ_weights = np.bincount(use_i, minlength=len(usages)) / n_items
    req_occ = np.empty(R, np.int32)
    for r in range(R):
        own = np.nonzero(pref_mat[req_user[r]])[0]
        req_occ[r] = (rng.choice(own) if len(own) and rng.random() < 0.7
                      else rng.choice(len(usages), p=occ_weights))
    days = (req_ts // 86_400_000_000).astype("datetime64[D]").astype(object)
    req_season = np.array([_season_of(d) for d in days], dtype=object)
    req_channel = np.where(rng.random(R) < 0.85, "app", "kiosk").astype(object)

    K = cfg.candidates
    cand = np.empty((R, K), np.int64)
    rrank = np.empty((R, K), np.int16)
    nroutes = np.empty((R, K), np.int8)
    by_occ = {(g, o): ix[use_i[ix] == o] for g, ix in pools.items() for o in range(len(usages))}
    for r in range(R):
        g = ugender[req_user[r]]
        occ_pool, all_pool = by_occ[(g, req_occ[r])], pools[g]
        n_occ = min(int(round(K * cfg.occasion_route_share)), len(occ_pool))
        a = rng.choice(occ_pool, n_occ, replace=False) if n_occ else np.zeros(0, np.int64)
        b = rng.choice(all_pool, min(K, len(all_pool)), replace=False)
        b = b[~np.isin(b, a)][: K - n_occ]
        routes = []
        for route in (a, b):
            score = 0.3 * quality[route] + rng.standard_normal(len(route))
            routes.append(route[np.argsort(-score)])
        fused: dict[int, float] = {}
        count: dict[int, int] = {}
        for route in routes:
            for rank, it in enumerate(route, start=1):
                fused[it] = fused.get(it, 0.0) + 1.0 / (ROUTE_RRF_K + rank)
                count[it] = count.get(it, 0) + 1
        ids = np.array(sorted(fused, key=lambda i: -fused[i]))
        if len(ids) < K:
            raise InputError(f"catalog too small: {len(ids)} candidates for a list of {K}")
        ids = ids[:K]
        shown = ids if rng.random() < 0.5 else rng.permutation(ids)
        cand[r] = shown
        pos_of = {it: p for p, it in enumerate(ids, start=1)}
        rrank[r] = [pos_of[it] for it in shown]
        nroutes[r] = [count[it] for it in shown]

    # -- utility and outcomes ------------------------------------------------------------
    uu = np.repeat(req_user, K)
    it = cand.ravel()
    ctx_season = np.repeat(req_season, K)
    util = utility(pop, w, uu, it, np.repeat(req_occ, K), ctx_season)
    pos = np.tile(np.arange(K), R)
    examined = rng.random(R * K) < (1.0 + pos) ** -cfg.position_eta
    p_click = 1.0 / (1.0 + np.exp(-(util - w.click_bias)))
    clicked = examined & (rng.random(R * K) < p_click)
    bought = clicked & (rng.random(R * K) < 1.0 / (1.0 + np.exp(-(util - w.purchase_bias))))

    req_ids = np.array([f"r{r:07d}" for r in range(R)], dtype=object)
    user_ids = np.array([f"sim_u{u:05d}" for u in range(U)], dtype=object)
    no_recall = np.repeat(rng.random(R) < cfg.no_recall_share, K)
    imp_ts = np.repeat(req_ts, K) + pos * 2_000_000  # two seconds per slot: clicks follow views
    base = {
        "user_id": user_ids[uu], "item_id": item_ids[it], "ts": imp_ts,
        "request_id": np.repeat(req_ids, K), "position": pos.astype(np.int16),
        "occasion": np.array(usages, dtype=object)[np.repeat(req_occ, K)],
        "season": ctx_season, "channel": np.repeat(req_channel, K),
        "recall_rank": np.where(no_recall, -1, rrank.ravel()),
        "recall_routes": np.where(no_recall, -1, nroutes.ravel()),
    }
    parts = []
    for event, mask, dt_us in (("impression", np.ones(R * K, bool), 0), ("click", clicked, 1),
                               ("purchase", bought, 30_000_000)):
        ix = np.nonzero(mask)[0]
        parts.append(_events(base, ix, event, dt_us))
    inter = pa.concat_tables(parts).sort_by([("ts", "ascending"), ("event", "descending")])
    profiles = pa.table({
        "user_id": pa.array(user_ids, pa.string()),
        "as_of": pa.array([t0] * U, pa.timestamp("us", tz="UTC")),
        "source": pa.array(["sim"] * U, pa.string()),
        "age": pa.array(age, pa.float32()),
        "gender": pa.array(ugender, pa.string()),
        "body_type": pa.array(body, pa.string()),
        "size": pa.array(size, pa.float32(), from_pandas=True),
        "height_cm": pa.array(height, pa.float32(), from_pandas=True),
        "weight_kg": pa.array(weight, pa.float32(), from_pandas=True),
        "bust_band": pa.nulls(U, pa.float32()),
        "cup": pa.nulls(U, pa.float32()),
        "preferred_occasions": pa.array(preferred, pa.list_(pa.string())),
        "price_band": pa.nulls(U, pa.string()),
        "segment": pa.array(segment_of(ugender, age), pa.string()),
        "split_bucket": pa.array([_bucket(u) for u in user_ids], pa.int16()),
        "extra": pa.array([[("simulated", "true")]] * U, pa.map_(pa.string(), pa.string())),
    }, schema=PROFILES_SCHEMA)
    items_t = items.select(["item_id", "category", "colour", "usage", "gender", "season"])
    hidden = pa.table({"request_id": pa.array(base["request_id"], pa.string()),
                       "item_id": pa.array(base["item_id"], pa.string()),
                       "utility": pa.array(util, pa.float32()),
                       "p_click": pa.array(p_click.astype(np.float32), pa.float32())})
    notes = {"simulated": True, "users": U, "requests": R, "candidates": K,
             "clicks": int(clicked.sum()), "purchases": int(bought.sum()),
             "ctr": round(float(clicked.mean()), 4), "hidden_utility": HIDDEN_FILE}
    return SourceTables(inter, profiles, items_t, notes), hidden


def _events(base: dict, ix: np.ndarray, event: str, dt_us: int) -> pa.Table:
    n = len(ix)
    rr = base["recall_rank"][ix]
    nr = base["recall_routes"][ix]
    return pa.table({
        "user_id": pa.array(base["user_id"][ix], pa.string()),
        "item_id": pa.array(base["item_id"][ix], pa.string()),
        "event": pa.array([event] * n, pa.string()),
        "value": pa.nulls(n, pa.float32()),
        "ts": pa.array(base["ts"][ix] + dt_us, pa.timestamp("us", tz="UTC")),
        "request_id": pa.array(base["request_id"][ix], pa.string()),
        "position": pa.array(base["position"][ix], pa.int16()),
        "occasion": pa.array(base["occasion"][ix], pa.string()),
        "scene": pa.nulls(n, pa.string()),
        "season": pa.array(base["season"][ix], pa.string()),
        "channel": pa.array(base["channel"][ix], pa.string()),
        "recall_rank": pa.array(rr, pa.int16(), mask=rr < 0),
        "recall_routes": pa.array(nr.astype(np.int8), pa.int8(), mask=nr < 0),
        "review_fit": pa.nulls(n, pa.string()),
    }, schema=INTERACTIONS_SCHEMA)


def run_simulation(store, cfg, *, items_version: str | None = None,
                   pool: ProfilePool | None = None):
    """`mmrec rank simulate`: simulate over the items artifact, write ``interactions_sim``.

    ``pool`` replaces the real RTR/H&M profile files (tests build a small one in-process).
    """
    from pathlib import Path

    from mmrec.catalog.ingest import load_items
    from mmrec.rank.interactions import write_tables
    from mmrec.taxonomy import default_taxonomy

    sc = cfg.sim
    base = cfg.shared_path()
    rtr = Path(sc.rtr_path) if sc.rtr_path else base / "rtr" / "interactions.parquet"
    hm = Path(sc.hm_path) if sc.hm_path else base / "hm_sample" / "data" / "sample" / "customers_sample.parquet"
    inputs = []
    if pool is None:
        pool = ProfilePool.from_files(rtr, hm)
        inputs = [rtr, hm]
    items_art = store.load(kinds.ITEMS, items_version)
    items = load_items(store, items_art.version)
    tables, hidden = simulate(items, pool, sc, colour_family=default_taxonomy().colour_family)
    return write_tables(store, "sim", tables, cfg, key_fingerprint=None, inputs=inputs,
                        extra_files={HIDDEN_FILE: hidden}, artifact_inputs=[items_art])
