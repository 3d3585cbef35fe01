"""Config of the `embed` stage (configs/embed.yaml): encoder model, training, catalog embedding, eval."""

from __future__ import annotations

import string
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
    photo_crop: float | None = Field(None, gt=0.0, le=1.0, description=(
        "real phone photos only: a random crop of this fraction of the side up to the whole "
        "(aspect 3:4..4:3), resized back, so that the slot head sees a garment framed closer or "
        "partly; null: off"))


def _ordered_range(v: tuple[float, float], name: str) -> tuple[float, float]:
    if v[0] > v[1]:
        raise ValueError(f"{name} must be [low, high] with low <= high, got {list(v)}")
    return v


class KioskAugmentConfig(StrictModel):
    """Kiosk conditions made from packshots: the product cut from its white ground (a threshold
    mask) and pasted onto a real-looking background, off-centre or partly out of frame, turned
    and tilted, under other light, blurred, JPEG-compressed, in any aspect ratio, then
    letterboxed like any photo the encoder reads. Light changes are bounded so that a product
    keeps its colour family: the captions still state the catalog's colour."""

    p: float = Field(0.0, ge=0, le=1, description="share of packshots given kiosk conditions (0 = off)")
    backgrounds: Literal["real_photos", "synthetic"] = Field("real_photos", description=(
        "real_photos: border crops of the train senders' photos (floors, beds, doors; needs "
        "train.real_photos.source); synthetic: smooth random colour fields with noise"))
    white_threshold: int = Field(235, ge=128, le=254, description=(
        "a pixel whose every channel is at or above this is the packshot's white ground"))
    scale: tuple[float, float] = Field((0.55, 1.25), description=(
        "product's longer side / canvas's shorter side; above 1 it is partly out of frame"))
    max_offset: float = Field(0.3, ge=0, le=0.5, description="centre shift, fraction of the canvas")
    rotate_deg: float = Field(15.0, ge=0, le=90)
    perspective: float = Field(0.08, ge=0, le=0.3, description="corner jitter, fraction of the side")
    aspect: tuple[float, float] = Field((0.6, 1.7), description="canvas width / height range")
    brightness: tuple[float, float] = Field((0.7, 1.2))
    white_balance: float = Field(0.06, ge=0, le=0.2, description=(
        "per-channel gain jitter (mean gain kept at 1); small so that hue families hold"))
    blur_p: float = Field(0.3, ge=0, le=1)
    blur_radius: tuple[float, float] = Field((0.3, 1.0))
    jpeg_p: float = Field(0.5, ge=0, le=1)
    jpeg_quality: tuple[int, int] = Field((30, 90))

    @model_validator(mode="after")
    def _ranges(self) -> "KioskAugmentConfig":
        for name in ("scale", "aspect", "brightness", "blur_radius", "jpeg_quality"):
            lo, hi = _ordered_range(getattr(self, name), name)
            if lo <= 0:
                raise ValueError(f"{name} must be positive, got {[lo, hi]}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 95:
            raise ValueError(f"jpeg_quality must lie in 1..95, got {list(self.jpeg_quality)}")
        return self


def template_fields(text: str) -> list[str]:
    """The {field} names a caption template uses, in order."""
    return [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]


# Fields a real-photo caption may name: only what its coarse label states.
PHOTO_TEMPLATE_FIELDS = ("label", "slot", "category")


class PhotoTemplate(StrictModel):
    """A caption of a real photo from its label: {label} (the label's own words), {slot} (the
    slot the reviewed table maps it to), {category} (only for labels that name one category)."""

    text: str
    weight: float = Field(1.0, gt=0)

    @field_validator("text")
    @classmethod
    def _fields_known(cls, v: str) -> str:
        names = template_fields(v)
        bad = sorted(set(names) - set(PHOTO_TEMPLATE_FIELDS))
        if not names or bad:
            raise ValueError(f"photo template {v!r} must name only {list(PHOTO_TEMPLATE_FIELDS)} "
                             f"(a real photo's label states no colour, gender or occasion)")
        return v


class RealPhotoPairsConfig(StrictModel):
    """Real phone photos of the train photographers as extra image <-> text pairs (partial
    labels: a caption names only what the label states; "Not sure/Other/Skip" never train;
    the benchmark's val and test photographers never enter training)."""

    share: float = Field(0.0, ge=0, lt=1, description="share of each batch that is real photos (0 = off)")
    source: str | None = Field(None, description="the real_photos folder (images.csv + images/)")
    required: bool = Field(False, description=(
        "false: a missing source folder trains on the catalog alone and says so in the log and "
        "the manifest (the project runs without the shared data); true: refuse to train"))
    table: str = Field("benchmark/suites/photos/real_photos.yaml", description=(
        "reviewed label -> slot/categories table with the photographer split"))
    templates: list[PhotoTemplate] = Field(default_factory=lambda: [
        PhotoTemplate(text="{category}", weight=2.0), PhotoTemplate(text="{slot}"),
        PhotoTemplate(text="{label}")])
    background_size: int = Field(48, ge=16, le=256, description="side of the cached border crops")
    answers: str | None = Field(None, description=(
        "a feedback store (feedback.sqlite) whose kiosk photo answers, kept with the shopper's "
        "consent, join the train photographers' photos (null: none)"))


class TextTemplate(StrictModel):
    """A caption pattern like '{colour} {category} for {gender}'; used when all its fields exist."""

    text: str
    weight: float = Field(1.0, gt=0)

    @field_validator("text")
    @classmethod
    def _fields_known(cls, v: str) -> str:
        names = template_fields(v)
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


class SlotHeadConfig(StrictModel):
    """A linear slot head on the image vector trained with cross-entropy next to the contrastive
    loss (`mmrec.embed.slot_head`); weight 0: no head."""

    weight: float = Field(0.0, ge=0, description="cross-entropy weight relative to the contrastive loss")
    scale: float = Field(10.0, gt=0, description="the unit vector is scaled by this before the head")


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
    kiosk: KioskAugmentConfig = Field(default_factory=KioskAugmentConfig)
    real_photos: RealPhotoPairsConfig = Field(default_factory=RealPhotoPairsConfig)
    slot_head: SlotHeadConfig = Field(default_factory=SlotHeadConfig)
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

    @model_validator(mode="after")
    def _photo_source(self) -> "TrainConfig":
        needs = [k for k, on in (("train.real_photos.share", self.real_photos.share > 0),
                                 ("train.kiosk.backgrounds=real_photos",
                                  self.kiosk.p > 0 and self.kiosk.backgrounds == "real_photos")) if on]
        if needs and not self.real_photos.source:
            raise ValueError(f"{' and '.join(needs)} need train.real_photos.source (the real_photos "
                             "folder, e.g. ../shared/data/real_photos)")
        return self

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
