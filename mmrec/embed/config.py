"""Config of the `embed` stage (configs/embed.yaml): encoder model, training, catalog embedding, eval."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mmrec.config import StrictModel

# Fields a text template may name; each comes from the items table (canonical taxonomy values).
TEMPLATE_FIELDS = ("title", "brand", "gender", "category", "slot", "colour", "pattern", "material",
                   "fit", "sleeve", "neckline", "season", "usage")


class ModelSpec(StrictModel):
    """Which open_clip model: a registered name (+ pretrained tag or file), hf-hub:, or local-dir:."""

    name: str = Field("mmrec-clip-mini", description=(
        "open_clip model name (mmrec-clip-tiny / mmrec-clip-mini are registered by mmrec), "
        "'hf-hub:org/repo', or 'local-dir:/path' holding open_clip_config.json + weights"))
    pretrained: str | None = Field(None, description=(
        "pretrained tag (e.g. 'webli') or a checkpoint file for built-in names; "
        "ignored for hf-hub:/local-dir: names; null = random init (mini/tiny are trained by mmrec)"))
    preprocess: Literal["letterbox", "open_clip"] = Field("letterbox", description=(
        "letterbox: fit on a white square (what mmrec trains mini/tiny with); "
        "open_clip: the model's own transform (use for pretrained weights)"))
    device: str = Field("auto", description="auto (cuda when available) | cpu | cuda | cuda:N")

    @field_validator("name")
    @classmethod
    def _nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("model name must not be empty, e.g. 'mmrec-clip-mini'")
        return v.strip()


class AugmentConfig(StrictModel):
    pad: int = Field(4, ge=0, le=32, description="pixels of white padding before a random crop")
    flip: bool = Field(True, description="random horizontal flip")


class TextTemplate(StrictModel):
    """A caption pattern like '{colour} {category} for {gender}'; used when all its fields exist."""

    text: str
    weight: float = Field(1.0, gt=0)

    @field_validator("text")
    @classmethod
    def _fields_known(cls, v: str) -> str:
        import string

        names = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
        if not names:
            raise ValueError(f"template {v!r} names no field; use e.g. '{{colour}} {{category}}'")
        bad = sorted(set(names) - set(TEMPLATE_FIELDS))
        if bad:
            raise ValueError(f"template {v!r} names unknown field(s) {bad}; valid: {list(TEMPLATE_FIELDS)}")
        return v


def _default_templates() -> list[TextTemplate]:
    return [TextTemplate(text="{title}", weight=3.0),
            TextTemplate(text="{category}"),
            TextTemplate(text="{colour} {category}"),
            TextTemplate(text="{colour} {category} for {gender}, {usage}")]


class TrainConfig(StrictModel):
    """Contrastive training of the in-house encoder on the catalog's image <-> text pairs."""

    epochs: int = Field(20, ge=0, description="0 = package the (pretrained) model without training")
    time_budget_min: float | None = Field(None, gt=0, description=(
        "stop after this many minutes; the cosine schedule runs over whichever of epochs or "
        "time budget ends first"))
    budget_clock: Literal["cpu", "wall"] = Field("cpu", description=(
        "what time_budget_min counts: cpu = this process's CPU time (what a quiet machine "
        "would take in wall time with `threads` threads; robust to a shared machine), wall = "
        "elapsed time"))
    batch_size: int = Field(256, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_frac: float = Field(0.05, ge=0, lt=1)
    min_lr_frac: float = Field(0.0, ge=0, le=1, description="cosine floor as a fraction of lr")
    grad_clip: float | None = Field(1.0, gt=0)
    threads: int = Field(1, ge=0, description="torch CPU threads (0 = torch default); the machine is shared")
    seed: int = 0
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    templates: list[TextTemplate] = Field(default_factory=_default_templates)
    include_val: bool = Field(False, description=(
        "also train on the val split (the test split is never trained on, whatever this says)"))
    eval_every: int = Field(5, ge=0, description="epochs between val retrieval checks (0 = only at the end)")
    max_items: int | None = Field(None, ge=2, description="cap on training items (smoke runs)")
    cache_dir: str | None = Field(None, description=(
        "where decoded, letterboxed uint8 pixels are cached (default: <artifacts>/.cache/embed)"))

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"betas must be in [0, 1), got {v}")
        return v

    @field_validator("templates")
    @classmethod
    def _some_templates(cls, v: list[TextTemplate]) -> list[TextTemplate]:
        if not v:
            raise ValueError("templates must list at least one caption template, e.g. '{title}'")
        return v


class RayConfig(StrictModel):
    address: str | None = Field(None, description="Ray cluster address; null = a local Ray")
    actors: int = Field(2, ge=1, description="encoder replicas (map_batches concurrency)")
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0)


class CatalogEmbedConfig(StrictModel):
    """Batch embedding of the catalog's images (`mmrec embed catalog`)."""

    batch_size: int = Field(256, ge=1)
    decode_workers: int = Field(2, ge=1, le=64, description="threads decoding JPEGs (Pillow releases the GIL)")
    threads: int = Field(0, ge=0, description="torch threads for the forward pass (0 = torch default)")
    engine: Literal["local", "ray"] = Field("local", description="ray: Ray Data map_batches (big catalogs)")
    ray: RayConfig = Field(default_factory=RayConfig)


class EvalConfig(StrictModel):
    """Held-out retrieval evaluation (`mmrec embed eval`), the Marqo-FashionCLIP protocol."""

    min_relevant: int = Field(10, ge=1, description=(
        "category/colour/usage values with fewer gallery products are not used as queries "
        "(P@10 could not reach 1)"))
    attribute_phrase_queries: int = Field(300, ge=0, description="attribute-phrase queries sampled")
    attribute_phrase_min_relevant: int = Field(3, ge=1)
    depth: int = Field(200, ge=10, description="candidates per route, as served")
    seed: int = 0
    tune_grid: dict[str, list[float]] = Field(
        default_factory=lambda: {"text_image": [0.5, 1.0, 1.5], "attribute": [0.5, 1.0, 2.0],
                                 "bm25": [0.5, 1.0, 1.5]},
        description="route weights tried by `mmrec embed eval --tune` (run it on --split val)")


class EmbedConfig(StrictModel):
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainConfig = Field(default_factory=TrainConfig)
    catalog: CatalogEmbedConfig = Field(default_factory=CatalogEmbedConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _preprocess_matches(self) -> "EmbedConfig":
        if self.model.name.startswith("mmrec-clip-") and self.model.preprocess != "letterbox":
            raise ValueError(f"{self.model.name} is trained on letterboxed images; "
                             "set model.preprocess=letterbox")
        return self
