"""Kiosk conditions made from packshots (`train.kiosk` in configs/embed.yaml).

A kiosk or a shopper's phone sends a garment on a floor, a bed or a door, off-centre or cut by
the frame, turned, under warm or cold light, blurred, JPEG-compressed, in any aspect ratio; the
catalog shows it centred on white. `kiosk_view` turns a letterboxed packshot into such a photo:

1. the product is cut from its white ground by a threshold mask (holes filled, so a white
   collar inside the garment stays);
2. it is tilted (perspective), turned, scaled and placed with an offset on a background of
   the canvas's aspect ratio; at a scale above 1 part of it leaves the frame;
3. light: one brightness gain and per-channel gains with their mean kept at 1; the gains are
   small, so a red product stays in the red family and its caption stays true;
4. optional blur and JPEG re-encoding;
5. the canvas is letterboxed onto white, as `Encoder.encode_images` reads any photo.

Everything is drawn from the caller's ``numpy`` generator: the same seed, the same pixels.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from mmrec.embed.config import KioskAugmentConfig
from mmrec.images import resize_letterbox

MIN_FOREGROUND = 0.02  # below this share of non-white pixels (white on white) the cut is unusable


def foreground_mask(pixels: np.ndarray, white_threshold: int) -> np.ndarray:
    """bool [H, W]: not the packshot's white ground (holes inside the product filled)."""
    from scipy.ndimage import binary_fill_holes

    return binary_fill_holes(pixels.min(axis=-1) < white_threshold)


def synthetic_backgrounds(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [n, size, size, 3] smooth colour fields with grain (when no real photos are at hand)."""
    yy, xx = np.mgrid[0:size, 0:size] / max(1, size - 1)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        a, b = rng.uniform(40, 230, size=(2, 3))
        t = (xx * np.cos(rng.uniform(0, np.pi)) + yy * np.sin(rng.uniform(0, np.pi)))[..., None]
        t = (t - t.min()) / max(1e-6, np.ptp(t))
        field = a + (b - a) * t + rng.normal(0, rng.uniform(2, 12), size=(size, size, 1))
        out[i] = np.clip(field, 0, 255).astype(np.uint8)
    return out


def _perspective_coeffs(src: np.ndarray, dst: np.ndarray) -> list[float]:
    """PIL PERSPECTIVE coefficients mapping output points ``dst`` back to input points ``src``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return np.linalg.solve(np.asarray(rows, float), np.asarray(rhs, float)).tolist()


def _cut_product(pixels: np.ndarray, cfg: KioskAugmentConfig) -> Image.Image | None:
    mask = foreground_mask(pixels, cfg.white_threshold)
    if mask.mean() < MIN_FOREGROUND:
        return None
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    rgba = np.dstack([pixels[y0:y1, x0:x1], mask[y0:y1, x0:x1].astype(np.uint8) * 255])
    return Image.fromarray(rgba, "RGBA")


def _warp(product: Image.Image, cfg: KioskAugmentConfig, rng: np.random.Generator) -> Image.Image:
    w, h = product.size
    if cfg.perspective > 0:
        src = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
        dst = src + rng.uniform(-cfg.perspective, cfg.perspective, size=(4, 2)) * [w, h]
        dst -= dst.min(axis=0)
        size = tuple(int(np.ceil(v)) + 1 for v in dst.max(axis=0))
        product = product.transform(size, Image.Transform.PERSPECTIVE, _perspective_coeffs(src, dst),
                                    Image.Resampling.BILINEAR)
    if cfg.rotate_deg > 0:
        product = product.rotate(float(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)),
                                 Image.Resampling.BILINEAR, expand=True)
    return product


def _light(canvas: np.ndarray, cfg: KioskAugmentConfig, rng: np.random.Generator) -> np.ndarray:
    gains = 1.0 + rng.uniform(-cfg.white_balance, cfg.white_balance, size=3)
    gains = gains / gains.mean() * rng.uniform(*cfg.brightness)
    return np.clip(canvas.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def kiosk_view(pixels: np.ndarray, background: np.ndarray, cfg: KioskAugmentConfig,
               rng: np.random.Generator) -> np.ndarray:
    """One packshot (uint8 [S, S, 3], letterboxed on white) as a kiosk photo of the same shape.

    Args:
        pixels: the packshot.
        background: uint8 [B, B, 3] scene to paste it on (a crop is taken for the aspect ratio).
        cfg: the augmentation's ranges and probabilities.
        rng: the only source of randomness.

    Returns:
        uint8 [S, S, 3]; the packshot unchanged when nearly all of it is white (no product to cut).
    """
    s = pixels.shape[0]
    product = _cut_product(pixels, cfg)
    if product is None:
        return np.array(pixels)
    aspect = float(np.exp(rng.uniform(*np.log(cfg.aspect))))
    cw, ch = (s, max(8, round(s / aspect))) if aspect >= 1 else (max(8, round(s * aspect)), s)
    b = background.shape[0]
    bw, bh = (b, max(4, round(b * ch / cw))) if cw >= ch else (max(4, round(b * cw / ch)), b)
    bx, by = rng.integers(0, b - bw + 1), rng.integers(0, b - bh + 1)
    canvas = Image.fromarray(np.ascontiguousarray(background[by:by + bh, bx:bx + bw])).resize(
        (cw, ch), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    product = _warp(product, cfg, rng)
    long_side = rng.uniform(*cfg.scale) * min(cw, ch)
    k = long_side / max(product.size)
    product = product.resize((max(2, round(product.width * k)), max(2, round(product.height * k))),
                             Image.Resampling.BILINEAR)
    cx = cw / 2 + rng.uniform(-cfg.max_offset, cfg.max_offset) * cw
    cy = ch / 2 + rng.uniform(-cfg.max_offset, cfg.max_offset) * ch
    canvas.paste(product, (round(cx - product.width / 2), round(cy - product.height / 2)), product)
    out = Image.fromarray(_light(np.asarray(canvas), cfg, rng))
    if rng.random() < cfg.blur_p:
        out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(*cfg.blur_radius))))
    if rng.random() < cfg.jpeg_p:
        buf = io.BytesIO()
        out.save(buf, format="JPEG", quality=int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
        out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(resize_letterbox(out, s), dtype=np.uint8)  # the longer side is s already


def kiosk_batch(batch: np.ndarray, backgrounds: np.ndarray, cfg: KioskAugmentConfig,
                rng: np.random.Generator) -> np.ndarray:
    """Give each image of uint8 [n, S, S, 3] kiosk conditions with probability ``cfg.p``."""
    out = np.array(batch)
    if cfg.p <= 0 or len(backgrounds) == 0:
        return out
    for i in np.nonzero(rng.random(len(out)) < cfg.p)[0]:
        out[i] = kiosk_view(out[i], backgrounds[rng.integers(len(backgrounds))], cfg, rng)
    return out
