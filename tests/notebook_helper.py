"""Execute a notebook in a real Jupyter kernel (nbclient + ipykernel), as a reader would.

Shared by the notebook tests (benchmark walkthrough, quickstart). The kernel inherits this
process's environment, so a test passes inputs with ``monkeypatch.setenv``; cells run with the
working directory ``cwd``. A failing cell raises ``nbclient.exceptions.CellExecutionError``
carrying the cell's source and traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def run_notebook(path: str | Path, *, cwd: str | Path, timeout: int = 300):
    """Run every cell of ``path``; return the executed notebook (outputs filled in)."""
    nbformat = pytest.importorskip("nbformat", reason="dev extra: pip install -e .[dev]")
    nbclient = pytest.importorskip("nbclient", reason="dev extra: pip install -e .[dev]")
    pytest.importorskip("ipykernel", reason="dev extra: pip install -e .[dev]")
    nb = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def outputs_text(nb) -> str:
    """All stream and text/plain outputs of an executed notebook, concatenated."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out and "text/plain" in out["data"]:
                parts.append(out["data"]["text/plain"])
    return "\n".join(parts)
