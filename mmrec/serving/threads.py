"""Thread pools of a serving process: one compute thread per request.

Every serving process calls this at start (an Ingress or photo-model replica, the in-process
uvicorn server of `mmrec serve --no-ray`), so it sits below both the Ray app and the local
launchers.
"""

from __future__ import annotations

import os


def limit_threads(n: int = 1) -> None:
    """One compute thread per request in serving processes.

    Requests run concurrently already; torch's and faiss's own thread pools on top of that
    oversubscribe a small machine (a text embedding measured 300 ms with the default pools
    on a busy 2-core box, 7 ms with one thread).
    """
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    import sys

    if "torch" in sys.modules or _importable("torch"):
        import torch

        torch.set_num_threads(n)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(n)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
