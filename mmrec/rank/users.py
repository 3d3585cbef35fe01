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
    """Profiles and engagement histories by user id (read-only, in memory)."""

    def __init__(self, profiles: dict[str, UserProfile], history: dict[str, list[dict]],
                 version: str | None = None):
        self._profiles = profiles
        self._history = history
        self.version = version

    @classmethod
    def load(cls, store: ArtifactStore, version: str | None = None) -> "UserStore":
        """From the simulated Myntra logs (``interactions_sim``, CURRENT unless ``version``)."""
        from mmrec.catalog.ingest import load_items
        from mmrec.taxonomy import default_taxonomy

        art, tables = load_tables(store, "sim", version)
        ref = next((i for i in art.manifest["inputs"] if i.get("kind") == "items"), None)
        items = load_items(store, ref["version"] if ref else None,
                           columns=["item_id", "category", "colour", "usage", "brand"])
        fam = default_taxonomy().colour_family
        meta = {r["item_id"]: {"category": r["category"], "family": fam(r["colour"]) if r["colour"] else None,
                               "usage": r["usage"], "brand": r["brand"]} for r in items.to_pylist()}
        return cls.from_tables(tables, meta, version=art.version)

    @classmethod
    def from_tables(cls, tables, item_meta: dict[str, dict], *, version: str | None = None,
                    simulated: bool = True) -> "UserStore":
        inter = tables.interactions
        sessions = pc.value_counts(
            inter.filter(pc.equal(inter["position"], 0))["user_id"]).to_pylist()
        n_sessions = {s["values"]: s["counts"] for s in sessions}
        ev = inter.filter(pc.is_in(inter["event"], pa.array(HISTORY_EVENTS)))
        ev = ev.sort_by([("ts", "descending")])
        history: dict[str, list[dict]] = {}
        counts: dict[str, dict[str, dict[str, float]]] = {}
        n_evt: dict[str, dict[str, int]] = {}
        for r in ev.select(["user_id", "item_id", "event", "ts", "request_id", "occasion",
                            "season", "channel"]).to_pylist():
            u = r["user_id"]
            history.setdefault(u, []).append({
                "item_id": r["item_id"], "event": r["event"], "ts": r["ts"].isoformat(),
                "context": {"occasion": r["occasion"], "season": r["season"],
                            "channel": r["channel"], "request_id": r["request_id"]}})
            n_evt.setdefault(u, {}).setdefault(r["event"], 0)
            n_evt[u][r["event"]] += 1
            if r["event"] == "click":
                m = item_meta.get(r["item_id"], {})
                per = counts.setdefault(u, {f: {} for f in TASTE_FIELDS})
                for f in TASTE_FIELDS:
                    if m.get(f):
                        per[f][m[f]] = per[f].get(m[f], 0.0) + 1.0
        profiles = {}
        for p in tables.profiles.to_pylist():
            u = p["user_id"]
            c = counts.get(u, {f: {} for f in TASTE_FIELDS})
            h = history.get(u, [])
            profiles[u] = UserProfile(
                user_id=u, simulated=simulated or p["source"] == "sim",
                age=None if p["age"] is None or np.isnan(p["age"]) else float(p["age"]),
                gender=p["gender"] if p["gender"] in ("men", "women") else None,
                body_type=p["body_type"], size=p["size"], height_cm=p["height_cm"],
                weight_kg=p["weight_kg"], preferred_occasions=list(p["preferred_occasions"] or []),
                price_band=p["price_band"], segment=p["segment"] or "any:unknown",
                n_clicks=n_evt.get(u, {}).get("click", 0),
                n_purchases=n_evt.get(u, {}).get("purchase", 0),
                n_sessions=int(n_sessions.get(u, 0)),
                last_event_at=_dt.datetime.fromisoformat(h[0]["ts"]) if h else None,
                top_categories=_top(c["category"]), top_colours=_top(c["family"]),
                top_usages=_top(c["usage"]), history_counts=c)
        return cls(profiles, history, version)

    def get(self, user_id: str) -> UserProfile | None:
        return self._profiles.get(user_id)

    def history(self, user_id: str, limit: int = 50) -> list[dict]:
        """Most recent engagement events first (clicks and purchases; impressions are not kept)."""
        return list(self._history.get(user_id, [])[: max(int(limit), 0)])

    def ids(self) -> list[str]:
        return sorted(self._profiles)

    def __len__(self) -> int:
        return len(self._profiles)
