"""API contracts of the recommender: requests and responses, bounded in every field.

The same models serve the in-process `Recommender`, the HTTP API (FastAPI validates them and
answers 422 on violations) and the benchmark runner. Every string has a max length and every
list a max size, so that no request can make the service do unbounded work.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from mmrec.config import StrictModel



class RequestFilters(StrictModel):
    """Shopper constraints; all hard (never relaxed to fill a slot)."""

    genders: list[Literal["men", "women", "unisex", "boys", "girls"]] | None = Field(None, max_length=5)
    price_max: float | None = Field(None, ge=0, le=1e7, description="per item")
    budget: float | None = Field(None, ge=0, le=1e8, description="whole outfit")
    in_stock_only: bool = True
    exclude_item_ids: list[str] = Field(default_factory=list, max_length=200)
    season: Literal["spring", "summer", "fall", "winter"] | None = None

    @field_validator("exclude_item_ids")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        bad = [i for i in v if not (0 < len(i) <= 64)]
        if bad:
            raise ValueError(f"item ids must be 1..64 characters, got {bad[:3]}")
        return v


class RecommendRequest(StrictModel):
    user_id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    scene: str = Field(min_length=1, max_length=40)
    query_text: str | None = Field(None, max_length=200)
    k: int = Field(3, ge=1, le=20, description="number of outfits")
    filters: RequestFilters = Field(default_factory=RequestFilters)
    explain: bool = True
    allow_repeats: bool = Field(False, description="let an item appear in several outfits")
    channel: Literal["app", "kiosk"] = "app"

    @field_validator("query_text")
    @classmethod
    def _strip(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = " ".join(v.split())
        return v or None


class FactOut(StrictModel):
    item_id: str | None = None
    field: str
    value: str
    source: str
    confidence: float | None = None


class ExplanationOut(StrictModel):
    text: str
    facts: list[FactOut]
    statements: int = Field(description="sentences in the text")
    supported: int = Field(description="sentences whose every claim is among the facts")
    fallback: bool = Field(False, description="the rich text failed verification; plain template used")


class OutfitItemOut(StrictModel):
    item_id: str
    slot: str
    score: float = Field(description="propensity from the ranker (or recall order when absent)")
    title: str | None = None
    category: str | None = None
    colour: str | None = None
    gender: str | None = None
    image_url: str | None = None


class OutfitOut(StrictModel):
    items: list[OutfitItemOut]
    score: float
    compatibility: float
    template: list[str]
    explanation: ExplanationOut | None = None


class PhotoOut(StrictModel):
    """What the kiosk photo was read as, and the catalog items most like it."""

    attributes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    slot: str | None = None
    slot_source: Literal["tagger", "neighbours", "none"] = "none"
    similar: list[str] = Field(default_factory=list)


class RecommendResponse(StrictModel):
    request_id: str
    scene: str
    versions: dict[str, str]
    outfits: list[OutfitOut]
    photo: PhotoOut | None = None
    query: dict[str, Any] | None = Field(
        None, description="how the typed text was read: lang, gender, wanted/excluded values, price_max, "
                          "scene, terms (each understood span) and unknown_terms (words not understood)")
    notes: list[str] = Field(default_factory=list, description="degradations and why results are few")
    timings: dict[str, float] = Field(default_factory=dict, description="milliseconds per stage")


class TagResponse(StrictModel):
    request_id: str
    versions: dict[str, str]
    attributes: dict[str, dict[str, Any]]
    slot: str | None = None
    similar: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class SceneOut(StrictModel):
    name: str
    label: str
    usages: list[str]
    templates: list[list[str]]


class ScenesResponse(StrictModel):
    version: str
    scenes: list[SceneOut]


class ItemOut(StrictModel):
    item_id: str
    title: str
    brand: str | None = None
    gender: str | None = None
    category: str
    slot: str
    colour: str | None = None
    price: float | None = None
    in_stock: bool
    attributes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    image_url: str | None = None


class ErrorOut(StrictModel):
    error: str
    detail: str
    request_id: str | None = None

    @field_validator("detail", mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        return v[:2000] if isinstance(v, str) else v
