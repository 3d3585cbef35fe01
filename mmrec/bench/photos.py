"""Kiosk photos for the benchmark and thumbnails for the report.

A kiosk visitor photographs a garment with a camera; they never upload the catalog's own
product shot. Sending the catalog image unchanged would let the image route find the product
by an exact pixel match and make the photo metrics meaningless. ``kiosk_photo`` therefore
re-shoots the held-out product's image deterministically (per case): a small rotation, an
off-centre crop, a light/contrast shift, a grey-beige backdrop and JPEG re-compression. The
product stays recognisable; the bytes and the embedding differ from the catalog's.
"""

from __future__ import annotations

import base64
import hashlib
import random

from PIL import Image, ImageEnhance

from mmrec.images import ImageError, load_image, resize_letterbox, to_jpeg_bytes


def kiosk_photo(uri: str, key: str, *, size: int = 320, quality: int = 80) -> bytes:
    """JPEG bytes of a deterministic "camera" re-shoot of the image at ``uri``.

    Args:
        key: seeds the perturbation (the case id), so reruns send identical bytes.
    """
    rng = random.Random(int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big"))
    img = load_image(uri)
    w, h = img.size
    # off-centre crop keeping 86-96% of each side
    cw, ch = int(w * rng.uniform(0.86, 0.96)), int(h * rng.uniform(0.86, 0.96))
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    img = img.crop((x0, y0, x0 + cw, y0 + ch))
    backdrop = tuple(rng.randint(170, 215) + d for d in (8, 4, 0))  # warm grey wall
    img = img.rotate(rng.uniform(-7, 7), resample=Image.BICUBIC, expand=True, fillcolor=backdrop)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.85, 1.12))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.85, 1.12))
    img = resize_letterbox(img, size)
    return to_jpeg_bytes(img, quality=quality)


def thumbnail_data_uri(source: str | bytes, size: int = 96, quality: int = 70) -> str | None:
    """A small base64 JPEG ``data:`` URI for the report, or None when the image is unreadable."""
    try:
        img = load_image(source)
    except ImageError:  # a missing or broken photo must not break the report; it shows a blank
        return None
    img = resize_letterbox(img, size)
    return "data:image/jpeg;base64," + base64.b64encode(to_jpeg_bytes(img, quality=quality)).decode()
