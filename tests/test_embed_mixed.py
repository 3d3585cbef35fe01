"""Mixed-domain encoder training: label-only real-photo pairs and kiosk-condition packshots."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmrec.config import load_config
from mmrec.embed.config import KioskAugmentConfig, RealPhotoPairsConfig, TrainConfig
from mmrec.taxonomy import default_taxonomy

TABLE = Path(__file__).resolve().parents[1] / "benchmark" / "suites" / "photos" / "real_photos.yaml"
# senders of the benchmark's split table: 8 and 36 are test, 3 and 13 val, 1 and 5 calibration;
# 6, 2, 4 are train
ROWS = [("a1", 6, "Shirt"), ("a2", 6, "Pants"), ("a3", 2, "Not sure"), ("a4", 2, "Dress"),
        ("a5", 4, "Other"), ("a6", 4, "T-Shirt"), ("a7", 4, "Skip"),
        ("t1", 8, "Shirt"), ("t2", 36, "Pants"), ("v1", 3, "Shoes"), ("v2", 13, "Dress"),
        ("c1", 1, "Shirt"), ("c2", 5, "Pants")]
COLOUR_WORDS = {"red", "blue", "black", "white", "green", "navy", "men", "women", "casual", "formal"}


def write_real_photos(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    with open(root / "images.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "sender_id", "label", "kids", "width", "height"])
        for i, (name, sender, label) in enumerate(ROWS):
            w.writerow([name, sender, label, "False", 60, 80])
            im = Image.new("RGB", (60, 80), (90 + 10 * i, 80, 70))
            im.paste((20, 40, 160), (15, 20, 45, 60))
            im.save(root / "images" / f"{name}.jpg", "JPEG", quality=90)
    return root


def test_only_train_senders_and_no_probes_become_pairs(tmp_path):
    from mmrec.embed.photo_pairs import load_photo_pairs, train_photos

    src = write_real_photos(tmp_path / "real_photos")
    photos = train_photos(src, TABLE, default_taxonomy())
    assert sorted(p.photo_id for p in photos) == ["a1", "a2", "a4", "a6"]
    cfg = RealPhotoPairsConfig(share=0.25, source=str(src), table=str(TABLE), background_size=16)
    pairs = load_photo_pairs(cfg, default_taxonomy(), 32, tmp_path / "cache")
    assert set(pairs.senders) == {"6", "2", "4"}  # val, test and calibration senders never enter
    assert pairs.pixels.shape == (4, 32, 32, 3) and pairs.backgrounds.shape == (4, 16, 16, 3)
    again = load_photo_pairs(cfg, default_taxonomy(), 32, tmp_path / "cache")  # from the cache
    assert again.photo_ids == pairs.photo_ids and np.array_equal(again.pixels, pairs.pixels)


def test_captions_state_only_what_the_label_states(tmp_path):
    from mmrec.embed.photo_pairs import PhotoCaptions, load_photo_pairs

    src = write_real_photos(tmp_path / "real_photos")
    cfg = RealPhotoPairsConfig(share=0.25, source=str(src), table=str(TABLE))
    pairs = load_photo_pairs(cfg, default_taxonomy(), 32, tmp_path / "cache")
    by_id = dict(zip(pairs.photo_ids, pairs.fields))
    assert by_id["a1"] == {"label": "shirt", "slot": "top", "category": "shirts"}
    assert by_id["a2"] == {"label": "pants", "slot": "bottom"}  # trousers or jeans: no category guessed
    assert by_id["a6"] == {"label": "t-shirt", "slot": "top", "category": "tshirts"}
    caps = PhotoCaptions(pairs.fields, cfg.templates)
    texts = caps.sample(list(range(len(pairs.fields))) * 50, np.random.default_rng(0))
    allowed = {v for f in pairs.fields for v in f.values()}
    assert set(texts) <= allowed and not COLOUR_WORDS & {w for t in texts for w in t.split()}
    assert "shirts" in texts and "dresses" not in texts  # dresses, gowns or nightdress: no category


def test_probe_photo_has_no_caption():
    from mmrec.bench.photo_sources import PhotoTruth
    from mmrec.embed.photo_pairs import caption_fields

    with pytest.raises(ValueError, match="probe"):
        caption_fields(PhotoTruth("x", "real_photo", "x.jpg", "Not sure", probe=True))


def test_photo_pairs_need_a_source():
    with pytest.raises(ValueError, match="train.real_photos.source"):
        TrainConfig(real_photos={"share": 0.2})
    with pytest.raises(ValueError, match="train.real_photos.source"):
        TrainConfig(kiosk={"p": 0.5, "backgrounds": "real_photos"})
    TrainConfig(kiosk={"p": 0.5, "backgrounds": "synthetic"})  # needs no photos
    with pytest.raises(ValueError, match="scale"):
        KioskAugmentConfig(scale=(1.2, 0.5))


def _packshot(rgb: tuple[int, int, int], size: int = 64) -> np.ndarray:
    px = np.full((size, size, 3), 255, np.uint8)
    px[12:52, 18:46] = rgb
    return px


def _hues_of_saturated(px: np.ndarray) -> np.ndarray:
    hsv = np.asarray(Image.fromarray(px).convert("HSV"), dtype=np.float32)
    keep = (hsv[..., 1] > 100) & (hsv[..., 2] > 60)
    return hsv[..., 0][keep] * 360 / 255


@pytest.mark.parametrize("rgb,family", [((200, 30, 30), (-25, 25)), ((30, 150, 60), (95, 165))])
def test_kiosk_view_keeps_the_colour_family(rgb, family):
    from mmrec.embed.kiosk import kiosk_view

    cfg = KioskAugmentConfig(p=1.0, backgrounds="synthetic")
    grey = np.full((48, 48, 3), 128, np.uint8)  # an unsaturated scene: saturated pixels are the product
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(40):
        out = kiosk_view(_packshot(rgb), grey, cfg, rng)
        assert out.shape == (64, 64, 3) and out.dtype == np.uint8
        hues = _hues_of_saturated(out)
        hues = np.where(hues > 180, hues - 360, hues)
        seen += len(hues)
        assert np.mean((hues >= family[0]) & (hues <= family[1])) >= 0.95
    assert seen > 40 * 50  # the product stayed in view


def test_kiosk_view_changes_the_scene_and_is_seeded():
    from mmrec.embed.kiosk import kiosk_batch, kiosk_view, synthetic_backgrounds

    cfg = KioskAugmentConfig(p=1.0, backgrounds="synthetic")
    bgs = synthetic_backgrounds(4, 48, np.random.default_rng(1))
    batch = np.stack([_packshot((200, 30, 30)), _packshot((20, 30, 90))])
    a = kiosk_batch(batch, bgs, cfg, np.random.default_rng(7))
    b = kiosk_batch(batch, bgs, cfg, np.random.default_rng(7))
    assert np.array_equal(a, b) and not np.array_equal(a, batch)
    assert (a.min(axis=-1) < 235).mean() > (batch.min(axis=-1) < 235).mean()  # white ground replaced
    white = np.full((64, 64, 3), 255, np.uint8)  # nothing to cut: left as it is
    assert np.array_equal(kiosk_view(white, bgs[0], cfg, np.random.default_rng(0)), white)
    off = cfg.model_copy(update={"p": 0.0})
    assert np.array_equal(kiosk_batch(batch, bgs, off, np.random.default_rng(0)), batch)


def test_photo_crops_frame_the_garment_closer_and_keep_the_size():
    from mmrec.embed.train import random_crops

    # a dark square in the middle of white: a crop can only keep it or enlarge it
    batch = np.full((32, 48, 48, 3), 255, np.uint8)
    batch[:, 16:32, 16:32] = 20
    out = random_crops(batch, 0.6, np.random.default_rng(0))
    assert out.shape == batch.shape and out.dtype == np.uint8
    dark = (out.min(axis=-1) < 128).mean(axis=(1, 2))
    assert (dark >= (batch.min(axis=-1) < 128).mean() - 0.02).mean() > 0.8
    assert dark.max() > 0.2  # some views zoom in on the garment
    assert np.array_equal(out, random_crops(batch, 0.6, np.random.default_rng(0)))  # seeded


def test_tiny_training_mixes_photos_and_kiosk_views(tmp_path):
    pytest.importorskip("torch")
    from embed_fixtures import ingest, write_catalog
    from mmrec.artifacts import ArtifactStore
    from mmrec.embed.train import train_encoder

    store = ArtifactStore(tmp_path / "art")
    ingest(store, write_catalog(tmp_path / "src", 40))
    src = write_real_photos(tmp_path / "real_photos")
    cfg = load_config("embed", profile="tiny", overrides=[
        "train.epochs=1", "train.batch_size=16", "train.kiosk.p=0.5", "train.augment.photo_crop=0.6",
        "train.real_photos.share=0.25", f"train.real_photos.source={src}",
        f"train.real_photos.table={TABLE}"])
    art = train_encoder(store, cfg, progress=False, log=lambda s: None)
    assert art.metrics["real_photo_pairs"] == 4 and art.metrics["real_photo_senders"] == 3
    assert art.metrics["steps"] >= 1


def test_missing_photo_source_trains_on_the_catalog_unless_required(tmp_path):
    pytest.importorskip("torch")
    from embed_fixtures import ingest, write_catalog
    from mmrec.artifacts import ArtifactStore
    from mmrec.embed.train import train_encoder
    from mmrec.errors import InputError

    store = ArtifactStore(tmp_path / "art")
    ingest(store, write_catalog(tmp_path / "src", 24))
    over = ["train.epochs=1", "train.batch_size=8", "train.real_photos.share=0.25",
            f"train.real_photos.source={tmp_path / 'absent'}"]
    logs: list[str] = []
    art = train_encoder(store, load_config("embed", profile="tiny", overrides=over), progress=False,
                        log=logs.append)
    assert art.metrics["real_photo_pairs"] == 0 and any("catalog alone" in m for m in logs)
    with pytest.raises(InputError, match="images.csv"):
        train_encoder(store, load_config("embed", profile="tiny", overrides=over + [
            "train.real_photos.required=true"]), progress=False, log=logs.append)
