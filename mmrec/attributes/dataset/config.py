"""The SFT dataset recipe (`mmrec sft build --recipe sft_data/recipes/<name>.yaml`), typed.

Registered as config stage ``sft_data``: defaults here < ``configs/sft_data.yaml`` < the
profile's ``sft_data:`` section < the recipe file < ``--set`` overrides.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from mmrec.config import StrictModel

# The fields a tagger answers, in the order the JSON lists them. `slot` is left out on purpose:
# it follows from the category (Taxonomy.slot_of), so predicting it would only add tokens.
DEFAULT_FIELDS = ("category", "gender", "colour", "pattern", "material", "fit", "sleeve",
                  "neckline", "season", "usage")


class CleanConfig(StrictModel):
    """Which rows are usable and how labels and text are cleaned."""

    required_fields: list[str] = Field(default_factory=lambda: ["category"],
                                       description="rows without any of these labels are dropped")
    label_sources: list[str] = Field(
        default_factory=lambda: ["catalog", "title"],
        description="attribute sources trusted as labels; never 'model' (no training on our own guesses)")
    decode_images: bool = Field(True, description="decode every image; undecodable ones are dropped")
    min_image_side: int = Field(32, ge=8)
    scrub_pii: bool = True

    @field_validator("label_sources")
    @classmethod
    def _no_model(cls, v: list[str]) -> list[str]:
        if "model" in v:
            raise ValueError("label_sources must not contain 'model': the tagger would learn from "
                             "its own predictions; use ['catalog', 'title']")
        return v


class DedupConfig(StrictModel):
    exact: bool = Field(True, description="drop byte-identical images (same sha256), keep one")
    near: bool = Field(True, description="group perceptual near-duplicates (kept in one split)")
    # Measured on Myntra (white-background studio shots): an 8x8 pHash at distance <= 4 chains
    # 1,860 different products into one group; 16x16 at <= 16 (of 256 bits) pairs only re-shoots
    # of one photo template (largest group: 4).
    hash_size: int = Field(16, ge=4, le=16, description="pHash grid: hash_size**2 bits")
    max_distance: int = Field(16, ge=0, description="Hamming distance <= this is a near-duplicate")
    # Look-alike clusters: same labels on these fields and the same coarse 4x4 luminance layout.
    # Dense ones (hundreds of near-identical black T-shirts) are capped in the train split.
    lookalike_fields: list[str] = Field(default_factory=lambda: ["category", "colour", "gender"])
    max_per_lookalike_cluster: int | None = Field(
        40, ge=1, description="cap per look-alike cluster in train; null keeps all")


class SamplingConfig(StrictModel):
    """Temperature-balanced resampling of the train split (val/test keep the natural mix)."""

    balance_fields: list[str] = Field(default_factory=lambda: ["category", "colour"])
    temperature: float = Field(
        0.5, gt=0, le=1,
        description="class weight ~ frequency**temperature: 1 keeps the mix, 0.5 flattens it")
    min_repeat: float = Field(1.0, ge=0, description="every product appears at least this often (expected)")
    max_repeat: float = Field(3.0, ge=1, description="no product is repeated more than this")
    size_factor: float = Field(1.5, gt=0, description="train records after sampling / train products")

    @model_validator(mode="after")
    def _feasible(self) -> SamplingConfig:
        if not self.min_repeat <= self.size_factor <= self.max_repeat:
            raise ValueError(f"need min_repeat <= size_factor <= max_repeat, got {self.min_repeat}, "
                             f"{self.size_factor}, {self.max_repeat}")
        return self


class TasksConfig(StrictModel):
    """Which records each product yields."""

    json_per_item: int = Field(1, ge=1, description="full JSON extraction records per train product")
    single_per_item: int = Field(1, ge=0, description="single-attribute questions per train product")
    unknown_question_rate: float = Field(
        0.15, ge=0, le=1,
        description="share of single questions asked about an unlabelled field (answer: unknown)")
    caption: bool = Field(True, description="write image -> title records (the mini base stage)")


class ReportConfig(StrictModel):
    contact_sheet_samples: int = Field(24, ge=0)
    thumb_size: int = Field(112, ge=32)


class SftDataConfig(StrictModel):
    """A dataset recipe: which catalog, which fields, and every cleaning/sampling knob."""

    name: str = "dataset"
    items_version: str | None = Field(None, description="items artifact version (null: CURRENT)")
    prompts: Path = Field(Path("sft_data/prompts/default.yaml"),
                          description="prompt templates; relative paths resolve from the repo root")
    fields: list[str] = Field(default_factory=lambda: list(DEFAULT_FIELDS))
    max_items: int | None = Field(None, ge=1, description="use only this many items (seeded); for tiny runs")
    seed: int = 0
    clean: CleanConfig = Field(default_factory=CleanConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    tasks: TasksConfig = Field(default_factory=TasksConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @model_validator(mode="after")
    def _fields_known(self) -> SftDataConfig:
        from mmrec.taxonomy import FIELDS

        for name, group in (("fields", self.fields), ("clean.required_fields", self.clean.required_fields),
                            ("sampling.balance_fields", self.sampling.balance_fields),
                            ("dedup.lookalike_fields", self.dedup.lookalike_fields)):
            bad = [f for f in group if f not in FIELDS]
            if bad:
                raise ValueError(f"{name}: unknown field(s) {bad}; taxonomy fields are {list(FIELDS)}")
        if not self.fields:
            raise ValueError("fields must name at least one taxonomy field, e.g. [category, colour]")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"fields has duplicates: {self.fields}")
        return self
