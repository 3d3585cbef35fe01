"""Safe image decoding for every component that opens an image (ingest, training, kiosk uploads).

Untrusted input is checked in increasing order of cost: byte size (before reading it all), the
format Pillow detects (an allow-list; the file extension is ignored), the header's dimensions
(before decoding: the decompression-bomb guard), then a full decode that tells truncated files
from corrupt ones. The result is a fully loaded, EXIF-upright RGB image detached from any file.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from dataclasses import dataclass
from typing import BinaryIO, Literal, get_args

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import ValidationInfo, field_validator, model_validator

from mmrec.config import StrictModel
from mmrec.errors import InputError

Reason = Literal[
    "not_found", "too_many_bytes", "unsupported_format", "corrupt", "truncated",
    "too_many_pixels", "too_small",
]
REASONS: tuple[str, ...] = get_args(Reason)

Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

# What Pillow raises on malformed input varies by plugin; these describe the bytes, not a bug.
_DECODE_FAILURES = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError,
                    TypeError, struct.error, ZeroDivisionError)


class ImageLimits(StrictModel):
    """Bounds on an untrusted image. Pillow's own MAX_IMAGE_PIXELS guard (~89M) applies as well."""

    max_bytes: int = 20_000_000
    max_pixels: int = 40_000_000  # width * height, checked from the header before decoding
    min_side: int = 32
    formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP")

    @field_validator("max_bytes", "max_pixels", "min_side")
    @classmethod
    def _positive(cls, v: int, info: ValidationInfo) -> int:
        if v <= 0:
            raise ValueError(f"{info.field_name} must be positive, got {v}")
        return v

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("formats must name at least one format, e.g. ('JPEG', 'PNG', 'WEBP')")
        Image.init()  # registers every plugin so that Image.OPEN lists all decodable formats
        out = tuple(f.upper() for f in v)
        unknown = [f for f in out if f not in Image.OPEN]
        if unknown:
            raise ValueError(
                f"formats {unknown} are not decodable by Pillow; known: {sorted(Image.OPEN)}")
        return out

    @model_validator(mode="after")
    def _satisfiable(self) -> ImageLimits:
        if self.min_side * self.min_side > self.max_pixels:
            raise ValueError(f"min_side {self.min_side} squared exceeds max_pixels "
                             f"{self.max_pixels}; no image could pass")
        return self


class ImageError(InputError):
    """An image was refused; ``reason`` (one of REASONS) is a stable code for callers."""

    # Positional args so that the exception pickles (Ray ships exceptions between processes).
    def __init__(self, source: str, reason: Reason, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown ImageError reason {reason!r}; valid: {REASONS}")
        super().__init__(source, reason, detail)
        self.source, self.reason, self.detail = source, reason, detail

    def __str__(self) -> str:
        return f"{self.source}: {self.detail}"


@dataclass(frozen=True)
class ImageInfo:
    width: int  # after EXIF orientation
    height: int
    format: str  # as Pillow detected it, e.g. "JPEG"
    n_bytes: int
    sha256: str  # of the raw encoded bytes


def _read_capped(f: BinaryIO, cap: int) -> bytes:
    """Read until EOF or ``cap`` bytes; loops because raw streams may return short reads."""
    chunks, n = [], 0
    while n < cap:
        chunk = f.read(min(cap - n, 1 << 20))
        if isinstance(chunk, str):
            raise TypeError("file-like image sources must be opened in binary mode ('rb')")
        if not chunk:
            break
        chunks.append(chunk)
        n += len(chunk)
    return b"".join(chunks)


def _read_source(source: Source, limits: ImageLimits) -> tuple[bytes, str]:
    """Return (bytes, label for messages), never reading more than max_bytes + 1 bytes."""
    cap = limits.max_bytes
    if isinstance(source, (bytes, bytearray, memoryview)):
        label, data = "<bytes>", bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        label = os.fsdecode(source)
        try:
            with open(source, "rb") as f:
                size = os.fstat(f.fileno()).st_size  # fstat after open: no stat/open race
                if size > cap:
                    raise ImageError(label, "too_many_bytes",
                                     f"{size:,} bytes exceeds max_bytes {cap:,}")
                data = _read_capped(f, cap + 1)  # the file may have grown since fstat
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise ImageError(label, "not_found", f"no image file here ({e.strerror})") from e
    elif hasattr(source, "read"):
        name = getattr(source, "name", None)
        label = name if isinstance(name, str) else "<stream>"
        data = _read_capped(source, cap + 1)
    else:
        raise TypeError("image source must be a path, bytes or a binary file, "
                        f"got {type(source).__name__}")
    if len(data) > cap:
        shown = f"{len(data):,}" if label == "<bytes>" else f"more than {cap:,}"
        raise ImageError(label, "too_many_bytes", f"{shown} bytes exceeds max_bytes {cap:,}")
    return data, label


def _sniff(prefix: bytes, formats: tuple[str, ...] | list[str]) -> str | None:
    """The first of ``formats`` whose magic bytes match; only prefix checks, no header parsing."""
    Image.init()
    for fmt in formats:
        accept = Image.OPEN.get(fmt, (None, None))[1]
        try:
            ok = accept is not None and accept(prefix)
        except Exception:  # a plugin's sniffer failing on odd bytes just means "not this format"
            ok = False
        if ok and not isinstance(ok, str):
            return fmt
    return None


def _unidentified(data: bytes, label: str, limits: ImageLimits) -> ImageError:
    prefix = data[:16]
    Image.init()
    # Allowed formats first: MPO shares JPEG's magic, and a broken JPEG is corrupt, not "MPO".
    if _sniff(prefix, limits.formats) is None and (other := _sniff(prefix, list(Image.OPEN))):
        return ImageError(label, "unsupported_format",
                          f"format {other} is not allowed; allowed: {', '.join(limits.formats)}")
    return ImageError(label, "corrupt", f"not a decodable {'/'.join(limits.formats)} image "
                                        f"({len(data):,} bytes)")


def _is_truncated(e: Exception, data: bytes) -> bool:
    if isinstance(e, EOFError) or "truncated" in str(e).lower():
        return True
    # libwebp only says "could not create decoder object"; the RIFF header tells the real size.
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return struct.unpack_from("<I", data, 4)[0] + 8 > len(data)
    return False


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert to a new RGB image, compositing transparency onto white (convert() gives black)."""
    if im.mode == "I" or im.mode.startswith("I;16"):
        # 16-bit greyscale PNG: convert("RGB") clips instead of scaling, turning the image white.
        im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if im.has_transparency_data:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _decode(data: bytes, label: str, limits: ImageLimits) -> tuple[Image.Image, str]:
    with warnings.catch_warnings():
        # Pillow warns (not raises) between MAX_IMAGE_PIXELS and twice that; make it fatal here
        # only. catch_warnings is not thread-safe, but the header check below is the real guard.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            src = Image.open(io.BytesIO(data), formats=limits.formats)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(label, "too_many_pixels",
                             f"refused by Pillow's decompression-bomb guard ({e}); max_pixels "
                             f"{limits.max_pixels:,}") from e
        except UnidentifiedImageError as e:
            raise _unidentified(data, label, limits) from e
        except _DECODE_FAILURES as e:
            if _is_truncated(e, data):
                raise ImageError(label, "truncated", f"the file ends early ({e})") from e
            raise ImageError(label, "corrupt", f"unreadable image header: {e}") from e
        with src:
            fmt = src.format or "?"
            w, h = src.size  # Image.open only parsed the header: nothing is decoded yet
            if w * h > limits.max_pixels:
                raise ImageError(label, "too_many_pixels", f"{w}x{h} = {w * h:,} pixels exceeds "
                                 f"max_pixels {limits.max_pixels:,}")
            if min(w, h) < limits.min_side:
                raise ImageError(label, "too_small",
                                 f"{w}x{h} has a side below min_side {limits.min_side}")
            try:
                src.load()
            except _DECODE_FAILURES as e:
                if _is_truncated(e, data):
                    raise ImageError(label, "truncated",
                                     f"{fmt} data ends early ({e}); the file is incomplete") from e
                raise ImageError(label, "corrupt", f"{fmt} data does not decode: {e}") from e
            try:
                ImageOps.exif_transpose(src, in_place=True)  # in place: no extra full-size copy
            except _DECODE_FAILURES as e:
                raise ImageError(label, "corrupt", f"unreadable EXIF metadata: {e}") from e
            return _to_rgb(src), fmt


def inspect_image(
    source: Source, limits: ImageLimits | None = None
) -> tuple[Image.Image, ImageInfo]:
    """Decode and validate ``source`` fully; return the RGB image and facts about it.

    Args:
        source: a path, the encoded bytes (never read as a path), or a binary file object
            (read from its current position, at most ``max_bytes + 1`` bytes).
        limits: bounds to enforce; ``ImageLimits()`` by default.

    Raises:
        ImageError: with ``reason`` saying why the image was refused.
    """
    limits = limits or ImageLimits()
    data, label = _read_source(source, limits)
    img, fmt = _decode(data, label, limits)
    info = ImageInfo(img.width, img.height, fmt, len(data), hashlib.sha256(data).hexdigest())
    return img, info


def load_image(source: Source, limits: ImageLimits | None = None) -> Image.Image:
    """Decode ``source`` into a fully loaded, EXIF-upright RGB image (see ``inspect_image``)."""
    limits = limits or ImageLimits()
    data, label = _read_source(source, limits)
    return _decode(data, label, limits)[0]


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")


def resize_letterbox(
    img: Image.Image, size: int, fill: tuple[int, int, int] = (255, 255, 255)
) -> Image.Image:
    """Fit ``img`` inside a ``size`` x ``size`` square keeping its aspect; pad with ``fill``."""
    _check_size(size)
    img = img if img.mode == "RGB" else _to_rgb(img)
    scale = size / max(img.size)
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    canvas = Image.new("RGB", (size, size), fill)
    # BICUBIC matches CLIP-style preprocessing; Pillow's resize antialiases when shrinking.
    canvas.paste(img.resize((w, h), Image.Resampling.BICUBIC), ((size - w) // 2, (size - h) // 2))
    return canvas


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Resize to ``size`` x ``size`` ignoring aspect (for encoders trained on squashed inputs)."""
    _check_size(size)
    img = img if img.mode == "RGB" else _to_rgb(img)
    return img.resize((size, size), Image.Resampling.BICUBIC)


def to_jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    """Encode ``img`` as JPEG (quality 1-100; Pillow advises against above 95)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    buf = io.BytesIO()
    (img if img.mode == "RGB" else _to_rgb(img)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
