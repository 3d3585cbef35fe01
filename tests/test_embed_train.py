"""Encoder training (tiny profile): held-out products excluded, loss, schedule, artifact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embed_fixtures import ingest, write_catalog
from mmrec.artifacts import ArtifactStore
from mmrec.config import load_config
from mmrec.splits import is_held_out, split_of

torch = pytest.importorskip("torch")


def test_multi_positive_loss_shares_targets_between_equal_captions():
    from mmrec.embed.train import multi_positive_clip_loss

    img = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    scale = torch.tensor(10.0)
    ids = torch.tensor([0, 1, 1, 2])  # captions 1 and 2 are the same text
    logits = scale * img @ txt.T
    target = torch.tensor([[1, 0, 0, 0], [0, .5, .5, 0], [0, .5, .5, 0], [0, 0, 0, 1]])
    want = (-(target * logits.log_softmax(1)).sum(1).mean()
            - (target * logits.T.log_softmax(1)).sum(1).mean()) / 2
    got = multi_positive_clip_loss(img, txt, scale, ids)
    assert torch.allclose(got, want)
    # with all-distinct captions it is CLIP's loss
    eye = torch.arange(4)
    clip = (torch.nn.functional.cross_entropy(logits, eye) + torch.nn.functional.cross_entropy(logits.T, eye)) / 2
    assert torch.allclose(multi_positive_clip_loss(img, txt, scale, eye), clip)


def test_lr_schedule_warms_up_then_decays():
    from mmrec.embed.train import lr_at

    lrs = [lr_at(p, 1e-3, 0.1, 0.0) for p in np.linspace(0, 1, 21)]
    peak = int(np.argmax(lrs))
    assert lrs[0] < lrs[1] < lrs[peak] and abs(max(lrs) - 1e-3) < 1e-4
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:])) and lrs[-1] < 1e-6


def test_split_rows_never_trains_on_held_out():
    import pyarrow as pa

    from mmrec.embed.train import split_rows

    ids = [str(i) for i in range(100, 160)]
    train, val = split_rows(pa.table({"item_id": ids}), include_val=False)
    assert not any(is_held_out(ids[i]) for i in train + val)
    assert {split_of(ids[i]) for i in train} == {"train"} and {split_of(ids[i]) for i in val} == {"val"}
    train2, val2 = split_rows(pa.table({"item_id": ids}), include_val=True)
    assert not val2 and not any(is_held_out(ids[i]) for i in train2) and len(train2) == len(train) + len(val)


def test_train_tiny_writes_loadable_encoder(tmp_path):
    from mmrec.embed.encoder import Encoder
    from mmrec.embed.train import train_encoder

    store = ArtifactStore(tmp_path / "art")
    items = ingest(store, write_catalog(tmp_path / "src", 80)).artifact
    cfg = load_config("embed", profile="tiny", overrides=["train.epochs=3", "train.eval_every=1"])
    logs: list[str] = []
    art = train_encoder(store, cfg, progress=False, log=logs.append)
    m = art.metrics
    n_test = sum(is_held_out(str(i)) for i in range(1000, 1080))
    n_val = sum(split_of(str(i)) == "val" for i in range(1000, 1080))
    assert m["held_out_excluded"] == n_test and m["train_items"] == 80 - n_test - n_val
    assert m["epochs_done"] == 3 and m["items_version"] == items.version
    log = [json.loads(x) for x in (art.path / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3] and "val_title_R@10" in log[-1]
    assert len(logs) == 3
    enc = Encoder.load(store, art.version, device="cpu")
    assert enc.encoder_id == f"mmrec-clip-tiny@{art.version}"
    # the pixel cache was written once and is reused (same key) by a second run
    cache = list((store.root / ".cache" / "embed").glob("pixels-32-*.npy"))
    assert len(cache) == 1
    train_encoder(store, cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 1})}),
                  progress=False, log=logs.append)
    assert list((store.root / ".cache" / "embed").glob("pixels-32-*.npy")) == cache


def test_epochs_zero_packages_the_model_without_training(tmp_path):
    from mmrec.embed.train import train_encoder

    store = ArtifactStore(tmp_path / "art")
    ingest(store, write_catalog(tmp_path / "src", 12))
    cfg = load_config("embed", profile="tiny", overrides=["train.epochs=0"])
    art = train_encoder(store, cfg, progress=False)
    assert "steps" not in art.metrics and (art.path / "open_clip_model.safetensors").is_file()
    assert not (store.root / ".cache").exists()  # nothing decoded when nothing is trained
