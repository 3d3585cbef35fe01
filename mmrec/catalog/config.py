"""Config of the `ingest` stage (configs/ingest.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mmrec.config import StrictModel
from mmrec.images import ImageLimits

CONTRACT_FIELDS = (
    "item_id", "title", "brand", "gender", "category", "colour", "pattern", "material", "fit",
    "sleeve", "neckline", "season", "usage", "year", "price", "in_stock", "image",
)


class GenericMapping(StrictModel):
    """How a retailer's own CSV/Parquet maps onto the items contract (`--format generic`)."""

    columns: dict[str, str] = Field(
        default_factory=dict,
        description="contract field -> source column; unmapped fields default to the same name")
    image_dir: str | None = Field(
        None, description="folder that relative image paths are resolved against "
                          "(default: the folder of the source file)")

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted(set(v) - set(CONTRACT_FIELDS))
        if bad:
            raise ValueError(f"unknown contract field(s) {bad}; valid: {list(CONTRACT_FIELDS)}")
        return v


class IngestConfig(StrictModel):
    format: Literal["myntra", "hm", "generic"] = "myntra"
    max_error_rate: float = Field(
        0.05, ge=0.0, le=1.0,
        description="refuse the whole ingest (exit 2, nothing written) above this share of bad rows")
    require_image: bool | None = Field(
        None, description="a row without a readable image is an error (true) or a warning "
                          "(false); default: true for myntra/generic, false for hm (images sampled)")
    images: ImageLimits = Field(default_factory=lambda: ImageLimits(min_side=48))
    year_min: int = 1990
    year_max: int = 2035
    default_in_stock: bool = Field(True, description="used when the source has no stock column")
    title_rules: bool = Field(True, description="extract pattern/material/fit/... from titles")
    workers: int = Field(4, ge=1, le=64, description="threads decoding images")
    generic: GenericMapping = Field(default_factory=GenericMapping)

    @model_validator(mode="after")
    def _years(self) -> "IngestConfig":
        if self.year_min > self.year_max:
            raise ValueError(f"year_min {self.year_min} > year_max {self.year_max}")
        return self

    def needs_image(self) -> bool:
        if self.require_image is not None:
            return self.require_image
        return self.format != "hm"
