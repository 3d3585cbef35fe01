"""Training data for the encoder: cached letterboxed pixels and sampled captions.

Decoding ~12k JPEGs takes tens of seconds and every epoch needs them again, so pixels are
decoded once (through `mmrec.images.load_image`), letterboxed to the model's square and
cached as one uint8 ``.npy``; the cache key covers the image size and every (item id, image
sha256), so a changed catalog gets a new cache instead of stale pixels.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from mmrec.embed.config import TextTemplate, template_fields
from mmrec.images import ImageError, ImageLimits, load_image, resize_letterbox


@dataclass
class PixelSet:
    """Decoded images: ``pixels[i]`` belongs to ``item_ids[i]``; undecodable items are in ``failures``."""

    item_ids: list[str]
    pixels: np.ndarray  # uint8 [n, S, S, 3]
    failures: dict[str, str]  # item_id -> reason


def decode_letterboxed(uri: str | None, size: int, limits: ImageLimits | None = None) -> np.ndarray:
    """uint8 [size, size, 3] pixels of the image at ``uri`` (raises ImageError when refused)."""
    if not uri:
        raise ImageError("<none>", "not_found", "item has no image_uri")
    return np.asarray(resize_letterbox(load_image(uri, limits), size), dtype=np.uint8)


def decode_many(uris: Sequence[str | None], size: int, *, workers: int = 2,
                progress: bool = False, desc: str = "decode") -> tuple[np.ndarray, list[str | None]]:
    """Decode ``uris`` in a thread pool (Pillow releases the GIL while decoding).

    Returns:
        pixels uint8 [n, size, size, 3] (white where decoding failed) and per uri the failure
        reason or None.
    """
    out = np.full((len(uris), size, size, 3), 255, np.uint8)
    errors: list[str | None] = [None] * len(uris)

    def one(i: int) -> None:
        try:
            out[i] = decode_letterboxed(uris[i], size)
        except ImageError as e:
            errors[i] = f"{e.reason}: {e.detail}"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        it = pool.map(one, range(len(uris)))
        if progress:
            from tqdm import tqdm

            it = tqdm(it, total=len(uris), desc=desc, unit="img")
        for _ in it:
            pass
    return out, errors


def cache_key(item_ids: Sequence[str], shas: Sequence[str | None], size: int) -> str:
    h = hashlib.sha256(f"letterbox-white-{size}".encode())
    for i, s in zip(item_ids, shas):
        h.update(f"{i}\t{s}\n".encode())
    return h.hexdigest()[:24]


def cached_pixels(items: pa.Table, size: int, cache_dir: str | Path, *, workers: int = 2,
                  progress: bool = False) -> PixelSet:
    """Letterboxed pixels of every item in ``items`` (item_id, image_uri, image_sha256), cached."""
    ids = items.column("item_id").to_pylist()
    uris = items.column("image_uri").to_pylist()
    shas = items.column("image_sha256").to_pylist()
    cache_dir = Path(cache_dir)
    key = cache_key(ids, shas, size)
    npy, meta = cache_dir / f"pixels-{size}-{key}.npy", cache_dir / f"pixels-{size}-{key}.json"
    if npy.is_file() and meta.is_file():
        info = json.loads(meta.read_text(encoding="utf-8"))
        return PixelSet(info["item_ids"], np.load(npy, mmap_mode="r"), info["failures"])
    pixels, errors = decode_many(uris, size, workers=workers, progress=progress, desc="decode images")
    ok = [i for i, e in enumerate(errors) if e is None]
    failures = {ids[i]: e for i, e in enumerate(errors) if e is not None}
    cache_dir.mkdir(parents=True, exist_ok=True)
    # temp name + os.replace: a concurrent or interrupted run never sees a half-written cache
    tag = secrets.token_hex(4)
    tmp_npy, tmp_meta = npy.with_suffix(f".{tag}.tmp.npy"), meta.with_suffix(f".{tag}.tmp")
    np.save(tmp_npy, pixels[ok])
    tmp_meta.write_text(json.dumps({"item_ids": [ids[i] for i in ok], "failures": failures}),
                        encoding="utf-8")
    os.replace(tmp_npy, npy)
    os.replace(tmp_meta, meta)
    return PixelSet([ids[i] for i in ok], np.load(npy, mmap_mode="r"), failures)


class CaptionSampler:
    """Samples one caption per item from weighted templates whose fields the item has.

    Captions mix the product title with attribute phrases built from canonical taxonomy values
    ("navy blue shirts", "shirts for men, formal"), so that the text tower learns both the
    retailer's titles and the short attribute queries shoppers type.
    """

    def __init__(self, rows: Sequence[dict[str, Any]], templates: Sequence[TextTemplate]):
        self.templates = [t.text for t in templates]
        self.weights = np.array([t.weight for t in templates], dtype=np.float64)
        self.fields = [template_fields(t) for t in self.templates]
        self.rows = [{k: _clean(v) for k, v in r.items()} for r in rows]
        # usable[i, j]: item i has every field template j needs
        self.usable = np.array([[all(r.get(f) for f in fs) for fs in self.fields] for r in self.rows],
                               dtype=bool).reshape(len(self.rows), len(self.templates))

    def sample(self, idx: Sequence[int], rng: np.random.Generator) -> list[str]:
        out = []
        for i in idx:
            w = self.weights * self.usable[i]
            if w.sum() == 0:
                out.append(self.fallback(i))
                continue
            j = rng.choice(len(w), p=w / w.sum())
            out.append(" ".join(self.templates[j].format(**self.rows[i]).split()))
        return out

    def fallback(self, i: int) -> str:
        """The caption of row ``i`` when no template fits (no title?): its category name."""
        return self.rows[i].get("category") or "product"


def _clean(v: Any) -> Any:
    return v.strip() if isinstance(v, str) else v
