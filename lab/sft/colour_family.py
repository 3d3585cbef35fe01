"""Experiment: choose the colour by its family first, at decoding (``decode.colour_by_family``
until 2026-12-07; not adopted, lab/README.md).

A field's value is chosen in two steps: the group with the highest total probability, then the
most probable value inside it. That is the answer whose family is most likely right, where
greedy would pick "navy blue" at 0.40 over "blue" 0.30 + "teal" 0.15. It plugs into the
product's decoder as a choice rule (`mmrec.attributes.decode.JsonGrammar.set_choice`), so every
decoding method applies it; only for fields whose values are one token each (mini/tiny).
`group_index` is shared with the colour-family training loss (`lab.sft.losses`).
"""

from __future__ import annotations

from typing import Mapping, Sequence


def group_index(trie, group_of: Mapping[str, str | None] | None) -> list[int] | None:
    """Group number of each of the trie's (one-token) values, in ``trie.children`` order; a value
    without a group, "unknown" included, is a group of its own."""
    if not group_of:
        return None
    names: dict[str, int] = {}
    return [names.setdefault(group_of.get(c.value) or f"\0{c.value}", len(names))
            for c in trie.children.values()]


def grouped_best(probs, group: Sequence[int]):
    """Per row, the index (into the allowed tokens) of the most probable value of the most
    probable group. ``probs``: [rows, k] probabilities over the k allowed tokens."""
    import torch

    g = torch.tensor(group, dtype=torch.long, device=probs.device)
    mass = torch.zeros(probs.shape[0], int(g.max()) + 1, dtype=probs.dtype, device=probs.device)
    mass.index_add_(1, g, probs)
    inside = g[None, :] == mass.argmax(-1)[:, None]
    return probs.masked_fill(~inside, -1.0).argmax(-1)


def by_family(grammar, taxonomy, values: Mapping[str, Sequence[str]], field: str = "colour") -> None:
    """Make ``grammar`` (a `JsonGrammar`, e.g. a `Predictor`'s) choose ``field`` by colour family."""
    i = grammar.fields.index(field)
    group = group_index(grammar.tries[i], taxonomy.colour_families(values.get(field, ())))
    grammar.set_choice(field, lambda probs: grouped_best(probs, group))
