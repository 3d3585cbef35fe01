"""Vision distillation for the mini base stage: the Qwen ViT also learns the in-house CLIP's view.

Real Qwen-VL models start from a vision tower pretrained contrastively (a CLIP) before any
captioning. The mini base stage starts from random weights, and a 2-layer ViT learns little
from 15 minutes of captions: small data favours the convolutional CLIP that recall already
trains on the same photos (its linear probe reads category better than the tagger does). So
the base stage can add a second objective: from the image tokens the vision tower hands the
language model (mean-pooled), a linear head predicts the item's CLIP image vector (the
``vectors`` artifact, precomputed: no CLIP forward during training), loss ``1 - cosine``.
The head is training scaffolding: it is dropped before the base model is saved, so the saved
model is a plain Qwen2.5-VL.

Only train-split products carry a target (the CLIP never trained on the shared held-out ids);
a mirrored training image keeps its item's vector (the CLIP was trained with mirroring).

The trainer runs it as the ``distill`` extra-loss plug-in (`mmrec.attributes.losses.DistillLoss`),
built from the ``distill:`` section when its weight is > 0; it logs ``distill_loss``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mmrec.errors import ArtifactError, ConfigError

ATTR = "mmrec_distill_head"  # where the head lives on the model while training (checkpointed with it)
TARGET, MASK = "distill_target", "distill_mask"  # the batch keys the collator adds and the trainer takes out


@dataclass
class Targets:
    """Teacher vectors aligned with the pixel cache's rows (``mask`` False: no target)."""

    vectors: np.ndarray  # float32 [rows, d], unit norm where mask
    mask: np.ndarray     # bool [rows]
    source: str          # "vectors/<version> (<encoder id>)"

    def batch(self, rows: Sequence[int]) -> dict[str, Any]:
        import torch

        idx = np.asarray(rows)
        return {TARGET: torch.from_numpy(self.vectors[idx]), MASK: torch.from_numpy(self.mask[idx])}


def teacher_targets(store, ref: str | None, products: Sequence[dict[str, Any]], image_index: dict[str, int],
                    *, splits: Sequence[str] = ("train",)) -> Targets:
    """The CLIP image vector of every ``splits`` product, indexed like the pixel cache."""
    from mmrec.embed.catalog import load_vectors

    try:
        art, table, vecs = load_vectors(store, ref)
    except ArtifactError as e:
        raise ConfigError(f"distill.weight > 0 needs the in-house CLIP's item vectors ({e}); run "
                          "`mmrec embed train && mmrec embed catalog` first, or set distill.weight=0") from e
    row_of = {item: i for i, item in enumerate(table.column("item_id").to_pylist())}
    out = np.zeros((len(image_index), vecs.shape[1]), np.float32)
    mask = np.zeros(len(image_index), bool)
    for p in products:
        if p["split"] not in splits or p["item_id"] not in row_of or p["image_path"] not in image_index:
            continue
        v = vecs[row_of[p["item_id"]]]
        n = float(np.linalg.norm(v))
        if n > 0:
            out[image_index[p["image_path"]]] = v / n
            mask[image_index[p["image_path"]]] = True
    if not mask.any():
        raise ConfigError(f"vectors/{art.version} has no vector for any {list(splits)} product of the SFT "
                          "dataset (another catalog?); re-run `mmrec embed catalog` or set distill.weight=0")
    encoder = art.manifest.get("encoder_id", "?")
    return Targets(out, mask, f"vectors/{art.version} ({encoder})")


class VisionDistiller:
    """Adds the head to ``model`` and records the vision tower's merged image tokens on each forward."""

    def __init__(self, model, dim: int, weight: float, *, seed: int = 0):
        import torch

        visual = model.model.visual
        hidden = visual.merger.mlp[-1].out_features
        g = torch.Generator().manual_seed(seed)
        head = torch.nn.Linear(hidden, dim)
        with torch.no_grad():
            head.weight.copy_(torch.randn(dim, hidden, generator=g) / hidden ** 0.5)
            head.bias.zero_()
        setattr(model, ATTR, head)  # a submodule: the Trainer optimises and checkpoints it
        self.model, self.head, self.weight, self._tokens = model, head, weight, None
        self._hook = visual.register_forward_hook(self._record)

    def _record(self, module, args, output) -> None:
        # read now: get_image_features later replaces pooler_output with a per-image split
        self._tokens = output.pooler_output

    @staticmethod
    def split(inputs: dict[str, Any]) -> tuple[dict[str, Any], Any, Any]:
        """(model inputs without the teacher keys, target, mask); target None when absent."""
        if TARGET not in inputs:
            return inputs, None, None
        rest = {k: v for k, v in inputs.items() if k not in (TARGET, MASK)}
        return rest, inputs[TARGET], inputs[MASK]

    def loss(self, target, mask, grid_thw):
        """Mean ``1 - cos(head(mean image tokens), target)`` over images with a target (None: none)."""
        import torch

        tokens, self._tokens = self._tokens, None
        if tokens is None or not bool(mask.any()):
            return None
        sizes = (grid_thw.prod(-1) // self.model.model.visual.spatial_merge_size ** 2).tolist()
        pooled = torch.stack([t.mean(0) for t in torch.split(tokens, sizes)])
        pred = torch.nn.functional.normalize(self.head(pooled[mask]), dim=-1)
        return (1 - (pred * target[mask].to(pred.dtype)).sum(-1)).mean()

    def detach(self) -> None:
        """Remove the hook and the head: the model is a plain Qwen2.5-VL again."""
        self._hook.remove()
        if hasattr(self.model, ATTR):
            delattr(self.model, ATTR)
