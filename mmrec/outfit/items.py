"""The catalog in memory for composing outfits: rows for rules and facts, codes for fast scoring.

Outfit search scores thousands of item pairs per request, so the fields it needs (slot,
category, colour family, formality, gender group) are integer-coded once per catalog version
into numpy arrays; rules and explanations read the original rows (catalog truth).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa

from mmrec.errors import InputError
from mmrec.taxonomy import COLOUR_FAMILIES, Taxonomy, default_taxonomy

# How dressed-up each occasion is; formality consistency compares these levels.
FORMALITY = {"sports": 0, "casual": 1, "travel": 1, "smart casual": 2, "party": 2,
             "ethnic": 2, "formal": 3}
GENDER_CODES = {"men": 1, "women": 2, "boys": 3, "girls": 4}  # 0: unisex or unknown


class ItemTable:
    """Items of one catalog version with integer-coded features.

    Args:
        table: the items table (``mmrec.schemas.ITEMS_SCHEMA``).
        version: the items artifact version (reported in responses).
        taxonomy: vocabulary for colour families and slots.
    """

    def __init__(self, table: pa.Table, version: str, taxonomy: Taxonomy | None = None):
        rows = table.to_pylist()
        for r in rows:
            r["attributes"] = dict(r.get("attributes") or [])
            r.pop("updated_at", None)  # not needed downstream; keeps rows JSON-friendly
        self._code_rows(rows, version, taxonomy)

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]], version: str,
                  taxonomy: Taxonomy | None = None) -> "ItemTable":
        """A table over rows already in this class's form (``attributes`` a dict, no
        ``updated_at``), e.g. another table's rows with live catalog changes applied; the row
        dicts are used as given, not copied."""
        out = cls.__new__(cls)
        out._code_rows(rows, version, taxonomy)
        return out

    def _code_rows(self, rows: list[dict[str, Any]], version: str, taxonomy: Taxonomy | None) -> None:
        self.taxonomy = tax = taxonomy or default_taxonomy()
        self.version = version
        self.rows: list[dict[str, Any]] = rows
        self.ids: list[str] = [r["item_id"] for r in rows]
        self.index: dict[str, int] = {i: n for n, i in enumerate(self.ids)}
        if len(self.index) != len(self.ids):
            raise InputError(f"items/{version}: duplicate item ids")
        self.categories: list[str] = tax.values("category")
        cat_index = {c: n for n, c in enumerate(self.categories)}
        fam_index = {f: n + 1 for n, f in enumerate(COLOUR_FAMILIES)}  # 0: unknown colour
        n = len(rows)
        self.category = np.array([cat_index.get(r["category"], -1) for r in rows], dtype=np.int32)
        self.colour_family = np.zeros(n, dtype=np.int32)
        self.neutral = np.zeros(n, dtype=bool)
        for k, r in enumerate(rows):
            fam = tax.colour_family(r.get("colour"))
            if fam is not None:
                self.colour_family[k] = fam_index[fam]
                self.neutral[k] = tax.is_neutral(r["colour"])
        self.formality = np.array([FORMALITY.get(r.get("usage"), -1) for r in rows], dtype=np.int8)
        self.gender = np.array([GENDER_CODES.get(r.get("gender"), 0) for r in rows], dtype=np.int8)
        self.in_stock = np.array([bool(r.get("in_stock")) for r in rows], dtype=bool)
        self.price = np.array([np.nan if r.get("price") is None else r["price"] for r in rows],
                              dtype=np.float64)
        self.slot = np.array([r["slot"] for r in rows], dtype=object)
        self.vectors: np.ndarray | None = None  # aligned with rows when an embedding exists
        self.vector_source: str | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, item_id: str) -> dict[str, Any]:
        try:
            return self.rows[self.index[item_id]]
        except KeyError:
            raise InputError(f"unknown item {item_id!r} in items/{self.version}") from None

    def positions(self, item_ids: Iterable[str]) -> np.ndarray:
        """Row positions of ``item_ids`` (all must exist)."""
        try:
            return np.array([self.index[i] for i in item_ids], dtype=np.int64)
        except KeyError as e:
            raise InputError(f"unknown item {e.args[0]!r} in items/{self.version}") from None

    def attach_vectors(self, item_ids: list[str], vectors: np.ndarray, source: str) -> int:
        """Align item embeddings with the rows (missing items get zero vectors); returns matches.

        Zero vectors make embedding compatibility neutral for items the encoder never saw.
        """
        if vectors.ndim != 2 or len(item_ids) != len(vectors):
            raise InputError(f"vectors {vectors.shape} do not match {len(item_ids)} item ids")
        out = np.zeros((len(self.rows), vectors.shape[1]), dtype=np.float32)
        hit = 0
        for i, v in zip(item_ids, vectors):
            k = self.index.get(i)
            if k is not None:
                out[k] = v
                hit += 1
        self.vectors, self.vector_source = out, source
        return hit

    def attribute_fact(self, item_id: str, field: str) -> Mapping[str, Any] | None:
        """Value, source and confidence of ``field`` for an item, or None when unknown.

        Category and gender are catalog columns, unless the attributes map records another
        source (a new arrival's category is the tagger's reading, `mmrec.catalog.arrivals`);
        the rest come from the attributes map, which records whether the catalog, the title
        rules or a model stated them.
        """
        r = self.row(item_id)
        if field in ("category", "gender", "slot"):
            if field in r["attributes"]:
                return r["attributes"][field]
            v = r.get(field)
            return None if v is None else {"value": v, "source": "catalog", "confidence": None}
        # only the map records provenance; a value without it is never cited
        return r["attributes"].get(field)
