"""Small hand-made catalogs for outfit, explanation, API and serving tests.

Rows are written the way catalog ingest writes them (the items schema, attributes with their
source), so the composer and the explainer read exactly what they read in production.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image

from mmrec import kinds
from mmrec.artifacts import ArtifactStore
from mmrec.catalog.ingest import ITEMS_FILE, items_table
from mmrec.outfit.items import ItemTable
from mmrec.taxonomy import default_taxonomy

# (id, gender, category, colour, usage, season, pattern(title), price)
OFFICE_MEN = [
    ("t1", "men", "shirts", "white", "formal", "summer", "solid", 40.0),
    ("t2", "men", "shirts", "pink", "casual", "summer", None, 30.0),
    ("t3", "men", "shirts", "multi", "casual", "summer", "graphic", 20.0),  # loud print: banned
    ("t4", "men", "tshirts", "black", "casual", "summer", None, 15.0),      # not an office top
    ("b1", "men", "trousers", "black", "formal", "fall", "solid", 50.0),
    ("b2", "men", "jeans", "blue", "casual", "fall", None, 45.0),
    ("b3", "men", "track pants", "green", "sports", "fall", None, 25.0),    # sportswear: banned
    ("s1", "men", "formal shoes", "black", "formal", "winter", None, 80.0),
    ("s2", "men", "sports shoes", "white", "sports", "summer", None, 60.0),  # not office shoes
    ("s3", "men", "casual shoes", "brown", "casual", "fall", None, 55.0),
    ("a1", "men", "belts", "black", "formal", "fall", None, 20.0),
    ("a2", "men", "watches", "silver", "casual", "fall", None, 90.0),
]
OFFICE_WOMEN = [
    ("w1", "women", "tops", "navy blue", "casual", "summer", "solid", 25.0),
    ("w2", "women", "skirts", "grey", "casual", "summer", None, 35.0),
    ("w3", "women", "heels", "black", "casual", "summer", None, 70.0),
    ("w4", "women", "handbags", "black", "casual", "summer", None, 65.0),
    ("w5", "women", "dresses", "red", "casual", "summer", "floral", 85.0),
    ("w6", "women", "flats", "beige", "casual", "summer", None, 30.0),
]
EXTRA = [  # beach, gym and festive items so that every scene can be composed
    ("x1", "men", "tshirts", "white", "casual", "summer", None, 12.0),
    ("x2", "men", "shorts", "beige", "casual", "summer", None, 18.0),
    ("x3", "men", "flip flops", "navy blue", "casual", "summer", None, 9.0),
    ("x4", "men", "sunglasses", "black", "casual", "summer", None, 40.0),
    ("x5", "men", "tshirts", "red", "sports", "summer", None, 22.0),
    ("x6", "men", "track pants", "black", "sports", "summer", None, 28.0),
    ("x7", "men", "sports shoes", "grey", "sports", "summer", None, 75.0),
    ("x8", "unisex", "caps", "black", "sports", "summer", None, 10.0),
    ("x9", "women", "kurtas", "yellow", "ethnic", "fall", "printed", 33.0),
    ("x10", "women", "leggings", "white", "ethnic", "fall", None, 14.0),
    ("x11", "women", "earrings", "gold", "ethnic", "fall", None, 19.0),
    ("x12", "men", "jackets", "black", "casual", "winter", None, 99.0),
    ("x13", "men", "sweaters", "grey", "casual", "winter", None, 44.0),
    ("x14", "men", "mufflers", "maroon", "casual", "winter", None, 11.0),
    ("x15", "unisex", "backpacks", "navy blue", "casual", "fall", None, 38.0),
]
ALL = OFFICE_MEN + OFFICE_WOMEN + EXTRA
PHOTO_COLOURS = {"white": (245, 245, 245), "black": (20, 20, 20), "red": (200, 30, 30),
                 "blue": (40, 60, 200), "navy blue": (20, 30, 90), "grey": (128, 128, 128)}


def item_rows(spec=ALL, *, images_dir: Path | None = None, prices: bool = True) -> list[dict[str, Any]]:
    """Rows of the items table for ``spec`` (optionally with one JPEG per item)."""
    tax = default_taxonomy()
    rows = []
    for iid, gender, cat, colour, usage, season, pattern, price in spec:
        attrs = {f: {"value": v, "source": "catalog", "confidence": None}
                 for f, v in (("colour", colour), ("usage", usage), ("season", season))}
        if pattern:
            attrs["pattern"] = {"value": pattern, "source": "title", "confidence": None}
        uri = sha = None
        w = h = None
        if images_dir is not None:
            images_dir.mkdir(parents=True, exist_ok=True)
            p = images_dir / f"{iid}.jpg"
            Image.new("RGB", (60, 80), PHOTO_COLOURS.get(colour, (120, 90, 60))).save(p, "JPEG")
            uri, w, h = str(p.resolve()), 60, 80
            import hashlib

            sha = hashlib.sha256(p.read_bytes()).hexdigest()
        rows.append({
            "item_id": iid, "title": f"Brand {gender.title()} {pattern or ''} {colour} {cat}".replace("  ", " "),
            "brand": "Brand", "gender": gender, "category": cat, "slot": tax.slot_of(cat),
            "colour": colour, "pattern": pattern, "material": None, "fit": None, "sleeve": None,
            "neckline": None, "season": season, "usage": usage, "year": 2012,
            "price": price if prices else None, "in_stock": True, "image_uri": uri,
            "image_sha256": sha, "image_width": w, "image_height": h, "attributes": attrs,
            "source": "test", "updated_at": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
        })
    return rows


def item_table(spec=ALL, **kw) -> ItemTable:
    return ItemTable(items_table(item_rows(spec, **kw)), "test")


def write_items(store: ArtifactStore, spec=ALL, *, images_dir: Path | None = None,
                prices: bool = True) -> str:
    """Write an items artifact (as catalog ingest would) and return its version."""
    table = items_table(item_rows(spec, images_dir=images_dir, prices=prices))
    with store.write(kinds.ITEMS, config={"format": "test"}) as w:
        pq.write_table(table, w.path / ITEMS_FILE)
        w.metrics = {"items_out": table.num_rows}
    return store.current_version(kinds.ITEMS)


def jpeg_bytes(colour=(200, 30, 30), size=(64, 80)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


def write_polyvore(root: Path) -> Path:
    """A miniature Polyvore folder: tops go with jeans and sneakers, dresses with heels."""
    import json

    root.mkdir(parents=True, exist_ok=True)
    (root / "categories.csv").write_text(
        "1,tshirt,tops\n2,jeans,bottoms\n3,sneakers,shoes\n4,dress,all-body\n5,heels,shoes\n"
        "6,clutch,bags\n7,watch,jewellery\n8,male formal shoes,shoes\n", encoding="utf-8")
    cats, outfits = {}, []
    n = 0
    for k in range(30):  # casual: tshirt + jeans + sneakers
        ids = [f"c{k}a", f"c{k}b", f"c{k}c"]
        cats.update({ids[0]: "1", ids[1]: "2", ids[2]: "3"})
        outfits.append({"set_id": str(n), "items": [{"item_id": i, "index": j + 1} for j, i in enumerate(ids)]})
        n += 1
    for k in range(30):  # evening: dress + heels + clutch
        ids = [f"d{k}a", f"d{k}b", f"d{k}c"]
        cats.update({ids[0]: "4", ids[1]: "5", ids[2]: "6"})
        outfits.append({"set_id": str(n), "items": [{"item_id": i, "index": j + 1} for j, i in enumerate(ids)]})
        n += 1
    (root / "train_category.json").write_text(json.dumps(cats), encoding="utf-8")
    (root / "valid.json").write_text(json.dumps(outfits), encoding="utf-8")
    return root
