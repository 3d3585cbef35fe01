"""Auxiliary losses on one field's value in the JSON answers: the probability of the true group
(`GroupLoss`), and label smoothing over the field's own values (`ValueSmoothing`).

The token loss trains the exact colour ("navy blue"), yet what the outfit rules and the
headline metric use is its colour family. Between neighbouring shades of one family the photo
often cannot tell ("charcoal" or "grey"), and the token loss spends the model's capacity on
those near-coin-flips as much as on "navy" vs "black". The group loss adds ``-log P(true family)``
at the colour value's position, with the family's probability summed over its colours (the
same sum the grouped decoding choice reads, `mmrec.attributes.decode`), so the gradient also
rewards moving mass between families and not only between shades.

Only answers in the JSON skeleton count: the value is found as the token after the field's
forced key text (``", "colour": "``), which every JSON record of the dataset writes the same way.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from mmrec.attributes.decode import group_index
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


class GroupLoss:
    """``-log`` of the probability of the true value's group, averaged over the batch's answers.

    Args:
        grammar: the answer grammar (`JsonGrammar`): the forced key text before each value and
            each value's tokens; the field's values must be one token each.
        field: the field whose value is grouped ("colour").
        group_of: value -> group name (e.g. `Taxonomy.colour_family`); a value without a group is
            a group of its own.
        weight: factor on the loss (added to the token loss).
    """

    def __init__(self, grammar, field: str, group_of: Mapping[str, str | None], weight: float):
        import torch

        i = _one_token_field(grammar, field, "group loss")
        self.weight = weight
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

    def __call__(self, logits, labels):
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


class ValueSmoothing:
    """Label smoothing of one field's value over that field's values only.

    Smoothing over the whole vocabulary (`trainer.uniform_target_loss`) also softens the forced
    JSON text and every field at once; measured on the mini tagger it bought colour family at the
    price of gender. Here only the chosen field's value is smoothed, and only towards its own
    values (not "unknown", not other tokens): at those positions the token loss becomes
    ``(1 - eps) * NLL + eps * mean over the field's values of -log p(value)``, in the token
    loss's own normalisation (the mean over the batch's answer tokens).
    """

    def __init__(self, grammar, field: str, eps: float):
        import torch

        i = _one_token_field(grammar, field, "value smoothing")
        self.field, self.eps = field, eps
        self.key = torch.tensor(grammar.forced[i], dtype=torch.long)
        trie = grammar.tries[i]
        self._value_tokens = torch.tensor([t for t, c in trie.children.items() if c.value != grammar.unknown],
                                          dtype=torch.long)

    def __call__(self, logits, labels):
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
