"""End to end on the tiny profile: build -> base stage -> LoRA stage -> eval -> export -> tag.

Runs the real CLI in-process on a generated catalog; then checks what the issue asks of each
piece: loss goes down, logs carry the per-step and per-attribute metrics, resuming from a
checkpoint reproduces the uninterrupted adapter, the merged model equals the adapter model,
and the tagger's output always parses into taxonomy values.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from mmrec.attributes.losses import ExtraLoss
from mmrec.cli import main
from mmrec.taxonomy import default_taxonomy
from sft_fixtures import draw_product
from sft_runs import lora_cfg as _lora_cfg, run, teacher, train_log as _log  # noqa: F401  (fixtures)

TAX = default_taxonomy()


def test_training_lowers_the_loss(run):
    _, store, *_ = run
    for kind in ("vlm_base", "vlm"):
        art = store.load(kind, store.versions(kind)[0])
        losses = [r["loss"] for r in _log(art) if "loss" in r]
        assert losses[-1] < losses[0] - 0.3, (kind, losses)


def test_logs_carry_step_and_attribute_metrics(run):
    _, store, _, _, version = run
    art = store.load("vlm", version)
    rows = _log(art)
    steps = [r for r in rows if "loss" in r]
    assert {"loss", "grad_norm", "learning_rate", "token_accuracy", "entropy"} <= set(steps[-1])
    evals = [r for r in rows if r.get("eval")]
    assert [r["step"] for r in evals] == [10, 20]
    assert {"val_macro_f1", "val_acc_category", "val_acc_gender", "val_acc_colour_family", "val_acc_usage"} <= set(evals[0])
    assert {"val_macro_f1", "val_selection_macro_f1"} <= set(evals[0])
    best = max(evals, key=lambda r: r["val_selection_macro_f1"])     # the first of equals is kept
    assert art.metrics["best_val_selection_macro_f1"] == best["val_selection_macro_f1"]
    assert art.metrics["best_step"] == min(r["step"] for r in evals
                                           if r["val_selection_macro_f1"] == best["val_selection_macro_f1"])
    assert art.metrics["best_selection_fields"]
    assert {"adapter", "base", "fields.json", "prompts.json"} <= {p.name for p in art.path.iterdir()}


def test_eval_metrics(run):
    _, store, *_ = run
    m = json.loads(store.load("sft_eval").file("metrics.json").read_text())
    assert set(m["models"]) >= {"sft", "base", "cnn"}
    sft = m["models"]["sft"]
    assert sft["constrained"]["json_valid_rate"] == 1.0
    for f in ("category", "gender", "colour", "colour_family", "usage"):
        assert {"accuracy", "macro_f1", "n"} <= set(sft["constrained"][f])
        assert 0 <= sft["constrained"][f]["accuracy"] <= 1
    assert 0 <= sft["free"]["json_valid_rate"] <= 1
    assert m["n_items"] > 0 and m["split"] == "test"
    assert set(m["targets"]) == {"category", "gender", "colour_family", "usage", "json_valid_rate"}
    assert m["cnn"]["steps"] > 0 and m["sft_vs_cnn"]["count"] in range(5)


def test_merged_equals_adapter(run):
    from mmrec.attributes.export import max_logit_diff, probe_batch
    from mmrec.attributes.tagger import Tagger, load_vlm, vlm_spec

    _, store, _, _, version = run
    merged_art = store.load("vlm")
    assert merged_art.manifest["format"] == "merged" and merged_art.metrics["merged_from"] == version
    assert merged_art.metrics["max_abs_logit_diff"] < 1e-4
    adapter_art = store.load("vlm", version)
    adapter_model, processor = load_vlm(adapter_art)
    lora_b = [p for n, p in adapter_model.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.abs().max()) > 0 for p in lora_b)  # the adapter is not a no-op
    merged_model, _ = load_vlm(merged_art)
    prompts, fields, _ = vlm_spec(adapter_art)
    batch = probe_batch(processor, prompts, fields, adapter_art.manifest["image_size"], seed=7)
    assert max_logit_diff(adapter_model, merged_model, batch) < 1e-4
    imgs = [draw_product("jeans", "red", jitter=3), draw_product("dresses", "green", jitter=9)]
    a = Tagger.load(store, version).tag(imgs)
    b = Tagger.load(store, merged_art.version).tag(imgs)
    assert [{f: v["value"] for f, v in r.items()} for r in a] == [{f: v["value"] for f, v in r.items()} for r in b]


def test_tagger_output_is_valid(run):
    from mmrec.attributes.tagger import Tagger

    _, store, *_ = run
    tagger = Tagger.load(store)
    rng = np.random.default_rng(0)
    imgs = [draw_product("tshirts", "black", jitter=1), Image.new("RGB", (300, 40), "white"),
            Image.fromarray(rng.integers(0, 256, (90, 70, 3), dtype=np.uint8))]
    out = tagger.tag(imgs)
    assert len(out) == 3 and tagger.tag([]) == []
    for res in out:
        assert set(res) == set(tagger.fields)
        for f, v in res.items():
            assert v["value"] is None or TAX.is_valid(f, v["value"])
            assert 0.0 <= v["confidence"] <= 1.0
    # the mirror view: on by default for catalog tagging, off for kiosk photos unless asked
    from mmrec.outfit.photo import PhotoModels

    assert tagger.predictor.hflip_tta
    assert not PhotoModels.from_store(store)[0].tagger.predictor.hflip_tta
    assert PhotoModels.from_store(store, tagger_mirror=True)[0].tagger.predictor.hflip_tta
    plain = Tagger.load(store, hflip_tta=False)
    assert len(plain.tag(imgs)) == 3 and not plain.predictor.hflip_tta


def test_tag_cli_images_and_catalog(run, capsys):
    from mmrec.schemas import ATTRIBUTE_PREDICTIONS_SCHEMA, check_schema

    root, store, base, *_ = run
    capsys.readouterr()
    paths = [str(root / "images" / "1000.jpg"), str(root / "images" / "1001.jpg")]
    assert main(base + ["tag", *paths]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["image"] for x in lines] == paths and lines[0]["model_version"] == store.current_version("vlm")
    assert main(base + ["tag", "--catalog", "--limit", "12"]) == 0
    art = store.load("attribute_predictions")
    table = pq.read_table(art.file("predictions.parquet"))
    check_schema(table, ATTRIBUTE_PREDICTIONS_SCHEMA, name="predictions")
    assert art.metrics["items"] == 12
    assert set(table.column("model_version").to_pylist()) <= {store.current_version("vlm")}
    for f, v in zip(table.column("field").to_pylist(), table.column("value").to_pylist()):
        assert TAX.is_valid(f, v)
    assert main(base + ["tag"]) == 2  # neither images nor --catalog


def test_resume_reproduces_the_uninterrupted_adapter(run, tmp_path):
    from safetensors.torch import load_file

    from mmrec.attributes.train import train_lora

    _, store, *_ = run
    cfg = _lora_cfg(tmp_path, "lora_stage.eval_steps=null", "lora_stage.max_steps=8", "lora_stage.save_steps=4")
    train_lora(store, cfg, profile="tiny")
    out = next(tmp_path.glob("lora-*"))
    full = load_file(out / "checkpoint-8" / "adapter_model.safetensors")
    shutil.rmtree(out / "checkpoint-8")             # "crash" after the step-4 checkpoint
    train_lora(store, cfg, resume=True, profile="tiny")
    resumed = load_file(out / "checkpoint-8" / "adapter_model.safetensors")
    assert full.keys() == resumed.keys()
    for k in full:
        assert torch.allclose(full[k], resumed[k], atol=1e-6), k
    assert any("lora_B" in k and float(full[k].abs().max()) > 0 for k in full)


class _ZeroTerm(ExtraLoss):
    """A test plug-in: a zero term that still carries the graph, logged as ``zero_term``."""

    name, log_key = "zero_test", "zero_term"

    def __call__(self, outputs, inputs):
        return outputs.logits.sum() * 0 if inputs.get("labels") is not None else None


def test_extra_loss_plugins_are_validated_built_logged_and_recorded(run, tmp_path):
    """The trainer runs the configured plug-ins (`mmrec.attributes.losses`): an unknown name is
    refused naming the registered ones, bad parameters name what the factory takes, and a
    registered plug-in is built for its stage, logs under its key and is recorded in the artifact."""
    from mmrec.attributes import losses
    from mmrec.attributes.train import train_lora
    from mmrec.errors import ConfigError

    _, store, *_ = run
    with pytest.raises(ConfigError, match=r"unknown extra losses \['nope'\]; registered: .*'distill'"):
        _lora_cfg(tmp_path, "lora_stage.extra_losses.nope.weight=1")
    with pytest.raises(ConfigError, match=r"'distill': bad parameters .* takes \['weight', 'vectors'\]"):
        _lora_cfg(tmp_path, "base_stage.extra_losses.distill.wieght=1")
    with pytest.raises(ConfigError, match=r"runs in the \['base'\] stage"):
        train_lora(store, _lora_cfg(tmp_path, "lora_stage.max_steps=1", "lora_stage.eval_steps=null",
                                    "lora_stage.extra_losses.distill.weight=1"), profile="tiny")

    built = []

    @losses.register_extra_loss("zero_test", stages=("lora",))
    def zero_test(ctx, weight: float):
        built.append(ctx.stage)
        return _ZeroTerm(weight)

    try:
        cfg = _lora_cfg(tmp_path, "lora_stage.eval_steps=null", "lora_stage.max_steps=10", "lora_stage.logging_steps=5",
                        "lora_stage.extra_losses.zero_test.weight=0.5")
        art = train_lora(store, cfg, profile="tiny")
    finally:
        losses._REGISTRY.pop("zero_test")
    assert built == ["lora"]
    logged = [r["zero_term"] for r in _log(art) if "zero_term" in r]
    assert len(logged) >= 2 and all(v == 0 for v in logged)
    assert art.metrics["extra_losses"] == {"zero_test": {"weight": 0.5}}
    assert art.config["lora_stage"]["extra_losses"] == {"zero_test": {"weight": 0.5}}


def test_build_tagger_reuses_what_exists(run):
    from mmrec.attributes.quickstart import build_tagger

    _, store, *_ = run
    before = {k: store.versions(k) for k in ("sft_dataset", "vlm_base", "vlm")}
    art = build_tagger(store, profile="tiny")
    assert art.version == store.current_version("vlm")
    assert {k: store.versions(k) for k in before} == before     # nothing retrained


def test_base_stage_distils_the_clip_and_saves_a_plain_model(teacher, tmp_path):
    from mmrec.attributes.distill import ATTR
    from mmrec.attributes.model import load_model
    from mmrec.attributes.train import train_base
    from mmrec.config import load_config

    store = teacher
    with pytest.raises(Exception, match="distill.weight"):  # the error names the switch
        train_base(store, load_config("sft", profile="tiny", overrides=[
            f"output_dir={tmp_path}", "distill.weight=1.0", "distill.vectors=nope"]), profile="tiny")
    cfg = load_config("sft", profile="tiny", overrides=[
        f"output_dir={tmp_path}", "distill.weight=1.0", "base_stage.max_steps=40", "base_stage.lr=1e-2"])
    art = train_base(store, cfg, profile="tiny")
    d = art.metrics["distill"]
    n_train = sum(p["split"] == "train" for p in pq.read_table(
        store.load("sft_dataset").file("products.parquet")).to_pylist())
    assert d["targets"] == n_train and d["teacher"].startswith("vectors/")
    rows = [r["distill_loss"] for r in _log(art) if "distill_loss" in r]
    assert len(rows) >= 4 and rows[-1] < rows[0] - 0.05, rows   # the head + vision tower learn the teacher
    model, _ = load_model(cfg.model, art.path / "model")
    assert not hasattr(model, ATTR)
    assert not any(ATTR in k for k in model.state_dict())


def test_distilled_base_resumes_exactly(teacher, tmp_path):
    """The head is a model parameter: checkpointed with the model, so a resumed run is identical
    (with the weight average of the base stage on: it covers every parameter, the head too)."""
    from safetensors.torch import load_file

    from mmrec.attributes.train import train_base
    from mmrec.config import load_config

    store = teacher
    cfg = load_config("sft", profile="tiny", overrides=[
        f"output_dir={tmp_path}", "distill.weight=1.0", "base_stage.max_steps=8", "base_stage.save_steps=4",
        "base_stage.weight_average_decay=0.9"])
    train_base(store, cfg, profile="tiny")
    out = next(tmp_path.glob("base-*"))
    full = load_file(out / "checkpoint-8" / "model.safetensors")
    full_avg = torch.load(out / "checkpoint-8" / "weight_average.pt")["shadow"]
    shutil.rmtree(out / "checkpoint-8")
    train_base(store, cfg, resume=True, profile="tiny")
    resumed = load_file(out / "checkpoint-8" / "model.safetensors")
    resumed_avg = torch.load(out / "checkpoint-8" / "weight_average.pt")["shadow"]
    assert any("distill" in k for k in full) and any("distill" in k for k in full_avg)
    assert full.keys() == resumed.keys() and full_avg.keys() == resumed_avg.keys()
    for k in full:
        assert torch.allclose(full[k], resumed[k], atol=1e-6), k
    for k in full_avg:
        assert torch.allclose(full_avg[k], resumed_avg[k], atol=1e-6), k


def test_weight_average_is_validated_kept_and_resumed_exactly(run, tmp_path):
    from safetensors.torch import load_file

    from mmrec.attributes.train import train_lora

    _, store, *_ = run
    cfg = _lora_cfg(tmp_path, "lora_stage.eval_steps=4", "lora_stage.max_steps=8", "lora_stage.save_steps=4",
                    "lora_stage.weight_average_decay=0.9")
    art = train_lora(store, cfg, profile="tiny")
    out = next(tmp_path.glob("lora-*"))

    def adapter_keys(shadow):  # named_parameters -> the adapter file's keys
        return {k.replace(".modules_to_save", "").replace(".default", ""): v for k, v in shadow.items()}

    step = art.metrics["best_step"]
    average = adapter_keys(torch.load(out / f"checkpoint-{step}" / "weight_average.pt")["shadow"])
    live = load_file(out / f"checkpoint-{step}" / "adapter_model.safetensors")
    kept = load_file(art.path / "adapter" / "adapter_model.safetensors")
    assert kept.keys() == average.keys() == live.keys()
    # the kept adapter is the average at its step, which is not the optimiser's live weights
    assert all(torch.allclose(kept[k], average[k], atol=1e-7) for k in kept)
    assert any(not torch.allclose(live[k], average[k], atol=1e-4) for k in live)

    full = torch.load(out / "checkpoint-8" / "weight_average.pt")
    shutil.rmtree(out / "checkpoint-8")             # "crash" after the step-4 checkpoint
    train_lora(store, cfg, resume=True, profile="tiny")
    resumed = torch.load(out / "checkpoint-8" / "weight_average.pt")
    assert resumed["updates"] == full["updates"] == 8
    for k in full["shadow"]:
        assert torch.allclose(full["shadow"][k], resumed["shadow"][k], atol=1e-6), k


def test_weight_average_follows_the_weights_with_warm_up():
    from mmrec.attributes.trainer import WeightAverage

    model = torch.nn.Linear(2, 1, bias=False)
    w0 = model.weight.detach().clone()
    avg = WeightAverage(model, decay=0.99)
    avg.reset()
    with torch.no_grad():
        model.weight.fill_(1.0)
    avg.update()                                    # warm-up: decay (1 + 1) / (10 + 1), not 0.99
    d = 2 / 11
    expected = d * w0 + (1 - d) * torch.ones(1, 2)
    assert torch.allclose(avg.shadow["weight"], expected)
    with avg.applied():                             # validation sees the average ...
        assert torch.allclose(model.weight, expected)
    assert torch.equal(model.weight.detach(), torch.ones(1, 2))  # ... training the live weights
    for _ in range(2000):
        avg.update()
    assert torch.allclose(avg.shadow["weight"], torch.ones(1, 2), atol=1e-6)
    avg.finish()                                    # the end of training leaves the average in
    assert avg.shadow is None and torch.allclose(model.weight, torch.ones(1, 2), atol=1e-6)


def test_a_tagger_of_another_image_fit_is_refused_and_older_manifests_load(run, tmp_path):
    """Until 2026-12-07 artifacts recorded the fit their photos were given (``image_fit``); the
    product squashes only, so "squash" (or no key) loads as before and the one experiment's
    "foreground" (lab/README.md) is refused by name instead of being fed squashed photos."""
    from mmrec.artifacts import Artifact
    from mmrec.attributes.config import MiniArch, ModelConfig
    from mmrec.attributes.tagger import vlm_input
    from mmrec.errors import ConfigError

    _, store, _, _, version = run
    art = store.load("vlm", version)
    assert "image_fit" not in art.manifest and vlm_input(art) == 56

    def with_fit(manifest_fit, config_fit):
        manifest = {**art.manifest, **({"image_fit": manifest_fit} if manifest_fit else {})}
        arch = {**art.config["model"]["arch"], **({"image_fit": config_fit} if config_fit else {})}
        return Artifact(art.kind, art.version, art.path, manifest | {"config": {**art.config, "model": {
            **art.config["model"], "arch": arch}}})

    assert vlm_input(with_fit("squash", "squash")) == 56
    for fits in (("foreground", None), (None, "foreground")):
        with pytest.raises(ConfigError, match="image fit 'foreground'.*lab/README.md"):
            vlm_input(with_fit(*fits))
    old = {**art.config["model"], "arch": {**art.config["model"]["arch"], "image_fit": "squash"}}
    assert ModelConfig.model_validate(old).arch == MiniArch.model_validate(art.config["model"]["arch"])
    with pytest.raises(ValueError, match="image_fit 'foreground' is not a fit the product ships"):
        MiniArch(image_fit="foreground")


# ---------------------------------------------------------------- real photos, partial labels (#21)
def _photo_folder(root, rows):
    """A real_photos-shaped folder: images.csv + images/<stem>.jpg for (stem, sender, label) rows."""
    import csv

    (root / "images").mkdir(parents=True)
    shapes = {"Pants": "jeans", "Shirt": "tshirts", "Not sure": "handbags"}
    with open(root / "images.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "sender_id", "label", "kids", "width", "height"])
        for i, (stem, sender, label) in enumerate(rows):
            # a phone-like photo: the garment off-centre on a grey floor
            img = Image.new("RGB", (120, 100), (120 + i % 5 * 10, 110, 100))
            img.paste(draw_product(shapes[label], "navy blue", jitter=i), (10 + i % 3 * 10, 10))
            img.save(root / "images" / f"{stem}.jpg", "JPEG", quality=85)
            w.writerow([stem, sender, label, "False", 120, 100])


class _Out:
    def __init__(self, logits):
        self.logits = logits


class _Trie:
    def __init__(self, ids):
        self.children = {t: None for t in ids}


class _Grammar:
    def __init__(self, fields):
        self.fields = fields
        self.tries = [_Trie([10, 11, 12, 13])]  # category values a, b, c (two tokens), unknown


def _encode(s):
    return {"a": [10], "b": [11], "c": [12, 5], "unknown": [13]}[s]


def test_photo_category_loss_is_the_probability_of_the_allowed_set():
    """A photo labelled "a or b" is right when the tagger reads either: the term is
    -log(P(a) + P(b)) over the category values' first tokens, weighted like one answer token;
    rows that are no photo add nothing, a batch without photos adds no term, and a label naming no writable value is an
    error, not a silent no-op."""
    from mmrec.attributes.photo_labels import PhotoCategoryLoss
    from mmrec.errors import ConfigError

    loss = PhotoCategoryLoss(_Grammar(["category", "gender"]), {7: ["a", "b"], "p.jpg": ["c"]}, _encode)
    batch = loss.batch([7, 3, "p.jpg"])["photo_allowed"]
    assert batch.tolist() == [[True, True, False, False], [False] * 4, [False, False, True, False]]
    logits = torch.zeros(3, 2, 20)
    logits[:, -1, 10:14] = torch.tensor([2.0, 0.0, 1.0, -1.0])
    logits[1, -1, 10:14] = torch.tensor([9.0, 9.0, 9.0, 9.0])   # not a photo: never read
    labels = torch.full((3, 4), -100)
    labels[1, 1:] = 7                    # the catalog row's 3 answer tokens, photo rows' 2 prefix tokens
    labels[0, 2:], labels[2, 2:] = 7, 7
    term = loss(_Out(logits), {"photo_allowed": batch, "labels": labels})
    p = torch.softmax(torch.tensor([2.0, 0.0, 1.0, -1.0]), 0)
    nll = -torch.log(p[0] + p[1]) - torch.log(p[2])
    # each photo weighs one answer token: the sum over photos / the batch's 7 answer tokens
    assert float(term) == pytest.approx(float(nll / 7), rel=1e-5)
    assert loss(_Out(logits), {"photo_allowed": loss.batch([3, 4])["photo_allowed"]}) is None
    with pytest.raises(ConfigError, match="first field"):
        PhotoCategoryLoss(_Grammar(["gender", "category"]), {}, _encode)
    with pytest.raises(ConfigError, match="none of"):
        PhotoCategoryLoss(_Grammar(["category"]), {1: ["zzz"]}, lambda s: [99])


def test_lora_stage_trains_on_train_photographers_photos_with_their_label_only(run, tmp_path):
    """Mixed-domain tagger: the train photographers' labelled photos join the LoRA stage; the
    val/test/calibration photographers and the "could not tell" probes never do; a photo's example stops at
    the category value (no other field is written, so none is trained or guessed); the set loss
    is logged and recorded; without the folder the stage trains on the catalog and says so,
    and with ``required`` it refuses."""
    from mmrec.attributes.photo_labels import photo_training
    from mmrec.attributes.train import load_base, load_parts, train_lora
    from mmrec.bench.photo_sources import training_photos
    from mmrec.errors import InputError

    _, store, *_ = run
    src = tmp_path / "real_photos"
    # senders 6, 2, 4 are train photographers; 3 is val, 8 test and 1 calibration in the
    # benchmark's table
    _photo_folder(src, [("t1", 6, "Pants"), ("t2", 6, "Shirt"), ("t3", 2, "Pants"), ("t4", 4, "Shirt"),
                        ("p1", 2, "Not sure"), ("v1", 3, "Pants"), ("x1", 8, "Shirt"), ("c1", 1, "Shirt")])
    photos = training_photos(src, "benchmark/suites/photos/real_photos.yaml", TAX)
    assert sorted(p.photo_id for p in photos) == ["t1", "t2", "t3", "t4"]

    cfg = _lora_cfg(tmp_path / "out", "lora_stage.eval_steps=null", "lora_stage.max_steps=8",
                    "lora_stage.logging_steps=2", f"real_photos.source={src}", "real_photos.share=0.3",
                    "real_photos.weight=2")
    parts = load_parts(store, None)
    _, processor, _ = load_base(store, cfg)
    examples, loss, info = photo_training(cfg.real_photos, parts, processor, None, 40, photos, print)
    assert processor.tokenizer.decode(examples[0].answer_ids) == '{"category": "'
    assert info == {"photos": 4, "senders": 3, "repeat": 4, "share_of_examples": round(16 / 56, 4)}
    assert {e.image for e in examples} == {p.uri for p in photos}

    art = train_lora(store, cfg, profile="tiny")
    logged = [r["photo_category_nll"] for r in _log(art) if "photo_category_nll" in r]
    assert logged and all(v > 0 for v in logged)
    rec = art.metrics["real_photos"]
    assert rec["photos"] == 4 and rec["category_loss"]["weight"] == 2 and rec["category_loss"]["photo_examples_seen"] > 0

    missing = _lora_cfg(tmp_path / "out2", "lora_stage.eval_steps=null", "lora_stage.max_steps=2",
                        f"real_photos.source={tmp_path / 'nowhere'}", "real_photos.share=0.3")
    assert train_lora(store, missing, profile="tiny").metrics["real_photos"] == {"photos": 0}
    with pytest.raises(InputError, match="has no images.csv"):
        train_lora(store, _lora_cfg(tmp_path / "out3", f"real_photos.source={tmp_path / 'nowhere'}",
                                    "real_photos.share=0.3", "real_photos.required=true"), profile="tiny")
