"""Configs of the `index` stage (configs/index.yaml) and the `recall` stage (configs/recall.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from mmrec import kinds
from mmrec.config import StrictModel

ROUTES = ("text_image", "photo_image", "attribute", "bm25", "popularity")
FILTER_FIELDS = ("slot", "gender", "category", "usage")


class HNSWParams(StrictModel):
    m: int = Field(32, ge=4, le=128, description="graph degree: memory ~ 8*m bytes per vector")
    ef_construction: int = Field(64, ge=8, description="build beam width (build time vs quality)")
    ef_search: int = Field(128, ge=8, description="search beam width (latency vs recall)")


class IVFParams(StrictModel):
    nlist: int | None = Field(None, ge=1, description="inverted lists; null = 4 * sqrt(n)")
    nprobe: int = Field(16, ge=1, description="lists scanned per query (latency vs recall)")
    pq_m: int = Field(32, ge=1, description="ivf_pq: sub-quantizers (must divide dim)")
    pq_bits: int = Field(8, ge=4, le=12)
    refine_k_factor: float = Field(4.0, ge=1.0, description=(
        "ivf_pq/ivf_sq8: re-score this many times k candidates with exact vectors"))
    train_size: int = Field(200_000, ge=1000, description="vectors sampled to train the quantizer")


class IndexConfig(StrictModel):
    """How the FAISS index is built and searched."""

    flat_max: int = Field(50_000, ge=0, description=(
        "catalogs up to this size get an exact IndexFlatIP (fast enough, recall 1.0)"))
    ann: Literal["hnsw", "ivf_flat", "ivf_pq", "ivf_sq8"] = Field(
        "ivf_sq8", description="index above flat_max (see `mmrec index latency` for the trade-offs)")
    hnsw: HNSWParams = Field(default_factory=HNSWParams)
    ivf: IVFParams = Field(default_factory=IVFParams)
    exact_below: int = Field(2_000, ge=0, description=(
        "a filtered search selecting at most this many items scores exactly those items "
        "(hnsw/ivf_sq8/ivf_pq, which keep raw vectors); gathering more costs more than ANN"))
    compact_dead_fraction: float = Field(0.25, gt=0, le=1, description=(
        "HNSW cannot delete: removed items are tombstones excluded inside the search, and the "
        "graph is rebuilt once they exceed this share"))
    filter_cache: int = Field(256, ge=0, description="filter bitmaps kept (LRU) for repeated filters")
    device: Literal["auto", "cpu", "gpu"] = Field("auto", description=(
        "gpu: faiss GPU build + a GPU (flat and IVF indexes); auto uses it when both exist"))
    threads: int = Field(0, ge=0, description="faiss OpenMP threads (0 = faiss default)")
    seed: int = 0


class RouteConfig(StrictModel):
    enabled: bool = True
    weight: float = Field(1.0, ge=0, description="RRF weight of this route")
    depth: int = Field(200, ge=1, description="candidates this route contributes")


class AttributeRouteConfig(RouteConfig):
    field_weights: dict[str, float] = Field(
        default_factory=lambda: {"category": 3.0, "slot": 1.0, "gender": 1.0, "colour": 2.0,
                                 "usage": 1.0, "pattern": 1.0, "material": 1.0, "fit": 0.5,
                                 "sleeve": 0.5, "neckline": 0.5, "season": 0.5},
        description="score of an item = sum of the weights of the query fields it matches")
    max_ngram: int = Field(3, ge=1, le=5, description="longest word n-gram looked up in the taxonomy")

    @field_validator("field_weights")
    @classmethod
    def _fields(cls, v: dict[str, float]) -> dict[str, float]:
        from mmrec.taxonomy import FIELDS

        bad = sorted(set(v) - set(FIELDS))
        if bad:
            raise ValueError(f"unknown taxonomy field(s) {bad}; valid: {list(FIELDS)}")
        if any(w < 0 for w in v.values()):
            raise ValueError(f"field weights must be >= 0, got {v}")
        return v


class BM25RouteConfig(RouteConfig):
    k1: float = Field(1.2, ge=0)
    b: float = Field(0.75, ge=0, le=1)
    fields: list[str] = Field(
        default_factory=lambda: ["title", "brand", "category", "colour", "usage", "gender",
                                 "pattern", "material", "fit", "sleeve", "neckline", "season"],
        description="item columns whose words are indexed (title + structured attributes)")


class PopularityRouteConfig(RouteConfig):
    interactions_kind: str = Field(kinds.INTERACTIONS_SIM, description=(
        "artifact kind holding interactions.parquet (user_id, item_id, event, ts) and "
        "profiles.parquet (user_id, segment), as `mmrec rank` writes them; the route is off "
        "when none exists. For the Myntra catalog these logs are simulated"))
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"impression": 0.0, "click": 1.0, "rating": 2.0,
                                 "purchase": 4.0, "rental": 4.0})
    half_life_days: float | None = Field(30.0, gt=0, description="recency decay; null = none")
    min_segment_events: int = Field(20, ge=0, description=(
        "segments with fewer weighted events fall back to global popularity"))


class RecallConfig(StrictModel):
    """Routes, their RRF weights and depths; served by `mmrec.recall.service.Recall`."""

    rrf_k: float = Field(60.0, gt=0, description="RRF constant: score = sum_r w_r / (rrf_k + rank_r)")
    # defaults = configs/recall.yaml: weights chosen on the val split (see `embed eval --tune`)
    text_image: RouteConfig = Field(default_factory=lambda: RouteConfig(weight=0.5))
    photo_image: RouteConfig = Field(default_factory=lambda: RouteConfig(weight=1.5))
    attribute: AttributeRouteConfig = Field(default_factory=lambda: AttributeRouteConfig(weight=2.0))
    bm25: BM25RouteConfig = Field(default_factory=lambda: BM25RouteConfig(weight=1.5))
    popularity: PopularityRouteConfig = Field(default_factory=lambda: PopularityRouteConfig(weight=0.3))
    device: str = Field("auto", description="encoder device when Recall loads the encoder")
    text_vector_cache: int = Field(4096, ge=0, le=1_000_000, description=(
        "typed queries whose text vectors are kept (the text tower is ~5 ms a query on a CPU "
        "core; the same query recurs across scenes, shoppers and pages); 0: off"))

    def route(self, name: str) -> RouteConfig:
        if name not in ROUTES:
            raise ValueError(f"unknown route {name!r}; valid: {list(ROUTES)}")
        return getattr(self, name)
