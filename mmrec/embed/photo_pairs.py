"""Real phone photos as encoder training pairs (`train.real_photos` in configs/embed.yaml).

The real_photos source labels one field, a coarse garment class. A photo's caption therefore
names only what its label states: the label's own words ("pants"), the slot the reviewed table
maps the label to ("bottom"), and a taxonomy category only where the label names exactly one
("Shirt" -> "shirts"; "Pants" may be trousers or jeans, so it gets no category caption). No
colour, gender or occasion is ever guessed. Labels where the labeller could not tell ("Not
sure", "Other", "Skip") never train.

Only the TRAIN photographers of the benchmark's split table are read (`RealPhotoTable.split_of`
== "train"): the val photographers choose recipes and the test photographers are the
benchmark, so neither may be seen in training. The same photos also give the kiosk
augmentation its backgrounds: a crop of one corner of each photo, where the floor, bed or door
usually is (the garment tends to be in the middle).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmrec.bench.photo_sources import PhotoTruth, training_photos as train_photos  # noqa: F401 (re-exported)
from mmrec.embed.config import RealPhotoPairsConfig
from mmrec.embed.data import CaptionSampler
from mmrec.errors import InputError
from mmrec.images import ImageError, load_image, resize_letterbox
from mmrec.taxonomy import Taxonomy

CORNER = 0.45  # side of the background crop, as a fraction of the photo's side


@dataclass
class PhotoPairs:
    """Train-sender photos: letterboxed pixels, their label-only caption fields, border crops."""

    photo_ids: list[str]
    senders: list[str]
    fields: list[dict[str, str]]      # per photo: label, slot and (when the label names one) category
    pixels: np.ndarray                # uint8 [n, S, S, 3], letterboxed on white like any photo
    backgrounds: np.ndarray           # uint8 [n, B, B, 3] corner crops


def caption_fields(photo: PhotoTruth) -> dict[str, str]:
    """What a photo's label states, as caption fields (never colour, gender or occasion)."""
    if photo.probe or not photo.slot:
        raise ValueError(f"photo {photo.photo_id}: label {photo.label!r} is a probe; it has no caption")
    out = {"label": " ".join(photo.label.lower().split()), "slot": photo.slot}
    if len(photo.categories) == 1:
        out["category"] = photo.categories[0]
    return out


class PhotoCaptions(CaptionSampler):
    """One caption per photo sampled from the weighted templates its label can fill."""

    def fallback(self, i: int) -> str:
        return self.rows[i]["slot"]  # every label has a slot; a template set without {slot} may not fit


def _corner(img, size: int, rng: np.random.Generator) -> np.ndarray:
    w, h = img.size
    side = max(1, round(CORNER * min(w, h)))
    x = 0 if rng.random() < 0.5 else w - side
    y = 0 if rng.random() < 0.5 else h - side
    return np.asarray(img.crop((x, y, x + side, y + side)).resize((size, size)), dtype=np.uint8)


def load_photo_pairs(cfg: RealPhotoPairsConfig, taxonomy: Taxonomy, image_size: int,
                     cache_dir: str | Path, seed: int = 0) -> PhotoPairs:
    """Decode (once; then from the cache) the train photographers' photos and border crops.

    Raises:
        InputError: no source configured, or no usable photo in it.
    """
    if not cfg.source:
        raise InputError("train.real_photos.source is not set; point it at the real_photos folder")
    photos = train_photos(cfg.source, cfg.table, taxonomy)
    if not photos:
        raise InputError(f"no labelled train-photographer photo under {cfg.source}")
    if cfg.answers:  # kiosk photos with the shopper's answer (mmrec.feedback.photo_answers)
        from mmrec.feedback.photo_answers import answer_photos

        photos += answer_photos(cfg.answers, taxonomy)
    h = hashlib.sha256(f"real-photos-v1-{image_size}-{cfg.background_size}-{seed}".encode())
    for p in photos:
        h.update(f"{p.photo_id}\t{p.sender}\t{p.label}\n".encode())
    key = h.hexdigest()[:24]
    cache_dir = Path(cache_dir)
    npz, meta = cache_dir / f"photos-{key}.npz", cache_dir / f"photos-{key}.json"
    if not (npz.is_file() and meta.is_file()):
        rng = np.random.default_rng(seed)
        pix, bgs, kept = [], [], []
        for p in photos:
            try:
                img = load_image(p.uri)
            except ImageError:
                continue  # an unreadable photo is simply not a training pair
            pix.append(np.asarray(resize_letterbox(img, image_size), dtype=np.uint8))
            bgs.append(_corner(img, cfg.background_size, rng))
            kept.append(p.photo_id)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tag = secrets.token_hex(4)
        tmp_npz, tmp_meta = npz.with_suffix(f".{tag}.tmp.npz"), meta.with_suffix(f".{tag}.tmp")
        np.savez(tmp_npz, pixels=np.stack(pix), backgrounds=np.stack(bgs))
        tmp_meta.write_text(json.dumps({"photo_ids": kept}), encoding="utf-8")
        os.replace(tmp_npz, npz)
        os.replace(tmp_meta, meta)
    kept = json.loads(meta.read_text(encoding="utf-8"))["photo_ids"]
    by_id = {p.photo_id: p for p in photos}
    data = np.load(npz)
    return PhotoPairs(photo_ids=kept, senders=[by_id[i].sender for i in kept],
                      fields=[caption_fields(by_id[i]) for i in kept],
                      pixels=data["pixels"], backgrounds=data["backgrounds"])
