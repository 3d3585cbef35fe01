"""Catalog ingest: adapter -> validation -> items.parquet artifact with report and diff.

`ingest_catalog` is the function behind `mmrec catalog ingest`. It never modifies an existing
version: a changed catalog becomes a new version with a diff against the previous CURRENT, and
an unchanged one writes nothing (the current version already is that catalog).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore, sha256_file
from mmrec.catalog.adapters import ADAPTERS
from mmrec.catalog.config import IngestConfig
from mmrec.catalog.validate import ValidationReport, validate_records
from mmrec.errors import ArtifactNotFound, InputError
from mmrec.schemas import ITEM_CONTENT_COLUMNS, ITEMS_SCHEMA, ITEMS_SCHEMA_VERSION
from mmrec.taxonomy import Taxonomy, default_taxonomy

# attributes/tagger.py imports the kind under this name
KIND = kinds.ITEMS
ITEMS_FILE = "items.parquet"
REPORT_FILE = "report.json"
DIFF_FILE = "diff.json"


class TooManyErrors(InputError):
    """The share of bad rows passed ``max_error_rate``: nothing was written."""

    def __init__(self, report: ValidationReport, threshold: float):
        self.report = report
        counts = report.as_dict()["error_counts"]
        super().__init__(
            f"{report.rows_with_errors} of {report.rows_in} rows have errors "
            f"({report.error_rate:.1%} > max_error_rate {threshold:.1%}); nothing was written. "
            f"Error counts: {counts}. First errors: "
            + "; ".join(f"row {p.row} {p.field}: {p.message}" for p in report.errors[:5]))


@dataclass
class IngestResult:
    report: ValidationReport
    artifact: Artifact | None      # None when the catalog was unchanged (or a dry run)
    diff: dict[str, Any] | None
    unchanged: bool = False


def read_and_validate(source: str | Path, cfg: IngestConfig, *, taxonomy: Taxonomy | None = None,
                      progress: bool = True) -> tuple[list[dict[str, Any]], ValidationReport]:
    adapter = ADAPTERS[cfg.format]
    return validate_records(adapter(Path(source), cfg), cfg, taxonomy or default_taxonomy(),
                            progress=progress)


def items_table(items: list[dict[str, Any]]) -> pa.Table:
    """Build the typed items table (attributes as a map) sorted by item id."""
    rows = []
    for it in sorted(items, key=lambda r: r["item_id"]):
        row = dict(it)
        row["attributes"] = sorted(it["attributes"].items())
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA)


def _content_key(row: dict[str, Any]) -> str:
    return json.dumps({c: row.get(c) for c in ITEM_CONTENT_COLUMNS if c != "item_id"},
                      sort_keys=True, default=str)


def diff_items(old: pa.Table | None, new_items: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compare with the previous version; return the diff and the previous rows by id."""
    new_by_id = {it["item_id"]: it for it in new_items}
    if old is None:
        return {"previous_version": None, "added": sorted(new_by_id), "removed": [], "changed": []}, {}
    old_rows = {r["item_id"]: r for r in old.to_pylist()}
    for r in old_rows.values():
        r["attributes"] = dict(r["attributes"] or [])
    added = sorted(set(new_by_id) - set(old_rows))
    removed = sorted(set(old_rows) - set(new_by_id))
    changed = sorted(i for i in set(new_by_id) & set(old_rows)
                     if _content_key(new_by_id[i]) != _content_key(old_rows[i]))
    return {"added": added, "removed": removed, "changed": changed}, old_rows


def ingest_catalog(source: str | Path, cfg: IngestConfig, store: ArtifactStore, *,
                   taxonomy: Taxonomy | None = None, progress: bool = True,
                   force_new_version: bool = False) -> IngestResult:
    """Ingest ``source`` into a new items artifact; raise TooManyErrors past the threshold."""
    items, report = read_and_validate(source, cfg, taxonomy=taxonomy, progress=progress)
    if report.error_rate > cfg.max_error_rate:
        raise TooManyErrors(report, cfg.max_error_rate)
    if not items:
        raise InputError(f"{source}: no valid rows ({report.rows_in} rows read)")

    try:
        previous = store.load(kinds.ITEMS)
        old_table = pq.read_table(previous.file(ITEMS_FILE))
    except ArtifactNotFound:
        previous, old_table = None, None
    diff, old_rows = diff_items(old_table, items)
    if previous is not None:
        diff["previous_version"] = previous.version
        if not (diff["added"] or diff["removed"] or diff["changed"]) and not force_new_version:
            return IngestResult(report, None, diff, unchanged=True)

    now = _dt.datetime.now(_dt.timezone.utc)
    for it in items:
        old = old_rows.get(it["item_id"])
        # unchanged items keep their timestamp so that "freshness" features stay meaningful
        keep = old is not None and _content_key(old) == _content_key(it)
        it["updated_at"] = old["updated_at"] if keep else now
    table = items_table(items)

    src = Path(source)
    with store.write(kinds.ITEMS, config=cfg.model_dump(mode="json"),
                     schema_version=ITEMS_SCHEMA_VERSION) as w:
        pq.write_table(table, w.path / ITEMS_FILE, compression="zstd")
        (w.path / REPORT_FILE).write_text(json.dumps(report.as_dict(), indent=1), encoding="utf-8")
        (w.path / DIFF_FILE).write_text(json.dumps(diff, indent=1), encoding="utf-8")
        for p in ([src / "styles.csv"] if src.is_dir() and (src / "styles.csv").is_file() else [src]):
            w.add_input(p, sha256=sha256_file(p) if p.is_file() else None)
        w.metrics = {
            "rows_in": report.rows_in, "items_out": report.items_out,
            "error_rate": round(report.error_rate, 6),
            "added": len(diff["added"]), "removed": len(diff["removed"]),
            "changed": len(diff["changed"]), "coverage": report.coverage,
        }
        w.extra["source_format"] = cfg.format
    return IngestResult(report, store.load(kinds.ITEMS), diff)


def load_items(store: ArtifactStore, version: str | None = None, *,
               columns: list[str] | None = None) -> pa.Table:
    """Read the items table of ``version`` (default CURRENT), verified against its manifest."""
    art = store.load(kinds.ITEMS, version)
    return pq.read_table(art.file(ITEMS_FILE), columns=columns)
