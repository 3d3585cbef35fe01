"""The random resized crop experiment (lab/sft/crop.py): windows replay from (seed, epoch,
index) alone, only geometry changes, and cached and loaded photos are cropped alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lab.sft.crop import CropExample, CroppingCollator, RandomCropped, epoch_sync, resized_crop
from mmrec.attributes.data import Example, Mirrored, PixelCache

RED, BLUE, GREEN, YELLOW = (200, 30, 30), (20, 40, 180), (30, 160, 60), (240, 210, 30)


def _quadrants(side: int = 64) -> Image.Image:
    """Four solid quadrants: red | blue over green | yellow."""
    a = np.zeros((side, side, 3), dtype=np.uint8)
    h = side // 2
    a[:h, :h], a[:h, h:], a[h:, :h], a[h:, h:] = RED, BLUE, GREEN, YELLOW
    return Image.fromarray(a)


def _examples(n: int) -> list[Example]:
    return [Example([1, 2], [3], i) for i in range(n)]


def test_crop_refuses_windows_that_cannot_be_drawn():
    for bad in ([0.9, 0.7], [0, 1], [0.5, 1.2], [-0.1, 0.5], [0.5]):
        with pytest.raises(ValueError, match="crop scale"):
            RandomCropped(_examples(1), bad, seed=0)
    for bad in ([2, 1], [0, 1]):
        with pytest.raises(ValueError, match="crop ratio"):
            RandomCropped(_examples(1), (0.7, 1.0), bad, seed=0)
    ds = RandomCropped(_examples(3), [0.7, 1.0], [1, 1], seed=0)    # YAML lists reach the tuples
    assert ds.scale == (0.7, 1.0) and ds.ratio == (1, 1) and all(ds[i].crop is not None for i in range(3))


def test_crop_windows_depend_only_on_seed_epoch_and_index():
    def windows(seed: int, epoch: int, order) -> dict[int, tuple]:
        ds = RandomCropped(Mirrored(_examples(20)), (0.5, 0.9), (1.0, 1.0), seed=seed)
        ds.set_epoch(epoch)
        return {i: ds[i].crop for i in order}

    a = windows(0, 1, range(40))
    assert a == windows(0, 1, reversed(range(40)))   # order of access (prefetch, resume skip) is irrelevant
    assert a != windows(0, 2, range(40)) and a != windows(1, 1, range(40))
    assert len(set(a.values())) == 40                 # the plain and the mirrored copy differ too
    for left, top, right, bottom in a.values():
        assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1
        assert 0.5 - 1e-9 <= (right - left) * (bottom - top) <= 0.9 + 1e-9
        assert abs((right - left) - (bottom - top)) < 1e-9      # ratio [1, 1]: square stays square
    ds = RandomCropped(Mirrored(_examples(2)), (0.5, 0.9), (0.75, 4 / 3), seed=0)
    assert [ds[i].flip for i in range(4)] == [False, True, False, True]  # the mirror survives the crop


def test_epoch_sync_enters_the_epoch_of_a_resumed_state():
    from transformers import TrainerState

    ds = RandomCropped(_examples(4), (0.5, 1.0), (1.0, 1.0), seed=0)
    cb = epoch_sync(ds)
    for epoch, entered in [(0.0, 0), (2.0, 2), (2.75, 2), (3.0, 3)]:
        cb.on_epoch_begin(None, TrainerState(epoch=epoch), None)
        assert ds.epoch == entered


def _colours(img: Image.Image) -> set[tuple[int, ...]]:
    return {tuple(int(c) for c in px) for px in np.asarray(img).reshape(-1, 3)}


def test_crop_only_moves_pixels():
    plain = Image.new("RGB", (70, 50), RED)
    out = resized_crop(plain, (0.13, 0.21, 0.77, 0.94))
    assert out.size == plain.size and _colours(out) == {RED}          # colour untouched
    quads = _quadrants(64)
    # windows inside one quadrant are that quadrant's colour, blown up (2 px off its borders:
    # bicubic's support reaches that far past the window)
    assert _colours(resized_crop(quads, (0.05, 0.1, 0.4, 0.4))) == {RED}
    assert _colours(resized_crop(quads, (0.55, 0.0, 1.0, 0.45))) == {BLUE}
    # a window whose left third is red: the border lands at 64 * 1/3 = 21.3 px (pixel 20.8),
    # with bicubic's few pixels of blend and ringing around it and solid colours beyond
    row = np.asarray(resized_crop(quads, (1 / 3, 0.0, 5 / 6, 0.25)))[5]
    assert (row[:18] == RED).all() and (row[24:] == BLUE).all()
    assert int(np.argmax(row[:, 0] < (RED[0] + BLUE[0]) / 2)) == 21


def test_collator_crops_cached_and_loaded_images_alike(tmp_path):
    from types import SimpleNamespace

    quads, plain = _quadrants(56), Image.new("RGB", (56, 56), GREEN)
    paths = [str(tmp_path / "q.png"), str(tmp_path / "p.png")]
    quads.save(paths[0]), plain.save(paths[1])
    cache = PixelCache(np.stack([np.asarray(quads), np.asarray(plain)]), paths)
    tok = SimpleNamespace(pad_token_id=0, convert_tokens_to_ids=lambda t: 1)
    proc = SimpleNamespace(tokenizer=tok, image_processor=SimpleNamespace(merge_size=2))
    box = (0.2, 0.1, 0.9, 0.8)
    examples = [CropExample([], [], 0, crop=box), CropExample([], [], 1, crop=box, flip=True),
                CropExample([], [], 0, crop=box, flip=True), Example([], [], 0)]
    cached = CroppingCollator(proc, cache).images(examples)
    assert cached.shape == (4, 3, 56, 56) and cached.dtype == torch.uint8  # input size unchanged
    assert torch.equal(cached[0].permute(1, 2, 0), torch.from_numpy(np.array(resized_crop(quads, box))))
    assert (cached[1].permute(1, 2, 0) == torch.tensor(GREEN, dtype=torch.uint8)).all()
    assert torch.equal(cached[2], cached[0].flip(-1))        # crop first, then mirror
    assert torch.equal(cached[3].permute(1, 2, 0), torch.from_numpy(np.array(quads)))
    loaded = CroppingCollator(proc, None).images([CropExample([], [], paths[e.image], crop=getattr(e, "crop", None),
                                                              flip=e.flip) for e in examples])
    assert [im.size for im in loaded] == [(56, 56)] * 4
    for im, x in zip(loaded, cached):
        assert torch.equal(torch.from_numpy(np.array(im)), x.permute(1, 2, 0))
