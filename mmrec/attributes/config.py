"""Typed config of the tagger's model, training stages, decoding and evaluation (stage ``sft``).

Layered as every stage: defaults here < ``configs/sft.yaml`` < the profile's ``sft:`` section
< ``--config FILE`` < ``--set key=value``. The three profiles differ only in values:
``tiny`` (tests, seconds), ``mini`` (the offline 2-core CPU recipe measured in STACK-NOTES) and
``standard`` (a real Qwen2.5-VL checkpoint on GPUs).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mmrec.attributes.losses import check_specs
from mmrec.config import StrictModel


class MiniArch(StrictModel):
    """Dimensions of an offline Qwen2.5-VL built from scratch (profiles tiny and mini)."""

    vocab_size: int = Field(4096, ge=300, description="BPE vocabulary trained by mmrec")
    hidden_size: int = Field(128, ge=16)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
    vision_hidden_size: int = Field(128, ge=16)
    vision_layers: int = Field(2, ge=1)
    vision_heads: int = Field(4, ge=1)
    vision_mlp_ratio: float = Field(4.0, gt=0)
    image_size: int = Field(112, ge=28, description="square input side; a multiple of 28 (patch 14 x merge "
                                                     "2); every photo is squashed to it (mmrec.images.resize_square)")
    max_position_embeddings: int = 1024
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False

    @model_validator(mode="before")
    @classmethod
    def _legacy_image_fit(cls, data: Any) -> Any:
        # configs recorded in vlm / vlm_base artifacts before 2026-12-07 carry image_fit, which
        # was "squash" unless an experiment set "foreground" (an experiment: lab/README.md)
        if isinstance(data, dict) and "image_fit" in data:
            fit = data["image_fit"]
            if fit != "squash":
                raise ValueError(f"image_fit {fit!r} is not a fit the product ships: photos are squashed "
                                 "to the square (image_fit 'squash', or leave the key out); the "
                                 "'foreground' experiment is recorded in lab/README.md")
            data = {k: v for k, v in data.items() if k != "image_fit"}
        return data

    @model_validator(mode="after")
    def _dims(self) -> MiniArch:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} must be a multiple of num_kv_heads {self.num_kv_heads}")
        if (self.hidden_size // self.num_heads) % 8:
            raise ValueError(f"head_dim {self.hidden_size // self.num_heads} must be a multiple of 8 "
                             "(the 3-axis mrope sections split head_dim/2)")
        if self.vision_hidden_size % self.vision_heads:
            raise ValueError(f"vision_hidden_size {self.vision_hidden_size} must be divisible by "
                             f"vision_heads {self.vision_heads}")
        if self.image_size % 28:
            raise ValueError(f"image_size must be a multiple of 28 (patch 14 x merge 2), got {self.image_size}")
        return self


class ModelConfig(StrictModel):
    kind: Literal["mini", "standard"] = Field(
        "mini", description="mini: built offline from `arch`; standard: a pretrained Qwen2/2.5-VL")
    name_or_path: str | None = Field(
        None, description="standard: hub name (e.g. Qwen/Qwen2.5-VL-3B-Instruct) or local directory")
    arch: MiniArch = Field(default_factory=MiniArch)
    min_pixels: int | None = Field(None, ge=784, description="pixel budget per image (null: mini image_size**2)")
    max_pixels: int | None = Field(None, ge=784, description="cap: keeps one image from becoming hundreds of tokens")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    base_version: str | None = Field(None, description="mini: vlm_base artifact to start LoRA from (null: CURRENT)")

    @model_validator(mode="after")
    def _standard_needs_name(self) -> ModelConfig:
        if self.kind == "standard" and not self.name_or_path:
            raise ValueError("model.kind 'standard' needs model.name_or_path, e.g. "
                             "Qwen/Qwen2.5-VL-3B-Instruct or a local checkpoint directory")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} > max_pixels {self.max_pixels}")
        return self

    def pixel_budget(self) -> tuple[int, int]:
        side = self.arch.image_size * self.arch.image_size
        if self.kind == "mini":
            return self.min_pixels or side, self.max_pixels or side
        return self.min_pixels or 128 * 28 * 28, self.max_pixels or 256 * 28 * 28


class LoraSettings(StrictModel):
    """peft LoRA. Defaults: every linear layer of the language model; the vision tower is opt-in."""

    r: int = Field(32, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="language-model module names (matched only under the language model)")
    vision: bool = Field(False, description="also adapt the vision blocks (attn qkv/proj + MLP)")
    merger: bool = Field(False, description="also adapt the patch merger MLP")
    modules_to_save: list[str] = Field(
        default_factory=lambda: ["lm_head"],
        description="trained in full and saved with the adapter (mini: the head learns the JSON vocabulary)")


class StageTrain(StrictModel):
    """One training stage (transformers Trainer arguments that matter here)."""

    lr: float = Field(2e-3, gt=0)
    batch_size: int = Field(32, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_steps: int = Field(1000, ge=1)
    warmup_steps: int = Field(30, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decays to lr * this")
    weight_decay: float = Field(0.01, ge=0)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    max_grad_norm: float = Field(1.0, gt=0)
    gradient_checkpointing: bool = False
    bf16: Literal["auto", True, False] = Field("auto", description="auto: on where the GPU supports it")
    seed: int = 0
    threads: int = Field(1, ge=1, description="torch CPU threads (the machine is shared)")
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(500, ge=1)
    save_total_limit: int = Field(2, ge=1)
    eval_steps: int | None = Field(500, ge=1, description="per-attribute val eval every N steps (null: at the end only)")
    eval_samples: int | None = Field(400, ge=1, description="val products per eval (null: all)")
    select_min_labelled: int = Field(
        100, ge=1, description="the best checkpoint is picked by the mean macro-F1 of the fields labelled "
                               "on at least this many of the evaluated val products (the rest are noise)")
    hflip: bool = Field(True, description="augment with mirrored images (each epoch: every record once each way)")
    time_budget_min: float | None = Field(
        None, gt=0, description="time budget: the cosine schedule runs over whichever of max_steps or "
                                "this budget ends first, and training stops there")
    budget_clock: Literal["cpu", "wall"] = Field(
        "cpu", description="cpu: this process's CPU time (robust to neighbours on a shared "
                           "machine); wall: elapsed time")
    weight_average_decay: float | None = Field(
        None, gt=0, lt=1, description="exponential moving average of the trainable weights with this decay "
                                      "per step (e.g. 0.999); validation, the best adapter and the final "
                                      "model use the average (null: off; not with ZeRO-3)")
    extra_losses: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="extra loss plug-ins added to the token loss, name -> parameters "
                                          "(mmrec.attributes.losses; experiments register theirs first)")
    tasks: list[Literal["json", "single", "caption"]] = Field(default_factory=lambda: ["json", "single"])
    lowercase_answers: bool = Field(
        False, description="lowercase the target text (mini base stage: title words then share "
                           "tokens with the lowercase taxonomy values the SFT stage predicts)")

    @field_validator("extra_losses")
    @classmethod
    def _extra_losses(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        check_specs(v)
        return v


class DecodeSettings(StrictModel):
    mode: Literal["constrained", "free"] = Field(
        "constrained", description="constrained: JSON skeleton forced, values from the taxonomy")
    max_new_tokens: int = Field(128, ge=8)
    batch_size: int = Field(64, ge=1)
    hflip_tta: bool = Field(True, description="constrained mode: choose each value from the mean probabilities "
                                               "of the image and its mirror image (2x the compute)")


class CnnBaseline(StrictModel):
    time_budget_s: float | None = Field(None, gt=0, description="null: the SFT stage's measured training time")
    width: int = Field(32, ge=8)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    threads: int | None = Field(None, ge=1, description="null: the SFT stage's training threads "
                                                          "(equal CPU time and parallelism)")


class EvalSettings(StrictModel):
    split: Literal["val", "test"] = "test"
    max_items: int | None = Field(None, ge=1, description="evaluate on the first N products (null: all)")
    base_model: bool = Field(True, description="also evaluate the model before SFT, prompted for JSON")
    cnn: bool = True
    probe: bool = Field(True, description="linear probe on the mini CLIP image embeddings when an encoder exists")
    cnn_baseline: CnnBaseline = Field(default_factory=CnnBaseline)


class DistillSettings(StrictModel):
    """Mini base stage: the vision tower also predicts the in-house CLIP's image vectors
    (``mmrec/attributes/distill.py``); the analogue of a real VLM's CLIP-pretrained vision tower."""

    weight: float = Field(0.0, ge=0, description="weight of the 1 - cosine loss next to captioning (0: off)")
    vectors: str | None = Field(None, description="vectors artifact version or path (null: CURRENT)")


class TaggerPhotos(StrictModel):
    """LoRA stage: real phone photos of the train photographers with their partial labels
    (``mmrec/attributes/photo_labels.py``): only the category reading gets a loss, set-valued
    over the categories the coarse label allows; val and test photographers never enter."""

    share: float = Field(0.0, ge=0, lt=1, description="share of the LoRA stage's training examples that "
                                                      "are real photos (0 = off; each photo repeated to reach it)")
    weight: float = Field(1.0, ge=0, description="weight of the set-valued category loss")
    source: str | None = Field(None, description="the real_photos folder (images.csv + images/)")
    required: bool = Field(False, description=(
        "false: a missing source trains on the catalog alone and says so in the log and the manifest; "
        "true: refuse to train"))
    table: str = Field("benchmark/suites/photos/real_photos.yaml",
                       description="reviewed label -> slot/categories table with the photographer split")
    answers: str | None = Field(None, description=(
        "a feedback store (feedback.sqlite) whose kiosk photo answers, kept with the shopper's "
        "consent, join the train photographers' photos (null: none)"))


class SftConfig(StrictModel):
    dataset: str | None = Field(None, description="sft_dataset version or path (null: CURRENT)")
    model: ModelConfig = Field(default_factory=ModelConfig)
    base_stage: StageTrain = Field(
        default_factory=lambda: StageTrain(tasks=["caption"], eval_steps=None, lowercase_answers=True),
        description="mini only: image -> title captioning, full parameters (the 'pretraining')")
    lora_stage: StageTrain = Field(default_factory=StageTrain)
    real_photos: TaggerPhotos = Field(default_factory=TaggerPhotos)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    distill: DistillSettings = Field(default_factory=DistillSettings)
    decode: DecodeSettings = Field(default_factory=DecodeSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    output_dir: str = Field("runs/sft", description="Trainer checkpoints (resume from here)")
