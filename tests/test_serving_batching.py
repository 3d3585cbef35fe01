"""Greedy photo batching: photos that queue while a pass runs share the next pass."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mmrec.serving.batching import GreedyBatcher


class SlowModel:
    """Doubles its inputs; each pass blocks ``pass_s`` (a model pass in a worker thread)."""

    def __init__(self, pass_s: float = 0.05, fail_on: int | None = None):
        self.pass_s = pass_s
        self.fail_on = fail_on
        self.passes: list[list[int]] = []
        self.threads: set[int] = set()

    def __call__(self, xs: list[int]) -> list[int]:
        self.passes.append(list(xs))
        self.threads.add(threading.get_ident())
        time.sleep(self.pass_s)
        if self.fail_on is not None and self.fail_on in xs:
            raise ValueError(f"cannot read photo {self.fail_on}")
        return [2 * x for x in xs]


def test_photos_queued_during_a_pass_share_the_next_one():
    model = SlowModel(pass_s=0.05)
    b = GreedyBatcher(model, max_batch=8)

    async def main():
        first = asyncio.create_task(b.submit(0))
        await asyncio.sleep(0.01)  # the first pass is running now
        rest = [asyncio.create_task(b.submit(i)) for i in range(1, 6)]
        return await first, await asyncio.gather(*rest)

    one, rest = asyncio.run(main())
    assert one == 0 and rest == [2, 4, 6, 8, 10]  # every caller gets its own result
    assert model.passes == [[0], [1, 2, 3, 4, 5]]
    assert threading.main_thread().ident not in model.threads  # the loop is never blocked


def test_a_pass_never_exceeds_max_batch():
    model = SlowModel(pass_s=0.02)
    b = GreedyBatcher(model, max_batch=3)

    async def main():
        return await asyncio.gather(*(b.submit(i) for i in range(10)))

    assert asyncio.run(main()) == [2 * i for i in range(10)]
    assert max(len(p) for p in model.passes) == 3
    assert sorted(x for p in model.passes for x in p) == list(range(10))


def test_idle_model_waits_gather_ms_for_photos_sent_together():
    model = SlowModel(pass_s=0.0)
    b = GreedyBatcher(model, max_batch=8, gather_ms=30)

    async def main():
        first = asyncio.create_task(b.submit(1))
        await asyncio.sleep(0.005)
        second = asyncio.create_task(b.submit(2))
        return await asyncio.gather(first, second)

    assert asyncio.run(main()) == [2, 4]
    assert model.passes == [[1, 2]]


def test_a_failed_pass_fails_its_callers_only_and_batching_goes_on():
    model = SlowModel(pass_s=0.03, fail_on=1)
    b = GreedyBatcher(model, max_batch=8)

    async def main():
        bad = asyncio.create_task(b.submit(1))
        await asyncio.sleep(0.01)
        good = asyncio.create_task(b.submit(2))
        with pytest.raises(ValueError, match="photo 1"):
            await bad
        return await good

    assert asyncio.run(main()) == 4


def test_a_caller_that_gave_up_is_not_computed():
    model = SlowModel(pass_s=0.05)
    b = GreedyBatcher(model, max_batch=8)

    async def main():
        first = asyncio.create_task(b.submit(0))
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(b.submit(99))
        kept = asyncio.create_task(b.submit(7))
        await asyncio.sleep(0.005)
        gone.cancel()  # e.g. the client disconnected
        return await first, await kept

    assert asyncio.run(main()) == (0, 14)
    assert [99 in p for p in model.passes] == [False, False]


def test_each_event_loop_gets_its_own_worker():
    # a test client may run each request in a new event loop; a worker left on a finished loop
    # must not swallow the next photo
    model = SlowModel(pass_s=0.0)
    b = GreedyBatcher(model, max_batch=8)
    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(b.submit(1)) == 2  # its worker stays pending there
        assert asyncio.run(asyncio.wait_for(b.submit(2), timeout=5)) == 4
    finally:
        left = asyncio.all_tasks(first)
        for t in left:
            t.cancel()
        first.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        first.close()
    assert model.passes == [[1], [2]]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        GreedyBatcher(SlowModel(), max_batch=0)
    with pytest.raises(ValueError, match="gather_ms"):
        GreedyBatcher(SlowModel(), gather_ms=-1)
