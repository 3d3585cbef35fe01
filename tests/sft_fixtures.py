"""Tiny generated catalogs for the SFT dataset and tagger tests (written straight as an items
artifact, so these tests do not depend on a source adapter).

Each product image is a coloured shape on white whose shape encodes the category and whose
fill encodes the colour, so a tiny model has something learnable. Planted on request: exact
duplicate images, near-duplicates (the same picture re-encoded at another size) straddling
the split boundary, and personal data in titles.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from mmrec.schemas import ITEMS_SCHEMA

COLOURS = {"black": (20, 20, 20), "red": (210, 30, 30), "navy blue": (20, 30, 110),
           "green": (30, 160, 60), "white": (235, 235, 235), "yellow": (240, 210, 30)}
CATEGORIES = {  # category -> (slot, gender, usage, shape)
    "tshirts": ("top", "men", "casual", "rect"),
    "jeans": ("bottom", "women", "casual", "tall"),
    "dresses": ("one-piece", "women", "party", "triangle"),
    "formal shoes": ("shoes", "men", "formal", "wide"),
    "handbags": ("bag", "women", "casual", "ellipse"),
}
PII_TITLES = ["Call +86 138 0013 8000 for Roadster Men 170/92A Navy Shirt",
              "seller mail a.b@shop.example.com SKU HRX-20931-BLK",
              "电话 １３８００１３８０００ Women Red Dress",
              "id 11010519491231002X Puma Men Black T-shirt"]


def draw_product(category: str, colour: str, size=(80, 80), jitter: int = 0) -> Image.Image:
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    w, h = size
    # Seeded grey blocks in the background give each product its own low-frequency layout, so
    # that distinct products are not perceptual near-duplicates of each other.
    rng = random.Random(jitter)
    for _ in range(4):
        x0, y0 = rng.randrange(0, w - 20), rng.randrange(0, h - 20)
        g = rng.randrange(80, 200)
        d.rectangle((x0, y0, x0 + rng.randrange(10, 30), y0 + rng.randrange(10, 30)), fill=(g, g, g))
    fill = COLOURS[colour]
    shape = CATEGORIES[category][3]
    j = jitter % 7
    box = {"rect": (12 + j, 12, w - 12, h - 12), "tall": (28, 6 + j, w - 28, h - 6),
           "wide": (6, 30 + j, w - 6, h - 30), "ellipse": (10 + j, 16, w - 10, h - 16)}.get(shape)
    if shape == "triangle":
        d.polygon([(w // 2, 6 + j), (8, h - 8), (w - 8, h - 8)], fill=fill, outline="black")
    elif shape == "ellipse":
        d.ellipse(box, fill=fill, outline="black")
    else:
        d.rectangle(box, fill=fill, outline="black")
    # a per-product mark so that distinct products are not near-duplicates of each other
    d.rectangle((2 + 3 * (jitter % 20), 2, 4 + 3 * (jitter % 20), 5), fill=(jitter * 37 % 255, 90, 200))
    d.text((4, h - 14), str(jitter), fill=(120, 120, 120))
    return img


def _row(item_id: str, title: str, category: str, colour: str | None, path: Path | None,
         **extra) -> dict:
    slot, gender, usage, _ = CATEGORIES[category]
    attrs = {}
    if colour:
        attrs["colour"] = {"value": colour, "source": "catalog", "confidence": None}
    attrs["usage"] = {"value": usage, "source": "catalog", "confidence": None}
    sha = hashlib.sha256(path.read_bytes()).hexdigest() if path else None
    row = {"item_id": item_id, "title": title, "brand": None, "gender": gender, "category": category,
           "slot": slot, "colour": colour, "pattern": None, "material": None, "fit": None,
           "sleeve": None, "neckline": None, "season": "summer", "usage": usage, "year": 2012,
           "price": None, "in_stock": True, "image_uri": str(path) if path else None,
           "image_sha256": sha, "image_width": 80, "image_height": 80,
           "attributes": sorted(attrs.items()), "source": "test",
           "updated_at": _dt.datetime(2024, 1, 1, tzinfo=_dt.timezone.utc)}
    row.update(extra)
    return row


def make_items(store, root: Path, n: int = 60, *, plant: bool = True) -> str:
    """Write an items artifact of ``n`` generated products (+ planted cases); return its version."""
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    cats, cols = list(CATEGORIES), list(COLOURS)
    rows = []
    for i in range(n):
        item_id = str(1000 + i)
        cat, col = cats[i % len(cats)], cols[(i // len(cats) + i) % len(cols)]
        path = img_dir / f"{item_id}.jpg"
        draw_product(cat, col, jitter=i).save(path, "JPEG", quality=92)
        title = f"Brand{i % 7} {CATEGORIES[cat][1].title()} {col.title()} {cat.title()}"
        rows.append(_row(item_id, title, cat, col, path))
    if plant:
        # exact duplicate of 1002 under another id
        dup = img_dir / "dup_1002.jpg"
        dup.write_bytes((img_dir / "1002.jpg").read_bytes())
        rows.append(_row("5002", "Brand2 Copy", rows[2]["category"], rows[2]["colour"], dup))
        # near-duplicate of test product 1010 (id % 10 == 0) under a train id: re-encoded, resized
        near = img_dir / "near_1010.jpg"
        Image.open(img_dir / "1010.jpg").resize((96, 96)).save(near, "JPEG", quality=70)
        rows.append(_row("5003", "Brand3 Resized", rows[10]["category"], rows[10]["colour"], near))
        # near-duplicate of val product 1021 under a train id
        near2 = img_dir / "near_1021.jpg"
        Image.open(img_dir / "1021.jpg").resize((72, 72)).save(near2, "JPEG", quality=75)
        rows.append(_row("5004", "Brand4 Resized", rows[21]["category"], rows[21]["colour"], near2))
        # personal data in titles
        for k, title in enumerate(PII_TITLES):
            rows[30 + k]["title"] = title
        # unusable rows: missing image file, undecodable image, no category label
        rows.append(_row("5005", "Missing Image", "tshirts", "red", None))
        bad = img_dir / "bad.jpg"
        bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        rows.append(_row("5006", "Broken Image", "tshirts", "red", None, image_uri=str(bad)))
        unlabelled = _row("5007", "Unknown Category", "tshirts", None, img_dir / "1003.jpg")
        unlabelled["category"] = "spacesuits"  # not in the taxonomy: no usable category label
        rows.append(unlabelled)
    table = pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA)
    with store.write("items", config={"format": "test"}) as w:
        pq.write_table(table, w.path / "items.parquet")
    return w.version


TINY_ARCH = dict(vocab_size=600, hidden_size=32, num_heads=2, num_kv_heads=1, vision_hidden_size=32,
                 vision_heads=2, image_size=56)
TINY_FIELDS = ["category", "gender", "colour", "usage"]


def tiny_model(seed: int = 0, fields=TINY_FIELDS):
    """A random ~0.2M-parameter Qwen2.5-VL + processor + prompts + allowed values (seconds)."""
    from mmrec.attributes.config import MiniArch
    from mmrec.attributes.model import build_mini, mini_tokenizer
    from mmrec.attributes.prompts import load_prompts, tokenizer_corpus
    from mmrec.taxonomy import default_taxonomy

    tax = default_taxonomy()
    prompts = load_prompts("sft_data/prompts/default.yaml")
    values = {f: tax.values(f) for f in fields}
    arch = MiniArch(**TINY_ARCH)
    titles = [f"Brand Men {c.title()} {k.title()}" for k in CATEGORIES for c in COLOURS]
    tok = mini_tokenizer(arch, [*tokenizer_corpus(prompts, fields, values, repeats=5), *titles],
                         atomic_words=[v for f in fields for v in values[f]] + ["unknown"])
    model, processor = build_mini(arch, tok, seed=seed)
    return model, processor, prompts, values
