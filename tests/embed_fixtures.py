"""A small Myntra-style catalog whose images carry their attributes, for encoder/recall tests.

Category decides the drawn shape and colour the fill, so a tiny CLIP can learn something in a
few seconds and tests can tell a working pipeline from a random one. Items go through the real
`mmrec catalog ingest` path, so ids, splits and canonical values are the production ones.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from catalog_fixtures import MYNTRA_HEADER, write_myntra

# (articleType, masterCategory, subCategory, shape)
TYPES = [("Tshirts", "Apparel", "Topwear", "rect"), ("Jeans", "Apparel", "Bottomwear", "tall"),
         ("Casual Shoes", "Footwear", "Shoes", "wide"), ("Handbags", "Accessories", "Bags", "ellipse")]
COLOURS = {"Black": (20, 20, 20), "White": (235, 235, 235), "Red": (200, 30, 30),
           "Navy Blue": (20, 30, 90), "Green": (30, 150, 60)}
USAGES = ["Casual", "Formal", "Sports"]


def draw(path: Path, shape: str, rgb: tuple[int, int, int], jitter: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (60, 80), (255, 255, 255))
    d = ImageDraw.Draw(im)
    j = jitter % 5
    box = {"rect": [8 + j, 10, 52 - j, 70], "tall": [20 + j, 4, 40, 76 - j],
           "wide": [4, 30 + j, 56, 52], "ellipse": [6, 12 + j, 54, 68]}[shape]
    (d.ellipse if shape == "ellipse" else d.rectangle)(box, fill=rgb)
    d.rectangle([2 + jitter % 50, 76, 5 + jitter % 50, 79], fill=(128, 128, 128))  # unique per item
    im.save(path, "JPEG", quality=92)


def rows(n: int, start: int = 1000) -> list[dict]:
    out = []
    for i in range(n):
        t, master, sub, _ = TYPES[i % len(TYPES)]
        colour = list(COLOURS)[(i // len(TYPES)) % len(COLOURS)]
        gender = ["Men", "Women"][(i // 3) % 2]
        usage = USAGES[(i // 7) % len(USAGES)]
        title = f"Brand{i % 5} {gender} {colour} {t.rstrip('s')} {i}"
        out.append(dict(zip(MYNTRA_HEADER, [str(start + i), gender, master, sub, t, colour, "Summer",
                                            "2012", usage, title, "60", "80"])))
    return out


def write_catalog(root: Path, n: int = 120, start: int = 1000) -> Path:
    """styles.csv + one drawn JPEG per row; returns the folder to ingest."""
    rs = rows(n, start)
    write_myntra(root, rs, images=False)
    for i, r in enumerate(rs):
        shape = TYPES[i % len(TYPES)][3]
        draw(root / "images" / f"{r['id']}.jpg", shape, COLOURS[r["baseColour"]], jitter=i)
    return root


def ingest(store, source: Path):
    from mmrec.catalog.config import IngestConfig
    from mmrec.catalog.ingest import ingest_catalog

    return ingest_catalog(source, IngestConfig(), store, progress=False)
