"""Split products into train/val/test by product, respecting near-duplicate groups.

The test split is the project-wide held-out set (`mmrec.splits`: id % 10 == 0), so that the
tagger, the encoder and the benchmark all evaluate on the same unseen products. A near-duplicate
group that contains a test product goes to test entirely, and one that contains a validation
product (and no test product) goes to val: the same photo must never sit on both sides. The
assignment depends only on item ids and image hashes, so it is stable across runs.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Sequence

from mmrec.splits import split_of

if TYPE_CHECKING:  # pragma: no cover
    from mmrec.attributes.dataset.product import Product

_PRIORITY = {"test": 0, "val": 1, "train": 2}


def assign_splits(products: Sequence["Product"]) -> dict[str, int]:
    """Set ``product.split``; return split sizes and how many products a group moved."""
    by_group: dict[int, list[Product]] = defaultdict(list)
    for i, p in enumerate(products):
        by_group[p.group if p.group >= 0 else -(i + 1)].append(p)
    moved: Counter = Counter()
    for members in by_group.values():
        own = [split_of(p.item_id) for p in members]
        target = min(own, key=_PRIORITY.__getitem__)
        for p, s in zip(members, own):
            p.split = target
            if s != target:
                moved[f"{s}->{target}"] += 1
    sizes = Counter(p.split for p in products)
    return {**{s: sizes.get(s, 0) for s in ("train", "val", "test")},
            "moved_by_group": dict(sorted(moved.items()))}
