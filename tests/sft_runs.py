"""The trained tiny tagger the end-to-end SFT tests share (tests/test_sft_train.py and the
lab's tests of the experiments that train, lab/tests/test_sft_lab.py): a generated catalog
built, both stages trained, evaluated and exported through the real CLI, in-process.
Import the fixtures into a test module (``from sft_runs import run, teacher``)."""

from __future__ import annotations

import json

import pytest
import torch

from mmrec.artifacts import ArtifactStore
from mmrec.cli import main
from sft_fixtures import make_items


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(root, store, CLI base args, output_dir override, the trained adapter's version)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sft")
    store = ArtifactStore(root / "artifacts")
    make_items(store, root, 60)
    base = ["--artifacts", str(root / "artifacts"), "--profile", "tiny", "--quiet"]
    runs = f"output_dir={root / 'runs'}"
    assert main(base + ["sft", "build", "--recipe", "sft_data/recipes/tiny.yaml"]) == 0
    assert main(base + ["sft", "train", "--set", runs]) == 0
    adapter_version = store.current_version("vlm")
    assert main(base + ["sft", "eval", "--vlm", adapter_version, "--set", runs]) == 0
    assert main(base + ["sft", "export", "--vlm", adapter_version]) == 0
    return root, store, base, runs, adapter_version


@pytest.fixture(scope="module")
def teacher(run):
    """The tiny in-house CLIP (untrained: any fixed image -> vector map is a valid teacher) and
    its vectors for the generated catalog, as `mmrec embed catalog` writes them."""
    from mmrec.config import load_config
    from mmrec.embed.catalog import embed_catalog
    from mmrec.embed.train import train_encoder

    _, store, *_ = run
    cfg = load_config("embed", profile="tiny", overrides=["train.epochs=0"])
    train_encoder(store, cfg, progress=False)
    embed_catalog(store, cfg, progress=False)
    return store


def train_log(art):
    """The rows of a training artifact's ``train_log.jsonl``."""
    return [json.loads(line) for line in art.file("train_log.jsonl").read_text().splitlines()]


def lora_cfg(output_dir, *overrides: str):
    """The tiny LoRA stage writing to ``output_dir``, validating on 4 products, plus ``overrides``."""
    from mmrec.config import load_config

    return load_config("sft", profile="tiny", overrides=[f"output_dir={output_dir}", "lora_stage.eval_samples=4",
                                                          *overrides])
