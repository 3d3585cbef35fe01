"""Tests for mmrec.images: every image is generated here, in memory or under tmp_path."""

from __future__ import annotations

import hashlib
import io
import pickle
import random
import struct
import time
import warnings
import zlib

import pytest
from PIL import Image, ImageFile
from pydantic import ValidationError

from mmrec.errors import InputError
from mmrec.images import (
    ImageError,
    ImageInfo,
    ImageLimits,
    inspect_image,
    load_image,
    resize_letterbox,
    resize_square,
    to_jpeg_bytes,
)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    """Random pixels, so that encoded files are large and any cut lands in image data."""
    return Image.frombytes("RGB", (w, h), random.Random(seed).randbytes(w * h * 3))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(w: int, h: int) -> bytes:
    """A valid all-black 1-bit PNG of w x h: a few KB on disk, w*h bytes once decoded by Pillow."""
    row = b"\0" * (1 + (w + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def reason_of(source, limits: ImageLimits | None = None) -> str:
    with pytest.raises(ImageError) as ei:
        load_image(source, limits)
    return ei.value.reason


def close(a, b, tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_allowed_formats_load_as_loaded_rgb(tmp_path, fmt):
    path = tmp_path / "photo.img"  # the extension means nothing: the detected format counts
    path.write_bytes(encode(Image.new("RGB", (64, 48), (200, 30, 40)), fmt, quality=95))
    img = load_image(path)
    path.unlink()  # the result must not depend on the file any more
    assert img.mode == "RGB" and img.size == (64, 48)
    assert not isinstance(img, ImageFile.ImageFile)
    assert close(img.getpixel((32, 24)), (200, 30, 40))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_is_composited_on_white(mode):
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    img.paste((255, 0, 0, 128), (0, 0, 20, 40))  # left half: half-transparent red
    out = load_image(encode(img.convert(mode), "PNG"))
    assert out.getpixel((30, 20)) == (255, 255, 255)
    expected = (255, 127, 127) if mode == "RGBA" else (165, 165, 165)  # LA: red is grey 76
    assert close(out.getpixel((5, 20)), expected, tol=2)


def test_palette_png_with_and_without_transparency():
    pal = Image.new("RGB", (40, 40), (0, 128, 255)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert load_image(encode(pal, "PNG")).getpixel((0, 0)) == (0, 128, 255)
    data = encode(pal, "PNG", transparency=pal.getpixel((0, 0)))
    assert Image.open(io.BytesIO(data)).mode == "P"
    assert load_image(data).getpixel((0, 0)) == (255, 255, 255)


def test_16bit_greyscale_png_is_scaled_not_clipped():
    img = Image.new("I;16", (40, 40), 40000)
    assert close(load_image(encode(img, "PNG")).getpixel((0, 0)), (156, 156, 156), tol=1)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_unsupported_format(tmp_path, fmt):
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(Image.new("RGB", (40, 40), "red"), fmt))
    with pytest.raises(ImageError) as ei:
        load_image(path)
    assert ei.value.reason == "unsupported_format"
    assert str(path) in str(ei.value) and fmt in str(ei.value) and "JPEG" in str(ei.value)


def test_allow_list_is_configurable():
    png = encode(Image.new("RGB", (40, 40)), "PNG")
    assert reason_of(png, ImageLimits(formats=("jpeg",))) == "unsupported_format"


@pytest.mark.parametrize("data", [
    random.Random(1).randbytes(4096),
    b"",
    b"\xff\xd8\xff" + random.Random(2).randbytes(4096),  # JPEG magic, garbage after
    b"\x89PNG\r\n\x1a\n" + random.Random(3).randbytes(100),
], ids=["garbage", "empty", "jpeg-magic", "png-magic"])
def test_garbage_is_corrupt(data):
    assert reason_of(data) == "corrupt"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated(tmp_path, fmt):
    data = encode(noise(128, 128), fmt)
    path = tmp_path / "cut.bin"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as ei:
        load_image(path)
    assert ei.value.reason == "truncated", str(ei.value)


def test_too_many_bytes_for_every_source_kind(tmp_path):
    data = encode(noise(64, 64), "PNG")
    limits = ImageLimits(max_bytes=1000)
    path = tmp_path / "big.png"
    path.write_bytes(data)
    assert reason_of(path, limits) == "too_many_bytes"
    assert reason_of(data, limits) == "too_many_bytes"
    assert reason_of(io.BytesIO(data), limits) == "too_many_bytes"
    with pytest.raises(ImageError, match=f"{len(data):,} bytes exceeds max_bytes 1,000"):
        load_image(path, limits)


def test_stream_is_read_only_up_to_the_limit():
    stream = io.BytesIO(b"\0" * 100_000)
    assert reason_of(stream, ImageLimits(max_bytes=1000)) == "too_many_bytes"
    assert stream.tell() == 1001


@pytest.mark.parametrize("side", [8000, 20000], ids=["over-max_pixels", "over-pillow-limit"])
def test_decompression_bomb_refused_without_decoding(tmp_path, monkeypatch, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb(side, side))
    assert path.stat().st_size < 100_000  # tiny on disk, side*side bytes in memory

    def no_decoding(self):
        raise AssertionError("pixel data must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    t0 = time.perf_counter()
    with pytest.raises(ImageError) as ei:
        load_image(path)
    assert time.perf_counter() - t0 < 1.0
    assert ei.value.reason == "too_many_pixels"
    if side == 8000:
        assert f"8000x8000 = 64,000,000 pixels exceeds max_pixels 40,000,000" in str(ei.value)


def test_pillow_bomb_warning_is_an_error_locally_and_global_state_is_kept(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x40 = 1600: warning zone (1000..2000)
    filters = list(warnings.filters)
    assert reason_of(encode(Image.new("RGB", (40, 40)), "PNG")) == "too_many_pixels"
    assert warnings.filters == filters
    assert Image.MAX_IMAGE_PIXELS == 1000 and ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("size", [(10, 10), (200, 20)])
def test_too_small(size):
    with pytest.raises(ImageError, match="below min_side 32") as ei:
        load_image(encode(Image.new("RGB", size), "PNG"))
    assert ei.value.reason == "too_small"


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 255, 255))
    img.paste((255, 0, 0), (0, 0, 10, 10))  # red block in the stored top-left corner
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    out, info = inspect_image(data, ImageLimits(min_side=16))
    assert out.size == (20, 40) and (info.width, info.height) == (20, 40)
    assert close(out.getpixel((15, 4)), (255, 0, 0), tol=40)  # clockwise: top-left -> top-right
    assert close(out.getpixel((4, 4)), (255, 255, 255), tol=40)


@pytest.mark.parametrize("name", ["missing.jpg", "."])
def test_not_found(tmp_path, name):
    assert reason_of(tmp_path / name) == "not_found"
    assert reason_of(str(tmp_path / name)) == "not_found"


def test_limits_refuse_nonsense():
    with pytest.raises(ValidationError, match="max_pixels must be positive, got 0"):
        ImageLimits(max_pixels=0)
    with pytest.raises(ValidationError, match="max_bytes must be positive, got -1"):
        ImageLimits(max_bytes=-1)
    with pytest.raises(ValidationError, match="extra"):
        ImageLimits(max_pixel=10)
    with pytest.raises(ValidationError, match="not decodable by Pillow"):
        ImageLimits(formats=("JPEG", "NOPE"))
    with pytest.raises(ValidationError, match="at least one format"):
        ImageLimits(formats=())
    with pytest.raises(ValidationError, match="no image could pass"):
        ImageLimits(min_side=100, max_pixels=5000)
    assert ImageLimits(formats=("png",)).formats == ("PNG",)


def test_inspect_image_reports_raw_bytes_and_upright_size(tmp_path):
    data = encode(noise(50, 40), "PNG")
    path = tmp_path / "p.png"
    path.write_bytes(data)
    img, info = inspect_image(path)
    assert info == ImageInfo(50, 40, "PNG", len(data), hashlib.sha256(data).hexdigest())
    assert img.tobytes() == noise(50, 40).tobytes()  # lossless round trip


def test_file_like_sources(tmp_path):
    data = encode(noise(40, 40), "WEBP")
    assert load_image(io.BytesIO(data)).size == (40, 40)
    path = tmp_path / "w.webp"
    path.write_bytes(data)
    with open(path, "rb") as f:
        assert inspect_image(f)[1].sha256 == hashlib.sha256(data).hexdigest()
    with open(path, "rb") as f, pytest.raises(ImageError, match=str(path)):
        load_image(f, ImageLimits(max_bytes=10))
    with open(path, encoding="latin-1") as f, pytest.raises(TypeError, match="binary mode"):
        load_image(f)
    with pytest.raises(TypeError, match="got int"):
        load_image(42)


def test_image_error_is_an_input_error_and_pickles():
    err = ImageError("a.png", "truncated", "JPEG data ends early")
    assert isinstance(err, InputError) and str(err) == "a.png: JPEG data ends early"
    back = pickle.loads(pickle.dumps(err))
    assert (back.reason, back.source, str(back)) == ("truncated", "a.png", str(err))
    with pytest.raises(ValueError, match="unknown ImageError reason"):
        ImageError("a.png", "bad", "x")


def test_resize_helpers():
    img = Image.new("RGB", (100, 50), (255, 0, 0))
    box = resize_letterbox(img, 32, fill=(0, 0, 255))
    assert box.size == (32, 32) and box.mode == "RGB"
    assert box.getpixel((16, 2)) == (0, 0, 255) and box.getpixel((16, 16)) == (255, 0, 0)
    assert resize_letterbox(img.convert("RGBA"), 16).size == (16, 16)
    assert resize_square(img, 24).size == (24, 24)
    assert resize_square(img, 24).getpixel((0, 0)) == (255, 0, 0)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="size must be a positive int"):
            resize_square(img, bad)


def test_to_jpeg_bytes_round_trip():
    data = to_jpeg_bytes(Image.new("RGBA", (40, 40), (0, 0, 0, 0)), quality=80)
    img, info = inspect_image(data)
    assert info.format == "JPEG" and img.getpixel((5, 5)) == (255, 255, 255)
    with pytest.raises(ValueError, match="quality must be in 1..100, got 0"):
        to_jpeg_bytes(img, quality=0)
