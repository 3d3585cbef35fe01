"""Loopback load generator for the HTTP API, bounded in time (``mmrec serve loadtest``).

Phases: a warm-up, then closed-loop JSON recommends at a fixed concurrency, then closed-loop
photo recommends at the same concurrency, then an open-loop run at a fixed request rate
(requests are sent on schedule whether or not earlier ones finished, so queueing shows up as
latency and errors instead of being hidden by a slower client). Latency is measured on the
client from send to full response. The generator shares the machine with the server, so on a
small machine its own CPU use is part of the measurement: each phase reports it
(``client_cpu_cores``), and the client is aiohttp: 0.75 ms of CPU per request here, where
httpx took 3.4 ms (44% of one of the 2 cores at 127 req/s).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmrec.serving.retry import backoff_s, retryable

_COLOURS = ("black", "white", "navy blue", "red", "grey", "blue", "pink", "green", "beige", "brown")
# server-side timings a photo answer carries (ms), averaged per phase by the load test
PHOTO_TIMINGS = ("photo_models_ms", "photo_wait_ms", "total_ms")
_THINGS = ("shirt", "dress", "jeans", "kurta", "heels", "sneakers", "jacket", "top", "trousers", "watch")
# Chinese shop words for the same things and colours (the typed-query mix is bilingual)
_THINGS_ZH = ("衬衫", "连衣裙", "牛仔裤", "库尔塔", "高跟鞋", "运动鞋", "夹克", "上衣", "长裤", "手表")
_COLOURS_ZH = ("黑色", "白色", "藏青色", "红色", "灰色", "蓝色", "粉色", "绿色", "米色", "棕色")


def typed_queries(seed: int = 0) -> list[str]:
    """Distinct shopper queries in English and Chinese (colour, item, for whom, a negation, a
    price ceiling or none; 10,800 of them), in a seeded random order: a load test that never
    repeats a query never hits the response cache."""
    out = []
    for (c, t), (cz, tz) in zip(((c, t) for c in _COLOURS for t in _THINGS),
                                ((c, t) for c in _COLOURS_ZH for t in _THINGS_ZH)):
        for g, gz in (("", ""), (" for women", "女士"), (" for men", "男士")):
            for n, (neg, negz) in enumerate(zip(_THINGS, _THINGS_ZH)):
                if neg != t:
                    for price, pricez in (("", ""), (" under 3000", "，3000元以内")):
                        out.append(f"{c} {t}{g}, no {neg}{price}")
                        out.append(f"{gz}{cz}{tz}，不要{negz}{pricez}")
    random.Random(seed).shuffle(out)
    return out


@dataclass
class PhaseResult:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # transport errors by type
    seconds: float = 0.0
    late_sends: int = 0  # open loop: sends that left later than 50 ms after their slot
    retries: int = 0  # attempts repeated after a disconnect or a retryable answer (retry.retryable)
    client_cpu_s: float = 0.0  # this process's CPU time during the phase (the generator's cost)
    photo_batches: list[float] = field(default_factory=list)  # photos per tagger pass, as answered
    # photo answers' server-side timings (ms): the models' pass, the wait for it, the recommend
    photo_timings: dict[str, list[float]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(0)
        ok = sum(v for k, v in self.statuses.items() if 200 <= k < 300)
        n = sum(self.statuses.values()) + sum(self.errors.values())
        pct = (lambda q: round(float(np.percentile(lat, q)), 2)) if len(lat) else (lambda q: None)
        return {
            "requests": n, "ok": ok, "errors": n - ok,
            "status_counts": {str(k): v for k, v in sorted(self.statuses.items())},
            "transport_errors": dict(self.errors),
            "seconds": round(self.seconds, 2), "throughput_rps": round(n / self.seconds, 2) if self.seconds else 0,
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "max_ms": round(float(lat.max()), 2) if len(lat) else None,
            "late_sends": self.late_sends, "retries": self.retries,
            "client_cpu_cores": round(self.client_cpu_s / self.seconds, 3) if self.seconds else None,
            **({"photo_batch_mean": round(float(np.mean(self.photo_batches)), 2)} if self.photo_batches else {}),
            **({"photo_server_ms_mean": {k: round(float(np.mean(v)), 2) for k, v in sorted(self.photo_timings.items())}}
               if self.photo_timings else {}),
        }


class LoadGenerator:
    """Send recommend requests to ``base_url``.

    Args:
        base_url: e.g. http://127.0.0.1:8000 (loopback only).
        api_key: sent as X-API-Key.
        scenes: scene names to draw from.
        photos: encoded images for the photo route (kiosk photos).
        user_ids: shoppers to draw from (a third of JSON requests are personalised).
        seed: request mix seed.
    """

    def __init__(self, base_url: str, api_key: str, scenes: list[str], photos: list[bytes],
                 user_ids: list[str] | None = None, seed: int = 0, timeout_s: float = 10.0,
                 typed_share: float = 0.1, distinct_queries: bool = False, max_retries: int = 3):
        if not base_url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
            raise ValueError(f"load is sent to loopback only, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.headers = {"X-API-Key": api_key}
        self.scenes, self.photos, self.user_ids = scenes, photos, user_ids or []
        self.rng = random.Random(seed)
        self.timeout_s = timeout_s
        if not 0 <= typed_share <= 1:
            raise ValueError(f"typed_share must be in [0, 1], got {typed_share}")
        self.typed_share = typed_share
        self.max_retries = max_retries
        self._distinct = iter(typed_queries(seed)) if distinct_queries else None

    def _json_body(self) -> dict[str, Any]:
        """The request mix: a third personalised (when users exist), ``typed_share`` with typed text
        (never repeated with ``distinct_queries``)."""
        body: dict[str, Any] = {"scene": self.rng.choice(self.scenes), "k": 3}
        if self.user_ids and self.rng.random() < 1 / 3:
            body["user_id"] = self.rng.choice(self.user_ids)
        if self.rng.random() < self.typed_share:
            if self._distinct is None:
                body["query_text"] = f"{self.rng.choice(_COLOURS)} {self.rng.choice(_THINGS)}"
            elif (query := next(self._distinct, None)) is not None:
                body["query_text"] = query
            else:
                raise RuntimeError("the distinct typed queries ran out: shorten the phases or lower typed_share")
        return body

    def _send(self, client, kind: str, body: dict[str, Any] | None, photo: bytes | None, scene: str):
        if kind == "json":
            return client.post("/v1/recommend", data=json.dumps(body), headers={"Content-Type": "application/json"})
        import aiohttp

        form = aiohttp.FormData()  # a form is consumed by one send: built anew for each attempt
        form.add_field("image", photo, filename="photo.jpg", content_type="image/jpeg")
        form.add_field("scene", scene)
        form.add_field("k", "3")
        return client.post("/v1/recommend/photo", data=form)

    async def _one(self, client, kind: str, res: PhaseResult) -> None:
        """One request as a client that retries would send it: a recommend call has no side effect
        the shopper sees, so a disconnect or a retryable answer (`retry.retryable`: 429, 502-504, a
        proxy's non-JSON 500) is retried (``max_retries`` times, backoff with jitter, honouring
        Retry-After up to 2 s); the latency counts from the first try."""
        t0 = time.perf_counter()
        body = self._json_body() if kind == "json" else None
        photo = self.rng.choice(self.photos) if kind != "json" else None
        scene = self.rng.choice(self.scenes)
        try:
            for attempt in range(self.max_retries + 1):
                last = attempt == self.max_retries
                try:
                    async with self._send(client, kind, body, photo, scene) as r:
                        resp_body = await r.read()
                        retry_after = r.headers.get("Retry-After")
                        content_type = r.headers.get("Content-Type")
                except Exception:  # noqa: BLE001 - a disconnect: retried, then measured
                    if last:
                        raise
                    res.retries += 1
                    await asyncio.sleep(backoff_s(attempt, None, self.rng))
                    continue
                if retryable(r.status, content_type) and not last:
                    res.retries += 1
                    await asyncio.sleep(backoff_s(attempt, retry_after, self.rng))
                    continue
                break
            res.statuses[r.status] += 1
            if 200 <= r.status < 300:
                res.latencies_ms.append((time.perf_counter() - t0) * 1000)
                if kind == "photo":  # few and slow: reading the answer's timings costs nothing here
                    timings = json.loads(resp_body).get("timings", {})
                    if timings.get("photo_batch") is not None:
                        res.photo_batches.append(timings["photo_batch"])
                    for k in PHOTO_TIMINGS:
                        if k in timings:
                            res.photo_timings.setdefault(k, []).append(timings[k])
        except Exception as e:  # noqa: BLE001 - a failed request is a measured error
            res.errors[type(e).__name__] += 1

    def _client(self, connections: int):
        import aiohttp

        return aiohttp.ClientSession(base_url=self.base_url, headers=self.headers,
                                     timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                     connector=aiohttp.TCPConnector(limit=connections))

    async def closed_loop(self, kind: str, concurrency: int, seconds: float) -> PhaseResult:
        res = PhaseResult(f"{kind}_c{concurrency}")
        deadline = time.perf_counter() + seconds
        async with self._client(concurrency) as client:
            async def worker():
                while time.perf_counter() < deadline:
                    await self._one(client, kind, res)
            t0, c0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            res.seconds, res.client_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        return res

    async def open_loop(self, rps: float, seconds: float, photo_share: float = 0.0) -> PhaseResult:
        res = PhaseResult(f"open_{rps:g}rps")
        n = int(rps * seconds)
        async with self._client(256) as client:
            t0, c0 = time.perf_counter(), time.process_time()
            tasks = []
            for i in range(n):
                slot = t0 + i / rps
                delay = slot - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.05:
                    res.late_sends += 1
                kind = "photo" if self.photos and self.rng.random() < photo_share else "json"
                tasks.append(asyncio.create_task(self._one(client, kind, res)))
            await asyncio.gather(*tasks)
            res.seconds, res.client_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        return res


def run_loadtest(base_url: str, api_key: str, *, scenes: list[str], photos: list[bytes],
                 user_ids: list[str] | None = None, concurrency: int = 8, seconds: float = 30.0,
                 rps: float = 20.0, rps_seconds: float = 300.0, photo_share: float = 0.1,
                 warmup_s: float = 40.0, typed_share: float = 0.1, distinct_queries: bool = False,
                 max_retries: int = 3, log=print) -> dict[str, Any]:
    """Run every phase and return the metrics (see module docstring)."""
    gen = LoadGenerator(base_url, api_key, scenes, photos, user_ids, typed_share=typed_share,
                        distinct_queries=distinct_queries, max_retries=max_retries)

    async def main() -> dict[str, Any]:
        phases: dict[str, Any] = {}
        if warmup_s > 0:
            # at the measured concurrency, long enough for the autoscaler to add replicas
            log(f"warm-up: {warmup_s:g}s at concurrency {concurrency} (not measured) ...")
            await gen.closed_loop("json", concurrency, warmup_s)
            if photos:
                await gen.closed_loop("photo", concurrency, min(warmup_s, 5))
        log(f"json recommend, concurrency {concurrency}, {seconds:g}s ...")
        phases["json"] = (await gen.closed_loop("json", concurrency, seconds)).summary()
        log(f"  {json.dumps(phases['json'])}")
        if photos:
            log(f"photo recommend, concurrency {concurrency}, {seconds:g}s ...")
            phases["photo"] = (await gen.closed_loop("photo", concurrency, seconds)).summary()
            log(f"  {json.dumps(phases['photo'])}")
        if rps_seconds > 0:
            log(f"open loop {rps:g} rps for {rps_seconds:g}s ({photo_share:.0%} photo) ...")
            phases["open_loop"] = (await gen.open_loop(rps, rps_seconds, photo_share)).summary()
            log(f"  {json.dumps(phases['open_loop'])}")
        return phases

    phases = asyncio.run(main())
    text = _replica_metrics(base_url, api_key)
    if isinstance(text, dict):  # the error, reported in place of both
        phases["response_cache"] = phases["server_latency"] = text
    else:
        phases["response_cache"] = _cache_counts(text)
        phases["server_latency"] = _server_latency(text)
    return phases


_ONE_REPLICA = "counted by the replica that answered /metrics"
# what run_loadtest adds beside the load phases (read from one replica, not measured by the client)
REPLICA_COUNTS = ("response_cache", "server_latency")


def _replica_metrics(base_url: str, api_key: str) -> str | dict[str, str]:
    """One replica's /metrics text (or {"error": ...})."""
    import httpx

    try:
        return httpx.get(f"{base_url}/metrics", headers={"X-API-Key": api_key}, timeout=10).text
    except httpx.HTTPError as e:
        return {"error": f"{type(e).__name__}: {e}"}


def _cache_counts(text: str) -> dict[str, Any]:
    """JSON answers served from the response cache, as one replica's /metrics counts them."""
    counts = {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^mmrec_response_cache_total\{result="(\w+)"\} ([0-9.e+]+)$', text, re.M)}
    total = sum(counts.values())
    return {"hit": counts.get("hit", 0.0), "miss": counts.get("miss", 0.0),
            "hit_ratio": round(counts.get("hit", 0.0) / total, 4) if total else None,
            "note": _ONE_REPLICA}


def _server_latency(text: str) -> dict[str, Any]:
    """Per recommend route, the share of requests one replica answered within each latency
    bucket of its /metrics histogram (time inside the app: no proxy, no client, no queue before
    the ASGI app). Set beside the client's percentiles it tells where a latency tail comes from."""
    buckets: dict[str, dict[str, float]] = {}
    for m in re.finditer(r'^mmrec_http_request_seconds_bucket\{le="([^"]+)",route="([^"]+)"\} ([0-9.e+]+)$',
                         text, re.M):
        buckets.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
    out: dict[str, Any] = {}
    for route, b in buckets.items():
        total = b.get("+Inf", 0.0)
        if route.startswith("/v1/recommend") and total:
            out[route] = {"requests": total, **{f"share_within_{float(le) * 1000:g}ms": round(n / total, 4)
                                                for le, n in b.items() if le != "+Inf"}}
    out["note"] = _ONE_REPLICA
    return out
