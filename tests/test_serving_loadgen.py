"""The loopback load generator behind `mmrec serve loadtest`, against the API in this process."""

from __future__ import annotations

import pytest

from mmrec.recommend import Recommender
from mmrec.serving.app import create_app
from mmrec.serving.loadgen import LoadGenerator, PhaseResult, run_loadtest
from mmrec.serving.local import start_uvicorn
from mmrec.serving.settings import ServeSettings
from outfit_fixtures import write_items

KEY = "loadgen-key"


def test_summary_percentiles_and_errors():
    r = PhaseResult("x", latencies_ms=[float(i) for i in range(1, 101)], seconds=2.0)
    r.statuses.update({200: 100, 429: 3})
    r.errors.update({"ReadTimeout": 1})
    s = r.summary()
    assert s["requests"] == 104 and s["ok"] == 100 and s["errors"] == 4
    assert s["p50_ms"] == pytest.approx(50.5) and s["p99_ms"] == pytest.approx(99.01)
    assert s["throughput_rps"] == 52.0 and s["status_counts"]["429"] == 3


def test_refuses_non_loopback_targets():
    with pytest.raises(ValueError, match="loopback"):
        LoadGenerator("http://example.com", KEY, ["office"], [])


def test_loadtest_phases_against_a_live_server(tmp_path):
    from mmrec.artifacts import ArtifactStore

    st = ArtifactStore(tmp_path / "artifacts")
    write_items(st)
    server = start_uvicorn(create_app(Recommender.from_store(st), ServeSettings().with_key(KEY)))
    try:
        phases = run_loadtest(server.url, KEY, scenes=["office", "party"], photos=[], concurrency=2,
                              seconds=1.0, rps=10, rps_seconds=1.0, warmup_s=0, log=lambda m: None)
        wrong = run_loadtest(server.url, "wrong", scenes=["office"], photos=[], concurrency=1,
                             seconds=0.3, rps=5, rps_seconds=0, warmup_s=0, log=lambda m: None)
    finally:
        server.stop()
    assert set(phases) == {"json", "open_loop", "response_cache", "server_latency"}  # no photos: no photo phase
    inside = phases["server_latency"]["/v1/recommend"]
    assert inside["requests"] > 0 and inside["share_within_10000ms"] == 1.0
    assert phases["response_cache"]["hit"] > 0  # two scenes only: repeats come from the cache
    assert phases["json"]["errors"] == 0 and phases["json"]["requests"] > 2
    assert phases["json"]["p50_ms"] > 0 and phases["open_loop"]["requests"] == 10
    assert phases["json"]["client_cpu_cores"] > 0  # the generator reports its own share of the CPU
    assert wrong["json"]["errors"] == wrong["json"]["requests"] > 0  # 401s are counted as errors
    assert set(wrong["json"]["status_counts"]) == {"401"}


def test_distinct_typed_queries_never_repeat_and_are_bilingual():
    from mmrec.serving.loadgen import LoadGenerator, typed_queries

    pool = typed_queries(seed=3)
    assert len(pool) == len(set(pool)) >= 5000
    assert any("，不要" in q for q in pool) and any(", no " in q for q in pool)
    gen = LoadGenerator("http://127.0.0.1:9", "k", ["office"], [], typed_share=1.0, distinct_queries=True)
    texts = [gen._json_body()["query_text"] for _ in range(2000)]
    assert len(set(texts)) == 2000
    with pytest.raises(ValueError, match="typed_share"):
        LoadGenerator("http://127.0.0.1:9", "k", ["office"], [], typed_share=1.5)


def test_the_load_generator_retries_overload_and_disconnects_like_a_client_should():
    """503 and 429 (with Retry-After) and a dropped connection are retried with backoff; the
    request then counts once, as served; with no retries left the failure is what is measured."""
    import asyncio

    from aiohttp import web

    from mmrec.serving.loadgen import LoadGenerator, PhaseResult
    from mmrec.serving.retry import backoff_s

    calls = []

    async def handler(request):
        calls.append(1)
        n = len(calls)
        if n == 1:
            return web.json_response({"detail": "busy"}, status=503, headers={"Retry-After": "0"})
        if n == 2:
            return web.json_response({"detail": "slow down"}, status=429, headers={"Retry-After": "0"})
        if n == 3:
            request.transport.close()  # the replica died mid-request
            return web.Response()
        return web.json_response({"outfits": []})

    async def main():
        app = web.Application()
        app.router.add_post("/v1/recommend", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            out = []
            for retries in (3, 0):
                calls.clear()
                gen = LoadGenerator(f"http://127.0.0.1:{port}", "k", ["office"], [], max_retries=retries)
                res = PhaseResult("t")
                async with gen._client(1) as client:
                    await gen._one(client, "json", res)
                out.append(res)
            return out
        finally:
            await runner.cleanup()

    patient, impatient = asyncio.run(main())
    assert patient.retries == 3 and dict(patient.statuses) == {200: 1} and len(patient.latencies_ms) == 1
    assert impatient.retries == 0 and dict(impatient.statuses) == {503: 1} and not impatient.latencies_ms
    import random

    assert backoff_s(0, "1.5", random.Random(0)) == 1.5 and backoff_s(0, "60", random.Random(0)) == 2.0
    assert 0 <= backoff_s(3, None, random.Random(0)) <= 0.4
