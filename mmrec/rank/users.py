"""User profiles and histories for serving: `UserProfile`, `UserStore`.

For the Myntra catalog the users and their logs are SIMULATED (`mmrec rank simulate`); every
profile built from them has ``simulated=True``. Profiles carry the taste summaries the ranker
needs (click counts by category, colour family, usage and brand), so `Ranker.score` needs
nothing but the profile.
"""

from __future__ import annotations

import datetime as _dt
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from mmrec import kinds
from mmrec.artifacts import ArtifactStore
from mmrec.config import StrictModel
from mmrec.rank.interactions import load_tables

HISTORY_EVENTS = ("click", "purchase")
TASTE_FIELDS = ("category", "family", "usage", "brand")


class UserProfile(StrictModel):
    """A (pseudonymous) shopper as the ranker sees them."""

    user_id: str = Field(max_length=64, description="pseudonymised or simulated id")
    simulated: bool = Field(False, description="true for the simulated Myntra users")
    age: float | None = Field(None, ge=0, le=120)
    gender: Literal["men", "women"] | None = None
    body_type: str | None = Field(None, max_length=40)
    size: float | None = None
    height_cm: float | None = Field(None, ge=50, le=250)
    weight_kg: float | None = Field(None, ge=20, le=300)
    preferred_occasions: list[str] = Field(default_factory=list, max_length=20)
    price_band: str | None = Field(None, max_length=20)
    segment: str = Field("any:unknown", max_length=40)
    n_clicks: int = Field(0, ge=0)
    n_purchases: int = Field(0, ge=0)
    n_sessions: int = Field(0, ge=0)
    last_event_at: _dt.datetime | None = None
    top_categories: list[str] = Field(default_factory=list, max_length=10)
    top_colours: list[str] = Field(default_factory=list, max_length=10)
    top_usages: list[str] = Field(default_factory=list, max_length=10)
    history_counts: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="taste summary: field (category, family, usage, brand) -> value -> clicks")


def _top(counts: dict[str, float], n: int = 3) -> list[str]:
    return [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


class UserStore:
    """Profiles and engagement histories by user id (read-only, in memory).

    Aggregates are computed once with Arrow group-bys; a `UserProfile` is built on first
    `get` and cached, and histories are slices of one table sorted by (user, time desc).
    """

    def __init__(self, rows: dict[str, dict], taste: dict[str, dict[str, dict[str, float]]],
                 events: pa.Table, spans: dict[str, tuple[int, int]], version: str | None = None):
        self._rows = rows
        self._taste = taste
        self._events = events
        self._spans = spans
        self._cache: dict[str, UserProfile] = {}
        self.version = version

    @classmethod
    def load(cls, store: ArtifactStore, version: str | None = None) -> "UserStore":
        """From the simulated Myntra logs (``interactions_sim``, CURRENT unless ``version``)."""
        art, tables = load_tables(store, "sim", version)
        meta = item_taste_meta(store, art)
        return cls.from_tables(tables, meta, version=art.version)

    @classmethod
    def from_tables(cls, tables, item_meta: pa.Table, *, version: str | None = None) -> "UserStore":
        """``item_meta``: item_id + the TASTE_FIELDS columns (what a click says about taste)."""
        inter = tables.interactions
        ev = inter.filter(pc.is_in(inter["event"], pa.array(HISTORY_EVENTS))).select(
            ["user_id", "item_id", "event", "ts", "request_id", "occasion", "season", "channel"])
        ev = ev.sort_by([("user_id", "ascending"), ("ts", "descending")])
        users = ev["user_id"].to_numpy(zero_copy_only=False)
        starts = np.r_[0, np.nonzero(users[1:] != users[:-1])[0] + 1] if len(users) else np.zeros(0, int)
        ends = np.r_[starts[1:], len(users)]
        spans = {users[a]: (int(a), int(b)) for a, b in zip(starts, ends)}

        rows = {r["user_id"]: r for r in tables.profiles.to_pylist()}
        for r in rows.values():
            r.update(n_clicks=0, n_purchases=0, n_sessions=0, last_event_at=None)
        for g in ev.group_by(["user_id", "event"]).aggregate([("ts", "count"), ("ts", "max")]).to_pylist():
            r = rows.get(g["user_id"])
            if r is None:
                continue
            r["n_clicks" if g["event"] == "click" else "n_purchases"] = g["ts_count"]
            if r["last_event_at"] is None or g["ts_max"] > r["last_event_at"]:
                r["last_event_at"] = g["ts_max"]
        first = inter.filter(pc.equal(inter["position"], 0))
        for g in pc.value_counts(first["user_id"]).to_pylist():
            if g["values"] in rows:
                rows[g["values"]]["n_sessions"] = g["counts"]

        clicks = ev.filter(pc.equal(ev["event"], "click")).select(["user_id", "item_id"])
        clicks = clicks.join(item_meta, "item_id", join_type="left outer")
        taste: dict[str, dict[str, dict[str, float]]] = {}
        for f in TASTE_FIELDS:
            agg = clicks.filter(pc.is_valid(clicks[f])).group_by(["user_id", f]).aggregate([(f, "count")])
            for g in agg.to_pylist():
                taste.setdefault(g["user_id"], {k: {} for k in TASTE_FIELDS})[f][g[f]] = float(g[f"{f}_count"])
        return cls(rows, taste, ev, spans, version)

    def get(self, user_id: str) -> UserProfile | None:
        prof = self._cache.get(user_id)
        if prof is not None or user_id not in self._rows:
            return prof
        p = self._rows[user_id]
        c = self._taste.get(user_id, {f: {} for f in TASTE_FIELDS})
        prof = UserProfile(
            user_id=user_id, simulated=p["source"] == "sim",
            age=None if p["age"] is None or np.isnan(p["age"]) else float(p["age"]),
            gender=p["gender"] if p["gender"] in ("men", "women") else None,
            body_type=p["body_type"], size=p["size"], height_cm=p["height_cm"],
            weight_kg=p["weight_kg"], preferred_occasions=list(p["preferred_occasions"] or []),
            price_band=p["price_band"], segment=p["segment"] or "any:unknown",
            n_clicks=p["n_clicks"], n_purchases=p["n_purchases"], n_sessions=p["n_sessions"],
            last_event_at=p["last_event_at"], top_categories=_top(c["category"]),
            top_colours=_top(c["family"]), top_usages=_top(c["usage"]), history_counts=c)
        self._cache[user_id] = prof
        return prof

    def history(self, user_id: str, limit: int = 50) -> list[dict]:
        """Most recent engagement events first (clicks and purchases; impressions are not kept)."""
        a, b = self._spans.get(user_id, (0, 0))
        rows = self._events.slice(a, max(min(b - a, int(limit)), 0)).to_pylist()
        return [{"item_id": r["item_id"], "event": r["event"], "ts": r["ts"].isoformat(),
                 "context": {"occasion": r["occasion"], "season": r["season"],
                             "channel": r["channel"], "request_id": r["request_id"]}} for r in rows]

    def ids(self) -> list[str]:
        return sorted(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def item_taste_meta(store: ArtifactStore, interactions_art) -> pa.Table:
    """item_id + TASTE_FIELDS of the items the interactions artifact was simulated over."""
    from mmrec.catalog.ingest import load_items
    from mmrec.taxonomy import default_taxonomy

    ref = next((i for i in interactions_art.manifest["inputs"] if i.get("kind") == kinds.ITEMS), None)
    items = load_items(store, ref["version"] if ref else None,
                       columns=["item_id", "category", "colour", "usage", "brand"])
    fam = default_taxonomy().colour_family
    return pa.table({
        "item_id": items["item_id"], "category": items["category"], "usage": items["usage"],
        "brand": items["brand"],
        "family": pa.array([fam(c) if c else None for c in items["colour"].to_pylist()], pa.string())})
