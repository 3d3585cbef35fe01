"""`Ranker`: the serving interface of the propensity model (artifact kind ``ranker``).

``Ranker.load(store)`` loads the CURRENT ``ranker`` artifact (trained on SIMULATED Myntra
logs), the CURRENT items artifact (so items added since training are scored from their
content) and the item statistics snapshot saved with the model. Everything per item is
precomputed at load; a request costs a few vectorised gathers plus one LightGBM call on one
thread. ``score`` returns calibrated propensities in [0, 1]: the probability that this user
engages with the item when shown first, in this context.
"""

from __future__ import annotations

import datetime as _dt
import time as _time
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mmrec import kinds
from mmrec.artifacts import ArtifactStore
from mmrec.config import StrictModel
from mmrec.errors import InputError
from mmrec.rank import lgbm
from mmrec.rank import myntra as Y
from mmrec.rank.users import UserProfile

MAX_CANDIDATES = 10_000


class RankContext(StrictModel):
    """Where and when the shopper asks."""

    scene: str | None = Field(None, max_length=200, description="free-text scene (not a feature yet)")
    occasion: str | None = Field(None, max_length=40, description="taxonomy usage value, e.g. formal")
    season: str | None = Field(None, max_length=20, description="spring | summer | fall | winter")
    channel: Literal["app", "kiosk"] = "app"
    now: _dt.datetime | None = Field(
        None, description="request time for recency; default: the end of the training log "
                          "(the simulated world's 'now')")


class Ranker:
    """Calibrated propensity scores for candidates of one request."""

    def __init__(self, version: str, bundle: lgbm.Bundle, items: Y.ItemTable, stats: Y.ItemStats,
                 model: str, taxonomy):
        self.version = version
        self.bundle = bundle
        self.items = items
        self.stats = stats
        self.model = model
        self.booster = bundle.boosters[model]
        self.calibrator = bundle.calibrators[model]
        self.simulated = bool(bundle.meta.get("simulated"))
        self._tax = taxonomy
        self._log_end_us = int(bundle.meta.get("log_end_us", 0))
        # a ranker trained on served logs lives in real time: recency is measured to now, as
        # its training measured it to each answer's time (a simulated one: to its log's end)
        self._wall_clock = bundle.meta.get("provenance") == "logs"
        self.cache = Y.ServingCache.build(items, stats)

    @classmethod
    def load(cls, store: ArtifactStore, version: str | None = None, *,
             items_version: str | None = None, model: str | None = None,
             items: Any | None = None) -> "Ranker":
        """Load ``ranker`` (CURRENT unless ``version``) with the CURRENT (or given) items.

        Args:
            items: score from this items table (pyarrow; e.g. new arrivals whose attributes
                the models read) instead of the stored items version.
        """
        from mmrec.catalog.ingest import load_items
        from mmrec.rank.myntra_train import STATS_FILE
        from mmrec.taxonomy import default_taxonomy

        art = store.load(kinds.RANKER, version)
        bundle = lgbm.Bundle.load(art)
        tax = default_taxonomy()
        table = items if items is not None else load_items(store, items_version)
        items = Y.ItemTable.build(table, tax.colour_family,
                                  vocabs=bundle.meta["item_vocabs"])
        stats = Y.ItemStats.load_for(art.file(STATS_FILE), items)
        chosen = model or bundle.meta.get("serve_model") or "lambdarank"
        if chosen not in bundle.boosters:
            raise InputError(f"model {chosen!r} not in ranker/{art.version}; it has "
                             f"{sorted(bundle.boosters)}")
        out = cls(art.version, bundle, items, stats, chosen, tax)
        out._artifact = art
        return out

    def use_stats_before(self, cut_us: int) -> str | None:
        """Serve the item statistics as they stood before ``cut_us`` (an evaluation's test
        window) instead of everything logged; returns the snapshot used, or None when this
        ranker artifact keeps no weekly snapshots (trained before they were saved)."""
        from mmrec.rank.myntra_train import WEEKLY_STATS_FILE

        art = getattr(self, "_artifact", None)
        t0 = self.bundle.meta.get("stats_t0_us")
        if art is None or t0 is None or WEEKLY_STATS_FILE not in art.manifest["files"]:
            return None
        weekly = Y.ItemStats.load_for(art.file(WEEKLY_STATS_FILE), self.items)
        t = int(np.clip((cut_us - int(t0)) // Y.US_PER_WEEK, 0, len(weekly.impr) - 1))
        self.stats = Y.ItemStats(*(a[t:t + 1] for a in weekly.arrays()))
        self.cache = Y.ServingCache.build(self.items, self.stats)
        return f"week {t} of {len(weekly.impr)} (statistics of the weeks before the cut)"

    # -- request -> arrays ---------------------------------------------------------------
    def _user_state(self, user: UserProfile | None, now_us: int) -> Y.UserState:
        return profile_states(self.items, [user], np.array([now_us], np.int64))

    def _context(self, ctx: RankContext) -> Y.Context:
        occ = None
        if ctx.occasion is not None:
            occ = self._tax.canonical("usage", ctx.occasion)
            if occ is None:
                raise InputError(f"unknown occasion {ctx.occasion!r}; use one of "
                                 f"{self._tax.values('usage')}")
        season = None
        if ctx.season is not None:
            season = self._tax.canonical("season", ctx.season)
            if season is None:
                raise InputError(f"unknown season {ctx.season!r}; use one of {list(Y.SEASONS)}")
        return Y.context_codes(self.items, [occ], [season], [ctx.channel])

    @staticmethod
    def _recall_arrays(item_ids: list[str], recall: dict[str, dict] | None
                       ) -> tuple[np.ndarray, np.ndarray]:
        n = len(item_ids)
        if not recall:
            return np.full(n, -1), np.full(n, -1)
        fused = np.array([float((recall.get(i) or {}).get("score", np.nan)) for i in item_ids])
        routes = np.array([len((recall.get(i) or {}).get("routes") or {}) if i in recall else -1
                           for i in item_ids])
        order = np.argsort(-np.nan_to_num(fused, nan=-np.inf), kind="stable")
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(1, n + 1)
        return np.where(np.isfinite(fused), rank, -1), routes

    def features(self, user: UserProfile | None, context: RankContext, item_ids: list[str],
                 recall: dict[str, dict] | None = None, *, cached: bool = True):
        """The design matrix of one request (``cached=False`` recomputes the item part)."""
        if not isinstance(item_ids, (list, tuple)) or len(item_ids) > MAX_CANDIDATES:
            raise InputError(f"item_ids must be a list of at most {MAX_CANDIDATES} ids")
        n = len(item_ids)
        now = context.now
        if now is not None:
            now_us = int(now.timestamp() * 1e6)
        elif self._wall_clock:
            now_us = int(_time.time() * 1e6)
        else:
            now_us = self._log_end_us
        rows = self.items.rows_of(item_ids)
        rr, routes = self._recall_arrays(list(item_ids), recall)
        zeros = np.zeros(n, np.int64)
        return Y.featurize(self.items, self.stats, zeros, rows, zeros, self._user_state(user, now_us),
                           self._context(context), recall_rank=rr, recall_routes=routes,
                           n_candidates=np.full(n, float(n)), position=np.zeros(n),
                           cache=self.cache if cached else None)

    def score(self, user: UserProfile | None, context: RankContext, item_ids: list[str],
              recall: dict[str, dict] | None = None) -> np.ndarray:
        """Propensity per candidate in [0, 1]; unknown item ids are scored without content.

        ``recall`` maps item id -> ``{"score": fused RRF score, "routes": {route: rank}}``.
        """
        if len(item_ids) == 0:
            return np.zeros(0, np.float64)
        fs = self.features(user, context, item_ids, recall)
        raw = self.booster.predict(fs.X, raw_score=True, num_threads=1)
        return self.calibrator(raw)

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "model": self.model, "simulated": self.simulated,
                "features": len(self.bundle.feature_names), "items": len(self.items.item_ids)}


def profile_states(items: Y.ItemTable, users: list[UserProfile | None], now_us: np.ndarray) -> Y.UserState:
    """The ranker's user arrays for ``users`` (None: anonymous), recency measured to ``now_us``.

    What `Ranker.score` computes for its one shopper, and what training from served logs
    computes for every logged answer (`mmrec.rank.logs_served`): one function, so that the two
    cannot drift apart.
    """
    n = len(users)
    index = getattr(items, "_value_index", None)
    if index is None:  # built once per items table: serving calls this on every request
        index = {f: {v: i for i, v in enumerate(items.vocabs[f])} for f in (*Y.AFFINITY_FIELDS, "usage")}
        items._value_index = index
    usage_index = index["usage"]
    counts = {f: np.zeros((n, len(items.vocabs[f])), np.float32) for f in Y.AFFINITY_FIELDS}
    pref = np.zeros((n, len(usage_index)), bool)
    age = np.full(n, np.nan, np.float32)
    gender = np.full(n, -1, np.int32)
    clicks = np.zeros(n, np.float32)
    sessions = np.zeros(n, np.float32)
    days = np.full(n, np.nan, np.float32)
    for r, user in enumerate(users):
        if user is None:  # anonymous: profile-free cold start, segment unknown
            continue
        for f in Y.AFFINITY_FIELDS:
            for value, c in (user.history_counts.get(f) or {}).items():
                j = index[f].get(value)
                if j is not None:
                    counts[f][r, j] = c
        for o in user.preferred_occasions:
            j = usage_index.get(o)
            if j is not None:
                pref[r, j] = True
        if user.age is not None:
            age[r] = user.age
        gender[r] = Y.GENDERS.index(user.gender) if user.gender in Y.GENDERS else -1
        clicks[r], sessions[r] = user.n_clicks, user.n_sessions
        if user.last_event_at is not None:
            last = int(user.last_event_at.timestamp() * 1e6)
            days[r] = max(int(now_us[r]) - last, 0) / Y.US_PER_DAY
    return Y.UserState(age, gender, pref, counts, clicks, sessions, days)
