"""API contracts of the recommender: requests and responses, bounded in every field.

The same models serve the in-process `Recommender`, the HTTP API (FastAPI validates them and
answers 422 on violations) and the benchmark runner. Every string has a max length and every
list a max size, so that no request can make the service do unbounded work.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, Field, ValidationInfo, field_validator, model_validator

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
    lang: Literal["en", "zh"] | None = Field(
        None, description="language of the explanations (null: the Accept-Language header's, else en)")

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
    lang: Literal["en", "zh"] = Field("en", description="language of the text (the facts are the same)")


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
    slot: str | None = Field(None, description="the slot the outfits are built around (None: not placed)")
    slot_source: Literal["tagger", "encoder", "neighbours", "shopper", "none"] = "none"
    similar: list[str] = Field(default_factory=list)
    slot_confidence: float | None = Field(
        None, description="calibrated probability that the read slot is right (None: no calibrator, "
                          "or the shopper named the slot)")
    slot_guess: str | None = Field(None, description="when abstained: the slot the reading leaned to")
    abstained: bool = Field(False, description="the photo could not be read reliably: no outfits are "
                                               "built around a guess; ask the shopper (slot_choices)")
    abstain_reason: str | None = None
    slot_choices: list[str] = Field(default_factory=list, description="when abstained: slots to offer "
                                    "the shopper, likeliest first (the reading's guess, then the "
                                    "slots its look-alikes voted for); re-send the photo with one "
                                    "as the `slot` hint")


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
    label_zh: str | None = None
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


# -- feedback loop: events and profiles (mmrec.feedback; routes in mmrec.serving.feedback_api) --

_ID = r"^[A-Za-z0-9_.:\-]+$"
EventType = Literal["impression_seen", "click", "add_to_cart", "purchase", "dismiss", "rating"]


class EventIn(StrictModel):
    """One thing a shopper did with an item. ``event_id`` is the idempotency key: a retry with
    the same id is answered ``duplicate`` and stored once."""

    event_id: str = Field(min_length=1, max_length=64, pattern=_ID)
    request_id: str | None = Field(None, min_length=1, max_length=64, pattern=_ID,
                                   description="the recommend answer the item was shown in")
    user_id: str | None = Field(None, min_length=1, max_length=64, pattern=_ID,
                                description="stored pseudonymised (keyed hash), never as sent")
    item_id: str = Field(min_length=1, max_length=64, pattern=_ID)
    type: EventType
    value: int | None = Field(None, ge=1, le=5, validate_default=True,
                              description="the rating, 1..5: required for type rating, refused otherwise")
    ts: AwareDatetime = Field(description="ISO-8601 with a timezone; at most 5 min ahead, 30 days old")

    @field_validator("value")
    @classmethod
    def _value_for_rating(cls, v: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("type")
        if kind == "rating" and v is None:
            raise ValueError("value is required for type 'rating' (an integer 1..5)")
        if kind is not None and kind != "rating" and v is not None:
            raise ValueError(f"value is only allowed for type 'rating', not {kind!r}; omit it")
        return v


class EventsBatch(StrictModel):
    # Each event is checked on its own (a bad one must not refuse the batch), so the body
    # takes raw objects; the schema still shows EventIn for every item (set in the route).
    events: list[dict[str, Any]] = Field(min_length=1, max_length=10_000,
                                         description="EventIn objects; the server's batch limit applies",
                                         json_schema_extra=lambda s: s.update(items=EventIn.model_json_schema()))


class EventResult(StrictModel):
    index: int
    event_id: str | None = None
    status: Literal["accepted", "duplicate", "error"]
    error: str | None = Field(None, description="names the field and what is valid")
    warning: str | None = Field(None, description="accepted, but e.g. its request_id has no logged impression")


class EventsResponse(StrictModel):
    accepted: int
    duplicate: int
    error: int
    results: list[EventResult]


class UserProfileIn(StrictModel):
    """Profile fields the ranker uses (`mmrec.rank.users.UserProfile`); all optional."""

    age: int | None = Field(None, ge=13, le=120)
    gender: Literal["men", "women"] | None = None
    body_type: Literal["apple", "athletic", "full bust", "hourglass", "pear", "petite",
                       "straight & narrow"] | None = None
    size: float | None = Field(None, ge=0, le=60, description="the store's numeric size scale")
    height_cm: float | None = Field(None, ge=50, le=250)
    weight_kg: float | None = Field(None, ge=20, le=300)
    preferred_occasions: list[str] = Field(default_factory=list, max_length=7)
    price_band: Literal["budget", "mid", "premium", "luxury"] | None = None

    @field_validator("preferred_occasions")
    @classmethod
    def _occasions(cls, v: list[str]) -> list[str]:
        from mmrec.taxonomy import default_taxonomy

        valid = default_taxonomy().values("usage")
        bad = [o for o in v if o not in valid]
        if bad:
            raise ValueError(f"unknown occasions {bad[:3]}; valid: {list(valid)}")
        return sorted(set(v))


class UserProfileOut(StrictModel):
    user_id: str = Field(description="the pseudonym stored (the id as sent is not kept)")
    created: bool
    profile: UserProfileIn


class UserDeleted(StrictModel):
    user_id: str = Field(description="the pseudonym whose rows were removed")
    profiles: int
    events: int
    impressions: int


# -- live inventory (POST /v1/admin/catalog; mmrec.recommend.inventory) --

class CatalogUpdate(StrictModel):
    """A stock and/or price change of one catalog item (a field left out stays as it is)."""

    item_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    in_stock: bool | None = None
    price: float | None = Field(None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _something(self) -> "CatalogUpdate":
        if self.in_stock is None and self.price is None:
            raise ValueError(f"update of {self.item_id!r} changes nothing: give in_stock and/or price")
        return self


_ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"


class CatalogItemIn(StrictModel):
    """A new or replaced catalog item (the items contract's describing fields; values are
    checked against the taxonomy like an ingest's, with the same synonyms)."""

    item_id: str = Field(min_length=1, max_length=64, pattern=_ID_PATTERN)
    title: str = Field(min_length=1, max_length=300)
    category: str = Field(min_length=1, max_length=64, description="a taxonomy category or synonym")
    brand: str | None = Field(None, max_length=100)
    gender: str | None = Field(None, max_length=32)
    colour: str | None = Field(None, max_length=64)
    pattern: str | None = Field(None, max_length=64)
    material: str | None = Field(None, max_length=64)
    fit: str | None = Field(None, max_length=64)
    sleeve: str | None = Field(None, max_length=64)
    neckline: str | None = Field(None, max_length=64)
    season: str | None = Field(None, max_length=64)
    usage: str | None = Field(None, max_length=64)
    year: int | None = Field(None, ge=1900, le=2100)
    price: float | None = Field(None, ge=0, allow_inf_nan=False)
    in_stock: bool = True
    image_uri: str | None = Field(None, max_length=1024,
                                  description="a file on the server's disk (admin only); decoded and "
                                              "embedded with the loaded encoder when there is one")


class CatalogResult(StrictModel):
    index: int
    item_id: str | None = None
    op: Literal["upsert", "delete"]
    status: Literal["accepted", "error"]
    error: str | None = Field(None, description="names the field and what is valid")
    warning: str | None = None


class CatalogUpdates(StrictModel):
    """Live catalog changes. ``updates`` (stock, price) are all-or-nothing (an unknown id refuses
    the request); each upsert and delete is judged on its own (207 with a result each)."""

    updates: list[CatalogUpdate] = Field(default_factory=list, max_length=1000)
    upserts: list[dict[str, Any]] = Field(
        default_factory=list, max_length=1000, description="CatalogItemIn objects",
        json_schema_extra=lambda s: s.update(items=CatalogItemIn.model_json_schema()))
    deletes: list[str] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _something(self) -> "CatalogUpdates":
        if not (self.updates or self.upserts or self.deletes):
            raise ValueError("give at least 1 change in updates, upserts or deletes")
        return self
