"""Class-balanced resampling of the train split with a temperature and a repeat cap.

Myntra has ~1,000 T-shirts and a handful of rain jackets; trained on the natural mix a small
model learns "T-shirt" and little else. Each product gets a weight prod_f freq_f(value)**(T-1)
over the balance fields, so a class's expected share moves towards ~freq**T (T=1 keeps the
mix, T=0 would make classes uniform). ``min_repeat`` 1 keeps every product at least once (the
catalog is small; dropping T-shirts would throw information away) and ``max_repeat`` bounds how
much a rare class can be over-fit; the extra records (``size_factor``) go to rare classes. Val and test keep the natural mix: they measure
what the tagger will meet.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from mmrec.attributes.dataset.product import Product


def class_balance(values: Sequence[str | None], top: int = 8) -> dict[str, Any]:
    """Summary of one field's label distribution: classes, entropy, top shares, imbalance."""
    counts = Counter(v for v in values if v is not None)
    n = sum(counts.values())
    if n == 0:
        return {"labelled": 0, "coverage": 0.0, "classes": 0, "entropy_bits": 0.0,
                "normalized_entropy": None, "top": [], "max_min_ratio": None}
    probs = [c / n for c in counts.values()]
    entropy = max(0.0, -sum(p * math.log2(p) for p in probs))
    return {
        "labelled": n,
        "coverage": round(n / len(values), 4) if values else 0.0,
        "classes": len(counts),
        "entropy_bits": round(entropy, 4),
        "normalized_entropy": round(entropy / math.log2(len(counts)), 4) if len(counts) > 1 else 1.0,
        "top": [[v, round(c / n, 4)] for v, c in counts.most_common(top)],
        "max_min_ratio": round(max(counts.values()) / min(counts.values()), 2),
    }


def balanced_copies(products: Sequence["Product"], fields: Sequence[str], temperature: float,
                    min_repeat: float, max_repeat: float, size: int,
                    rng: np.random.Generator) -> np.ndarray:
    """How many times each product appears after resampling (integer array, seeded rounding).

    Expected copies are proportional to the weights, clipped to [min_repeat, max_repeat], with
    the clipped mass handed back to the unclipped products so the total stays ``size``.
    """
    n = len(products)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    weights = np.ones(n, dtype=np.float64)
    for f in fields:
        vals = [p.labels.get(f) for p in products]
        counts = Counter(v for v in vals if v is not None)
        total = sum(counts.values())
        for i, v in enumerate(vals):
            if v is not None:
                weights[i] *= (counts[v] / total) ** (temperature - 1.0)
    target = float(size)
    expected = weights / weights.sum() * target
    for _ in range(50):
        expected = np.clip(expected, min_repeat, max_repeat)
        free = (expected > min_repeat) & (expected < max_repeat)
        gap = target - expected.sum()
        if abs(gap) <= 1e-6 * target or not free.any():
            break
        expected[free] += gap * weights[free] / weights[free].sum()
    base = np.floor(expected)
    return (base + (rng.random(n) < expected - base)).astype(np.int64)


def resample(products: Sequence["Product"], fields: Sequence[str], temperature: float,
             min_repeat: float, max_repeat: float, size: int, rng: np.random.Generator
             ) -> tuple[list["Product"], dict[str, Any]]:
    """Return the resampled (shuffled) train list and before/after balance per field."""
    copies = balanced_copies(products, fields, temperature, min_repeat, max_repeat, size, rng)
    out = [p for p, c in zip(products, copies) for _ in range(int(c))]
    order = rng.permutation(len(out))
    out = [out[i] for i in order]
    stats = {
        "products_before": len(products),
        "records_after": len(out),
        "products_after": int((copies > 0).sum()),
        "max_copies": int(copies.max()) if len(copies) else 0,
        "balance_before": {f: class_balance([p.labels.get(f) for p in products]) for f in fields},
        "balance_after": {f: class_balance([p.labels.get(f) for p in out]) for f in fields},
    }
    return out, stats
