"""Validation of raw catalog records: every problem is collected with its row and field.

A row with an *error* is skipped (its item cannot be recommended truthfully); a *warning*
keeps the row but drops the offending value (e.g. an unknown colour becomes null rather than
a guess). The report is what a retailer reads to fix their feed, so every entry names the
source row (1-based over data rows), the item id when known, the field and the bad value.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mmrec.catalog.adapters import RawRecord
from mmrec.catalog.config import IngestConfig
from mmrec.images import ImageError, ImageInfo, inspect_image
from mmrec.schemas import ATTRIBUTE_FIELDS
from mmrec.taxonomy import Taxonomy
from mmrec.title_rules import extract_title_attributes

ERROR_KINDS = (
    "malformed_row", "missing_id", "duplicate_id", "empty_title", "missing_category",
    "unknown_category", "bad_year", "bad_price", "bad_in_stock", "missing_image",
    "unreadable_image", "too_small_image",
)
WARNING_KINDS = ("unknown_value", "missing_image")
MAX_WARNINGS_LISTED = 1000

# Taxonomy fields canonicalised from catalog columns (value dropped with a warning if unknown).
CANONICAL_FIELDS = ("gender", "colour", "pattern", "material", "fit", "sleeve", "neckline", "season", "usage")
TITLE_FIELDS = ("pattern", "material", "fit", "sleeve", "neckline")
TRUE_WORDS = {"true", "1", "yes", "y", "t"}
FALSE_WORDS = {"false", "0", "no", "n", "f"}


@dataclass
class Problem:
    row: int
    item_id: str | None
    field: str
    kind: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "item_id": self.item_id, "field": self.field, "kind": self.kind,
                "message": self.message}


@dataclass
class ValidationReport:
    rows_in: int = 0
    items_out: int = 0
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    coverage: dict[str, float] = field(default_factory=dict)
    title_coverage: dict[str, int] = field(default_factory=dict)

    @property
    def rows_with_errors(self) -> int:
        return len({p.row for p in self.errors})

    @property
    def error_rate(self) -> float:
        return self.rows_with_errors / self.rows_in if self.rows_in else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "items_out": self.items_out,
            "rows_with_errors": self.rows_with_errors,
            "error_rate": round(self.error_rate, 6),
            "error_counts": dict(sorted(Counter(p.kind for p in self.errors).items())),
            "errors": [p.as_dict() for p in self.errors],
            "warning_counts": dict(sorted(Counter(p.kind for p in self.warnings).items())),
            "warnings": [p.as_dict() for p in self.warnings[:MAX_WARNINGS_LISTED]],
            "warnings_listed": min(len(self.warnings), MAX_WARNINGS_LISTED),
            "coverage": self.coverage,
            "title_coverage": self.title_coverage,
        }


def _check_image(path: Path | None, cfg: IngestConfig) -> ImageInfo | ImageError | None:
    if path is None:
        return None
    try:
        _, info = inspect_image(path, cfg.images)
    except ImageError as e:
        return e
    return info


def _parse_int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(v)
    if isinstance(v, (int,)):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return int(str(v).strip())


def validate_records(records: Iterable[RawRecord], cfg: IngestConfig, taxonomy: Taxonomy,
                     *, progress: bool = True) -> tuple[list[dict[str, Any]], ValidationReport]:
    """Validate and canonicalise ``records``; return the good items and the full report."""
    from tqdm import tqdm

    recs = list(records)
    report = ValidationReport(rows_in=len(recs))
    need_image = cfg.needs_image()
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        images = list(tqdm(pool.map(lambda r: _check_image(r.image_path, cfg), recs),
                           total=len(recs), desc="images", unit="img", disable=not progress,
                           mininterval=1.0))
    seen: set[str] = set()
    items: list[dict[str, Any]] = []
    for rec, img in zip(recs, images):
        item = _validate_one(rec, img, cfg, taxonomy, report, seen, need_image)
        if item is not None:
            items.append(item)
    report.items_out = len(items)
    if items:
        for f in ("brand",) + ATTRIBUTE_FIELDS:
            report.coverage[f] = round(sum(1 for it in items if it.get(f)) / len(items), 4)
        report.title_coverage = dict(Counter(
            f for it in items for f, a in it["attributes"].items() if a["source"] == "title"))
    return items, report


def _validate_one(rec: RawRecord, img: ImageInfo | ImageError | None, cfg: IngestConfig,
                  tax: Taxonomy, report: ValidationReport, seen: set[str],
                  need_image: bool) -> dict[str, Any] | None:
    f = rec.fields
    item_id = None if f.get("item_id") is None else str(f["item_id"]).strip() or None
    n_errors = len(report.errors)

    def error(fieldname: str, kind: str, message: str) -> None:
        report.errors.append(Problem(rec.row, item_id, fieldname, kind, message))

    def warn(fieldname: str, kind: str, message: str) -> None:
        report.warnings.append(Problem(rec.row, item_id, fieldname, kind, message))

    if "_malformed" in f:
        error("_row", "malformed_row", f"row {rec.row}: {f['_malformed']}")
        return None
    if item_id is None:
        error("item_id", "missing_id", "item id is empty")
    elif item_id in seen:
        error("item_id", "duplicate_id", f"item id {item_id!r} already appeared in an earlier row")
    else:
        seen.add(item_id)

    title = (f.get("title") or "").strip() if isinstance(f.get("title"), str) else f.get("title")
    if not title:
        error("title", "empty_title", "title is empty")

    raw_cat = f.get("category")
    category = tax.canonical("category", raw_cat) if raw_cat else None
    if raw_cat is None:
        error("category", "missing_category", "category is empty")
    elif category is None:
        error("category", "unknown_category",
              f"category {raw_cat!r} is not in the taxonomy (add it or a synonym to taxonomy.yaml)")

    year = None
    if f.get("year") is not None:
        try:
            year = _parse_int(f["year"])
        except (TypeError, ValueError):
            error("year", "bad_year", f"year {f['year']!r} is not an integer")
        else:
            if not cfg.year_min <= year <= cfg.year_max:
                error("year", "bad_year", f"year {year} outside [{cfg.year_min}, {cfg.year_max}]")

    price = None
    if f.get("price") is not None:
        try:
            price = float(f["price"])
            if not price >= 0 or price == float("inf"):
                raise ValueError
        except (TypeError, ValueError):
            error("price", "bad_price", f"price {f['price']!r} is not a non-negative number")
            price = None

    in_stock = cfg.default_in_stock
    if f.get("in_stock") is not None:
        v = f["in_stock"]
        word = str(v).strip().lower()
        if isinstance(v, bool):
            in_stock = v
        elif word in TRUE_WORDS:
            in_stock = True
        elif word in FALSE_WORDS:
            in_stock = False
        else:
            error("in_stock", "bad_in_stock", f"in_stock {v!r} is not a boolean (true/false/1/0)")

    info: ImageInfo | None = None
    if rec.image_path is None and item_id is None:
        pass  # the id error already explains it (adapters derive image paths from the id)
    elif rec.image_path is None or (isinstance(img, ImageError) and img.reason == "not_found"):
        where = f" ({rec.image_path})" if rec.image_path else ""
        (error if need_image else warn)("image", "missing_image", f"no image{where}")
    elif isinstance(img, ImageError):
        kind = "too_small_image" if img.reason == "too_small" else "unreadable_image"
        error("image", kind, str(img))
    else:
        info = img

    if len(report.errors) > n_errors:
        return None

    attributes: dict[str, dict[str, Any]] = {}
    values: dict[str, Any] = {}
    for name in CANONICAL_FIELDS:
        raw = f.get(name)
        if raw is None:
            continue
        value = tax.canonical(name, str(raw))
        if value is None:
            warn(name, "unknown_value", f"{name} {raw!r} is not in the taxonomy; stored as null")
            continue
        values[name] = value
        if name in ATTRIBUTE_FIELDS:
            attributes[name] = {"value": value, "source": "catalog", "confidence": None}

    brand = f.get("brand")
    if cfg.title_rules and title:
        found = extract_title_attributes(str(title), tax, gender=values.get("gender"), category=category)
        for name, attr in found.items():
            if name == "brand":
                brand = brand or attr.value
            elif name in TITLE_FIELDS and name not in values:
                values[name] = attr.value
                attributes[name] = {"value": attr.value, "source": "title", "confidence": None}

    return {
        "item_id": item_id,
        "title": str(title),
        "brand": brand,
        "gender": values.get("gender"),
        "category": category,
        "slot": tax.slot_of(category),
        **{name: values.get(name) for name in ATTRIBUTE_FIELDS},
        "year": year,
        "price": price,
        "in_stock": in_stock,
        "image_uri": str(Path(rec.image_path).resolve()) if info is not None else None,
        "image_sha256": info.sha256 if info else None,
        "image_width": info.width if info else None,
        "image_height": info.height if info else None,
        "attributes": attributes,
        "source": cfg.format,
    }
