"""Catalog embedding in this process: decode a batch of images, one forward pass, next batch.

This is the engine of `mmrec embed catalog` with ``engine: local`` and also what each Ray Data
actor runs on its share of the catalog (`mmrec.embed.ray_embed`), so it lives below both.
"""

from __future__ import annotations

import numpy as np

from mmrec.embed.data import decode_many
from mmrec.embed.encoder import Encoder


def embed_images_local(encoder: Encoder, uris: list[str | None], *, batch_size: int,
                       workers: int, progress: bool) -> tuple[np.ndarray, list[str | None]]:
    """Decode (threads) and embed ``uris`` batch by batch; returns vectors and per-uri errors."""
    vecs = np.zeros((len(uris), encoder.dim), np.float32)
    errors: list[str | None] = [None] * len(uris)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(uris), desc="embed images", unit="img")
    for lo in range(0, len(uris), batch_size):
        hi = min(len(uris), lo + batch_size)
        if encoder.preprocess_mode == "letterbox":
            pixels, errs = decode_many(uris[lo:hi], encoder.image_size, workers=workers)
            ok = [i for i, e in enumerate(errs) if e is None]
            if ok:
                vecs[lo + np.asarray(ok)] = encoder.encode_pixels(pixels[ok])
        else:
            from mmrec.images import ImageError, load_image

            imgs, ok, errs = [], [], [None] * (hi - lo)
            for i, u in enumerate(uris[lo:hi]):
                try:
                    imgs.append(load_image(u) if u else _no_image())
                    ok.append(i)
                except ImageError as e:
                    errs[i] = f"{e.reason}: {e.detail}"
            if imgs:
                vecs[lo + np.asarray(ok)] = encoder.encode_images(imgs)
        errors[lo:hi] = errs
        if bar is not None:
            bar.update(hi - lo)
    if bar is not None:
        bar.close()
    return vecs, errors


def _no_image():
    from mmrec.images import ImageError

    raise ImageError("<none>", "not_found", "item has no image_uri")
