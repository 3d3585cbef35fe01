"""Experiment: random resized crops of the training photos (``lora_stage.crop_scale`` /
``crop_ratio`` until 2026-12-07; tried 2026-11-25, not adopted: lab/README.md).

The window's area fraction is uniform in ``scale`` and its aspect ratio log-uniform in
``ratio``; its position is uniform, which is the (small) translation. Only geometry changes: no
colour jitter, because colour is a predicted attribute, and no padding, which would add a fill
colour. Nothing is drawn from a global RNG (see `mmrec.attributes.data.Mirrored` for why): a
window depends on (seed, epoch, index) alone, and ``epoch_sync`` tells the dataset the epoch the
Trainer enters (after a resume, the checkpoint's epoch), so a resumed run redraws exactly the
windows of the uninterrupted one, whatever order the items are fetched in.

`CroppingCollator` is the product's collator that also applies an example's crop (cached
pixels and loaded photos alike, crop before the mirror).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np

from mmrec.attributes.data import Collator, Example

# A crop window as fractions of the image: (left, top, right, bottom), each in [0, 1].
Box = tuple[float, float, float, float]


@dataclass
class CropExample(Example):
    crop: Box | None = None  # crop to this window, resized back to the full size


def with_crop(e: Example, box: Box | None) -> CropExample:
    return CropExample(**{f.name: getattr(e, f.name) for f in fields(Example)}, crop=box)


def check_window(scale: tuple[float, float], ratio: tuple[float, float]) -> None:
    """Refuse windows that cannot be drawn, naming the bad value."""
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"crop scale must be [min, max] with 0 < min <= max <= 1, got {list(scale)}; "
                         "e.g. [0.7, 1.0]")
    if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"crop ratio must be [min, max] with 0 < min <= max, got {list(ratio)}; "
                         "e.g. [0.75, 1.333], or [1, 1] for no stretch")


class RandomCropped:
    """Each example with a random resized crop window drawn from (seed, epoch, index) alone."""

    def __init__(self, examples: Sequence[Example], scale: tuple[float, float],
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), *, seed: int):
        check_window(tuple(scale), tuple(ratio))
        self.examples = examples
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        # SeedSequence takes non-negative entropy only; any int config seed maps to one
        self.seed = seed % 2 ** 64
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> CropExample:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        return with_crop(self.examples[i], crop_box(rng, self.scale, self.ratio))


def crop_box(rng: np.random.Generator, scale: tuple[float, float], ratio: tuple[float, float]) -> Box:
    """A window of area fraction ~U(scale) and aspect ~logU(ratio) at a uniform position.

    Sides are relative to the image's own, so ratio 1 keeps its shape. A side that would pass
    1 is clipped to 1 (a slightly smaller area) instead of re-drawn as torchvision does: a
    fixed number of draws per item keeps the stream simple to reason about.
    """
    area = rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    w, h = min(1.0, math.sqrt(area * aspect)), min(1.0, math.sqrt(area / aspect))
    left, top = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
    return (left, top, left + w, top + h)


def resized_crop(img, box: Box):
    """``img`` (PIL) cropped to ``box`` and resized back to its own size.

    Keeping the size keeps the image on the input path it had uncropped (the same number of
    image tokens once the processor resizes it); bicubic as the pixel cache's resize.
    """
    from PIL import Image

    w, h = img.size
    return img.resize((w, h), Image.Resampling.BICUBIC,
                      box=(box[0] * w, box[1] * h, box[2] * w, box[3] * h))


def _crop_chw(x, box: Box):
    """``resized_crop`` of one cached [3, H, W] uint8 tensor."""
    import torch
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(x.permute(1, 2, 0).numpy()))
    return torch.from_numpy(np.array(resized_crop(img, box))).permute(2, 0, 1)  # a writable copy


class CroppingCollator(Collator):
    """The product's collator, cropping each `CropExample` before the mirror."""

    def images(self, examples: Sequence[Example]):
        from PIL import ImageOps

        from mmrec.images import load_image

        crops = [getattr(e, "crop", None) for e in examples]
        if self.pixels is not None:
            x = self.pixels.batch([int(e.image) for e in examples])
            for i, box in enumerate(crops):
                if box is not None:
                    x[i] = _crop_chw(x[i], box)
            for i, e in enumerate(examples):
                if e.flip:
                    x[i] = x[i].flip(-1)
            return x
        out = []
        for e, box in zip(examples, crops):
            img = load_image(e.image)
            img = resized_crop(img, box) if box is not None else img
            out.append(ImageOps.mirror(img) if e.flip else img)
        return out


def epoch_sync(dataset):
    """A callback that tells ``dataset.set_epoch`` each epoch the Trainer enters, resumed ones too.

    accelerate forwards ``set_epoch`` to the dataset only in some sampler layouts (not when a
    multi-GPU shard's sampler takes it), so per-epoch augmentation must not rely on it.
    """
    from transformers import TrainerCallback

    class EpochSync(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kw):
            # state.epoch is e + steps_done / steps_per_epoch (restored from the checkpoint on
            # resume) and exactly e at a boundary, so its floor is the epoch being entered
            dataset.set_epoch(math.floor(state.epoch or 0))

    return EpochSync()
