"""Extra losses tried on the tagger and not adopted, as plug-ins of the product's trainer.

Importing this module registers them (`mmrec.attributes.losses.register_extra_loss`); a stage
then names them in its ``extra_losses`` (lab/sft/configs/*.yaml, run by `python -m lab.sft.train`):

- ``label_smoothing`` {eps}: ``(1 - eps) * token loss + eps * cross-entropy to a uniform target``
  over the vocabulary (`uniform_target_loss`).
- ``value_smoothing`` {field, eps}: label smoothing of one field's value over that field's values
  only (`ValueSmoothing`).
- ``colour_family`` {weight}: ``-log P(true colour family)`` at the colour value (`GroupLoss`).
- ``distill_colour_histogram`` {weight, histogram, vectors}: the product's CLIP distillation with
  the photo's colour histogram appended to the teacher vector (`lab.sft.colour_histogram`).

Outcomes, with dates and numbers: lab/README.md.

The token loss trains the exact colour ("navy blue"), yet what the outfit rules and the
headline metric use is its colour family. Between neighbouring shades of one family the photo
often cannot tell ("charcoal" or "grey"), and the token loss spends the model's capacity on
those near-coin-flips as much as on "navy" vs "black". The group loss adds ``-log P(true family)``
at the colour value's position, with the family's probability summed over its colours (the
same sum the grouped decoding choice reads, `lab.sft.colour_family`), so the gradient also
rewards moving mass between families and not only between shades.

The value losses count only answers in the JSON skeleton: the value is found as the token after
the field's forced key text (``", "colour": "``), which every JSON record writes the same way.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from lab.sft.colour_family import group_index
from mmrec.attributes.losses import ExtraLoss, LossContext, register_extra_loss
from mmrec.errors import ConfigError


def value_positions(key, labels) -> tuple[Sequence[int], Sequence[int]]:
    """(rows, label columns) of the token right after each occurrence of the forced ``key``
    tokens (a field's ``", "colour": "``) in ``labels``: where that field's value is trained."""
    key = key.to(labels.device)
    width = key.numel()
    if labels.shape[1] <= width:
        return labels.new_zeros(0), labels.new_zeros(0)
    windows = labels.unfold(1, width, 1)[:, :-1]  # windows ending before the last column
    rows, starts = (windows == key).all(-1).nonzero(as_tuple=True)
    return rows, starts + width


def _one_token_field(grammar, field: str, what: str) -> int:
    """Index of ``field`` in the grammar; a clear error if the dataset lacks it or its values
    are not one token each (both losses read the value at a single position)."""
    if field not in grammar.fields:
        raise ConfigError(f"{what} on {field!r}, which the dataset does not answer")
    i = grammar.fields.index(field)
    if not grammar.single_token[i]:
        raise ConfigError(f"{what} on {field!r} needs one-token values (the mini tokenizer)")
    return i


class GroupLoss(ExtraLoss):
    """``-log`` of the probability of the true value's group, averaged over the batch's answers.

    Args:
        grammar: the answer grammar (`JsonGrammar`): the forced key text before each value and
            each value's tokens; the field's values must be one token each.
        field: the field whose value is grouped ("colour").
        group_of: value -> group name (e.g. `Taxonomy.colour_family`); a value without a group is
            a group of its own.
        weight: factor on the loss (added to the token loss).
    """

    name, log_key = "colour_family", "group_loss"

    def __init__(self, grammar, field: str, group_of: Mapping[str, str | None], weight: float):
        import torch

        super().__init__(weight)
        i = _one_token_field(grammar, field, "group loss")
        self.key = torch.tensor(grammar.forced[i], dtype=torch.long)
        self._token = list(grammar.tries[i].children)
        self._group = group_index(grammar.tries[i], group_of)  # numbered as the grouped decoding does
        self.n_groups = max(self._group) + 1
        self._cached: tuple | None = None

    def _tables(self, vocab: int, device):
        """(group of each vocabulary token, -1 outside the field; [groups, vocab] membership),
        built once per vocabulary size and device."""
        import torch

        if self._cached is not None and self._cached[0] == (vocab, device):
            return self._cached[1]
        group_of = torch.full((vocab,), -1, dtype=torch.long, device=device)
        group_of[torch.tensor(self._token, device=device)] = torch.tensor(self._group, device=device)
        member = torch.zeros(self.n_groups, vocab, dtype=torch.bool, device=device)
        member[group_of.clamp(min=0), torch.arange(vocab, device=device)] = group_of >= 0
        self._cached = ((vocab, device), (group_of, member))
        return group_of, member

    def __call__(self, outputs, inputs: dict[str, Any]):
        labels = inputs.get("labels")
        return None if labels is None else self.term(outputs.logits, labels)

    def term(self, logits, labels):
        """Mean ``-log P(group of the labelled value)`` (None when the batch has no such value).

        ``logits[:, t]`` predicts ``labels[:, t + 1]`` (causal LM, the answer columns of
        `answer_logits_only` included).
        """
        import torch

        rows, cols = value_positions(self.key, labels)
        if len(rows) == 0:
            return None
        group_of, member = self._tables(logits.shape[-1], logits.device)
        groups = group_of[labels[rows, cols]]
        ok = groups >= 0  # a token after the key that is no value of the field
        if not bool(ok.any()):
            return None
        rows, cols, groups = rows[ok], cols[ok], groups[ok]
        lg = logits[rows, cols - 1].float()
        in_group = torch.logsumexp(lg.masked_fill(~member[groups], float("-inf")), -1)
        return (torch.logsumexp(lg, -1) - in_group).mean()


class ValueSmoothing(ExtraLoss):
    """Label smoothing of one field's value over that field's values only.

    Smoothing over the whole vocabulary (`uniform_target_loss`) also softens the forced
    JSON text and every field at once; measured on the mini tagger it bought colour family at the
    price of gender. Here only the chosen field's value is smoothed, and only towards its own
    values (not "unknown", not other tokens): at those positions the token loss becomes
    ``(1 - eps) * NLL + eps * mean over the field's values of -log p(value)``, in the token
    loss's own normalisation (the mean over the batch's answer tokens).
    """

    name = "value_smoothing"

    def __init__(self, grammar, field: str, eps: float):
        import torch

        if not 0 <= eps < 1:
            raise ConfigError(f"value_smoothing eps must be in [0, 1), got {eps}; e.g. 0.1")
        super().__init__(1.0)  # eps is inside the term: it is the token loss's own smoothing
        i = _one_token_field(grammar, field, "value smoothing")
        self.field, self.eps = field, eps
        self.key = torch.tensor(grammar.forced[i], dtype=torch.long)
        trie = grammar.tries[i]
        self._value_tokens = torch.tensor([t for t, c in trie.children.items() if c.value != grammar.unknown],
                                          dtype=torch.long)

    def __call__(self, outputs, inputs: dict[str, Any]):
        labels = inputs.get("labels")
        return None if labels is None else self.term(outputs.logits, labels)

    def summary(self) -> dict[str, Any]:
        return {"field": self.field, "eps": self.eps}

    def term(self, logits, labels):
        """The term to add to the token loss, ``eps * sum(U - NLL) / answer tokens``, or None
        when the batch trains no value of the field. ``logits[:, t]`` predicts ``labels[:, t + 1]``."""
        import torch

        rows, cols = value_positions(self.key, labels)
        if len(rows) == 0:
            return None
        values = self._value_tokens.to(labels.device)
        target = labels[rows, cols]
        ok = torch.isin(target, values)  # "unknown" answers are not smoothed
        if not bool(ok.any()):
            return None
        logp = torch.log_softmax(logits[rows[ok], cols[ok] - 1].float(), dim=-1)
        nll = -logp.gather(1, target[ok][:, None])[:, 0]
        uniform = -logp[:, values].mean(-1)
        n_tokens = (labels[:, 1:] != -100).sum()
        return self.eps * (uniform - nll).sum() / n_tokens


def uniform_target_loss(logits, labels):
    """Mean over answer tokens of the cross-entropy against a uniform target over the vocabulary.

    Label smoothing with weight ``eps`` is ``(1 - eps) * NLL + eps * this`` (the form
    ``torch.nn.functional.cross_entropy(label_smoothing=eps)`` computes; a test checks they are
    equal). It keeps a model trained on noisy labels (navy vs blue) from driving every answer
    to probability one. ``logits`` [B, T, V] and ``labels`` [B, T] as the causal-LM loss takes
    them: the logit at t predicts the label at t + 1. None when no label is set.
    """
    import torch

    target = labels[:, 1:]
    mask = target != -100
    if not bool(mask.any()):
        return None
    logp = torch.log_softmax(logits[:, :-1][mask].float(), dim=-1)
    return -logp.mean(-1).mean()


class LabelSmoothing(ExtraLoss):
    """``(1 - eps) * loss so far + eps * uniform_target_loss``: smoothing over the whole vocabulary."""

    name = "label_smoothing"

    def __init__(self, eps: float):
        if not 0 <= eps < 1:
            raise ConfigError(f"label_smoothing eps must be in [0, 1), got {eps}; e.g. 0.1")
        super().__init__(eps)

    def __call__(self, outputs, inputs: dict[str, Any]):
        labels = inputs.get("labels")
        return None if labels is None else uniform_target_loss(outputs.logits, labels)

    def add(self, loss, term, scale: float):
        return (1 - self.weight) * loss + self.weight * term / scale

    def summary(self) -> dict[str, Any]:
        return {"eps": self.weight}


def with_colour_histograms(vectors: np.ndarray, mask: np.ndarray, pixels: np.ndarray,
                           weight: float) -> np.ndarray:
    """``[v, weight * h / |h|] / norm`` for each masked row (v unit norm, h its photo's
    `colour_histogram` from the pixel cache's uint8 [rows, H, W, 3]); zeros elsewhere. A mirrored
    photo has the same histogram, so the target still holds for it."""
    from lab.sft.colour_histogram import DIM, colour_histogram

    out = np.zeros((len(vectors), vectors.shape[1] + DIM), np.float32)
    for i in np.nonzero(mask)[0]:
        h = colour_histogram(np.asarray(pixels[i]))
        row = np.concatenate([vectors[i], weight * h / max(float(np.linalg.norm(h)), 1e-8)])
        out[i] = row / np.linalg.norm(row)
    return out


# ------------------------------------------------------------------------------ registrations
@register_extra_loss("label_smoothing")
def label_smoothing(ctx: LossContext, eps: float) -> LabelSmoothing | None:
    return LabelSmoothing(eps) if eps > 0 else None


@register_extra_loss("value_smoothing", stages=("lora",))
def value_smoothing(ctx: LossContext, field: str, eps: float) -> ValueSmoothing | None:
    return ValueSmoothing(ctx.grammar(), field, eps) if eps > 0 else None


@register_extra_loss("colour_family", stages=("lora",))
def colour_family(ctx: LossContext, weight: float) -> GroupLoss | None:
    from mmrec.taxonomy import default_taxonomy

    if weight <= 0:
        return None
    families = default_taxonomy().colour_families(ctx.values.get("colour", ()))
    return GroupLoss(ctx.grammar(), "colour", families, weight)


@register_extra_loss("distill_colour_histogram", stages=("base",))
def distill_colour_histogram(ctx: LossContext, weight: float, histogram: float,
                             vectors: str | None = None):
    """The product's distillation (``distill``) towards the CLIP vector + the photo's colour
    histogram at ``histogram`` times its length; configure it with ``distill.weight: 0``."""
    from mmrec.attributes.distill import Targets, teacher_targets
    from mmrec.attributes.losses import distillation

    if weight <= 0:
        return None
    if ctx.cache is None or histogram <= 0:
        raise ConfigError(f"distill_colour_histogram needs the mini pixel cache and histogram > 0, got {histogram}")
    plain = teacher_targets(ctx.store, vectors, ctx.products, ctx.cache.index)
    joint = Targets(with_colour_histograms(plain.vectors, plain.mask, ctx.cache.pixels, histogram), plain.mask,
                    plain.source + f" + colour histogram x {histogram:g}")
    return distillation(ctx, joint, weight)
