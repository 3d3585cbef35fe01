"""Loopback measurement of `POST /v1/events` ingest (`mmrec feedback loadtest`): a measurement,
not a test.

Two servers: `run_events_load` serves the API with uvicorn in this process over a catalog of
item ids only (the events route needs nothing else); `load_events` loads any running service on
loopback (`mmrec feedback loadtest --serve ray` starts `mmrec serve` on local Ray for it). The
load comes from a spawned client process (threads, one keep-alive connection each), so that the
client's JSON work does not compete with the server for a GIL. Every batch holds ``batch`` new
events (unique event ids), so each one is a durable write. After the run the store is counted:
every 202 event must be there exactly once.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import secrets
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def _client(url: str, key: str, items: list[str], seconds: float, batch: int, concurrency: int,
            max_batches: int, out: Any) -> None:
    """Post batches from ``concurrency`` threads until ``seconds`` or ``max_batches``; send results."""
    host, port = url.removeprefix("http://").split(":")
    lat: list[float] = []
    done: list[tuple[float, int]] = []  # (seconds since start, status) of each answered batch
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds
    sent = [0]

    def worker(w: int) -> None:
        con = http.client.HTTPConnection(host, int(port), timeout=30)
        n = 0
        while time.perf_counter() < deadline:
            with lock:
                if sent[0] >= max_batches:
                    break
                sent[0] += 1
            ts = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
            body = json.dumps({"events": [
                {"event_id": f"{w}-{n}-{i}-{uuid.uuid4().hex[:8]}", "item_id": items[(n * batch + i) % len(items)],
                 "type": "click", "ts": ts, "user_id": f"user{(n + i) % 997}"} for i in range(batch)]})
            n += 1
            t0 = time.perf_counter()
            con.request("POST", "/v1/events", body, {"Content-Type": "application/json", "X-API-Key": key})
            resp = con.getresponse()
            resp.read()
            t1 = time.perf_counter()
            with lock:
                lat.append((t1 - t0) * 1000)
                done.append((t1 - start, resp.status))
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
        con.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({"latencies_ms": lat, "done": done, "statuses": statuses, "wall_s": time.perf_counter() - t0})


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 2) if xs else float("nan")


def load_events(url: str, key: str, items: list[str], *, seconds: float = 20, batch: int = 50,
                concurrency: int = 4, max_batches: int = 100_000, window_s: float = 5.0) -> dict[str, Any]:
    """Post new-event batches to a running service on loopback from a spawned client process.

    Returns the numbers as a dict; ``events_per_s_min_window`` is the lowest rate of any full
    ``window_s`` window (whether the rate was sustained, not only its mean).
    """
    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise ValueError(f"load is sent to loopback only, got {url!r}")
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_client, args=(url, key, items, seconds, batch, concurrency, max_batches, q))
    proc.start()
    try:
        res = q.get(timeout=seconds + 120)
    finally:
        proc.join(30)
    lat, st = res["latencies_ms"], res["statuses"]
    ok = st.get(202, 0)
    per_window: dict[int, int] = {}
    for t, status in res["done"]:
        if status == 202:
            per_window[int(t // window_s)] = per_window.get(int(t // window_s), 0) + batch
    full = [per_window.get(w, 0) / window_s for w in range(int(res["wall_s"] // window_s))]
    return {
        "seconds": round(res["wall_s"], 2), "batch": batch, "concurrency": concurrency,
        "batches": len(lat), "statuses": {str(k): v for k, v in st.items()},
        "events_per_s": round(ok * batch / res["wall_s"], 1),
        "events_per_s_min_window": round(min(full), 1) if full else None, "window_s": window_s,
        "batch_ms_p50": _pct(lat, 0.50), "batch_ms_p99": _pct(lat, 0.99), "batch_ms_max": _pct(lat, 1.0),
        "acknowledged_events": ok * batch,
    }


def run_events_load(store_path: Path, *, seconds: float = 20, batch: int = 50, concurrency: int = 4,
                    synchronous: str = "FULL", items: list[str] | None = None,
                    max_batches: int = 100_000) -> dict[str, Any]:
    """Serve the events API with uvicorn in this process on 127.0.0.1 and load it (`load_events`).

    Args:
        store_path: a fresh SQLite file for this run (the caller's temporary folder).
        synchronous: the events connection's durability (FULL or NORMAL).
        items: catalog item ids (default: 2,000 synthetic ids).
        max_batches: bound on the batches posted, whatever ``seconds`` says.
    """
    from mmrec.feedback.impressions import ImpressionLogger
    from mmrec.feedback.store import FeedbackStore
    from mmrec.rank.interactions import Pseudonymiser
    from mmrec.serving.app import create_app
    from mmrec.serving.feedback_api import Feedback
    from mmrec.serving.local import start_uvicorn
    from mmrec.serving.settings import FeedbackSettings, ServeSettings, new_key

    items = items or [f"item{i}" for i in range(2000)]
    fs = FeedbackSettings(enabled=True, path=str(store_path), events_synchronous=synchronous,
                          max_batch=max(batch, 500))
    # a throwaway pseudonymisation key: the run's rows are deleted with its folder
    pseudo = Pseudonymiser(secrets.token_bytes(32), namespace="api").one
    fb = Feedback(FeedbackStore(store_path, synchronous=fs.events_synchronous),
                  ImpressionLogger(store_path, pseudo), pseudo, fs)
    catalog = SimpleNamespace(items=SimpleNamespace(index=frozenset(items), version="synthetic"),
                              generation=0, versions={})
    key = new_key()
    app = create_app(catalog, ServeSettings(feedback=fs).with_key(key), feedback=fb)
    server = start_uvicorn(app, "127.0.0.1")
    try:
        m = load_events(server.url, key, items, seconds=seconds, batch=batch, concurrency=concurrency,
                        max_batches=max_batches)
    finally:
        server.stop()
        fb.close()
    return {**m, "server": "uvicorn in-process", "synchronous": synchronous,
            "stored_events": FeedbackStore(store_path).count("events")}
