"""Trainer plumbing shared by both stages: the Trainer subclass (token accuracy, entropy, a
CPU-time-aware cosine schedule, the configured extra-loss plug-ins of `mmrec.attributes.losses`),
JSONL logging, the time budget, and the per-attribute validation callback that keeps the best
adapter by macro-F1.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from mmrec.attributes.config import StageTrain
from mmrec.errors import ConfigError

def trainer_class():
    import torch
    from transformers import Trainer

    class SftTrainer(Trainer):
        """Trainer that logs token accuracy and predictive entropy on the answer tokens and
        schedules the learning rate over a `ScheduleClock` (steps or wall-time budget)."""

        def __init__(self, *a, clock: ScheduleClock, min_lr_ratio: float, extra_losses=(), **kw):
            super().__init__(*a, **kw)
            self._acc = [0.0, 0.0, 0]  # sum accuracy, sum entropy, batches
            self._clock, self._min_lr_ratio = clock, min_lr_ratio
            self._extra = list(extra_losses)  # losses.ExtraLoss plug-ins, added in this order

        def create_scheduler(self, num_training_steps: int, optimizer=None):
            if self.lr_scheduler is None:
                opt = optimizer if optimizer is not None else self.optimizer
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                    opt, lr_lambda(self._clock, self.args.get_warmup_steps(num_training_steps),
                                   self._min_lr_ratio))
                self._created_lr_scheduler = True
            return self.lr_scheduler

        def _save(self, output_dir=None, state_dict=None):
            # transformers 5 writes a full (non-LoRA) model's checkpoint in the hub's original key
            # layout ("visual.*", "model.layers.*"), but Trainer._load_from_checkpoint reads it back
            # with a plain load_state_dict and no key mapping: every weight came up "missing" and a
            # resumed base stage silently restarted from random weights. Checkpoints keep the
            # in-memory layout instead (the final model is still saved by save_model, hub layout).
            from transformers import PreTrainedModel

            model = self.model
            if not isinstance(model, PreTrainedModel) or "save_pretrained" in vars(model):
                return super()._save(output_dir, state_dict)
            model.save_pretrained = functools.partial(model.save_pretrained, save_original_format=False)
            try:
                return super()._save(output_dir, state_dict)
            finally:
                del model.save_pretrained

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = answer_logits_only(inputs)
            held = []
            for extra in self._extra:  # their batch entries are no model inputs
                inputs, mine = extra.split(inputs)
                held.append(mine)
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True,
                                                 num_items_in_batch=num_items_in_batch)
            # the Trainer divides the loss by the accumulation steps only when the model does not
            # normalise by num_items_in_batch itself; an added batch mean must be either way
            scale = (self.current_gradient_accumulation_steps
                     if self.model_accepts_loss_kwargs and num_items_in_batch is not None else 1)
            for extra, mine in zip(self._extra, held):
                term = extra(outputs, {**inputs, **mine} if mine else inputs)
                if term is not None:
                    loss = extra.add(loss, term, scale)
                    extra.record(term)
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
            if "loss" in logs:
                for extra in self._extra:
                    logs.update(extra.pop_log())
            super().log(logs, start_time)

    return SftTrainer


def answer_logits_only(inputs: dict[str, Any]) -> dict[str, Any]:
    """Ask the model for logits only from the position before the first answer token on.

    The loss reads only answer tokens, yet the LM head and log-softmax over every prompt and
    image position cost about a fifth of a mini training step. ``logits_to_keep=K`` computes
    the last K positions; the labels are cut to the same K columns (the causal-LM loss shifts
    them by one inside), so loss and gradients are unchanged. Training batches are left-padded
    (every answer ends in the last column), so K is the longest answer + 1.
    """
    labels = inputs.get("labels")
    if labels is None or "logits_to_keep" in inputs:
        return inputs
    cols = (labels != -100).any(0).nonzero()
    if len(cols) == 0:
        return inputs
    keep = labels.shape[1] - int(cols[0]) + 1  # the logit at t predicts the token at t + 1
    if keep >= labels.shape[1]:
        return inputs
    return {**inputs, "labels": labels[:, -keep:], "logits_to_keep": keep}


def callbacks():
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


class WeightAverage:
    """Exponential moving average of a training stage's trainable parameters.

    The mini LoRA stage overfits within a few epochs (train loss 0.1) and its validation scores
    move by a point or two from one evaluation to the next; an average of the recent weights
    is the usual remedy (Polyak averaging). The shadow weights replace the live ones only while
    the model is validated or saved as the best adapter, and for good when training ends; the
    optimiser keeps stepping the live weights. ``decay`` per step, with the usual warm-up
    ``min(decay, (1 + n) / (10 + n))`` so that early shadows are not dominated by the
    initialisation. Saved with every Trainer checkpoint (``weight_average.pt``), so a resumed
    run continues the same average. Not for ZeRO-3, whose ranks hold only shards of each weight.
    """

    FILE = "weight_average.pt"

    def __init__(self, model, decay: float):
        self.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not self.params:
            raise ConfigError("weight averaging needs trainable parameters")
        self.decay, self.updates = decay, 0
        self.shadow = None

    def reset(self) -> None:
        import torch

        with torch.no_grad():  # float32 whatever the weights are: a bf16 lerp by 0.001 would round away
            self.shadow = {n: p.detach().float().clone() for n, p in self.params}
        self.updates = 0

    def update(self) -> None:
        import torch

        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for n, p in self.params:
                self.shadow[n].lerp_(p.detach().float(), 1 - d)

    def _swap(self) -> None:
        import torch

        with torch.no_grad():
            for n, p in self.params:
                live = p.detach().float().clone()
                p.copy_(self.shadow[n])  # copy_ casts to the weight's dtype
                self.shadow[n] = live

    @contextlib.contextmanager
    def applied(self):
        """The averaged weights in the model for the ``with`` block, the live ones after it."""
        self._swap()
        try:
            yield
        finally:
            self._swap()

    def finish(self) -> None:
        """Leave the averaged weights in the model (end of training)."""
        self._swap()
        self.shadow = None

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        if set(state["shadow"]) != {n for n, _ in self.params}:
            raise ConfigError("the checkpoint's weight average does not match this model's trainable "
                              "parameters (another LoRA config?)")
        self.updates = int(state["updates"])
        self.shadow = {n: state["shadow"][n].to(p.device, torch.float32) for n, p in self.params}


def weight_average_callback(averager: WeightAverage):
    """Keeps ``averager`` in step with training: updated after every optimiser step, written
    into each checkpoint, restored on resume, and left in the model when training ends. Must
    come before the validation callback, which evaluates the averaged weights of that step."""
    import torch
    from transformers import TrainerCallback

    class AverageWeights(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            saved = Path(args.output_dir) / f"checkpoint-{state.global_step}" / WeightAverage.FILE
            if state.global_step and not saved.is_file():
                raise ConfigError(f"resuming at step {state.global_step} with weight averaging, but "
                                  f"{saved} is missing (a checkpoint of a run without it?); resume "
                                  "with the settings it was trained with, or start over")
            averager.reset()
            if state.global_step:
                averager.load_state_dict(torch.load(saved, weights_only=True))

        def on_step_end(self, args, state, control, **kw):
            averager.update()

        def on_save(self, args, state, control, **kw):
            if state.is_world_process_zero:
                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                torch.save(averager.state_dict(), ckpt / WeightAverage.FILE)

        def on_train_end(self, args, state, control, **kw):
            averager.finish()

    return AverageWeights()


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


def quiet_console(trainer, progress: bool) -> None:
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


def attribute_eval_callback(predict_fn, val_truth, fields, st: StageTrain, best_dir: Path, log_path: Path,
                            averager: WeightAverage | None = None):
    """``predict_fn(model) -> list[Prediction]`` over the validation products, in ``val_truth`` order.

    With ``averager`` the averaged weights are validated (and kept as the best adapter)."""
    from transformers import TrainerCallback

    from mmrec.attributes.metrics import attribute_report, headline, selection_macro_f1
    from mmrec.taxonomy import default_taxonomy

    tax = default_taxonomy()

    class AttributeEval(TrainerCallback):
        """Per-attribute accuracy / macro-F1 on validation products; keeps the best adapter."""

        def __init__(self):
            state_file = best_dir.parent / "best.json"
            self.state_file = state_file
            saved = json.loads(state_file.read_text()) if state_file.is_file() else {}
            # "score": the selection macro-F1 (a state file of the older all-fields rule starts over)
            self.best = saved if "score" in saved else {"score": -1.0}

        def evaluate(self, model, step: int) -> dict[str, Any]:
            with averager.applied() if averager is not None else contextlib.nullcontext():
                return self._evaluate(model, step)

        def _evaluate(self, model, step: int) -> dict[str, Any]:
            t = time.perf_counter()
            was_training = model.training
            model.eval()
            preds = predict_fn(model)
            if was_training:
                model.train()
            report = attribute_report(val_truth, [p.values() for p in preds], fields, tax)
            score, voting = selection_macro_f1(report, fields, st.select_min_labelled)
            report["summary"]["selection_macro_f1"], report["summary"]["selection_fields"] = score, voting
            row = {"stage": "lora", "step": step, "eval": True, "val_macro_f1": report["summary"]["macro_f1"],
                   "val_selection_macro_f1": score,
                   "val_mean_accuracy": report["summary"]["mean_accuracy"],
                   **{f"val_acc_{k}": v for k, v in headline(report).items()},
                   "eval_seconds": round(time.perf_counter() - t, 1)}
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            if score > self.best["score"]:
                tmp = best_dir.with_name(best_dir.name + ".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                model.save_pretrained(tmp)
                (tmp / "val_report.json").write_text(json.dumps(report, indent=1))
                old = best_dir.with_name(best_dir.name + ".old")
                if best_dir.exists():
                    os.replace(best_dir, old)
                os.replace(tmp, best_dir)  # at least one complete best/ survives a crash
                shutil.rmtree(old, ignore_errors=True)
                self.best = {"score": score, "fields": voting, "step": step}
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
