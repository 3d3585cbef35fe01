"""SIMULATED shoppers as clients of the real HTTP API (`mmrec rank simulate --via-api URL`).

The shoppers of `mmrec.rank.simulator` (same seed, same catalog: the same people, ids
``sim_u00000``...) ask `POST /v1/recommend` for outfits, look at what came back and report what
they did with `POST /v1/events`, so the served ranker, the impression log, the events API and
the training join are all exercised. Their choice model is the simulator's: an outfit at 0-based
rank o is looked at with probability (1 + o) ** -eta, every item of a looked-at outfit is
reported ``impression_seen`` and clicked with probability sigmoid(u - click_bias), a click is
added to the cart with probability sigmoid(u - purchase_bias), and half of those are bought;
u is the hidden utility of the item for this shopper, the scene's first occasion and the day's
season (`simulator.utility`).

Time: the server stamps its answers with its own clock, but the shoppers' events carry times
on the simulated day (day 1 = two days ago by default, inside the events API's 30-day and
5-minute bounds); the attribution join takes an answer's time from its client-side
``impression_seen`` (`mmrec.feedback.attribution`). Bounded: ``max_seconds`` of wall time,
at most 10,000 users and 100,000 requests per call; the CLI targets loopback addresses only.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import numpy as np

from mmrec.errors import InputError
from mmrec.feedback.store import to_us
from mmrec.rank.simulator import Population, _season_of, utility

MAX_USERS = 10_000
MAX_REQUESTS = 100_000
LOOPBACK = ("127.0.0.1", "localhost", "::1")
BUY_AFTER_CART = 0.5


def day_window(day: int, *, first_day: dt.date | None = None,
               now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of simulated day ``day`` (1-based) in UTC; day 1 is ``first_day`` (default:
    two days ago). A day cannot reach into the future: today's ends a minute before now."""
    now = now or dt.datetime.now(dt.timezone.utc)
    first = first_day or (now.date() - dt.timedelta(days=2))
    start = dt.datetime.combine(first + dt.timedelta(days=day - 1), dt.time(), dt.timezone.utc)
    end = min(start + dt.timedelta(days=1), now - dt.timedelta(minutes=1))
    if day < 1 or end <= start:
        raise InputError(f"simulated day {day} starting {start.date()} is not in the past "
                         f"(the events API refuses times more than 5 minutes ahead); day 1 is "
                         f"{first}, so use --day 1..{(now.date() - first).days + 1}")
    if start < now - dt.timedelta(days=29):
        raise InputError(f"simulated day {day} ({start.date()}) is older than the events API "
                         "accepts (30 days); move the first day closer")
    return start, end


def _iso(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.timezone.utc).isoformat()


def run_day(client: Any, pop: Population, sim_cfg, scenes: dict[str, list[str]], *, day: int,
            users: int, requests: int, k: int = 3, seed: int = 0, max_seconds: float = 600.0,
            first_day: dt.date | None = None, batch: int = 200) -> dict:
    """One simulated day of traffic through ``client`` (a `MmrecClient`); returns the counts.

    Args:
        scenes: scene name -> its occasions (usages), best first, as the server's scene book.
        users: the first ``users`` simulated shoppers take part (each sends its profile once).
    """
    if not 1 <= users <= min(MAX_USERS, pop.U):
        raise InputError(f"--users must be 1..{min(MAX_USERS, pop.U)} (the simulated population), got {users}")
    if not 1 <= requests <= MAX_REQUESTS:
        raise InputError(f"--requests must be 1..{MAX_REQUESTS}, got {requests}")
    start, end = day_window(day, first_day=first_day)
    rng = np.random.default_rng([seed, day])
    w = sim_cfg.utility
    index = {v: i for i, v in enumerate(pop.item_ids)}
    season = _season_of(start.date())
    names = sorted(scenes)
    by_occasion: dict[str, list[str]] = {}
    for n in names:
        by_occasion.setdefault(scenes[n][0], []).append(n)
    t0 = time.monotonic()
    for u in range(users):
        client.put_user(f"sim_u{u:05d}", {
            "age": int(np.clip(round(float(pop.age[u])), 13, 120)), "gender": str(pop.ugender[u]),
            "preferred_occasions": list(pop.preferred[u])})
    times = np.sort(rng.integers(to_us(start), to_us(end), requests))
    counts: dict[str, dict[str, int]] = {}
    pending: list[dict] = []

    def flush() -> None:
        if pending:
            out = client.events(list(pending))
            if out.get("error"):
                bad = next(r for r in out["results"] if r["status"] == "error")
                raise InputError(f"the events API refused {out['error']} simulated events, e.g. {bad}")
            pending.clear()

    done = 0
    for t in times:
        if time.monotonic() - t0 > max_seconds:
            break
        u = int(rng.integers(users))
        own = [n for o in pop.preferred[u] for n in by_occasion.get(o, [])]
        scene = str(rng.choice(own)) if own and rng.random() < 0.7 else names[int(rng.integers(len(names)))]
        occ = scenes[scene][0]
        occ_code = pop.usages.index(occ) if occ in pop.usages else -1
        resp = client.recommend({"user_id": f"sim_u{u:05d}", "scene": scene, "k": k, "explain": False})
        rid = resp["request_id"]
        c = counts.setdefault(str((resp.get("versions") or {}).get("variant")), dict.fromkeys(
            ("answers", "shown", "seen", "click", "add_to_cart", "purchase"), 0))
        c["answers"] += 1
        for o, outfit in enumerate(resp["outfits"]):
            ids = [it["item_id"] for it in outfit["items"]]
            c["shown"] += len(ids)
            if rng.random() >= (1.0 + o) ** -sim_cfg.position_eta:
                continue
            rows = np.array([index.get(i, -1) for i in ids])
            util = np.full(len(ids), -10.0)
            ok = rows >= 0
            util[ok] = utility(pop, w, np.full(ok.sum(), u), rows[ok], np.full(ok.sum(), occ_code),
                               np.full(ok.sum(), season, dtype=object))
            t_seen = int(t) + o * 2_000_000
            for item, ut in zip(ids, util):
                acts = ["impression_seen"]
                if rng.random() < 1 / (1 + np.exp(-(ut - w.click_bias))):
                    acts.append("click")
                    if rng.random() < 1 / (1 + np.exp(-(ut - w.purchase_bias))):
                        acts.append("add_to_cart")
                        if rng.random() < BUY_AFTER_CART:
                            acts.append("purchase")
                for n, typ in enumerate(acts):
                    c["seen" if typ == "impression_seen" else typ] += 1
                    pending.append({"event_id": f"{rid[:32]}-{item}-{n}", "request_id": rid,
                                    "user_id": f"sim_u{u:05d}", "item_id": item, "type": typ,
                                    "ts": _iso(t_seen + n * 5_000_000)})
        if len(pending) >= batch:
            flush()
        done += 1
    flush()
    total = {key: sum(c[key] for c in counts.values()) for key in
             ("answers", "shown", "seen", "click", "add_to_cart", "purchase")}
    return {"simulated": True, "day": day, "date": start.date().isoformat(), "users": users,
            "requests_planned": requests, "requests_sent": done, "stopped_early": done < requests,
            "seconds": round(time.monotonic() - t0, 1), "retries": getattr(client, "retries", 0),
            "total": total, "by_variant": counts,
            "clicks_per_answer": round(total["click"] / max(total["answers"], 1), 4),
            "clicks_per_shown_item": round(total["click"] / max(total["shown"], 1), 4)}


def check_loopback(url: str) -> None:
    """Simulated traffic goes to this machine only."""
    import urllib.parse

    host = urllib.parse.urlsplit(url).hostname
    if host not in LOOPBACK:
        raise InputError(f"--via-api {url!r}: simulated traffic targets loopback only "
                         f"({', '.join(LOOPBACK)}), got host {host!r}")


def population_for_server(store, rank_cfg, pool=None):
    """The population of the CURRENT ``interactions_sim`` (the users the server knows), drawn
    again from that artifact's own config and catalog."""
    from pathlib import Path

    from mmrec import kinds
    from mmrec.catalog.ingest import load_items
    from mmrec.rank.config import SimConfig
    from mmrec.rank.simulator import ProfilePool, draw_population
    from mmrec.taxonomy import default_taxonomy

    art = store.load(kinds.INTERACTIONS_SIM)
    cfg = rank_cfg
    if art.config.get("sim"):  # only the simulation's own section: other sections may be older
        cfg = rank_cfg.model_copy(update={"sim": SimConfig.model_validate(art.config["sim"])})
    ref = next((i for i in art.manifest["inputs"] if i.get("kind") == kinds.ITEMS), None)
    items = load_items(store, ref["version"] if ref else None)
    if pool is None:
        base, sc = cfg.shared_path(), cfg.sim
        pool = ProfilePool.from_files(
            Path(sc.rtr_path) if sc.rtr_path else base / "rtr" / "interactions.parquet",
            Path(sc.hm_path) if sc.hm_path else base / "hm_sample" / "data" / "sample" / "customers_sample.parquet")
    return draw_population(items, pool, cfg.sim, default_taxonomy().colour_family), cfg.sim
