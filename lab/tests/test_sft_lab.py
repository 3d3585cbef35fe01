"""The lab's experiments that train or read the trained tiny tagger: the loss plug-ins reach
the training loss through the product's trainer (registered by lab.sft.losses), the CNN
screening of image fits, the colour-histogram teacher, and the adapter soup."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import lab.sft.losses  # noqa: F401  registers the lab's losses with the product's trainer
from sft_runs import lora_cfg as _lora_cfg, run, teacher, train_log as _log  # noqa: F401  (fixtures)


def test_lora_stage_with_the_colour_family_loss_logs_it(run, tmp_path):
    from mmrec.attributes.train import train_lora

    _, store, *_ = run
    cfg = _lora_cfg(tmp_path, "lora_stage.eval_steps=null", "lora_stage.max_steps=20",
                    "lora_stage.extra_losses.colour_family.weight=1.0", "lora_stage.logging_steps=5")
    art = train_lora(store, cfg, profile="tiny")
    group = [r["group_loss"] for r in _log(art) if "group_loss" in r]
    assert len(group) >= 4 and group[-1] < group[0], group
    assert art.config["lora_stage"]["extra_losses"] == {"colour_family": {"weight": 1.0}}
    assert art.metrics["extra_losses"] == {"colour_family": {"weight": 1.0}}


def test_label_smoothing_reaches_the_training_loss(run, tmp_path):
    from mmrec.attributes.train import train_lora

    _, store, *_ = run

    def first_loss(eps: float) -> float:
        cfg = _lora_cfg(tmp_path / "runs", "lora_stage.eval_steps=null", "lora_stage.max_steps=1",
                        f"lora_stage.extra_losses.label_smoothing.eps={eps}")
        return [r["loss"] for r in _log(train_lora(store, cfg, profile="tiny")) if "loss" in r][0]

    # step 1 sees the same weights (LoRA B = 0) and batch: equal losses would mean the smoothing
    # never reached the loss (its formula is checked against torch in test_losses)
    plain, again, smoothed = first_loss(0.0), first_loss(0.0), first_loss(0.5)
    assert again == plain and abs(smoothed - plain) > 1e-3, (plain, smoothed)


def test_value_smoothing_reaches_the_training_loss(run, tmp_path):
    from mmrec.attributes.train import train_lora

    _, store, *_ = run

    def first_loss(*overrides: str):
        cfg = _lora_cfg(tmp_path / "runs", "lora_stage.eval_steps=null", "lora_stage.max_steps=1", *overrides)
        art = train_lora(store, cfg, profile="tiny")
        return [r["loss"] for r in _log(art) if "loss" in r][0], art

    plain, _ = first_loss()
    smoothed, art = first_loss("lora_stage.extra_losses.value_smoothing.field=colour",
                               "lora_stage.extra_losses.value_smoothing.eps=0.5")
    # same weights and batch at step 1: the loss moves only if the colour term reached it
    assert abs(smoothed - plain) > 1e-4, (plain, smoothed)
    assert art.config["lora_stage"]["extra_losses"] == {"value_smoothing": {"field": "colour", "eps": 0.5}}


def test_image_fit_benchmark_scores_each_fit(run, tmp_path, monkeypatch):
    import runpy
    import sys

    root, *_ = run
    monkeypatch.setattr(sys, "argv", ["image_fit_cnn", "--artifacts", str(root / "artifacts"), "--size", "56",
                                      "--budget-s", "1", "--threads", "1", "--out", str(tmp_path)])
    runpy.run_module("lab.sft.image_fit_cnn", run_name="__main__")
    fits = json.loads((tmp_path / "metrics.json").read_text())["fits"]
    assert set(fits) == {"squash", "foreground"}
    for scores in fits.values():
        assert 0 < scores["product_share"] <= 1 and scores["steps"] >= 1
        assert all(0 <= scores[f] <= 1 for f in ("category", "gender", "colour", "colour_family", "usage"))


def test_colour_histogram_joins_the_teacher_vector(teacher, tmp_path):
    """``distill_colour_histogram`` appends each train photo's colour histogram, computed from the
    pixels the base stage trains on, to its CLIP vector; the base stage learns the joint target."""
    from lab.sft.colour_histogram import DIM, colour_histogram
    from lab.sft.losses import with_colour_histograms
    from mmrec.attributes.distill import teacher_targets
    from mmrec.attributes.train import load_parts, pixel_cache, train_base
    from mmrec.config import load_config

    store = teacher
    parts = load_parts(store, None)
    cache = pixel_cache(store, parts, 56)
    plain = teacher_targets(store, None, parts.products, cache.index)
    joint = with_colour_histograms(plain.vectors, plain.mask, cache.pixels, 0.5)
    assert joint.shape[1] == plain.vectors.shape[1] + DIM
    i = int(np.nonzero(plain.mask)[0][0])
    row = joint[i]
    assert np.isclose(np.linalg.norm(row), 1, atol=1e-5)
    d = plain.vectors.shape[1]
    # the CLIP part keeps its direction; the histogram part is the photo's, at half the CLIP part's length
    assert np.allclose(row[:d] / np.linalg.norm(row[:d]), plain.vectors[i], atol=1e-5)
    h = colour_histogram(np.asarray(cache.pixels[i]))
    assert np.allclose(row[d:] / np.linalg.norm(row[d:]), h / np.linalg.norm(h), atol=1e-5)
    assert np.isclose(np.linalg.norm(row[d:]) / np.linalg.norm(row[:d]), 0.5, atol=1e-4)
    assert not joint[~plain.mask].any()
    with pytest.raises(Exception, match="histogram > 0"):
        train_base(store, load_config("sft", profile="tiny", overrides=[
            f"output_dir={tmp_path}", "distill.weight=0", "base_stage.max_steps=1",
            "base_stage.extra_losses.distill_colour_histogram.weight=1.0",
            "base_stage.extra_losses.distill_colour_histogram.histogram=0"]), profile="tiny")

    cfg = load_config("sft", profile="tiny", overrides=[
        f"output_dir={tmp_path}", "distill.weight=0", "base_stage.extra_losses.distill_colour_histogram.weight=1.0",
        "base_stage.extra_losses.distill_colour_histogram.histogram=1.0",
        "base_stage.max_steps=40", "base_stage.lr=1e-2"])
    art = train_base(store, cfg, profile="tiny")
    assert "colour histogram x 1" in art.metrics["distill"]["teacher"]   # the same record as the product's
    assert art.metrics["extra_losses"]["distill"]["targets"] == art.metrics["distill"]["targets"]
    rows = [r["distill_loss"] for r in _log(art) if "distill_loss" in r]
    assert rows[-1] < rows[0] - 0.05, rows


def test_adapter_soup_averages_merged_adapters_without_touching_current(run, tmp_path, monkeypatch, capsys):
    import runpy
    import sys

    from mmrec.attributes.tagger import load_vlm
    from mmrec.attributes.train import train_base, train_lora

    root, store, _, _, first = run
    current = store.current_version("vlm")
    base = next(i["version"] for i in store.load("vlm", first).manifest["inputs"] if i["kind"] == "vlm_base")
    second = train_lora(store, _lora_cfg(tmp_path, "lora_stage.eval_steps=null", "lora_stage.max_steps=6",
                                         "lora_stage.seed=1", f"model.base_version={base}"), profile="tiny").version
    store.set_current("vlm", current)

    def soup(versions: str) -> str:
        monkeypatch.setattr(sys, "argv", ["adapter_soup", "--artifacts", str(root / "artifacts"), "--vlm", versions])
        runpy.run_module("lab.sft.adapter_soup", run_name="__main__")
        return capsys.readouterr().out.strip().splitlines()[-1]

    version = soup(f"{first},{second}")
    assert store.current_version("vlm") == current
    art = store.load("vlm", version)
    assert art.manifest["format"] == "merged" and art.manifest["soup_of"] == [first, second]
    merged = [load_vlm(store.load("vlm", v), merge=True)[0].state_dict() for v in (first, second)]
    souped = load_vlm(art)[0].state_dict()
    assert any(not torch.equal(merged[0][k], merged[1][k]) for k in souped)   # two different fine-tunings
    for k, t in souped.items():
        assert torch.allclose(t.float(), (merged[0][k].float() + merged[1][k].float()) / 2, atol=1e-6), k
    with pytest.raises(Exception, match="not an adapter"):
        soup(f"{first},{version}")                                   # a merged model is not an ingredient
    current_base = store.current_version("vlm_base")
    other_base = train_base(store, _lora_cfg(tmp_path / "b", "base_stage.max_steps=2"), profile="tiny").version
    other = train_lora(store, _lora_cfg(tmp_path / "o", "lora_stage.eval_steps=null", "lora_stage.max_steps=2",
                                        f"model.base_version={other_base}"), profile="tiny").version
    store.set_current("vlm", current)
    store.set_current("vlm_base", current_base)
    with pytest.raises(Exception, match="not one base"):
        soup(f"{first},{other}")                                     # adapters of two bases do not average
