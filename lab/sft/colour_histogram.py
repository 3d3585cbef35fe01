"""A photo's foreground colour histogram: what colour the product is, as numbers.

Pixels whose every channel is above ``BACKGROUND`` (0-1) are taken for the white studio
background and left out; the rest are counted in HSV bins (12 hues x 4 saturations x 4 values),
as shares of the foreground, square-rooted so that a small accent still registers next to a
large body colour. The mean foreground RGB and the foreground's share of the photo follow.

Two readers use it: `lab/sft/colour_ceiling.py` (a classifier on it: how much colour family a
photo gives away) and the ``distill_colour_histogram`` loss of `lab.sft.losses` (the vision tower
learns to predict it next to the CLIP vector; not adopted, lab/README.md).
"""

from __future__ import annotations

import numpy as np

BACKGROUND = 0.92
HUES, SATURATIONS, VALUES = 12, 4, 4
DIM = HUES * SATURATIONS * VALUES + 3 + 1


def colour_histogram(rgb: np.ndarray) -> np.ndarray:
    """``rgb``: uint8 [H, W, 3] -> float32 [DIM] (bins, mean RGB, foreground share)."""
    from PIL import Image

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8 [H, W, 3], got {rgb.dtype} {list(rgb.shape)}")
    x = rgb.astype(np.float32) / 255
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV"), dtype=np.float32) / 255
    fg = ~(x.min(-1) > BACKGROUND)
    w = fg.astype(np.float32).ravel()
    w /= max(w.sum(), 1.0)
    h, s, v = (np.minimum((hsv[..., c].ravel() * n).astype(int), n - 1)
               for c, n in ((0, HUES), (1, SATURATIONS), (2, VALUES)))
    hist = np.bincount((h * SATURATIONS + s) * VALUES + v, weights=w, minlength=HUES * SATURATIONS * VALUES)
    mean_rgb = (x.reshape(-1, 3) * w[:, None]).sum(0)
    return np.concatenate([np.sqrt(hist), mean_rgb, [fg.mean()]]).astype(np.float32)
