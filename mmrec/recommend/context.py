"""The state of one request as it moves through the stages, instead of out-parameters.

A `RequestContext` carries what every stage reads (the request, its scene, whom it is for,
what was typed) and collects what every stage says (notes) and how long it took (timings).
A photo request may be built more than once (`Attempt`): each attempt keeps its own notes so
that the response says only what the attempt that was served found.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mmrec.api_models import PhotoOut, RecommendRequest
from mmrec.outfit.scenes import Scene
from mmrec.recommend.query import TypedQuery

if TYPE_CHECKING:
    from mmrec.outfit.compose import Outfit, SlotPool
    from mmrec.rank.users import UserProfile
    from mmrec.recommend.slot_confidence import SlotHint


@dataclass
class RequestContext:
    """One recommend request, read: scene, shopper, genders, typed query, notes, timings."""

    request: RecommendRequest
    scene: Scene
    user: "UserProfile | None" = None
    taste: dict[str, Any] = field(default_factory=dict)  # the shopper's history, by field
    occasions: list[str] = field(default_factory=list)  # the profile's preferred occasions
    genders: list[str] | None = None  # who the outfit is for (None: anyone)
    query: TypedQuery = field(default_factory=TypedQuery)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    photo_hint: "SlotHint | None" = None  # the shopper said what the photographed item is

    @property
    def segment(self) -> str | None:
        return getattr(self.user, "segment", None) if self.user is not None else None

    def add_ms(self, key: str, t0: float) -> None:
        """Add the time since ``t0`` to ``key`` (stage timings add up over attempts)."""
        self.timings[key] = round(self.timings.get(key, 0.0) + elapsed_ms(t0), 3)


@dataclass
class Candidates:
    """Every slot's candidate pool with recall's view of each candidate (for ranker and explainer)."""

    pools: "dict[str, SlotPool]" = field(default_factory=dict)
    routes: dict[str, dict[str, int]] = field(default_factory=dict)  # item -> route -> rank
    info: dict[str, dict[str, Any]] = field(default_factory=dict)  # item -> score, routes, route scores
    notes: list[str] = field(default_factory=list)  # what narrowing the pools found


@dataclass
class Attempt:
    """One recall -> rank -> compose pass (around the photo's anchor, if any)."""

    outfits: "list[Outfit]"
    candidates: Candidates
    photo: PhotoOut | None = None  # how the photo was read in this attempt
    anchor_pool: list[str] = field(default_factory=list)  # look-alikes allowed in the anchor slot
    notes: list[str] = field(default_factory=list)
    photo_colour: str | None = None  # the photo's colour as the anchor uses it (read confidently)


def elapsed_ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)
