"""`mmrec sft build`: items artifact -> SFT dataset artifact (records, products, quality report).

Steps, each counted in ``quality_report.json``: clean -> exact de-dup -> near-duplicate groups
-> split by product (groups kept together; test = the shared held-out products) -> cap dense
look-alike clusters (train) -> temperature-balanced resampling (train) -> records -> PII
re-scan of every record (must find nothing, or the build fails).

Artifact ``sft_dataset/<version>/``::

    train.jsonl val.jsonl test.jsonl          messages + images records (JSON tasks on val/test)
    caption_train.jsonl caption_val.jsonl     image -> title (the mini model's base stage)
    products.parquet                          one row per product: split, group, labels, image
    fields.json                               answered fields and their allowed values
    prompts.json                              the prompt templates used
    quality_report.json  contact_sheet.jpg
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.attributes.dataset import quality
from mmrec.attributes.dataset.clean import clean_items
from mmrec.attributes.dataset.config import SftDataConfig
from mmrec.attributes.dataset.dedup import cap_lookalike_clusters, drop_exact_duplicates, group_near_duplicates
from mmrec.attributes.dataset.product import Product
from mmrec.attributes.dataset.records import caption_records, eval_records, train_records
from mmrec.attributes.dataset.sampling import resample
from mmrec.attributes.dataset.split import assign_splits
from mmrec.attributes.prompts import load_prompts
from mmrec.config import resolve_path
from mmrec.errors import InputError
from mmrec.taxonomy import Taxonomy, default_taxonomy

# attributes/train.py and attributes/quickstart.py import the kind under this name
KIND = kinds.SFT_DATASET
SCHEMA_VERSION = 1
RECORD_FILES = ("train", "val", "test", "caption_train", "caption_val")


class PiiLeak(InputError):
    """Personal data survived scrubbing; nothing was written."""


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def products_table(products: Sequence[Product], fields: Sequence[str], copies: dict[str, int]) -> pa.Table:
    cols: dict[str, list] = {
        "item_id": [p.item_id for p in products],
        "split": [p.split for p in products],
        "group": [int(p.group) for p in products],
        "image_path": [p.image_path for p in products],
        "image_sha256": [p.fp.sha256 if p.fp else p.image_sha256 for p in products],
        "title": [p.title for p in products],
        "train_copies": [int(copies.get(p.item_id, 0)) for p in products],
    }
    for f in fields:
        cols[f] = [p.labels.get(f) for p in products]
    return pa.table(cols)


def _subset(table: pa.Table, n: int | None, seed: int) -> pa.Table:
    if n is None or n >= table.num_rows:
        return table
    idx = np.sort(np.random.default_rng(seed).choice(table.num_rows, size=n, replace=False))
    return table.take(pa.array(idx))


def build_dataset(store: ArtifactStore, cfg: SftDataConfig, *, taxonomy: Taxonomy | None = None,
                  progress: bool = False) -> Artifact:
    """Run every step of the recipe and write a new ``sft_dataset`` artifact (made CURRENT)."""
    from mmrec.catalog.ingest import load_items

    t0 = time.perf_counter()
    tax = taxonomy or default_taxonomy()
    rng = np.random.default_rng(cfg.seed)
    items_art = store.load(kinds.ITEMS, cfg.items_version)
    table = _subset(load_items(store, items_art.version), cfg.max_items, cfg.seed)
    prompts = load_prompts(cfg.prompts)
    fields = list(cfg.fields)

    cleaned = clean_items(table, cfg, tax, progress=progress)
    products = cleaned.products
    exact_dropped = 0
    if cfg.dedup.exact:
        products, exact_dropped = drop_exact_duplicates(products)
    near = (group_near_duplicates(products, cfg.dedup.max_distance) if cfg.dedup.near
            else {"pairs": 0, "groups_with_duplicates": 0, "products_in_groups": 0, "largest_group": 0})
    split_stats = assign_splits(products)
    by_split = {s: [p for p in products if p.split == s] for s in ("train", "val", "test")}
    if not by_split["train"]:
        raise InputError(f"no train products left after cleaning ({cleaned.counts}); "
                         "check the items artifact and clean.required_fields")

    train, lookalike = cap_lookalike_clusters(by_split["train"], cfg.dedup.lookalike_fields,
                                              cfg.dedup.max_per_lookalike_cluster, rng)
    s = cfg.sampling
    sampled, sampling_stats = resample(train, s.balance_fields, s.temperature, s.min_repeat,
                                       s.max_repeat, round(s.size_factor * len(train)), rng)
    copies: dict[str, int] = {}
    for p in sampled:
        copies[p.item_id] = copies.get(p.item_id, 0) + 1

    records = {
        "train": train_records(sampled, prompts, fields, cfg.tasks, rng),
        "val": eval_records(by_split["val"], prompts, fields),
        "test": eval_records(by_split["test"], prompts, fields),
        "caption_train": caption_records(train, prompts, rng) if cfg.tasks.caption else [],
        "caption_val": caption_records(by_split["val"], prompts, rng) if cfg.tasks.caption else [],
    }
    leaks = quality.pii_hits(records)
    if any(leaks.values()):
        raise PiiLeak(f"personal data found in records after scrubbing: {leaks}; nothing was "
                      "written. Turn on clean.scrub_pii or extend mmrec/attributes/dataset/pii.py")

    report = {
        "recipe": cfg.name,
        "items_version": items_art.version,
        "steps": {
            "clean": cleaned.counts,
            "exact_dedup": {"dropped": exact_dropped},
            "near_dedup": near,
            "split": split_stats,
            "lookalike_cap": lookalike,
            "sampling": sampling_stats,
        },
        "coverage_before": quality.field_coverage(cleaned.products, fields),
        "coverage_train_after": quality.field_coverage(sampled, fields),
        "duplicates_removed": {"exact": exact_dropped, "lookalike_capped": lookalike["dropped"]},
        "pii": {"scrubbed": cleaned.counts["pii_hits_scrubbed"], "hits_after": leaks},
        "splits": {k: len(v) for k, v in by_split.items()},
        "records": quality.record_counts(records),
    }
    values = {f: tax.values(f) for f in fields}
    with store.write(kinds.SFT_DATASET, config=cfg.model_dump(mode="json"), schema_version=SCHEMA_VERSION) as w:
        for name in RECORD_FILES:
            write_jsonl(w.path / f"{name}.jsonl", records[name])
        pq.write_table(products_table(products, fields, copies), w.path / "products.parquet")
        (w.path / "fields.json").write_text(json.dumps({"fields": fields, "values": values,
                                                        "unknown": prompts.unknown}, indent=1))
        (w.path / "prompts.json").write_text(prompts.model_dump_json(indent=1))
        report["contact_sheet_samples"] = quality.contact_sheet(
            products, fields, w.path / "contact_sheet.jpg", n=cfg.report.contact_sheet_samples,
            thumb=cfg.report.thumb_size, rng=np.random.default_rng(cfg.seed + 1))
        report["seconds"] = round(time.perf_counter() - t0, 1)
        (w.path / "quality_report.json").write_text(json.dumps(report, indent=1, default=str))
        w.add_artifact_input(items_art)
        w.add_input(resolve_path(cfg.prompts))
        w.metrics = {"products": len(products), **report["splits"],
                     "train_records": len(records["train"]), "pii_hits_after": sum(leaks.values()),
                     "exact_duplicates": exact_dropped, "near_duplicate_groups": near["groups_with_duplicates"]}
    return store.load(kinds.SFT_DATASET, w.version)


def load_dataset(store: ArtifactStore, ref: str | None = None) -> Artifact:
    """The dataset artifact by version, path or CURRENT."""
    return store.resolve(ref, kinds.SFT_DATASET)
