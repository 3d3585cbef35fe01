"""Shared test fixtures and marker handling (slow / data / gpu)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("--run-slow") or os.environ.get("MMREC_RUN_SLOW") == "1"
    have_data = (SHARED_DATA / "myntra" / "styles.csv").is_file()
    have_gpu = False
    if any("gpu" in item.keywords for item in items):  # torch import costs ~10 s: only if needed
        try:
            import torch

            have_gpu = torch.cuda.is_available()
        except Exception:  # noqa: BLE001
            pass
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: use --run-slow or MMREC_RUN_SLOW=1"))
        if "data" in item.keywords and not have_data:
            item.add_marker(pytest.mark.skip(reason=f"needs {SHARED_DATA} (absent)"))
        if "gpu" in item.keywords and not have_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


@pytest.fixture
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture
def store(tmp_path):
    from mmrec.artifacts import ArtifactStore

    return ArtifactStore(tmp_path / "artifacts")
