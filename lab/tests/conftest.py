"""Tests of the lab's experiments: run with `.venv/bin/python -m pytest lab/tests` (the default
`pytest` collects tests/ only). Every item is marked ``lab``; the fixture modules of tests/
(sft_fixtures, sft_runs, ...) are importable as they are there, and so is the ``lab`` package."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[2]
for path in (REPO, REPO / "tests"):  # `import lab...` and the shared fixture modules
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def pytest_collection_modifyitems(config, items):
    lab_dir = Path(__file__).resolve().parent
    for item in items:
        if lab_dir in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.lab)
