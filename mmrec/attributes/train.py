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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pyarrow.parquet as pq

from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.attributes.config import SftConfig, StageTrain
from mmrec.attributes.data import Collator, Mirrored, PixelCache, encode_records
from mmrec.attributes.dataset.build import KIND as DATASET_KIND, read_jsonl
from mmrec.attributes.prompts import PromptSet, tokenizer_corpus
from mmrec.errors import ConfigError

BASE_KIND = "vlm_base"
VLM_KIND = "vlm"
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


def pixel_cache(store: ArtifactStore, parts: DatasetParts, size: int, *, progress: bool = False) -> PixelCache:
    """Every dataset image at ``size`` px, cached under ``<artifacts>/.cache/sft_pixels``."""
    return PixelCache.build([p["image_path"] for p in parts.products], size,
                            store.root / ".cache" / "sft_pixels", progress=progress)


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


# ----------------------------------------------------------------------------------- trainer
def _trainer_class():
    import torch
    from transformers import Trainer

    class SftTrainer(Trainer):
        """Trainer that logs token accuracy and predictive entropy on the answer tokens and
        schedules the learning rate over a `ScheduleClock` (steps or wall-time budget)."""

        def __init__(self, *a, clock: ScheduleClock, min_lr_ratio: float, **kw):
            super().__init__(*a, **kw)
            self._acc = [0.0, 0.0, 0]  # sum accuracy, sum entropy, batches
            self._clock, self._min_lr_ratio = clock, min_lr_ratio

        def create_scheduler(self, num_training_steps: int, optimizer=None):
            if self.lr_scheduler is None:
                opt = optimizer if optimizer is not None else self.optimizer
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                    opt, lr_lambda(self._clock, self.args.get_warmup_steps(num_training_steps),
                                   self._min_lr_ratio))
                self._created_lr_scheduler = True
            return self.lr_scheduler

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True,
                                                 num_items_in_batch=num_items_in_batch)
            labels = inputs.get("labels")
            if labels is not None and model.training:
                with torch.no_grad():
                    logits = outputs.logits[:, :-1]
                    target = labels[:, 1:]
                    m = target != -100
                    if m.any():
                        sel = logits[m].float()
                        logp = torch.log_softmax(sel, dim=-1)
                        self._acc[0] += float((sel.argmax(-1) == target[m]).float().mean())
                        self._acc[1] += float(-(logp.exp() * logp).sum(-1).mean())
                        self._acc[2] += 1
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, start_time=None):
            if self._acc[2] and "loss" in logs:
                logs["token_accuracy"] = round(self._acc[0] / self._acc[2], 4)
                logs["entropy"] = round(self._acc[1] / self._acc[2], 4)
                self._acc = [0.0, 0.0, 0]
            super().log(logs, start_time)

    return SftTrainer


def _callbacks():
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        def __init__(self, path: Path, stage: str):
            self.path, self.stage, self.t0 = path, stage, time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kw):
            row = {"stage": self.stage, "step": state.global_step,
                   "time_s": round(time.perf_counter() - self.t0, 1), **(logs or {})}
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    class TimeBudget(TrainerCallback):
        """Starts the schedule's clock with training and stops training when the budget is spent."""

        def __init__(self, clock: "ScheduleClock"):
            self.clock = clock

        def on_train_begin(self, args, state, control, **kw):
            self.clock.start()

        def on_step_end(self, args, state, control, **kw):
            if self.clock.spent():
                control.should_training_stop = True
                control.should_save = True

    return JsonlLog, TimeBudget


class ScheduleClock:
    """Training progress in [0, 1]: steps done / max_steps, or time spent / budget if later.

    With a time budget the learning rate completes its cosine decay when the budget ends
    instead of being cut off half-way (STACK-NOTES' recipe: "cosine to 0.1x over the time
    budget"). The default clock is this process's CPU time: on a 2-core machine shared with
    other jobs, wall time measures the neighbours, CPU time measures the training (with one
    torch thread, CPU seconds = the wall seconds of an idle machine).
    """

    def __init__(self, max_steps: int, budget_min: float | None, clock: str = "cpu"):
        self.max_steps, self.budget_s, self.t0 = max_steps, (budget_min or 0) * 60, None
        self._now = time.process_time if clock == "cpu" else time.perf_counter

    def start(self) -> None:
        self.t0 = self._now()

    def elapsed(self) -> float:
        return 0.0 if self.t0 is None else self._now() - self.t0

    def progress(self, step: int) -> float:
        p = step / self.max_steps
        if self.budget_s:
            p = max(p, self.elapsed() / self.budget_s)
        return min(p, 1.0)

    def spent(self) -> bool:
        return bool(self.budget_s) and self.elapsed() >= self.budget_s


def lr_lambda(clock: ScheduleClock, warmup_steps: int, min_ratio: float):
    """Linear warmup (steps), then cosine from 1 to ``min_ratio`` over the clock's progress."""
    import math

    def f(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        cos = min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * clock.progress(step)))
        return warm * cos

    return f


def _quiet_console(trainer, progress: bool) -> None:
    """Without progress bars the Trainer prints every log dict; the JSONL log has them already."""
    from transformers.trainer_callback import PrinterCallback

    if not progress:
        trainer.remove_callback(PrinterCallback)


def training_args(st: StageTrain, output_dir: Path, *, progress: bool):
    import torch
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    bf16 = (cuda and torch.cuda.is_bf16_supported()) if st.bf16 == "auto" else bool(st.bf16)
    if bf16 and not cuda:
        raise ConfigError("bf16: true needs a CUDA GPU with bf16 support; use bf16: auto on CPU")
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=st.max_steps, per_device_train_batch_size=st.batch_size,
        gradient_accumulation_steps=st.grad_accum, learning_rate=st.lr,
        warmup_steps=st.warmup_steps, weight_decay=st.weight_decay, adam_beta1=st.adam_beta1,
        adam_beta2=st.adam_beta2, max_grad_norm=st.max_grad_norm, logging_steps=st.logging_steps,
        save_steps=st.save_steps, save_total_limit=st.save_total_limit, seed=st.seed, data_seed=st.seed,
        bf16=bf16, activation_checkpointing=st.gradient_checkpointing, report_to=[],
        dataloader_num_workers=0, dataloader_pin_memory=False, remove_unused_columns=False,
        use_cpu=not cuda, disable_tqdm=not progress, eval_strategy="no", save_strategy="steps",
        logging_first_step=True,
    )


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

    out_dir = Path(cfg.output_dir) / f"base-{parts.art.version}"
    _prepare_output(out_dir, resume)
    log_path = out_dir / LOG_FILE
    JsonlLog, TimeBudget = _callbacks()
    clock = ScheduleClock(st.max_steps, st.time_budget_min, st.budget_clock)
    trainer = _trainer_class()(model=model, args=training_args(st, out_dir, progress=progress),
                               train_dataset=Mirrored(train_ex) if st.hflip else train_ex,
                               data_collator=Collator(processor, cache),
                               callbacks=[JsonlLog(log_path, "base"), TimeBudget(clock)],
                               clock=clock, min_lr_ratio=st.min_lr_ratio)
    _quiet_console(trainer, progress)
    t_train, c_train = time.perf_counter(), time.process_time()
    result = trainer.train(resume_from_checkpoint=resume and _has_checkpoint(out_dir))
    train_s, train_cpu = time.perf_counter() - t_train, time.process_time() - c_train
    val = eval_loss(model, val_ex, Collator(processor, cache))
    n_params = sum(p.numel() for p in model.parameters())
    metrics = {"val_caption_loss": round(val, 4), "train_loss": round(result.training_loss, 4),
               "steps": trainer.state.global_step, "train_seconds": round(train_s, 1),
               "train_cpu_seconds": round(train_cpu, 1),
               "total_seconds": round(time.perf_counter() - t0, 1),
               "total_cpu_seconds": round(time.process_time() - c0, 1), "parameters": n_params,
               "vocab_size": len(tokenizer), "profile": profile}
    with store.write(BASE_KIND, config=cfg.model_dump(mode="json")) as w:
        save_model(model, processor, w.path / "model")
        shutil.copy(log_path, w.path / LOG_FILE)
        w.add_artifact_input(parts.art)
        w.metrics = metrics
    return store.load(BASE_KIND, w.version)


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


def load_base(store: ArtifactStore, cfg: SftConfig, *, device: str = "cpu"):
    """The model LoRA starts from: the mini ``vlm_base`` artifact or a pretrained checkpoint."""
    from mmrec.attributes.model import load_model

    if cfg.model.kind == "mini":
        base_art = store.load(BASE_KIND, cfg.model.base_version)
        model, processor = load_model(cfg.model, base_art.path / "model", device=device)
        return model, processor, base_art
    model, processor = load_model(cfg.model, device=device)
    return model, processor, None


def _eval_callback(predict_fn, val_truth, parts: DatasetParts, st: StageTrain, best_dir: Path,
                   log_path: Path):
    """``predict_fn(model) -> list[Prediction]`` over the validation products, in ``val_truth`` order."""
    from transformers import TrainerCallback

    from mmrec.attributes.metrics import attribute_report, headline
    from mmrec.taxonomy import default_taxonomy

    tax = default_taxonomy()

    class AttributeEval(TrainerCallback):
        """Per-attribute accuracy / macro-F1 on validation products; keeps the best adapter."""

        def __init__(self):
            state_file = best_dir.parent / "best.json"
            self.state_file = state_file
            self.best = json.loads(state_file.read_text()) if state_file.is_file() else {"macro_f1": -1.0}

        def evaluate(self, model, step: int) -> dict[str, Any]:
            t = time.perf_counter()
            was_training = model.training
            model.eval()
            preds = predict_fn(model)
            if was_training:
                model.train()
            report = attribute_report(val_truth, [p.values() for p in preds], parts.fields, tax)
            row = {"stage": "lora", "step": step, "eval": True, "val_macro_f1": report["summary"]["macro_f1"],
                   "val_mean_accuracy": report["summary"]["mean_accuracy"],
                   **{f"val_acc_{k}": v for k, v in headline(report).items()},
                   "eval_seconds": round(time.perf_counter() - t, 1)}
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            if report["summary"]["macro_f1"] > self.best["macro_f1"]:
                tmp = best_dir.with_name(best_dir.name + ".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                model.save_pretrained(tmp)
                (tmp / "val_report.json").write_text(json.dumps(report, indent=1))
                old = best_dir.with_name(best_dir.name + ".old")
                if best_dir.exists():
                    os.replace(best_dir, old)
                os.replace(tmp, best_dir)  # at least one complete best/ survives a crash
                shutil.rmtree(old, ignore_errors=True)
                self.best = {"macro_f1": report["summary"]["macro_f1"], "step": step}
                self.state_file.write_text(json.dumps(self.best))
            return row

        def on_step_end(self, args, state, control, model=None, **kw):
            # Multi-GPU (DDP / ZeRO-2): rank 0 evaluates on its full model copy while the other
            # ranks wait at the next all-reduce. ZeRO-3 shards the weights: set eval_steps null.
            if not state.is_world_process_zero:
                return
            last = state.global_step >= state.max_steps or control.should_training_stop
            if (st.eval_steps and state.global_step % st.eval_steps == 0) or last:
                self.evaluate(model, state.global_step)

    return AttributeEval()


def train_lora(store: ArtifactStore, cfg: SftConfig, *, progress: bool = False, resume: bool = False,
               profile: str = "mini") -> Artifact | None:
    """LoRA SFT on the attribute records; writes the ``vlm`` artifact (adapter + best by macro-F1).

    Returns None on the non-main processes of a multi-GPU run (only rank 0 writes).
    """
    from mmrec.attributes.model import save_model
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
    cache = pixel_cache(store, parts, size, progress=progress) if mini else None
    train_ex = _examples(parts, ["train"], st.tasks, processor, cache, lowercase=st.lowercase_answers)
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
    JsonlLog, TimeBudget = _callbacks()
    clock = ScheduleClock(st.max_steps, st.time_budget_min, st.budget_clock)
    callbacks = [JsonlLog(log_path, "lora"), TimeBudget(clock)]
    if val:
        callbacks.append(_eval_callback(predict_fn, val_truth, parts, st, best_dir, log_path))
    trainer = _trainer_class()(model=model, args=training_args(st, out_dir, progress=progress),
                               train_dataset=Mirrored(train_ex) if st.hflip else train_ex,
                               data_collator=Collator(processor, cache),
                               callbacks=callbacks, clock=clock, min_lr_ratio=st.min_lr_ratio)
    _quiet_console(trainer, progress)
    t_train, c_train = time.perf_counter(), time.process_time()
    result = trainer.train(resume_from_checkpoint=resume and _has_checkpoint(out_dir))
    train_s, train_cpu = time.perf_counter() - t_train, time.process_time() - c_train
    if not trainer.is_world_process_zero():
        return None  # one process writes the artifact
    best = json.loads((out_dir / "best.json").read_text()) if (out_dir / "best.json").is_file() else None
    with store.write(VLM_KIND, config=cfg.model_dump(mode="json")) as w:
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
        w.extra.update({"format": "adapter", "base": "base" if mini else cfg.model.name_or_path,
                        "image_size": size, "profile": profile})
        w.metrics = {"steps": trainer.state.global_step, "train_loss": round(result.training_loss, 4),
                     "train_seconds": round(train_s, 1), "train_cpu_seconds": round(train_cpu, 1),
                     "total_seconds": round(time.perf_counter() - t0, 1),
                     "total_cpu_seconds": round(time.process_time() - c0, 1),
                     "trainable_parameters": trainable, "best_step": (best or {}).get("step"),
                     "best_val_macro_f1": (best or {}).get("macro_f1"), "profile": profile}
    return store.load(VLM_KIND, w.version)
