"""Cleaning: items table -> usable, labelled products with canonical labels and scrubbed text.

A row is dropped when its image is missing or undecodable, or when it lacks a required label.
Labels are re-canonicalised through the taxonomy (the items table may come from any adapter,
including a generic CSV), labels from untrusted sources are ignored, and titles are scrubbed
of personal data. Every decision is counted for the quality report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from mmrec.attributes.dataset import pii
from mmrec.attributes.dataset.config import SftDataConfig
from mmrec.attributes.dataset.dedup import fingerprint
from mmrec.attributes.dataset.product import Product
from mmrec.images import ImageError, ImageLimits, load_image
from mmrec.taxonomy import Taxonomy

# Columns of the items table whose label source is the catalog itself (no `attributes` entry).
_COLUMN_FIELDS = ("category", "slot", "gender")


@dataclass
class CleanResult:
    products: list[Product]
    counts: dict[str, Any]


def _labels_of(row: dict[str, Any], fields: Iterable[str], taxonomy: Taxonomy,
               trusted: set[str], counts: Counter) -> tuple[dict[str, str | None], dict[str, str]]:
    attrs = dict(row.get("attributes") or [])
    labels: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for f in fields:
        raw, source = row.get(f), "catalog"
        if f not in _COLUMN_FIELDS and f in attrs and attrs[f] is not None:
            raw, source = attrs[f]["value"], attrs[f]["source"]
        if raw is None:
            labels[f] = None
            continue
        if source not in trusted:
            counts[f"untrusted_label:{f}"] += 1
            labels[f] = None
            continue
        value = taxonomy.canonical(f, str(raw))
        if value is None:
            counts[f"invalid_label:{f}"] += 1
        labels[f] = value
        if value is not None:
            sources[f] = source
    return labels, sources


def clean_items(table: pa.Table, cfg: SftDataConfig, taxonomy: Taxonomy, *,
                progress: bool = False) -> CleanResult:
    """Apply the cleaning steps to an items table; returns products and per-reason counts."""
    from tqdm import tqdm

    counts: Counter = Counter()
    pii_hits: Counter = Counter()
    limits = ImageLimits(min_side=cfg.clean.min_image_side)
    trusted = set(cfg.clean.label_sources)
    # Required fields are read even when not predicted, so that the drop rule can see them.
    read_fields = list(dict.fromkeys([*cfg.fields, *cfg.clean.required_fields,
                                      *cfg.dedup.lookalike_fields, *cfg.sampling.balance_fields]))
    products: list[Product] = []
    rows = table.to_pylist()
    counts["rows_in"] = len(rows)
    for row in tqdm(rows, desc="clean", unit="item", disable=not progress):
        item_id = str(row["item_id"])
        uri = row.get("image_uri")
        if not uri or not Path(uri).is_file():
            counts["dropped_no_image"] += 1
            continue
        labels, sources = _labels_of(row, read_fields, taxonomy, trusted, counts)
        missing = [f for f in cfg.clean.required_fields if labels.get(f) is None]
        if missing:
            counts["dropped_missing_label"] += 1
            continue
        fp = None
        if cfg.clean.decode_images:
            try:
                img = load_image(uri, limits)
            except ImageError as e:
                counts[f"dropped_bad_image:{e.reason}"] += 1
                continue
            fp = fingerprint(img, row.get("image_sha256"), hash_size=cfg.dedup.hash_size)
        title = row.get("title") or ""
        if cfg.clean.scrub_pii:
            title, hits = pii.scrub(title)
            pii_hits.update(hits)
        products.append(Product(item_id=item_id, image_path=str(uri),
                                image_sha256=row.get("image_sha256"), title=title or "",
                                labels=labels, label_sources=sources, fp=fp))
    counts["kept"] = len(products)
    return CleanResult(products, {
        **dict(sorted(counts.items())),
        "pii_hits_scrubbed": dict(pii_hits),
    })
