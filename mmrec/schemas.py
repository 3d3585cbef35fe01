"""Data contracts: pyarrow schemas of the tables mmrec exchanges as Parquet.

Extend these (add nullable columns, bump the schema version), never fork them: every stage
reads the previous stage's table through the schema defined here.
"""

from __future__ import annotations

import pyarrow as pa

ITEMS_SCHEMA_VERSION = 1

# Where an attribute value came from; explanations cite it, so it must stay truthful.
ATTRIBUTE_SOURCES = ("catalog", "title", "model")

ATTRIBUTE_VALUE = pa.struct([
    pa.field("value", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),      # one of ATTRIBUTE_SOURCES
    pa.field("confidence", pa.float32(), nullable=True),  # model predictions only
])

# Fine-grained attribute columns (also present in `attributes` with their source).
ATTRIBUTE_FIELDS = ("colour", "pattern", "material", "fit", "sleeve", "neckline", "season", "usage")

ITEMS_SCHEMA = pa.schema([
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("title", pa.string(), nullable=False),
    pa.field("brand", pa.string()),
    pa.field("gender", pa.string()),
    pa.field("category", pa.string(), nullable=False),    # canonical taxonomy category
    pa.field("slot", pa.string(), nullable=False),        # top, bottom, one-piece, outerwear, ...
    pa.field("colour", pa.string()),
    pa.field("pattern", pa.string()),
    pa.field("material", pa.string()),
    pa.field("fit", pa.string()),
    pa.field("sleeve", pa.string()),
    pa.field("neckline", pa.string()),
    pa.field("season", pa.string()),
    pa.field("usage", pa.string()),                       # occasion, e.g. casual, formal
    pa.field("year", pa.int32()),
    pa.field("price", pa.float64()),                      # null when the source has none
    pa.field("in_stock", pa.bool_(), nullable=False),
    pa.field("image_uri", pa.string()),                   # absolute path or URI; null if none
    pa.field("image_sha256", pa.string()),
    pa.field("image_width", pa.int32()),
    pa.field("image_height", pa.int32()),
    pa.field("attributes", pa.map_(pa.string(), ATTRIBUTE_VALUE)),
    pa.field("source", pa.string(), nullable=False),      # adapter that produced the row
    pa.field("updated_at", pa.timestamp("us", tz="UTC"), nullable=False),
], metadata={"mmrec.schema": "items", "mmrec.schema_version": str(ITEMS_SCHEMA_VERSION)})

# Columns compared to decide whether an item changed between two catalog versions.
# image_uri is where the photo lives now, not what the item is: a moved file is not a change.
ITEM_CONTENT_COLUMNS = tuple(f.name for f in ITEMS_SCHEMA if f.name not in ("updated_at", "image_uri"))

ATTRIBUTE_PREDICTIONS_SCHEMA = pa.schema([
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("field", pa.string(), nullable=False),
    pa.field("value", pa.string(), nullable=False),
    pa.field("confidence", pa.float32(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
])


def check_schema(table: pa.Table, schema: pa.Schema, *, name: str) -> None:
    """Raise ValueError naming the first missing or mistyped column of ``table``."""
    for f in schema:
        if f.name not in table.column_names:
            raise ValueError(f"{name}: missing column {f.name!r}")
        got = table.schema.field(f.name).type
        if got != f.type:
            raise ValueError(f"{name}: column {f.name!r} has type {got}, expected {f.type}")
