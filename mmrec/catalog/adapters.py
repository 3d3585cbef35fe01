"""Source adapters: turn a retailer's files into raw records keyed by contract field names.

Adapters only read and rename; they do not judge. Validation and canonicalisation happen in
`mmrec.catalog.validate`, the same for every source, so a new adapter is ~30 lines.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from mmrec.catalog.config import CONTRACT_FIELDS, IngestConfig
from mmrec.errors import InputError


@dataclass
class RawRecord:
    """One source row. ``row`` is 1-based over data rows (CSV: line number minus the header)."""

    row: int
    fields: dict[str, Any]
    image_path: Path | None = None
    # attributes that the source states explicitly (source "catalog") beyond the core columns
    notes: dict[str, Any] = field(default_factory=dict)


def _blank(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, str):
        v = v.strip()
        return v or None
    return v


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    return path


# -- Myntra (Kaggle "Fashion Product Images"): styles.csv + images/<id>.jpg --------------------

MYNTRA_COLUMNS = {
    "item_id": "id", "title": "productDisplayName", "gender": "gender", "category": "articleType",
    "colour": "baseColour", "season": "season", "usage": "usage", "year": "year",
}


def read_myntra(source: Path, cfg: IngestConfig) -> Iterator[RawRecord]:
    source = Path(source)
    styles = _require(source / "styles.csv" if source.is_dir() else source, "Myntra styles.csv")
    image_dir = styles.parent / "images"
    with open(styles, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{styles}: empty file")
        missing = [c for c in MYNTRA_COLUMNS.values() if c not in header]
        if missing:
            raise InputError(f"{styles}: missing column(s) {missing}; header is {header}")
        index = {name: i for i, name in enumerate(header)}
        for n, values in enumerate(reader, start=1):
            if len(values) != len(header):
                # malformed line: keep the row so validation can report it with its number
                yield RawRecord(n, {"_malformed": f"{len(values)} fields, expected {len(header)}"})
                continue
            rec = {k: _blank(values[index[col]]) for k, col in MYNTRA_COLUMNS.items()}
            rec["_master_category"] = _blank(values[index["masterCategory"]]) if "masterCategory" in index else None
            item_id = rec["item_id"]
            yield RawRecord(n, rec, image_dir / f"{item_id}.jpg" if item_id else None)


# -- H&M Personalized Fashion Recommendations: articles + images/<article_id:010d>.jpg ---------

HM_GENDER_BY_INDEX_GROUP = {"Ladieswear": "women", "Divided": "women", "Menswear": "men"}


def _hm_gender(row: dict[str, Any]) -> str | None:
    group = row.get("index_group_name")
    if group in HM_GENDER_BY_INDEX_GROUP:
        return HM_GENDER_BY_INDEX_GROUP[group]
    text = f"{row.get('index_name') or ''} {row.get('section_name') or ''}".lower()
    if "boy" in text:
        return "boys"
    if "girl" in text:
        return "girls"
    if "men" in text and "women" not in text:
        return "men"
    if "women" in text or "ladies" in text:
        return "women"
    return None  # unknown is better than a guess


def read_hm(source: Path, cfg: IngestConfig) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    source = Path(source)
    if source.is_dir():
        candidates = [source / "articles_sample.parquet", source / "articles.parquet",
                      source / "data" / "sample" / "articles_sample.parquet"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise InputError(f"no H&M articles parquet in {source}; looked for {[str(c) for c in candidates]}")
    else:
        path = _require(source, "H&M articles file")
    image_dir = path.parent / "images"
    for n, row in enumerate(pq.read_table(path).to_pylist(), start=1):
        article = row.get("article_id")
        item_id = f"{int(article):010d}" if article is not None else None
        rec = {
            "item_id": item_id,
            "title": _blank(row.get("prod_name")),
            "gender": _hm_gender(row),
            "category": _blank(row.get("product_type_name")),
            "colour": _blank(row.get("colour_group_name")),
            "pattern": _blank(row.get("graphical_appearance_name")),
        }
        yield RawRecord(n, rec, image_dir / f"{item_id}.jpg" if item_id else None,
                        notes={"description": _blank(row.get("detail_desc"))})


# -- Generic CSV / Parquet with a column mapping -----------------------------------------------

def _read_table_rows(path: Path) -> Iterator[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            yield from csv.DictReader(f)
    elif suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    else:
        raise InputError(f"{path}: generic catalogs must be .csv or .parquet, got {suffix!r}")


def read_generic(source: Path, cfg: IngestConfig) -> Iterator[RawRecord]:
    path = _require(Path(source), "catalog file")
    if path.is_dir():
        raise InputError(f"{path} is a folder; --format generic takes a .csv or .parquet file")
    mapping = {f: cfg.generic.columns.get(f, f) for f in CONTRACT_FIELDS}
    image_dir = Path(cfg.generic.image_dir) if cfg.generic.image_dir else path.parent
    if not image_dir.is_absolute():
        image_dir = path.parent / image_dir
    checked_header = False
    for n, row in enumerate(_read_table_rows(path), start=1):
        if not checked_header:
            need = [mapping["item_id"], mapping["title"], mapping["category"]]
            missing = [c for c in need if c not in row]
            if missing:
                raise InputError(
                    f"{path}: required column(s) {missing} not found (columns: {sorted(row)}); "
                    f"map yours with generic.columns.<field>=<column>")
            checked_header = True
        rec = {f: _blank(row.get(col)) for f, col in mapping.items() if col in row}
        image = rec.pop("image", None)
        image_path = None
        if image:
            p = Path(str(image))
            image_path = p if p.is_absolute() else image_dir / p
        yield RawRecord(n, rec, image_path)


ADAPTERS: dict[str, Callable[[Path, IngestConfig], Iterator[RawRecord]]] = {
    "myntra": read_myntra,
    "hm": read_hm,
    "generic": read_generic,
}
