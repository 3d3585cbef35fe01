"""Real phone photos in the tagger's LoRA stage, with the partial labels they have.

Issue #21 item 1, the tagger half of the mixed-domain recipe (the encoder half is
`mmrec.embed.photo_pairs`). A real photo of the benchmark's TRAIN photographers carries one
coarse label ("Pants"), which the reviewed table maps to the set of taxonomy categories a right
reading may name ({trousers, jeans, track pants, ...}). It states nothing about gender, colour,
occasion or any other field, so:

- the photo's training example is the JSON prompt and the answer's opening skeleton only,
  ``{"category": "`` -- no later field is ever written, so no later field gets a loss and none
  is guessed (``category`` must therefore be the answer's first field);
- its one loss term is set-valued: ``-log P(category in allowed)`` over the category values
  (the first token of each value, normalised over the first tokens of all category values,
  "unknown" included), weighted like one answer token of the token loss (``weight`` times
  that). With the mini tokenizer every value is one token and the term is exact; with a real
  Qwen tokenizer a first token shared by an allowed and a disallowed value credits both (the
  label cannot tell them apart either).

The decoder is untouched: at inference the tagger writes the whole JSON as before, only its
reading of a phone photo's category has now seen phone photos. Photos whose labeller could not
tell ("Not sure", "Other", "Skip") never train; val and test photographers never enter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from mmrec.attributes.data import Example
from mmrec.attributes.losses import ExtraLoss
from mmrec.bench.photo_sources import PhotoTruth, training_photos
from mmrec.errors import ConfigError


def photo_examples(photos: Sequence[PhotoTruth], prompt_ids: list[int], prefix_ids: list[int],
                   image_index: dict[str, Any], repeat: int) -> list[Example]:
    """One example per photo (``repeat`` times): the JSON prompt, then only the answer's opening.
    ``image_index``: photo path -> the example's image (a pixel-cache row, or the path itself)."""
    return [Example(list(prompt_ids), list(prefix_ids), image_index[p.uri])
            for _ in range(repeat) for p in photos]


def repeat_for_share(share: float, n_records: int, n_photos: int) -> int:
    """How many copies of each photo make them ``share`` of the training examples (>= 1)."""
    if not 0 < share < 1:
        raise ConfigError(f"real_photos.share must be in (0, 1), got {share}")
    if n_photos == 0:
        return 0
    return max(1, round(share / (1 - share) * n_records / n_photos))


class PhotoCategoryLoss(ExtraLoss):
    """``-log P(category in the label's allowed set)`` at the first category-value position.

    Only rows whose pixel-cache row is a labelled photo contribute; a batch without one adds
    nothing. Training batches are left-padded, so every example ends in the last column, and a
    photo example ends right before its category value: the last column's logits are that
    value's first-token distribution.
    """

    name = "photo_category"
    log_key = "photo_category_nll"
    batch_keys = ("photo_allowed",)
    needs_pixel_rows = False  # keyed by the example's image: a cache row (mini) or a path (standard)

    def __init__(self, grammar, allowed_by_row: dict[Any, Sequence[str]], encode: Callable[[str], list[int]],
                 weight: float = 1.0):
        super().__init__(weight)
        if not grammar.fields or grammar.fields[0] != "category":
            raise ConfigError("real photos train the category reading, which must be the answer's first "
                              f"field; the dataset's fields are {grammar.fields}")
        values = grammar.tries[0]
        self.first_ids = list(values.children)               # every category value's first token
        col = {t: i for i, t in enumerate(self.first_ids)}
        self.allowed: dict[Any, list[int]] = {}
        for row, cats in allowed_by_row.items():
            cols = sorted({col[ids[0]] for c in cats if (ids := encode(c)) and ids[0] in col})
            if not cols:
                raise ConfigError(f"photo row {row}: none of {list(cats)} is a category value the "
                                  "tagger can write")
            self.allowed[row] = cols
        self.n_rows = 0

    def batch(self, rows: Sequence[int]) -> dict[str, Any]:
        import torch

        mask = torch.zeros((len(rows), len(self.first_ids)), dtype=torch.bool)
        for i, r in enumerate(rows):
            for c in self.allowed.get(r, ()):
                mask[i, c] = True
        return {"photo_allowed": mask}

    def __call__(self, outputs, inputs: dict[str, Any]):
        import torch

        mask = inputs.get("photo_allowed")
        if mask is None:
            return None
        rows = mask.any(-1)
        if not bool(rows.any()):
            return None
        logits = outputs.logits[rows, -1][:, self.first_ids].float()
        logp = torch.log_softmax(logits, dim=-1)
        nll = -torch.logsumexp(logp.masked_fill(~mask[rows], float("-inf")), dim=-1)
        self.n_rows += int(rows.sum())
        # A photo's category weighs what one answer token weighs in the token loss (a mean over
        # the batch's answer tokens): as a batch mean, a few photos per batch outweighed every
        # catalog token by ~150x and pulled the shared vision tower to the photos (Myntra val
        # category 0.66 -> 0.41 in a 3-minute run, docs/tagger.md).
        labels = inputs.get("labels")
        tokens = int((labels[:, 1:] != -100).sum()) if labels is not None else 0
        return nll.sum() / max(tokens, int(rows.sum()))

    def summary(self) -> dict[str, Any]:
        return {"weight": self.weight, "photo_examples_seen": self.n_rows}


def load_training_photos(cfg, log: Callable[[str], None]) -> list[PhotoTruth]:
    """The train photographers' labelled photos, or [] (logged) when the source is absent and
    not required.

    Raises:
        InputError: ``required`` and no images.csv under the source.
    """
    from mmrec.errors import InputError
    from mmrec.taxonomy import default_taxonomy

    if not cfg.source or not (Path(cfg.source) / "images.csv").is_file():
        if cfg.required:
            raise InputError(f"real_photos.source {cfg.source!r} has no images.csv (real_photos.required is true)")
        log(f"real_photos.source {cfg.source!r} has no images.csv: the LoRA stage trains on the "
            "catalog alone (set real_photos.required=true to refuse instead)")
        return []
    photos = training_photos(cfg.source, cfg.table, default_taxonomy())
    if cfg.answers:  # kiosk photos with the shopper's answer (mmrec.feedback.photo_answers)
        from mmrec.feedback.photo_answers import answer_photos

        photos += answer_photos(cfg.answers, default_taxonomy())
    return photos


def photo_training(cfg, parts, processor, image_index: dict[str, int] | None, n_records: int,
                   photos: Sequence[PhotoTruth], log: Callable[[str], None]
                   ) -> tuple[list[Example], PhotoCategoryLoss | None, dict[str, Any]]:
    """The LoRA stage's photo examples, their loss and what the artifact records about them.

    ``image_index`` maps a photo's path to its pixel-cache row (mini); None keeps paths (a
    standard model reads the photos from disk)."""
    from mmrec.attributes.data import encode_records
    from mmrec.attributes.decode import JsonGrammar
    from mmrec.attributes.prompts import messages

    if not photos:
        return [], None, {"photos": 0}
    grammar = JsonGrammar(processor.tokenizer, parts.fields, parts.values, parts.prompts.unknown)
    record = {"messages": messages(parts.prompts.system, parts.prompts.json_instruction(parts.fields)),
              "images": [photos[0].uri]}
    prompt_ids = encode_records([record], processor)[0].prompt_ids
    index = image_index if image_index is not None else {p.uri: p.uri for p in photos}
    repeat = repeat_for_share(cfg.share, n_records, len(photos))
    examples = photo_examples(photos, prompt_ids, grammar.forced[0], index, repeat)
    encode = lambda s: processor.tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    loss = PhotoCategoryLoss(grammar, {index[p.uri]: p.categories for p in photos}, encode, cfg.weight)
    info = {"photos": len(photos), "senders": len({p.sender for p in photos}), "repeat": repeat,
            "share_of_examples": round(len(examples) / (len(examples) + n_records), 4)}
    log(f"real photos: {len(photos)} of {info['senders']} train photographers, x{repeat} "
        f"({info['share_of_examples']:.0%} of the LoRA examples; category loss only)")
    return examples, loss, info
