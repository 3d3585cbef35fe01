"""A linear slot head on the encoder's image vector: which outfit slot a photo shows.

The contrastive objective alone leaves the slot of a phone photo weakly placed: the mini
encoder's photo vectors vote the right slot about half the time. A slot head trained with
cross-entropy next to the contrastive loss (`train.slot_head.weight`), on the catalog's
packshots and the train photographers' labelled phone photos alike, puts the supervision where
the kiosk needs it; the head reads the same unit vector the index stores, so serving it costs a
7 x d product per photo. Items and photos whose slot is "other" (or unlabelled) add no loss.

Saved beside the encoder as ``slot_head.json`` (slots, weight, bias, scale); an encoder
without the file has no head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmrec.taxonomy import SLOTS

HEAD_FILE = "slot_head.json"
HEAD_SLOTS = tuple(s for s in SLOTS if s != "other")  # the slots an outfit can hold
IGNORE = -100  # torch's cross-entropy ignore_index: a row without a head slot


def slot_targets(slots: list[str | None]) -> np.ndarray:
    """Class index per row (IGNORE for "other" or no slot)."""
    return np.array([HEAD_SLOTS.index(s) if s in HEAD_SLOTS else IGNORE for s in slots], dtype=np.int64)


@dataclass
class SlotHead:
    """softmax(scale * (W v) + b) over `HEAD_SLOTS`, for unit image vectors v."""

    slots: tuple[str, ...]
    weight: np.ndarray  # [n_slots, d]
    bias: np.ndarray    # [n_slots]
    scale: float

    def probs(self, vectors: np.ndarray) -> np.ndarray:
        """[n, n_slots] slot probabilities of unit image vectors [n, d]."""
        z = self.scale * (np.asarray(vectors, dtype=np.float32) @ self.weight.T) + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def save(self, folder: str | Path) -> None:
        Path(folder, HEAD_FILE).write_text(json.dumps({
            "slots": list(self.slots), "scale": self.scale, "weight": self.weight.tolist(),
            "bias": self.bias.tolist()}), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> "SlotHead | None":
        """The head saved in ``folder``, or None when the encoder was trained without one."""
        path = Path(folder, HEAD_FILE)
        if not path.is_file():
            return None
        d = json.loads(path.read_text(encoding="utf-8"))
        return cls(tuple(d["slots"]), np.asarray(d["weight"], dtype=np.float32),
                   np.asarray(d["bias"], dtype=np.float32), float(d["scale"]))

    @classmethod
    def from_torch(cls, linear: Any, scale: float) -> "SlotHead":
        """From the trained ``torch.nn.Linear``: the scale is applied before it (logits =
        linear(scale * v)), so the bias is not scaled."""
        return cls(HEAD_SLOTS, linear.weight.detach().cpu().numpy().astype(np.float32),
                   linear.bias.detach().cpu().numpy().astype(np.float32), float(scale))
