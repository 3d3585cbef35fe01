"""Hold the current `Recommender` and swap it when artifact versions change, without a restart.

A watcher thread reads the CURRENT pointers of the artifact kinds the service uses every
``poll_s`` seconds; when one changes it builds a new recommender off the request path and
swaps the reference (requests in flight finish on the old one). A failed rebuild keeps the
old one serving and is reported in ``status``. The admin route calls ``reload()`` directly.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any, Callable

from mmrec import kinds
from mmrec.artifacts import ArtifactStore

log = logging.getLogger(__name__)
# Kinds whose CURRENT pointer changes what the service answers.
WATCHED_KINDS = (kinds.ITEMS, kinds.INDEX, kinds.VECTORS, kinds.ENCODER, kinds.RANKER,
                 kinds.OUTFIT_PRIORS, kinds.VLM)


class RecommenderHolder:
    """The live recommender (``current``) plus the means to rebuild it.

    Args:
        factory: builds a recommender (e.g. ``lambda: Recommender.from_store(store)``).
        store: the artifact root to watch; None: never reload (a fixed recommender).
        poll_s: seconds between checks of the CURRENT pointers (0: only on ``reload()``).
        freeze_heap: after each (re)load, move the loaded objects out of the garbage
            collector's sight (``gc.freeze``). A loaded recommender is ~650k tracked objects
            whose full collection takes ~300 ms here, paid by whichever request triggers it;
            frozen, a full pass only scans what requests created. Servers set it; it is
            process-wide, so libraries and tests leave it off.
    """

    def __init__(self, factory: Callable[[], Any] | None, store: ArtifactStore | None = None,
                 poll_s: float = 0.0, *, initial: Any | None = None, freeze_heap: bool = False):
        self._factory = factory
        self._store = store
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._swap_lock = threading.Lock()  # guards _current against a swap racing a reload
        self._current = initial
        self._pointers = self._read_pointers() if initial is not None else None
        self.last_error: str | None = None
        self.loaded_at: float | None = time.time() if initial is not None else None
        self.on_reload: Callable[[str], None] = lambda outcome: None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._freeze_heap = freeze_heap

    @classmethod
    def fixed(cls, recommender: Any) -> "RecommenderHolder":
        return cls(None, None, 0.0, initial=recommender)

    @property
    def current(self) -> Any | None:
        return self._current

    @property
    def ready(self) -> bool:
        return self._current is not None

    def swap(self, old: Any, new: Any) -> bool:
        """Serve ``new`` (``old`` with live catalog changes applied) unless a reload replaced
        ``old`` meanwhile (the reloaded one applies the stored changes itself); True if swapped."""
        with self._swap_lock:
            if self._current is not old:
                return False
            self._current = new
            return True

    def _read_pointers(self) -> dict[str, str | None] | None:
        if self._store is None:
            return None
        return {k: self._store.current_version(k) for k in WATCHED_KINDS}

    def load(self) -> Any:
        """Build the first recommender (blocking)."""
        return self.reload(force=True)["recommender"]

    def reload(self, force: bool = False) -> dict[str, Any]:
        """Rebuild if any CURRENT pointer moved (or ``force``); returns what happened."""
        if self._factory is None:
            return {"reloaded": False, "reason": "fixed recommender (no artifact store)",
                    "recommender": self._current}
        with self._lock:  # one rebuild at a time; requests keep using the old one meanwhile
            pointers = self._read_pointers()
            if not force and pointers == self._pointers and self._current is not None:
                return {"reloaded": False, "reason": "no artifact changed", "recommender": self._current}
            try:
                fresh = self._factory()
            except Exception as e:  # noqa: BLE001 - keep serving the old one, report why
                self.last_error = f"{type(e).__name__}: {e}"
                self.on_reload("failed")
                log.exception("reload failed; still serving the previous recommender")
                if self._current is None:
                    raise
                return {"reloaded": False, "reason": self.last_error, "recommender": self._current}
            with self._swap_lock:
                self._current, self._pointers = fresh, pointers
            self.last_error, self.loaded_at = None, time.time()
            if self._freeze_heap:
                _settle_heap()
            self.on_reload("ok")
            return {"reloaded": True, "reason": "artifacts changed" if not force else "forced",
                    "recommender": fresh}

    def start(self) -> None:
        """Start the watcher thread (no-op without a store or with poll_s == 0)."""
        if self._store is None or self._poll_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="mmrec-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.reload()
            except Exception:  # noqa: BLE001 - logged in reload(); the watcher must live on
                pass

    def status(self) -> dict[str, Any]:
        cur = self._current
        return {"ready": cur is not None, "versions": dict(getattr(cur, "versions", {}) or {}),
                "loaded_at": self.loaded_at, "last_error": self.last_error}


def _settle_heap() -> None:
    """Collect once, then freeze what survives (the live recommender and its models).

    The previous recommender, if any, was frozen too: unfreeze first so that its cycles can be
    collected now (one pause per artifact switch instead of one per few thousand requests).
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
