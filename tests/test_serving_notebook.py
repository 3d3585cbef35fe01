"""notebooks/quickstart.ipynb runs top to bottom against a small catalog (the API in-process).

Code cells are executed in order in one namespace by a small runner (no Jupyter kernel
needed); a failing cell is reported with its index and source.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from outfit_fixtures import write_items

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def run_notebook(path: Path) -> list[str]:
    """Execute every code cell; return each cell's printed output."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    namespace: dict = {"__name__": "__main__"}
    outputs = []
    for n, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                exec(compile(src, f"{path.name}[cell {n}]", "exec"), namespace)
        except Exception as e:  # noqa: BLE001 - re-raised with the cell named
            raise AssertionError(f"cell {n} failed: {type(e).__name__}: {e}\n--- source ---\n{src}\n"
                                 f"--- output ---\n{buf.getvalue()}") from e
        outputs.append(buf.getvalue())
    return outputs


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    from mmrec.artifacts import ArtifactStore

    store = ArtifactStore(tmp_path / "artifacts")
    write_items(store, images_dir=tmp_path / "images")
    monkeypatch.setenv("MMREC_ARTIFACTS", str(store.root))
    monkeypatch.delenv("MMREC_URL", raising=False)
    out = run_notebook(NOTEBOOK)
    text = "\n".join(out)
    assert "ready: True" in text
    assert "Office look:" in text
    assert "statements backed by facts" in text
    assert "component_missing" in text  # no tagger/encoder in this catalog: said, not faked
    assert out[-1].split() == ["422", "401"]
