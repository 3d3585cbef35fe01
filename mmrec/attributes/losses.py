"""Extra training losses as plug-ins, next to the token loss of both SFT stages.

A stage's loss is the model's own token loss, then each configured plug-in in turn: an
`ExtraLoss` built by a factory registered under a name (`register_extra_loss`), the way peft
registers its tuner types. The product registers what it adopted, at the end of this module:
``distill`` (the mini base stage's CLIP distillation, `mmrec.attributes.distill`, configured by
the ``distill:`` section).
Experiments register their own plug-ins (``lab/sft/losses.py``) before calling the product's
training and name them in a stage's ``extra_losses: {name: {param: value}}``, so the product's
config holds no option that was measured and not adopted, only this mechanism.

A plug-in may add tensors to each training batch (``batch``, from the pixel-cache rows, as the
distillation targets) and takes them back out before the model's forward (``split``); it logs
the mean of its term under ``log_key`` at every logging step. This module imports no torch.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from mmrec.errors import ConfigError

STAGES = ("base", "lora")


class ExtraLoss:
    """One term added to a stage's token loss.

    Subclasses set ``name`` (the registry name), optionally ``log_key`` (the log column of the
    term's mean; None: not logged) and ``batch_keys`` (batch entries they add and take back), and
    implement ``__call__``. ``add`` combines the term with the loss so far: ``loss + weight * term``
    by default, where ``term`` is a batch mean that the trainer scales for gradient accumulation.
    """

    name = "extra"
    log_key: str | None = None
    batch_keys: tuple[str, ...] = ()
    needs_pixel_rows = True  # ``batch`` gets pixel-cache rows (False: each example's image, row or path)

    def __init__(self, weight: float = 1.0):
        if weight < 0:
            raise ConfigError(f"extra loss {self.name!r}: weight must be >= 0, got {weight}")
        self.weight = weight
        self._sum, self._n = 0.0, 0

    def batch(self, rows: Sequence[int]) -> dict[str, Any]:
        """Tensors to add to a training batch of these pixel-cache rows (none by default)."""
        return {}

    def split(self, inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the model's inputs without this loss's batch keys, those keys' entries)."""
        if not any(k in inputs for k in self.batch_keys):
            return inputs, {}
        mine = {k: inputs[k] for k in self.batch_keys if k in inputs}
        return {k: v for k, v in inputs.items() if k not in mine}, mine

    def __call__(self, outputs, inputs: dict[str, Any]):
        """The term for this batch (a scalar tensor), or None when the batch has nothing for it.

        ``outputs``: the model's output (``.logits`` over the answer columns, see
        ``trainer.answer_logits_only``); ``inputs``: the model's inputs plus this loss's own
        batch entries."""
        raise NotImplementedError

    def add(self, loss, term, scale: float):
        """The loss with ``term`` added; ``scale`` is the Trainer's gradient-accumulation divisor."""
        return loss + self.weight * term / scale

    def record(self, term) -> None:
        if self.log_key is not None:
            self._sum += float(term.detach())
            self._n += 1

    def pop_log(self) -> dict[str, float]:
        """``{log_key: mean term since the last call}`` (empty when nothing was recorded)."""
        if not self._n:
            return {}
        out = {self.log_key: round(self._sum / self._n, 4)}
        self._sum, self._n = 0.0, 0
        return out

    def summary(self) -> dict[str, Any] | None:
        """What the stage's artifact records about this loss (its metrics)."""
        return {"weight": self.weight}

    def close(self) -> None:
        """Undo what the loss added to the model (a head, a hook) before the model is saved."""


@dataclass
class LossContext:
    """What a factory may build its loss from (the stage's own objects)."""

    stage: str                 # "base" or "lora"
    model: Any
    processor: Any
    fields: list[str]
    values: dict[str, list[str]]
    unknown: str
    products: list[dict[str, Any]]
    cache: Any = None          # attributes.data.PixelCache (mini), or None
    store: Any = None          # artifacts.ArtifactStore
    seed: int = 0
    _grammar: Any = field(default=None, repr=False)

    def grammar(self):
        """The answer grammar of the dataset's JSON records (`decode.JsonGrammar`), built once."""
        if self._grammar is None:
            from mmrec.attributes.decode import JsonGrammar

            self._grammar = JsonGrammar(self.processor.tokenizer, self.fields, self.values, self.unknown)
        return self._grammar


Factory = Callable[..., ExtraLoss]
_REGISTRY: dict[str, tuple[Factory, tuple[str, ...]]] = {}


def register_extra_loss(name: str, *, stages: Sequence[str] = STAGES) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory(ctx: LossContext, **params) -> ExtraLoss`` under ``name``.

    Args:
        name: what a stage's ``extra_losses`` calls it.
        stages: the stages it may run in ("base", "lora").
    """
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"extra loss {name!r}: unknown stages {bad}; valid: {list(STAGES)}")

    def deco(factory: Factory) -> Factory:
        known = _REGISTRY.get(name)
        if known is not None and known[0] is not factory:
            raise ValueError(f"extra loss {name!r} is already registered by {known[0].__module__}")
        _REGISTRY[name] = (factory, tuple(stages))
        return factory

    return deco


def registered() -> dict[str, tuple[Factory, tuple[str, ...]]]:
    """Name -> (factory, stages) of every registered loss, the product's own included."""
    return dict(_REGISTRY)


def check_specs(specs: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse unknown loss names and parameters their factory does not take (config time)."""
    known = registered()
    unknown = sorted(set(specs) - set(known))
    if unknown:
        raise ValueError(f"unknown extra losses {unknown}; registered: {sorted(known)} (experiments "
                         "register theirs by importing their module first, e.g. lab.sft.losses)")
    for name, params in specs.items():
        factory = known[name][0]
        try:
            inspect.signature(factory).bind(None, **dict(params))
        except TypeError as e:
            raise ValueError(f"extra loss {name!r}: bad parameters {dict(params)} ({e}); it takes "
                             f"{_params(factory)}") from e


def _params(factory: Factory) -> list[str]:
    return list(inspect.signature(factory).parameters)[1:]


def build_extra_losses(specs: Mapping[str, Mapping[str, Any]], ctx: LossContext) -> list[ExtraLoss]:
    """The stage's plug-ins, in ``specs`` order (None from a factory: off, e.g. weight 0)."""
    check_specs(specs)
    known = registered()
    out = []
    for name, params in specs.items():
        factory, stages = known[name]
        if ctx.stage not in stages:
            raise ConfigError(f"extra loss {name!r} runs in the {list(stages)} stage(s), not {ctx.stage!r}")
        loss = factory(ctx, **dict(params))
        if loss is not None:
            out.append(loss)
    return out


# ------------------------------------------------------------------ the product's adopted loss
class DistillLoss(ExtraLoss):
    """`distill.VisionDistiller` as a trainer plug-in: adds each batch's teacher vectors, takes them
    back out before the forward, and scores ``1 - cos`` on the image tokens that forward produced."""

    name, log_key = "distill", "distill_loss"

    def __init__(self, distiller, targets):
        from mmrec.attributes.distill import MASK, TARGET

        super().__init__(distiller.weight)
        self.batch_keys = (TARGET, MASK)
        self.distiller, self.targets = distiller, targets

    def batch(self, rows: Sequence[int]) -> dict[str, Any]:
        return self.targets.batch(rows)

    def __call__(self, outputs, inputs: dict[str, Any]):
        target, mask = self.batch_keys
        if target not in inputs:
            return None
        return self.distiller.loss(inputs[target], inputs[mask], inputs["image_grid_thw"])

    def summary(self) -> dict[str, Any]:
        return {"weight": self.weight, "teacher": self.targets.source, "targets": int(self.targets.mask.sum())}

    def close(self) -> None:
        self.distiller.detach()


def distillation(ctx: LossContext, targets, weight: float) -> DistillLoss:
    """A `DistillLoss` towards ``targets`` (`distill.Targets`): the head is added to ``ctx.model``
    now, so build it before the Trainer (which then optimises and checkpoints the head)."""
    from mmrec.attributes.distill import VisionDistiller

    if ctx.cache is None:
        raise ConfigError("distillation targets are indexed by pixel-cache row: a mini/tiny base stage only")
    return DistillLoss(VisionDistiller(ctx.model, targets.vectors.shape[1], weight, seed=ctx.seed), targets)


@register_extra_loss("distill", stages=("base",))
def distill_loss(ctx: LossContext, weight: float, vectors: str | None = None) -> DistillLoss | None:
    """The base stage's CLIP distillation (``distill.weight`` / ``distill.vectors``); 0: off."""
    from mmrec.attributes.distill import teacher_targets

    if weight <= 0:
        return None
    if ctx.cache is None:
        raise ConfigError("distillation targets are indexed by pixel-cache row: a mini/tiny base stage only")
    return distillation(ctx, teacher_targets(ctx.store, vectors, ctx.products, ctx.cache.index), weight)
