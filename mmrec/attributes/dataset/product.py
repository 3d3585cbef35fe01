"""The record every dataset step passes along: one usable product and its image fingerprint.

It lives apart from the steps (clean, dedup, split, sampling, records, quality) because each of
them reads or annotates it; in the step that creates it, dedup (which fills ``fp`` and
``group``) would have to import clean while clean imports dedup's hashing.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Fingerprint:
    sha256: str
    phash: tuple[int, ...]  # the pHash bits as 64-bit words
    layout: int             # 16-bit 4x4 luminance layout (above/below the mean)


@dataclass
class Product:
    """One usable product: its image, canonical labels (None = not labelled) and clean title."""

    item_id: str
    image_path: str
    image_sha256: str | None
    title: str
    labels: dict[str, str | None]
    label_sources: dict[str, str] = field(default_factory=dict)
    fp: Fingerprint | None = None
    group: int = -1        # near-duplicate group id (set by dedup)
    split: str = "train"   # set by splitting

    def n_labels(self) -> int:
        return sum(v is not None for v in self.labels.values())
