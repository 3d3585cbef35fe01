"""Experiment: crop the product off its studio background before squashing (not adopted).

The product squashes the whole photo to the tagger's square (`mmrec.images.resize_square`).
``resize_foreground`` crops to the product first; measured 2026-12-06 (lab/README.md,
lab/sft/configs/image_fit_foreground.yaml): colour family within noise, gender -3 points.
``fit_square`` names both fits for `lab/sft/image_fit_cnn.py`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

from mmrec.images import resize_square


def _rgb(img: Image.Image) -> Image.Image:
    # photos reach here from mmrec.images.load_image, which already returns RGB
    return img if img.mode == "RGB" else img.convert("RGB")


def foreground_box(img: Image.Image, tol: int = 24, plain_share: float = 0.6,
                   ) -> tuple[tuple[int, int, int, int], tuple[int, int, int]]:
    """The product's bounding box on a plain studio background, and that background's colour.

    The background is the median colour of the photo's one-pixel border. When fewer than
    ``plain_share`` of the border pixels lie within ``tol`` of it (a shopper's photo, a
    patterned backdrop) there is no plain background and the box is the whole photo. A row or
    column belongs to the product when at least two of its pixels differ from the background by
    more than ``tol`` in some channel: one pixel is JPEG noise, two rule out most of it while
    the grey outline of a white garment on white still counts.
    """
    img = _rgb(img)
    a = np.asarray(img, dtype=np.int16)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    bg = np.median(border, axis=0)
    whole = (0, 0, img.width, img.height)
    fill = tuple(int(round(v)) for v in bg)
    if (np.abs(border - bg).max(axis=1) <= tol).mean() < plain_share:
        return whole, fill
    fg = np.abs(a - bg).max(axis=2) > tol
    rows, cols = np.nonzero(fg.sum(axis=1) >= 2)[0], np.nonzero(fg.sum(axis=0) >= 2)[0]
    if not len(rows) or not len(cols):  # a blank photo: nothing to zoom into
        return whole, fill
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1), fill


def resize_foreground(img: Image.Image, size: int, *, margin: float = 0.04, max_stretch: float = 1.5,
                      min_share: float = 0.25, tol: int = 24) -> Image.Image:
    """The product cropped out of its studio background and stretched over a square.

    ``resize_square`` squashes the whole photo, white frame included: on the Myntra validation
    photos the product then covers 31% of the input on average. Cropping to the product
    (``foreground_box``) and padding the shorter side with the background only as far as needed
    to keep the stretch within ``max_stretch`` raises that to 48% at 1.5
    (``lab/sft/image_fit_cnn.py --share-only``; 1.0 would keep the aspect exactly but gain
    little, since a standing model is tall and narrow). ``margin`` (share of each side) keeps the
    outline off the edge; the crop is never smaller than ``min_share`` of the photo's longer
    side, so a speck is not blown up to the whole input. A photo without a plain background (a
    shopper's upload) is only padded where its aspect exceeds ``max_stretch``; at 3:4 it is
    squashed as before. For the mini tagger this cost gender more than it gave colour
    (lab/README.md), so the product squashes.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if max_stretch < 1:
        raise ValueError(f"max_stretch must be >= 1, got {max_stretch}")
    img = _rgb(img)
    box, fill = foreground_box(img, tol=tol)
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if box == (0, 0, img.width, img.height):  # no studio background: the whole photo, no margin
        cw, ch = float(w), float(h)
    else:
        floor = min_share * max(img.size)
        cw, ch = max(w * (1 + 2 * margin), floor), max(h * (1 + 2 * margin), floor)
    cw, ch = max(cw, ch / max_stretch), max(ch, cw / max_stretch)
    cw, ch = max(round(cw), w, 1), max(round(ch), h, 1)
    canvas = Image.new("RGB", (cw, ch), fill)
    canvas.paste(img.crop((x0, y0, x1, y1)), ((cw - w) // 2, (ch - h) // 2))
    return canvas.resize((size, size), Image.Resampling.BICUBIC)


FITS: dict[str, Callable[[Image.Image, int], Image.Image]] = {"squash": resize_square,
                                                              "foreground": resize_foreground}


def fit_square(img: Image.Image, size: int, fit: str = "squash") -> Image.Image:
    """``img`` as a ``size`` x ``size`` square by the named fit (``FITS``)."""
    if fit not in FITS:
        raise ValueError(f"image fit must be one of {sorted(FITS)}, got {fit!r}")
    return FITS[fit](img, size)
