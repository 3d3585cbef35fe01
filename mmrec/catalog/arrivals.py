"""New arrivals: products that reach the catalog with a photo and a title only.

A retailer's feed often lists a product before its attributes are filled in. Such an item is
still recommendable once the models have read it: the tagger reads category, gender, colour,
occasion and season from the photo; the title rules read the product type, gender (the wearer
word) and the fine details (pattern, material, fit, sleeve, neckline) from the title, and the
retailer's words win over the photo's reading. The type matters most: a misread one puts the
product in another outfit slot (a nail polish read as men's shorts joined 84 outfits of one
benchmark run); on the withheld catalog slice the title's type is right 94% of the time where
the tagger's is right 66% (docs/catalog.md "New arrivals"). Every inferred value
keeps its provenance in the attributes map (``model`` with the tagger's confidence, or
``title``), so explanations cite it as a reading, never as catalog fact.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mmrec.errors import InputError
from mmrec.taxonomy import Taxonomy
from mmrec.title_rules import TITLE_FIELDS, extract_title_attributes, title_category, title_gender

# Item columns that describe the product; a new arrival has none of them yet.
DESCRIBED = ("brand", "gender", "category", "slot", "colour", "pattern", "material", "fit",
             "sleeve", "neckline", "season", "usage", "year")
TAGGED = ("category", "gender", "colour", "usage", "season", "pattern")


def as_arrival(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row as a new arrival states it: ids, title, photo, price and stock; no attributes."""
    out = {k: v for k, v in row.items() if k not in DESCRIBED}
    out.update({k: None for k in DESCRIBED})
    out["attributes"] = {}
    return out


def infer_arrival(row: Mapping[str, Any], tags: Mapping[str, Mapping[str, Any]],
                  taxonomy: Taxonomy) -> dict[str, Any]:
    """Fill a new arrival's attributes from the tagger's reading of its photo and its title.

    Args:
        row: the arrival (`as_arrival`), title and photo only.
        tags: the tagger's ``{field: {"value", "confidence"}}`` for the photo.

    Returns:
        a full items row: the title's product type and gender word win over the tagger's
        readings (the retailer wrote them); title details over the tagger's pattern; slot from
        the category.
    """
    out = dict(row)
    attrs: dict[str, dict[str, Any]] = {}
    for fld in TAGGED:
        t = tags.get(fld) or {}
        v = t.get("value")
        if v is not None and taxonomy.is_valid(fld, v):
            out[fld] = v
            conf = t.get("confidence")
            attrs[fld] = {"value": v, "source": "model",
                          "confidence": None if conf is None else float(conf)}
    kind = title_category(str(row.get("title") or ""), taxonomy)
    if kind is not None:
        out["category"] = kind.value
        attrs["category"] = {"value": kind.value, "source": "title", "confidence": None}
    g = title_gender(str(row.get("title") or ""), taxonomy)
    if g is not None:
        out["gender"] = g
        attrs["gender"] = {"value": g, "source": "title", "confidence": None}
    found = extract_title_attributes(str(row.get("title") or ""), taxonomy, gender=out.get("gender"),
                                     category=out.get("category"))
    for fld in TITLE_FIELDS:
        if fld in found:
            out[fld] = found[fld].value
            attrs[fld] = {"value": found[fld].value, "source": "title", "confidence": None}
    if "brand" in found:
        out["brand"] = found["brand"].value
    if out.get("category") is None:
        raise InputError(f"item {row.get('item_id')!r}: neither its title names a product type nor did "
                         "the tagger read a category from its photo; a new arrival needs one to be "
                         "placed in an outfit slot")
    out["slot"] = taxonomy.slot_of(out["category"])
    out["attributes"] = attrs
    return out


def infer_arrivals(rows: Sequence[Mapping[str, Any]], tagger: Any, taxonomy: Taxonomy, *,
                   batch: int = 64, progress: Any | None = None) -> list[dict[str, Any]]:
    """`infer_arrival` for many items: their photos are read by ``tagger`` in batches."""
    from mmrec.images import load_image

    out: list[dict[str, Any]] = []
    for start in range(0, len(rows), batch):
        chunk = [as_arrival(r) for r in rows[start:start + batch]]
        tags = tagger.tag([load_image(r["image_uri"]) for r in chunk])
        out += [infer_arrival(r, t, taxonomy) for r, t in zip(chunk, tags)]
        if progress is not None:
            progress(len(chunk))
    return out
