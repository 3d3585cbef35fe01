"""Every experiment's override (lab/sft/configs/*.yaml) states its outcome in its header and
loads on today's product config with the lab's plug-ins registered, except the two whose option
left the product: those are refused by name (their header says which commit runs them)."""

from __future__ import annotations

from pathlib import Path

import pytest

import lab.sft.losses  # noqa: F401  registers the lab's losses
from lab.sft.train import main as lab_main
from mmrec.config import load_config
from mmrec.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "sft" / "configs").glob("*.yaml"))
HISTORICAL = {"crop.yaml": "unknown key 'lora_stage.crop_scale'",
              "image_fit_foreground.yaml": "image_fit 'foreground' is not a fit the product ships"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_each_experiment_states_its_outcome_and_loads(path):
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    text = "\n".join(header)
    assert "ADOPTED" in text and "2026-" in text, path.name
    assert "Rerun" in text or "run needs the commit" in text, path.name
    if path.name in HISTORICAL:
        with pytest.raises(ConfigError, match=HISTORICAL[path.name]):
            load_config("sft", profile="mini", path=path)
        assert "9a7845d4" in text  # the commit that still runs it
    else:
        cfg = load_config("sft", profile="mini", path=path)
        assert cfg.model_dump() != load_config("sft", profile="mini").model_dump()


def test_the_lab_entry_point_is_the_product_cli():
    assert lab_main(["sft", "train", "--help"]) == 0
