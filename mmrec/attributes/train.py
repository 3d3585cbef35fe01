"""`mmrec sft train`: the base stage (mini) and the LoRA SFT stage, on transformers' Trainer.

- base stage (mini/tiny only, ``vlm_base`` artifact): trains mmrec's BPE tokenizer, builds a
  random Qwen2.5-VL of the configured size and trains every parameter on image -> product
  title captioning. This is the mini profile's stand-in for a pretrained checkpoint: LoRA on a
  random base plateaus and learns to ignore the image (STACK-NOTES). Trained once, reused.
- LoRA stage (``vlm`` artifact): peft LoRA over the base (mini: the ``vlm_base`` artifact;
  standard: a hub/local Qwen-VL checkpoint) on the attribute records; per-attribute accuracy
  and macro-F1 on validation products every ``eval_steps``, best adapter kept by macro-F1.

Both log one JSON line per logging step (loss, grad_norm, learning_rate, token_accuracy,
entropy) and per evaluation, checkpoint every ``save_steps`` and resume with ``resume=True``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pyarrow.parquet as pq

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.attributes.config import SftConfig, StageTrain
from mmrec.attributes.data import Collator, Mirrored, PixelCache, encode_records
from mmrec.attributes.dataset.build import KIND as DATASET_KIND, read_jsonl
from mmrec.attributes.losses import ExtraLoss, LossContext, build_extra_losses
from mmrec.attributes.photo_labels import load_training_photos, photo_training
from mmrec.attributes.prompts import PromptSet, tokenizer_corpus
from mmrec.attributes.tagger import vlm_input
from mmrec.attributes.trainer import (ScheduleClock, WeightAverage, attribute_eval_callback, callbacks,
                                      quiet_console, trainer_class, training_args, weight_average_callback)
from mmrec.errors import ConfigError

LOG_FILE = "train_log.jsonl"


# ----------------------------------------------------------------------------------- inputs
@dataclass
class DatasetParts:
    art: Artifact
    prompts: PromptSet
    fields: list[str]
    values: dict[str, list[str]]
    products: list[dict[str, Any]]

    def records(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.art.file(f"{name}.jsonl"))

    def split(self, name: str) -> list[dict[str, Any]]:
        return [p for p in self.products if p["split"] == name]


def load_parts(store: ArtifactStore, ref: str | None) -> DatasetParts:
    art = store.resolve(ref, DATASET_KIND)
    spec = json.loads(art.file("fields.json").read_text())
    prompts = PromptSet.model_validate_json(art.file("prompts.json").read_text())
    products = pq.read_table(art.file("products.parquet")).to_pylist()
    return DatasetParts(art, prompts, spec["fields"], spec["values"], products)


def pixel_cache(store: ArtifactStore, parts: DatasetParts, size: int, *, progress: bool = False,
                extra_paths: Sequence[str] = ()) -> PixelCache:
    """Every dataset image (and ``extra_paths``: real photos) squashed to ``size`` px, cached under
    ``<artifacts>/.cache/sft_pixels``."""
    return PixelCache.build([p["image_path"] for p in parts.products] + list(extra_paths), size,
                            store.root / ".cache" / "sft_pixels", progress=progress)


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


# ----------------------------------------------------------------------------------- helpers
def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _prepare_output(output_dir: Path, resume: bool) -> None:
    if output_dir.exists() and not resume:
        shutil.rmtree(output_dir)  # a fresh run must not pick up another run's checkpoints
    output_dir.mkdir(parents=True, exist_ok=True)


def _has_checkpoint(output_dir: Path) -> bool:
    return any(p.name.startswith("checkpoint-") for p in output_dir.glob("checkpoint-*"))


def _examples(parts: DatasetParts, names: Sequence[str], tasks: Sequence[str], processor,
              cache: PixelCache | None, *, lowercase: bool = False) -> list:
    recs = [r for n in names for r in parts.records(n) if r["task"] in tasks]
    if not recs:
        raise ConfigError(f"no records of tasks {list(tasks)} in {[f'{n}.jsonl' for n in names]} of "
                          f"{parts.art.kind}/{parts.art.version}")
    return encode_records(recs, processor, cache.index if cache is not None else None,
                          lowercase_answers=lowercase)


def augmented(examples: list, st: StageTrain) -> list | Mirrored:
    """The training set as the Trainer sees it (never for eval data): mirrored copies if ``hflip``."""
    return Mirrored(examples) if st.hflip else examples


def extra_losses(stage: str, specs: dict[str, dict[str, Any]], parts: DatasetParts, model, processor,
                 cache: PixelCache | None, store: ArtifactStore, seed: int) -> list[ExtraLoss]:
    """The stage's extra-loss plug-ins (`mmrec.attributes.losses`), built before the Trainer: a
    plug-in may add a head to the model, which the Trainer must then optimise and checkpoint."""
    ctx = LossContext(stage=stage, model=model, processor=processor, fields=parts.fields, values=parts.values,
                      unknown=parts.prompts.unknown, products=parts.products, cache=cache, store=store, seed=seed)
    return build_extra_losses(specs, ctx)


def loss_metrics(extras: list[ExtraLoss], st: StageTrain) -> dict[str, Any]:
    """What the artifact records of the configured plug-ins (nothing when none are configured)."""
    if not st.extra_losses:
        return {}
    return {"extra_losses": {x.name: x.summary() for x in extras}}


def averaging(model, st: StageTrain) -> tuple[WeightAverage | None, list]:
    """The stage's weight average (None when off) and its callback, built once the trainable
    parameters are final (after LoRA is applied / the distillation head is added)."""
    if st.weight_average_decay is None:
        return None, []
    averager = WeightAverage(model, st.weight_average_decay)
    return averager, [weight_average_callback(averager)]


def training_collator(processor, cache: PixelCache | None, extras: list[ExtraLoss] = ()) -> Collator:
    """The collator of both training stages: left-padded, so that every answer ends in the last
    column and the trainer computes logits over the answer columns only (answer_logits_only)."""
    return Collator(processor, cache, left_pad=True, extras=extras)


def eval_loss(model, examples: list, collator: Collator, batch_size: int = 64) -> float:
    """Mean token loss of ``examples`` (answer tokens only)."""
    import torch

    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = collator(examples[i:i + batch_size])
            batch = {k: v.to(model.device) for k, v in batch.items()}
            tokens = int((batch["labels"][:, 1:] != -100).sum())
            total += float(model(**batch).loss) * tokens
            n += tokens
    model.train()
    return total / max(n, 1)


# ----------------------------------------------------------------------------------- base stage
def train_base(store: ArtifactStore, cfg: SftConfig, *, progress: bool = False, resume: bool = False,
               profile: str = "mini") -> Artifact:
    """Mini/tiny base stage: tokenizer + random Qwen2.5-VL + full-parameter captioning."""
    from mmrec.attributes.model import build_mini, mini_tokenizer, save_model

    if cfg.model.kind != "mini":
        raise ConfigError("the base stage builds mini/tiny models; a standard model is already "
                          "pretrained: run `mmrec sft train --stage lora`")
    st = cfg.base_stage
    set_threads(st.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    parts = load_parts(store, cfg.dataset)
    arch = cfg.model.arch
    # train titles only: test products must not shape even the vocabulary
    titles = [p["title"].lower() if st.lowercase_answers else p["title"] for p in parts.split("train")]
    atomic = [v for f in parts.fields for v in parts.values.get(f, [])] + [parts.prompts.unknown]
    tokenizer = mini_tokenizer(arch, [*tokenizer_corpus(parts.prompts, parts.fields, parts.values), *titles],
                               atomic_words=atomic)
    model, processor = build_mini(arch, tokenizer, seed=st.seed)
    cache = pixel_cache(store, parts, arch.image_size, progress=progress)
    train_ex = _examples(parts, ["caption_train"], st.tasks, processor, cache, lowercase=st.lowercase_answers)
    val_ex = _examples(parts, ["caption_val"], ["caption"], processor, cache,
                       lowercase=st.lowercase_answers)[:512]

    specs = dict(st.extra_losses)
    if cfg.distill.weight > 0:
        if "distill" in specs:
            raise ConfigError("distillation is configured twice: by distill.weight and by "
                              "base_stage.extra_losses.distill; keep the distill: section")
        specs = {"distill": {"weight": cfg.distill.weight, "vectors": cfg.distill.vectors}, **specs}
    extras = extra_losses("base", specs, parts, model, processor, cache, store, st.seed)

    out_dir = Path(cfg.output_dir) / f"base-{parts.art.version}"
    _prepare_output(out_dir, resume)
    log_path = out_dir / LOG_FILE
    JsonlLog, TimeBudget = callbacks()
    clock = ScheduleClock(st.max_steps, st.time_budget_min, st.budget_clock)
    _, avg_cbs = averaging(model, st)
    trainer = trainer_class()(model=model, args=training_args(st, out_dir, progress=progress),
                               train_dataset=augmented(train_ex, st),
                               data_collator=training_collator(processor, cache, extras),
                               callbacks=[JsonlLog(log_path, "base"), TimeBudget(clock), *avg_cbs],
                               clock=clock, min_lr_ratio=st.min_lr_ratio, extra_losses=extras)
    quiet_console(trainer, progress)
    t_train, c_train = time.perf_counter(), time.process_time()
    result = trainer.train(resume_from_checkpoint=resume and _has_checkpoint(out_dir))
    train_s, train_cpu = time.perf_counter() - t_train, time.process_time() - c_train
    for x in extras:
        x.close()  # the distillation head goes: the saved base is a plain Qwen2.5-VL
    val = eval_loss(model, val_ex, Collator(processor, cache))
    n_params = sum(p.numel() for p in model.parameters())
    metrics = {"val_caption_loss": round(val, 4), "train_loss": round(result.training_loss, 4),
               "steps": trainer.state.global_step, "train_seconds": round(train_s, 1),
               "train_cpu_seconds": round(train_cpu, 1),
               "total_seconds": round(time.perf_counter() - t0, 1),
               "total_cpu_seconds": round(time.process_time() - c0, 1), "parameters": n_params,
               "vocab_size": len(tokenizer), "profile": profile,
               "distill": next((x.summary() for x in extras if x.name == "distill"), None),
               **loss_metrics(extras, st)}
    with store.write(kinds.VLM_BASE, config=cfg.model_dump(mode="json")) as w:
        save_model(model, processor, w.path / "model")
        shutil.copy(log_path, w.path / LOG_FILE)
        w.add_artifact_input(parts.art)
        w.metrics = metrics
    return store.load(kinds.VLM_BASE, w.version)


# ----------------------------------------------------------------------------------- LoRA stage
def lora_target_regex(lora) -> str:
    """peft ``target_modules`` as a regex: LM linears always, vision blocks/merger if asked.

    Names like gate_proj also exist in the vision MLP, so plain names would silently adapt the
    vision tower too; the regex scopes them to the language model.
    """
    names = "|".join(lora.target_modules)
    parts = [rf".*language_model\..*\.({names})"]
    if lora.vision:
        parts.append(r".*visual\.blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.gate_proj|mlp\.up_proj|mlp\.down_proj)")
    if lora.merger:
        parts.append(r".*visual\.merger\.mlp\.(0|2)")
    return "|".join(f"(?:{p})" for p in parts)


def apply_lora(model, cfg: SftConfig, *, init_weights: bool = True):
    from peft import LoraConfig, get_peft_model

    lc = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                    target_modules=lora_target_regex(cfg.lora), modules_to_save=cfg.lora.modules_to_save or None,
                    init_lora_weights=init_weights, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lc)
    if cfg.lora_stage.gradient_checkpointing:
        # with a frozen base the inputs carry no grad; checkpointed blocks would drop the LoRA grads
        peft_model.enable_input_require_grads()
    return peft_model


def base_reference(name_or_path: str) -> str:
    """How an adapter artifact names its pretrained base: a local directory as an absolute path
    (a relative one would resolve against whatever directory the tagger is later loaded from),
    a hub name as it is."""
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.is_dir() else name_or_path


def load_base(store: ArtifactStore, cfg: SftConfig, *, device: str = "cpu"):
    """The model LoRA starts from: the mini ``vlm_base`` artifact or a pretrained checkpoint."""
    from mmrec.attributes.model import load_model

    if cfg.model.kind == "mini":
        base_art = store.load(kinds.VLM_BASE, cfg.model.base_version)
        model, processor = load_model(cfg.model, base_art.path / "model", device=device)
        return model, processor, base_art
    model, processor = load_model(cfg.model, device=device)
    return model, processor, None


def train_lora(store: ArtifactStore, cfg: SftConfig, *, progress: bool = False, resume: bool = False,
               profile: str = "mini") -> Artifact | None:
    """LoRA SFT on the attribute records; writes the ``vlm`` artifact (adapter + best by macro-F1).

    Returns None on the non-main processes of a multi-GPU run (only rank 0 writes).
    """
    from mmrec.attributes.predict import Predictor
    from mmrec.taxonomy import default_taxonomy

    st = cfg.lora_stage
    set_threads(st.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    parts = load_parts(store, cfg.dataset)
    model, processor, base_art = load_base(store, cfg)
    mini = cfg.model.kind == "mini"
    # the base decides the input size (a reused base may predate a config change)
    size = int(base_art.config["model"]["arch"]["image_size"]) if mini else None
    if mini:
        vlm_input(base_art)  # refuses a base trained on another image fit (an experiment's)
    photos = load_training_photos(cfg.real_photos, _log) if cfg.real_photos.share > 0 else []
    cache = (pixel_cache(store, parts, size, progress=progress, extra_paths=[p.uri for p in photos])
             if mini else None)
    train_ex = _examples(parts, ["train"], st.tasks, processor, cache, lowercase=st.lowercase_answers)
    photo_ex, photo_loss, photo_info = photo_training(
        cfg.real_photos, parts, processor, cache.index if cache is not None else None, len(train_ex),
        photos, _log)
    train_ex += photo_ex
    model = apply_lora(model, cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    val = parts.split("val")
    if st.eval_samples:
        val = val[:st.eval_samples]
    val_truth = [{f: p.get(f) for f in parts.fields} for p in val]
    tax = default_taxonomy()

    def predictor(m):
        return Predictor(m, processor, parts.prompts, parts.fields, parts.values, tax, image_size=size,
                         batch_size=cfg.decode.batch_size, max_new_tokens=cfg.decode.max_new_tokens)

    if mini:
        rows = [cache.index[p["image_path"]] for p in val]

        def predict_fn(m):
            return predictor(m).predict_cached(cache, rows)
    else:  # standard models read the validation photos from disk (no fixed-size cache)
        from mmrec.images import load_image

        def predict_fn(m):
            return predictor(m).predict_images([load_image(p["image_path"]) for p in val])

    out_dir = Path(cfg.output_dir) / f"lora-{parts.art.version}"
    _prepare_output(out_dir, resume)
    log_path = out_dir / LOG_FILE
    best_dir = out_dir / "best"
    JsonlLog, TimeBudget = callbacks()
    clock = ScheduleClock(st.max_steps, st.time_budget_min, st.budget_clock)
    extras = extra_losses("lora", st.extra_losses, parts, model, processor, cache, store, st.seed)
    if photo_loss is not None:
        extras.append(photo_loss)
    averager, avg_cbs = averaging(model, st)
    cbs = [JsonlLog(log_path, "lora"), TimeBudget(clock), *avg_cbs]  # averaging before validation
    if val:
        cbs.append(attribute_eval_callback(predict_fn, val_truth, parts.fields, st, best_dir, log_path,
                                           averager))
    trainer = trainer_class()(model=model, args=training_args(st, out_dir, progress=progress),
                               train_dataset=augmented(train_ex, st),
                               data_collator=training_collator(processor, cache, extras),
                               callbacks=cbs, clock=clock, min_lr_ratio=st.min_lr_ratio, extra_losses=extras)
    quiet_console(trainer, progress)
    t_train, c_train = time.perf_counter(), time.process_time()
    result = trainer.train(resume_from_checkpoint=resume and _has_checkpoint(out_dir))
    train_s, train_cpu = time.perf_counter() - t_train, time.process_time() - c_train
    for x in extras:
        x.close()
    if not trainer.is_world_process_zero():
        return None  # one process writes the artifact
    best = json.loads((out_dir / "best.json").read_text()) if (out_dir / "best.json").is_file() else None
    with store.write(kinds.VLM, config=cfg.model_dump(mode="json")) as w:
        adapter_src = best_dir if best_dir.is_dir() else None
        if adapter_src is not None:
            shutil.copytree(adapter_src, w.path / "adapter")
        else:
            model.save_pretrained(w.path / "adapter")
        if mini:
            shutil.copytree(base_art.path / "model", w.path / "base")
            w.add_artifact_input(base_art)
        else:
            processor.save_pretrained(w.path / "processor")
        (w.path / "fields.json").write_text(json.dumps({"fields": parts.fields, "values": parts.values,
                                                        "unknown": parts.prompts.unknown}, indent=1))
        (w.path / "prompts.json").write_text(parts.prompts.model_dump_json(indent=1))
        shutil.copy(log_path, w.path / LOG_FILE)
        w.add_artifact_input(parts.art)
        w.extra.update({"format": "adapter", "base": "base" if mini else base_reference(cfg.model.name_or_path),
                        "image_size": size, "profile": profile})
        w.metrics = {"steps": trainer.state.global_step, "train_loss": round(result.training_loss, 4),
                     "train_seconds": round(train_s, 1), "train_cpu_seconds": round(train_cpu, 1),
                     "total_seconds": round(time.perf_counter() - t0, 1),
                     "total_cpu_seconds": round(time.process_time() - c0, 1),
                     "trainable_parameters": trainable, "best_step": (best or {}).get("step"),
                     "best_val_selection_macro_f1": (best or {}).get("score"),
                     "best_selection_fields": (best or {}).get("fields"), "profile": profile,
                     **loss_metrics(extras, st),
                     "real_photos": {**photo_info, **({"category_loss": photo_loss.summary()} if photo_loss else {})}}
    return store.load(kinds.VLM, w.version)
