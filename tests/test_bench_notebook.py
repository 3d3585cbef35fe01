"""notebooks/benchmark_walkthrough.ipynb runs top to bottom (tiny in-process world)."""

from __future__ import annotations

from pathlib import Path

import bench_fixtures as BF
from notebook_helper import outputs_text, run_notebook

REPO = Path(__file__).resolve().parents[1]


def test_walkthrough_notebook_executes(tmp_path, monkeypatch):
    store, suite = BF.write_world(tmp_path, modes=("scene", "text"), repeats=1)
    monkeypatch.setenv("MMREC_ARTIFACTS", str(store.root))
    monkeypatch.setenv("MMREC_SUITE", str(suite))
    monkeypatch.setenv("MMREC_RUN_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MMREC_SCENES", str(tmp_path / "scenes.yaml"))
    nb = run_notebook(REPO / "notebooks" / "benchmark_walkthrough.ipynb", cwd=REPO)
    text = outputs_text(nb)
    assert "suite tiny: 8 cases" in text
    assert "scene_rules" in text and "release gate:" in text
    assert (tmp_path / "runs" / "baseline" / "report.html").is_file()
    assert (tmp_path / "runs" / "no_compat" / "metrics.json").is_file()
