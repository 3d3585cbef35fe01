"""Generate small catalogs (CSV + images) in a temp dir; shared by catalog and CLI tests."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from PIL import Image

MYNTRA_HEADER = ["id", "gender", "masterCategory", "subCategory", "articleType", "baseColour",
                 "season", "year", "usage", "productDisplayName", "image_w", "image_h"]


def jpeg(path: Path, size=(60, 80), colour=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")
    return path


def good_rows(n: int = 6, start: int = 100) -> list[dict]:
    base = [
        ("Men", "Apparel", "Topwear", "Tshirts", "Black", "Summer", "2011", "Casual", "Puma Men Solid Black T-shirt"),
        ("Women", "Apparel", "Bottomwear", "Jeans", "Blue", "Fall", "2012", "Casual", "Levis Women Slim Fit Blue Jeans"),
        ("Men", "Footwear", "Shoes", "Formal Shoes", "Brown", "Winter", "2012", "Formal", "Red Tape Men Leather Brown Formal Shoes"),
        ("Women", "Accessories", "Bags", "Handbags", "Red", "Fall", "2016", "Casual", "Lino Perros Women Red Handbag"),
        ("Men", "Apparel", "Topwear", "Shirts", "White", "Summer", "2011", "Formal", "Arrow Men Striped White Shirt"),
        ("Women", "Apparel", "Dress", "Dresses", "Navy Blue", "Summer", "2012", "Party", "Vero Moda Women Printed Navy Blue Dress"),
    ]
    rows = []
    for i in range(n):
        g, m, s, a, c, se, y, u, t = base[i % len(base)]
        rows.append(dict(zip(MYNTRA_HEADER, [str(start + i), g, m, s, a, c, se, y, u, t, "60", "80"])))
    return rows


def write_myntra(root: Path, rows: list[dict], *, images: bool = True) -> Path:
    """Write styles.csv (+ one JPEG per row unless the row says otherwise) and return root."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "styles.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MYNTRA_HEADER)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in MYNTRA_HEADER})
    if images:
        for r in rows:
            if r["id"]:
                jpeg(root / "images" / f"{r['id']}.jpg")
    return root


def truncated_jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((128, 128), 50).convert("RGB").save(buf, "JPEG")
    data = buf.getvalue()
    return data[: len(data) // 2]
