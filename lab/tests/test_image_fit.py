"""The foreground fit experiment (lab/sft/image_fit.py: crop the product off its studio
background), and its CNN screening script (lab/sft/image_fit_cnn.py) on the trained tiny set."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lab.sft.image_fit import fit_square, foreground_box, resize_foreground
from mmrec.images import resize_square
from test_images import encode, noise  # noqa: F401 (shared helpers of tests/)


def studio_photo(w: int, h: int, box: tuple[int, int, int, int], colour=(200, 20, 20)) -> Image.Image:
    """A product (a filled rectangle) on a near-white studio background, JPEG-compressed."""
    img = Image.new("RGB", (w, h), (250, 250, 250))
    img.paste(Image.new("RGB", (box[2] - box[0], box[3] - box[1]), colour), box[:2])
    return Image.open(io.BytesIO(encode(img, "JPEG", quality=90))).convert("RGB")


def share_of(img: Image.Image, colour, tol: int = 40) -> float:
    return float((np.abs(np.asarray(img, dtype=int) - colour).max(axis=2) <= tol).mean())


def test_foreground_fit_gives_a_small_product_the_whole_input():
    photo = studio_photo(200, 300, (110, 20, 190, 130))  # an 80 x 110 item in a corner of a 2:3 frame
    assert foreground_box(photo)[0] == pytest.approx((110, 20, 190, 130), abs=2)
    fitted, squashed = resize_foreground(photo, 56), resize_square(photo, 56)
    assert fitted.size == (56, 56) and share_of(squashed, (200, 20, 20)) < 0.16
    assert share_of(fitted, (200, 20, 20)) > 0.75
    # a speck is never blown up past a quarter of the photo's longer side
    speck = resize_foreground(studio_photo(200, 300, (100, 100, 110, 110)), 56)
    assert share_of(speck, (200, 20, 20)) == pytest.approx((10 / 75) ** 2, abs=0.01)
    assert fit_square(photo, 56, "foreground").tobytes() == fitted.tobytes()
    assert fit_square(photo, 56, "squash").tobytes() == squashed.tobytes()


def test_foreground_fit_caps_the_stretch_and_pads_with_the_background():
    photo = studio_photo(300, 200, (30, 90, 270, 110))  # a belt: 240 x 20, aspect 12
    fitted = resize_foreground(photo, 60, max_stretch=1.5)
    rows = [y for y in range(60) if fitted.getpixel((30, y))[1] < 100]
    # the padded crop is 240 * 1.08 wide and 1/1.5 of that high: the belt keeps 20 / 172.8 of it
    assert len(rows) == pytest.approx(60 * 20 / (240 * 1.08 / 1.5), abs=2)
    assert all(abs(c - 250) <= 3 for c in fitted.getpixel((30, 2)))  # padding is the background
    with pytest.raises(ValueError, match="max_stretch"):
        resize_foreground(photo, 60, max_stretch=0.5)


def test_foreground_fit_keeps_a_white_garment_by_its_outline_and_ignores_a_speck():
    img = Image.new("RGB", (120, 160), (255, 255, 255))
    img.paste(Image.new("RGB", (52, 72), (170, 170, 170)), (40, 50))  # grey outline ...
    img.paste(Image.new("RGB", (50, 70), (252, 252, 252)), (41, 51))  # ... of a white shirt
    img.putpixel((5, 150), (0, 0, 0))  # one stray dark pixel is noise, not product
    assert foreground_box(img)[0] == (40, 50, 92, 122)


def test_photo_without_a_plain_background_is_squashed_as_before():
    photo = noise(90, 120, seed=3)  # 3:4, no studio backdrop: a shopper's upload
    assert foreground_box(photo)[0] == (0, 0, 90, 120)
    assert resize_foreground(photo, 28).tobytes() == resize_square(photo, 28).tobytes()
    blank = Image.new("RGB", (40, 40), (255, 255, 255))
    assert resize_foreground(blank, 28).size == (28, 28)
    with pytest.raises(ValueError, match="image fit must be one of"):
        fit_square(photo, 28, "zoom")
    with pytest.raises(ValueError, match="size must be a positive int"):
        resize_foreground(photo, 0)
