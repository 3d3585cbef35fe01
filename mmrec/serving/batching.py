"""Greedy batching for the photo models: a pass takes every photo that queued while the last ran.

Ray Serve's ``@serve.batch`` closes a batch on a timer that starts at its first request, whether
or not the model is free; with a pass of ~50-90 ms and a 50 ms timer on 2 cores that formed
batches of ~3 photos at concurrency 8 and left the model idle between timers. Here the model
is never idle while photos wait, never waits on a timer while busy, and under load the batch
grows by itself: a photo waits at most for the pass in progress plus its own. Only when the
model was idle does a pass wait ``gather_ms`` for photos arriving together (a kiosk burst).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Callable, Generic, Sequence, TypeVar

if TYPE_CHECKING:
    from mmrec.outfit.photo import PhotoAnalysis, PhotoModels

T = TypeVar("T")
R = TypeVar("R")


class GreedyBatcher(Generic[T, R]):
    """``await submit(x)`` -> ``fn([... x ...])[i]``, with ``fn`` run in a worker thread.

    Args:
        fn: maps a list of inputs to a list of results of the same length (one model pass).
        max_batch: most inputs per pass.
        gather_ms: when the model was idle, how long the first input waits for company.
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], max_batch: int = 8, gather_ms: float = 0.0):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if gather_ms < 0:
            raise ValueError(f"gather_ms must be >= 0, got {gather_ms}")
        self.fn = fn
        self.max_batch = max_batch
        self.gather_s = gather_ms / 1000
        self._queue: list[tuple[T, asyncio.Future]] = []
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0  # passes run (for tests and metrics)

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._loop is not loop:
            # first call, or a new event loop (a test client may run one per request): the
            # worker and its queue belong to the loop that awaits them
            self._loop, self._queue = loop, []
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._run())
        fut: asyncio.Future = loop.create_future()
        self._queue.append((item, fut))
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queue:
                continue
            if self.gather_s and len(self._queue) < self.max_batch:
                await asyncio.sleep(self.gather_s)  # idle model: let photos sent together join
            while self._queue:  # busy: keep taking what queued meanwhile
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
                batch = [(x, f) for x, f in batch if not f.done()]  # caller gone (cancelled)
                if not batch:
                    continue
                self.batches += 1
                try:
                    results = await asyncio.to_thread(self.fn, [x for x, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"batch function returned {len(results)} results for "
                                           f"{len(batch)} inputs")
                except Exception as e:  # noqa: BLE001 - every caller of the pass gets the error
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(e)
                    continue
                for (_, f), r in zip(batch, results):
                    if not f.done():
                        f.set_result(r)


class BatchedPhotos:
    """Photo analysis through a `GreedyBatcher`: concurrent photos share the models' pass.

    ``models`` is called per pass (so a hot reload takes effect at the next pass) and returns the
    current `PhotoModels`. Each answer's timings gain ``photo_wait_ms``: the time the photo queued
    for the pass in progress (and, on an idle model, the gather) - what batching costs it.
    """

    def __init__(self, models: Callable[[], "PhotoModels"], max_batch: int = 8, gather_ms: float = 5.0):
        self.batcher: GreedyBatcher = GreedyBatcher(lambda images: models().analyze_many(images),
                                                    max_batch=max_batch, gather_ms=gather_ms)

    async def analyze(self, image) -> "PhotoAnalysis":
        t0 = time.perf_counter()
        out = await self.batcher.submit(image)
        waited = (time.perf_counter() - t0) * 1000 - out.timings.get("photo_models_ms", 0.0)
        out.timings["photo_wait_ms"] = round(max(waited, 0.0), 3)
        return out
