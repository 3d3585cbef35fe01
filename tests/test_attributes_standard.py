"""The `standard` tagger path (`model.kind=standard`: a pretrained Qwen2-VL / Qwen2.5-VL
checkpoint by path) end to end on CPU, on tiny checkpoints laid out like the hub's
(tests/standard_fixtures.py): a real ``Qwen2Tokenizer`` whose taxonomy values are several tokens
each, the processor's pixel budget taken from the config, constrained decoding over multi-token
values, and `mmrec sft train | eval | export` and `mmrec tag` through the CLI with the standard
profile (scaled down by overrides only)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmrec.artifacts import ArtifactStore
from mmrec.cli import main
from sft_fixtures import CATEGORIES, COLOURS, TINY_FIELDS, make_items
from standard_fixtures import HUB_MAX_PIXELS, qwen2_tokenizer, save_qwen_vl_checkpoint, tokenizer_texts

FAMILIES = ["qwen2_vl", "qwen2_5_vl"]
RECIPE = Path(__file__).resolve().parents[1] / "sft_data" / "recipes" / "tiny.yaml"
# config pixel budget: 4 to 8 merged patches of 28 x 28 px per image
MIN_PIXELS, MAX_PIXELS = 4 * 784, 8 * 784


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """family -> a tiny hub-layout checkpoint directory (both share one tokenizer)."""
    from mmrec.attributes.prompts import load_prompts
    from mmrec.taxonomy import default_taxonomy

    torch.set_num_threads(1)
    tax = default_taxonomy()
    prompts = load_prompts("sft_data/prompts/default.yaml")
    titles = [f"Brand Men {c.title()} {k.title()}" for k in CATEGORIES for c in COLOURS]
    tok = qwen2_tokenizer(tokenizer_texts(prompts, TINY_FIELDS, {f: tax.values(f) for f in TINY_FIELDS}, titles))
    root = tmp_path_factory.mktemp("qwen_ckpt")
    return {fam: save_qwen_vl_checkpoint(root / fam, fam, tok) for fam in FAMILIES}


def _standard(path, **kw):
    from mmrec.attributes.config import ModelConfig

    return ModelConfig(kind="standard", name_or_path=str(path), min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, **kw)


def _n_tokens(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"])


def test_tokenizer_is_qwen2_with_multi_token_values(checkpoints):
    from transformers import AutoTokenizer, Qwen2Tokenizer

    from mmrec.attributes.decode import JsonGrammar
    from mmrec.taxonomy import default_taxonomy

    tok = AutoTokenizer.from_pretrained(str(checkpoints["qwen2_5_vl"]))
    assert isinstance(tok, Qwen2Tokenizer)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    for v in ["navy blue", "formal shoes", "track pants", "casual", "藏青色"]:
        assert _n_tokens(tok, v) >= 2, v
    tax = default_taxonomy()
    grammar = JsonGrammar(tok, TINY_FIELDS, {f: tax.values(f) for f in TINY_FIELDS})
    assert not any(grammar.single_token)  # every field goes through the multi-token decoder


@pytest.mark.parametrize("family", FAMILIES)
def test_config_pixel_budget_overrides_the_checkpoints(checkpoints, family):
    """The checkpoint's preprocessor allows 16,384 image tokens per photo; the config's
    min_pixels/max_pixels decide instead, however large or small the photo."""
    from mmrec.attributes.model import load_model

    model, processor = load_model(_standard(checkpoints[family]))
    assert model.config.model_type == family
    for size in [(1200, 1600), (40, 30), (500, 90)]:
        grid = processor.image_processor(images=[Image.new("RGB", size, "red")], return_tensors="pt")["image_grid_thw"]
        tokens = int(grid.prod()) // 4
        assert MIN_PIXELS // 784 // 2 <= tokens <= MAX_PIXELS // 784, (size, tokens)
    hub = processor.image_processor(images=[Image.new("RGB", (1200, 1600))], return_tensors="pt", size={
        "shortest_edge": 3136, "longest_edge": HUB_MAX_PIXELS})["image_grid_thw"]
    assert int(hub.prod()) // 4 > 100 * MAX_PIXELS // 784  # what the budget prevents


@pytest.mark.parametrize("family", FAMILIES)
def test_constrained_decoding_over_multi_token_values(checkpoints, family):
    """Every answer is JSON over the taxonomy values, multi-token values included, with the
    mirror-image views and without; the confidence is the value path's probability."""
    from mmrec.attributes.model import load_model
    from mmrec.attributes.predict import Predictor
    from mmrec.attributes.prompts import load_prompts
    from mmrec.taxonomy import default_taxonomy

    tax = default_taxonomy()
    prompts = load_prompts("sft_data/prompts/default.yaml")
    fields = ["category", "gender", "colour", "pattern", "material", "neckline", "usage"]
    values = {f: tax.values(f) for f in fields}
    model, processor = load_model(_standard(checkpoints[family]))
    model.eval()
    images = [Image.new("RGB", (60 + 17 * i, 80), (40 * i, 200 - 30 * i, 90)) for i in range(4)]
    chosen = set()
    for tta in (False, True):
        pred = Predictor(model, processor, prompts, fields, values, tax, image_size=None, batch_size=8,
                         inference_only=True, hflip_tta=tta)
        for p in pred.predict_images(images):
            assert list(json.loads(p.text)) == fields
            for f in fields:
                v = p.fields[f]["value"]
                assert v is None or v in values[f], (f, v)
                assert json.loads(p.text)[f] == (v or "unknown")
                assert 0 < p.fields[f]["confidence"] <= 1
                if v is not None:
                    chosen.add(v)
    tok = processor.tokenizer
    assert any(_n_tokens(tok, v) > 1 for v in chosen), chosen  # the random weights do pick some


def _cli_run(root: Path, ckpt: Path, *extra: str):
    """Generated catalog -> `sft build` -> `sft train` -> `sft eval` -> `sft export`, under the
    standard profile scaled down to seconds. Returns (store, CLI base args, overrides, adapter, merged)."""
    from test_embed_mixed import write_real_photos

    store = ArtifactStore(root / "artifacts")
    make_items(store, root, 40)
    photos = write_real_photos(root / "real_photos")  # the mixed-domain recipe, as on the mini profile
    base = ["--artifacts", str(root / "artifacts"), "--profile", "standard", "--quiet"]
    sets = [f"model.name_or_path={ckpt}", f"model.min_pixels={MIN_PIXELS}", f"model.max_pixels={MAX_PIXELS}",
            f"output_dir={root / 'runs'}", f"real_photos.source={photos}", "real_photos.required=true", "lora_stage.max_steps=16", "lora_stage.batch_size=8",
            "lora_stage.grad_accum=1", "lora_stage.threads=1", "lora_stage.warmup_steps=2", "lora_stage.lr=5e-3",
            "lora_stage.eval_steps=8", "lora_stage.save_steps=8", "lora_stage.eval_samples=6",
            "lora_stage.logging_steps=4", "eval.max_items=6", *extra]
    sets = [a for s in sets for a in ("--set", s)]
    assert main(base + ["sft", "build", "--recipe", str(RECIPE)]) == 0
    assert main(base + ["sft", "train", *sets]) == 0
    adapter = store.current_version("vlm")
    assert main(base + ["sft", "eval", "--vlm", adapter, *sets]) == 0
    assert main(base + ["sft", "export", "--vlm", adapter]) == 0
    merged = store.current_version("vlm")
    assert merged != adapter
    return store, base, sets, adapter, merged


def _tag(base, sets, images, vlm, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(base + ["tag", *map(str, images), "--vlm", vlm, *sets]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_qwen2_5_vl_train_eval_export_tag(checkpoints, tmp_path, capsys):
    """Qwen2.5-VL (tied embeddings, like the 3B) through every CLI step; the merged model tags
    exactly as the adapter does."""
    from mmrec.attributes.tagger import Tagger

    store, base, sets, adapter, merged = _cli_run(tmp_path, checkpoints["qwen2_5_vl"])
    art = store.load("vlm", adapter)
    assert art.manifest["format"] == "adapter" and art.manifest["base"] == str(checkpoints["qwen2_5_vl"].resolve())
    assert art.metrics["steps"] == 16 and (art.path / "processor").is_dir()
    # the train photographers' photos joined the stage with their category set only; the real
    # Qwen2 tokenizer splits values into several tokens, the set loss reads their first tokens
    assert art.metrics["real_photos"]["photos"] == 4 and art.metrics["real_photos"]["senders"] == 3
    log = [json.loads(x) for x in art.file("train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses and all(math.isfinite(x) for x in losses)

    ev = store.load("sft_eval", store.current_version("sft_eval"))
    metrics = json.loads(ev.file("metrics.json").read_text())
    values = json.loads(art.file("fields.json").read_text())["values"]
    for name in ("sft", "base"):  # constrained answers: valid JSON over taxonomy values, always
        rep = metrics["models"][name]["constrained"]
        assert rep["json_valid_rate"] == 1.0
        for text in rep["examples"]:
            assert all(v == "unknown" or v in values[f] for f, v in json.loads(text).items())
    assert metrics["models"]["sft"]["free"]["json_valid_rate"] >= 0  # free decoding ran and was scored

    m = store.load("vlm", merged)
    assert m.manifest["format"] == "merged" and m.metrics["max_abs_logit_diff"] <= 1e-4
    assert m.metrics["dtype"] == "float32"
    images = sorted((tmp_path / "images").glob("10[0-9][0-9].jpg"))[:4]
    from_merged = _tag(base, sets, images, merged, capsys)
    from_adapter = _tag(base, sets, images, adapter, capsys)
    assert [r["model_version"] for r in from_merged] == [merged] * 4
    for a, b in zip(from_merged, from_adapter):
        assert set(a["attributes"]) == set(values)
        for f, pred in a["attributes"].items():
            assert pred["value"] is None or pred["value"] in values[f]
            assert pred["value"] == b["attributes"][f]["value"]
            assert pred["confidence"] == pytest.approx(b["attributes"][f]["confidence"], abs=1e-3)

    # the tagger feeds each photo at the config's pixel budget, not the checkpoint's
    tagger = Tagger.load(store, merged)
    size = tagger.predictor.processor.image_processor.size
    assert (size.shortest_edge, size.longest_edge) == (MIN_PIXELS, MAX_PIXELS)


def test_qwen2_vl_bf16_relative_path(checkpoints, tmp_path, capsys, monkeypatch):
    """Qwen2-VL trained in bfloat16 (what `dtype: auto` gives on a GPU) from a checkpoint named by
    a relative path: the export still merges exactly (in float32) and saves bfloat16, and the
    tagger loads from another working directory."""
    import shutil

    from safetensors import safe_open

    shutil.copytree(checkpoints["qwen2_vl"], tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    store, base, sets, adapter, merged = _cli_run(tmp_path, Path("ckpt"), "model.dtype=bfloat16")
    art = store.load("vlm", adapter)
    assert art.manifest["base"] == str((tmp_path / "ckpt").resolve())
    m = store.load("vlm", merged)
    assert m.metrics["max_abs_logit_diff"] <= 1e-4 and m.metrics["dtype"] == "bfloat16"
    with safe_open(str(m.path / "merged" / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    monkeypatch.chdir(os.sep)
    out = _tag(base, sets, sorted((tmp_path / "images").glob("10*.jpg"))[:2], adapter, capsys)
    assert len(out) == 2 and out[0]["model_version"] == adapter
