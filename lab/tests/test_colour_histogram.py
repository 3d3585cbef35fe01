"""lab/sft/colour_histogram.py reads the product's colour and ignores the studio background."""

from __future__ import annotations

import numpy as np
import pytest

from lab.sft.colour_histogram import DIM, HUES, SATURATIONS, VALUES, colour_histogram


def _product(colour, share: float = 0.25, size: int = 40) -> np.ndarray:
    img = np.full((size, size, 3), 250, np.uint8)              # white studio background
    side = int(size * share ** 0.5)
    img[:side, :side] = colour
    return img


def _bins(h: np.ndarray) -> np.ndarray:
    return (h[:HUES * SATURATIONS * VALUES] ** 2).reshape(HUES, SATURATIONS, VALUES)


def test_a_red_product_on_white_fills_one_red_bin():
    h = colour_histogram(_product((200, 20, 20)))
    assert h.shape == (DIM,) and h.dtype == np.float32
    bins = _bins(h)
    assert np.isclose(bins.sum(), 1) and bins[0].sum() > 0.99     # hue bin 0 = red; background not counted
    assert np.allclose(h[-4:-1], np.array([200, 20, 20]) / 255, atol=1e-3)   # mean foreground RGB
    assert np.isclose(h[-1], 0.25, atol=0.02)                                 # foreground share


def test_the_background_does_not_change_the_colour_read():
    small = colour_histogram(_product((20, 20, 160), 0.1))
    large = colour_histogram(_product((20, 20, 160), 0.6))
    assert np.allclose(small[:-1], large[:-1], atol=1e-6) and small[-1] < large[-1]
    navy, blue = colour_histogram(_product((20, 30, 90))), colour_histogram(_product((60, 110, 230)))
    assert not np.allclose(navy, blue)                            # a darker blue lands in other bins


def test_a_blank_photo_and_bad_input():
    assert not colour_histogram(np.full((8, 8, 3), 255, np.uint8))[:-4].any()
    with pytest.raises(ValueError, match="uint8"):
        colour_histogram(np.zeros((8, 8, 3), np.float32))
