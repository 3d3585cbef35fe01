"""The dataset's quality report: coverage, label entropy, balance, duplicates, PII, splits.

Plus a contact sheet (JPEG grid of random samples with their labels) that a person can eyeball
in ten seconds: wrong labels, broken crops and odd sampling are visible at a glance.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from mmrec.attributes.dataset import pii
from mmrec.attributes.dataset.records import record_texts
from mmrec.attributes.dataset.sampling import class_balance

if TYPE_CHECKING:  # pragma: no cover
    from mmrec.attributes.dataset.product import Product


def field_coverage(products: Sequence["Product"], fields: Sequence[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for f in fields:
        bal = class_balance([p.labels.get(f) for p in products], top=5)
        out[f] = {k: bal.get(k) for k in ("coverage", "classes", "entropy_bits", "normalized_entropy", "top")}
    return out


def pii_hits(records_by_file: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Personal-data hits left in any record text (must be all zero)."""
    hits: Counter = Counter()
    for recs in records_by_file.values():
        for r in recs:
            for text in record_texts(r):
                hits.update(pii.scan(text))
    return {k: int(hits.get(k, 0)) for k in pii.PII_KINDS}


def record_counts(records_by_file: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, int]]:
    return {name: dict(Counter(r["task"] for r in recs)) for name, recs in records_by_file.items()}


def contact_sheet(products: Sequence["Product"], fields: Sequence[str], path: Path, *, n: int,
                  thumb: int, rng: np.random.Generator, cols: int = 6) -> int:
    """Write a JPEG grid of ``n`` random products with their split and labels; return how many."""
    from PIL import Image, ImageDraw

    from mmrec.images import load_image, resize_letterbox

    if n <= 0 or not products:
        return 0
    pick = rng.choice(len(products), size=min(n, len(products)), replace=False)
    shown = [f for f in ("category", "gender", "colour", "usage", "pattern") if f in fields][:4]
    line_h = 12
    cell_h = thumb + line_h * (len(shown) + 1) + 4
    rows = (len(pick) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * (thumb + 8), rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for k, i in enumerate(pick):
        p = products[int(i)]
        x, y = (k % cols) * (thumb + 8) + 4, (k // cols) * cell_h + 2
        try:
            img = resize_letterbox(load_image(p.image_path), thumb)
            sheet.paste(img, (x, y))
        except Exception as e:  # noqa: BLE001 - a broken thumbnail must not sink the report
            draw.text((x, y + thumb // 2), f"unreadable: {type(e).__name__}", fill="red")
        lines = [f"{p.item_id} [{p.split}]"] + [f"{f}: {p.labels.get(f) or '-'}" for f in shown]
        for j, text in enumerate(lines):
            draw.text((x, y + thumb + 2 + j * line_h), text[:24], fill="black")
    sheet.save(path, "JPEG", quality=85)
    return len(pick)
