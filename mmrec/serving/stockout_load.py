"""How long an acknowledged stock-out (or deletion) stays visible under load (`mmrec serve
stockout-test`): a measurement, not a test.

Replicas are real `mmrec serve --no-ray` processes sharing one feedback store, as replicas of
one deployment share it. A closed loop of recommend requests (scenes x wearers, so that answers
repeat and the response cache is part of what is measured) runs against all of them in turn.
After a warm-up, every ``every_s`` seconds the item that appeared in the most answers so far (and
was not yet taken) is taken out of stock (or deleted) through ``POST /v1/admin/catalog`` on
replica 0. Every answer is kept with its send and receive times; afterwards, per change:

- ``last_seen_after_ack_s``: receive time of the last answer holding the item, minus the time
  the acknowledgement arrived (0 when none arrived after it): the issue's done-when is that this
  is under 5 s;
- ``sent_after_ack_same_replica``: answers holding it from requests that replica 0 received after
  it acknowledged (the promise: 0);
- ``sent_after_ack_other_replicas`` and their latest send time after the ack (the followers'
  lag: the sync interval plus the time to apply).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

GENDERS = (None, "men", "women")


@dataclass
class Answer:
    replica: int
    sent: float
    received: float
    items: frozenset[str]


@dataclass
class Change:
    item_id: str
    op: str  # stock | delete
    sent: float
    acked: float
    status: int
    appearances_before: int


@dataclass
class Run:
    answers: list[Answer] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)


def request_bodies(scenes: list[str], k: int = 3) -> list[dict[str, Any]]:
    """One body per (scene, wearer): answers repeat, so the response cache is exercised too."""
    out = []
    for s in scenes:
        for g in GENDERS:
            out.append({"scene": s, "k": k, **({"filters": {"genders": [g]}} if g else {})})
    return out


async def _drive(urls: list[str], key: str, bodies: list[dict[str, Any]], *, concurrency: int,
                 seconds: float, warmup_s: float, every_s: float, deletes_every: int,
                 typed_share: float, log: Callable[[str], None]) -> Run:
    import aiohttp

    from mmrec.serving.loadgen import typed_queries

    typed = typed_queries() if typed_share > 0 else []
    next_typed = itertools.count()  # shared by the workers: each typed query is sent once

    run = Run()
    seen: Counter = Counter()  # item -> answers holding it so far
    taken: set[str] = set()
    t_end = time.monotonic() + warmup_s + seconds
    headers = {"X-API-Key": key}
    rng = random.Random(0)

    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=60),
                                     connector=aiohttp.TCPConnector(limit=concurrency + 2)) as http:
        async def worker(w: int) -> None:
            n = w
            while time.monotonic() < t_end:
                replica = n % len(urls)
                body = bodies[rng.randrange(len(bodies))]
                if typed and rng.random() < typed_share:  # a query never asked before: no cache hit
                    body = {**body, "query_text": typed[next(next_typed) % len(typed)]}
                n += 1
                sent = time.monotonic()
                try:
                    async with http.post(f"{urls[replica]}/v1/recommend", json=body) as r:
                        data = await r.json() if r.status == 200 else None
                        if r.status != 200:
                            run.errors[str(r.status)] += 1
                            continue
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    run.errors[type(e).__name__] += 1
                    continue
                items = frozenset(i["item_id"] for o in data["outfits"] for i in o["items"])
                run.answers.append(Answer(replica, sent, time.monotonic(), items))
                seen.update(items)

        async def admin() -> None:
            await asyncio.sleep(warmup_s)
            k = 0
            while time.monotonic() < t_end - every_s:  # leave time to watch the last change
                target = next((i for i, _ in seen.most_common() if i not in taken), None)
                if target is None:
                    await asyncio.sleep(0.5)
                    continue
                taken.add(target)
                k += 1
                op = "delete" if deletes_every and k % deletes_every == 0 else "stock"
                body = {"deletes": [target]} if op == "delete" else {"updates": [{"item_id": target, "in_stock": False}]}
                sent = time.monotonic()
                async with http.post(f"{urls[0]}/v1/admin/catalog", json=body) as r:
                    await r.read()
                    status = r.status
                acked = time.monotonic()
                run.changes.append(Change(target, op, sent, acked, status, seen[target]))
                log(f"{op} {target} (in {seen[target]} answers so far): {status} after {acked - sent:.3f}s")
                await asyncio.sleep(every_s)

        await asyncio.gather(admin(), *(worker(w) for w in range(concurrency)))
    return run


def summarise(run: Run, window_s: float = 5.0) -> dict[str, Any]:
    """Per change and overall: how long after the acknowledgement answers still held the item."""
    per = []
    for c in run.changes:
        holding = [a for a in run.answers if c.item_id in a.items and a.received > c.acked]
        same = [a for a in holding if a.replica == 0 and a.sent > c.acked]
        other = [a for a in holding if a.replica != 0 and a.sent > c.acked]
        after_ack = [a for a in run.answers if a.received > c.acked]
        per.append({
            "item_id": c.item_id, "op": c.op, "status": c.status,
            "ack_s": round(c.acked - c.sent, 4), "answers_holding_it_before": c.appearances_before,
            "answers_after_ack": len(after_ack),
            "answers_holding_it_after_ack": len(holding),
            "last_seen_after_ack_s": round(max((a.received - c.acked for a in holding), default=0.0), 4),
            "answers_after_window": sum(a.received - c.acked > window_s for a in holding),
            "sent_after_ack_same_replica": len(same),
            "sent_after_ack_other_replicas": len(other),
            "other_replicas_last_send_after_ack_s": round(max((a.sent - c.acked for a in other), default=0.0), 4),
        })
    lat = sorted(a.received - a.sent for a in run.answers)
    pct = (lambda q: round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 1)) if lat else (lambda q: None)
    return {
        "changes": per,
        "answers": len(run.answers), "errors": dict(run.errors),
        "recommend_p50_ms": pct(0.50), "recommend_p99_ms": pct(0.99),
        "max_last_seen_after_ack_s": max((p["last_seen_after_ack_s"] for p in per), default=None),
        "answers_after_window_total": sum(p["answers_after_window"] for p in per),
        "sent_after_ack_same_replica_total": sum(p["sent_after_ack_same_replica"] for p in per),
        "max_other_replicas_last_send_after_ack_s": max(
            (p["other_replicas_last_send_after_ack_s"] for p in per), default=None),
        "max_ack_s": max((p["ack_s"] for p in per), default=None),
        "window_s": window_s,
    }


def run_stockout_test(artifacts: Path, profile: str, *, replicas: int = 2, concurrency: int = 4,
                      seconds: float = 60.0, warmup_s: float = 15.0, every_s: float = 6.0,
                      deletes_every: int = 3, typed_share: float = 0.2, db: Path,
                      source: Path | None = None,
                      overrides: list[str] = (), log: Callable[[str], None] = print) -> dict[str, Any]:
    """Start ``replicas`` servers on 127.0.0.1 over one fresh feedback store ``db``, drive them,
    and summarise (see the module doc). ``deletes_every``: every n-th change is a deletion (0: none);
    ``typed_share``: requests with a typed query never asked before (recomputed, not cached)."""
    import secrets

    from mmrec.outfit.scenes import SceneBook
    from mmrec.serving.local import free_port, serve_cmd, start_subprocess
    from mmrec.serving.settings import new_key

    key = new_key()
    os.environ.setdefault("MMREC_PSEUDONYM_KEY", secrets.token_hex(32))  # the servers' pseudonyms
    servers = []
    try:
        for r in range(replicas):
            port = free_port()
            cmd = serve_cmd(port, artifacts=artifacts, profile=profile,
                            sets=["feedback.enabled=true", f"feedback.path={db}", *overrides],
                            options=["--source", str(source)] if source is not None else [])
            t0 = time.perf_counter()
            servers.append(start_subprocess(cmd, f"http://127.0.0.1:{port}", key, "uvicorn"))
            log(f"replica {r} ready in {time.perf_counter() - t0:.1f}s on port {port}")
        bodies = request_bodies(SceneBook.load().names())
        run = asyncio.run(_drive([s.url for s in servers], key, bodies, concurrency=concurrency,
                                 seconds=seconds, warmup_s=warmup_s, every_s=every_s,
                                 deletes_every=deletes_every, typed_share=typed_share, log=log))
    finally:
        for s in servers:
            s.stop()
    out = summarise(run)
    out.update({"replicas": replicas, "concurrency": concurrency, "seconds": seconds,
                "warmup_s": warmup_s, "every_s": every_s, "deletes_every": deletes_every, "typed_share": typed_share,
                "request_bodies": len(bodies), "cpu_count": os.cpu_count(),
                "loadavg_1m_end": round(os.getloadavg()[0], 2)})
    return out
