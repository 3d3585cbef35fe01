"""Request and result types of candidate recall (the serving layer builds these from API requests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from mmrec.config import StrictModel


class Filters(StrictModel):
    """Hard constraints, applied inside every route's search (never by dropping results afterwards).

    ``None`` means "no constraint"; an empty list means "nothing allowed". Items without a
    price never satisfy a price bound.
    """

    slots: list[str] | None = Field(None, max_length=16)
    genders: list[str] | None = Field(None, max_length=8)
    categories: list[str] | None = Field(None, max_length=256)
    usages: list[str] | None = Field(None, max_length=16)
    price_min: float | None = Field(None, ge=0)
    price_max: float | None = Field(None, ge=0)
    in_stock_only: bool = True
    exclude_ids: list[str] = Field(default_factory=list, max_length=10_000)

    @model_validator(mode="after")
    def _price_range(self) -> "Filters":
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError(f"price_min {self.price_min} > price_max {self.price_max}")
        return self

    @field_validator("slots", "genders", "categories", "usages")
    @classmethod
    def _lower(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [s.strip().lower() for s in v]

    def key(self) -> tuple:
        """Hashable identity of the metadata part (exclusions are applied separately)."""
        return (_t(self.slots), _t(self.genders), _t(self.categories), _t(self.usages),
                self.price_min, self.price_max, self.in_stock_only)


def _t(v: list[str] | None) -> tuple | None:
    return None if v is None else tuple(sorted(set(v)))


class RecallQuery(StrictModel):
    """What a shopper asked for; any mix of text, photo, attributes and segment."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    text: str | None = Field(None, max_length=1000)
    image: Any | None = Field(None, description="a PIL image (kiosk photo)")
    image_vector: list[float] | None = Field(None, max_length=4096)
    attributes: dict[str, str] = Field(default_factory=dict, description="taxonomy field -> value")
    filters: Filters = Field(default_factory=Filters)
    segment: str | None = Field(None, max_length=200)
    k: int = Field(200, ge=1, le=5000)

    @field_validator("image")
    @classmethod
    def _is_image(cls, v: Any) -> Any:
        if v is None:
            return v
        from PIL import Image

        if not isinstance(v, Image.Image):
            raise ValueError(f"image must be a PIL image (decode it with mmrec.images.load_image), "
                             f"got {type(v).__name__}")
        return v


@dataclass
class Candidate:
    """One recalled item: its fused RRF score and, per route that found it, rank (1-based) and score."""

    item_id: str
    score: float
    routes: dict[str, int] = field(default_factory=dict)
    route_scores: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "score": self.score, "routes": dict(self.routes),
                "route_scores": dict(self.route_scores)}


@dataclass
class RouteResult:
    """A route's ranked list, best first; ``scores`` are the route's own (not comparable across routes)."""

    name: str
    item_ids: list[str]
    scores: list[float]
    info: dict[str, Any] = field(default_factory=dict)  # e.g. parsed attributes, for explanations
