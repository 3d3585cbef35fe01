"""kill -9 drills under events + recommend load: after the crash every acknowledged event must be
in the store exactly once, and clients that retry must see no failed request.

`run_drill` drives shoppers (`MmrecClient`, each looping one recommend call and one batch of new
events) against a running service on loopback, calls ``kill`` mid-load (and ``restart`` when the
killed thing does not come back by itself), keeps the load going until the service has answered
again for ``after_s`` seconds, then counts the store. `replica_pids` finds the Ray Serve replica
processes of one `mmrec serve` process, so a drill can kill the Ingress replica and let Ray's
controller restart it. Used by `lab/serving/kill_drill.py` (the measurement) and
`tests/test_crash_recovery.py` (the test).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux /proc)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                # the command name may hold spaces and parentheses: fields start after the last ')'
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process ended meanwhile
            parent[int(d.name)] = int(fields[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def replica_pids(serve_pid: int, deployment: str = "Ingress", app: str = "mmrec") -> list[int]:
    """PIDs of the Ray Serve replicas of ``app``/``deployment`` under the `mmrec serve` process
    ``serve_pid`` (Ray names a replica's process ``ray::ServeReplica:<app>:<deployment>``).

    Only that process's own descendants are searched: another Ray on the machine is never touched.
    """
    title = f"ServeReplica:{app}:{deployment}"
    found = []
    for pid in descendants(serve_pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title in cmd:
            found.append(pid)
    return found


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.2) -> Any:
    """Poll ``cond`` until it returns something truthy (returned); TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not within {timeout_s:g}s")


def run_drill(url: str, key: str, items: list[str], kill: Callable[[], None], *,
              restart: Callable[[], None] | None = None, shoppers: int = 3, before_s: float = 3.0,
              after_s: float = 3.0, batch: int = 5, max_retries: int = 12, timeout_s: float = 30.0,
              scene: str = "office", log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Load, kill, (restart,) load on; the clients' counts as a dict (see `check_store`).

    Args:
        kill: sends the SIGKILL (a replica, the serving process).
        restart: brings the service back when nothing else will (the killed serving process).
        before_s: load before the kill; after_s: load after the first answer that followed it.
        max_retries / timeout_s: each shopper's `MmrecClient` (a retry budget that outlasts a
            restart: 12 retries with backoff wait ~100 s at most, each try up to ``timeout_s``).
    """
    from mmrec.serving.client import MmrecClient

    acked: list[str] = []
    failures: list[str] = []
    failed_at: list[float] = []  # when each failure was raised (monotonic)
    answered: list[float] = []  # when each recommend answered (monotonic)
    sent = {"recommend": 0, "events": 0, "retries": 0}
    stop = threading.Event()
    lock = threading.Lock()

    def shopper(n: int) -> None:
        with MmrecClient(url, key, max_retries=max_retries, timeout_s=timeout_s, seed=n) as c:
            k = 0
            while not stop.is_set():
                try:
                    c.recommend({"scene": scene, "k": 1})
                    with lock:
                        sent["recommend"] += 1
                        answered.append(time.monotonic())
                    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    events = [{"event_id": f"s{n}-e{k + j}", "item_id": items[(k + j) % len(items)],
                               "type": "click", "ts": ts} for j in range(batch)]
                    k += batch
                    out = c.events(events)
                    with lock:
                        sent["events"] += len(events)
                        acked.extend(r["event_id"] for r in out["results"]
                                     if r["status"] in ("accepted", "duplicate"))
                except Exception as e:  # noqa: BLE001 - counted: a drill passes with none
                    with lock:
                        failures.append(f"{type(e).__name__}: {str(e)[:200]}")
                        failed_at.append(time.monotonic())
            with lock:
                sent["retries"] += c.retries

    threads = [threading.Thread(target=shopper, args=(n,), daemon=True) for n in range(shoppers)]
    for t in threads:
        t.start()
    try:
        time.sleep(before_s)
        acked_before = len(acked)
        kill()
        t_kill = time.monotonic()  # after kill() returns: answers during a slow kill do not count
        log(f"killed after {before_s:g}s of load ({acked_before} events acknowledged)")
        if restart is not None:
            restart()
            log(f"restarted in {time.monotonic() - t_kill:.1f}s")
        t_back = wait_for(lambda: next((t for t in list(answered) if t > t_kill), None),
                          timeout_s=max_retries * 10, what="a recommend answered after the kill")
        log(f"first recommend answered {t_back - t_kill:.1f}s after the kill")
        time.sleep(after_s)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=max_retries * timeout_s)
    gaps = [b - a for a, b in zip(answered, answered[1:])]
    return {"shoppers": shoppers, "events_per_call": batch, "max_retries": max_retries,
            "recommend_answered": sent["recommend"], "events_sent": sent["events"],
            "events_acknowledged": len(acked), "acknowledged_before_kill": acked_before,
            "client_retries": sent["retries"], "client_failures": len(failures),
            "failure_samples": failures[:5],
            # when failures happened, in seconds after the kill (None: there were none)
            "failures_from_s": round(min(failed_at) - t_kill, 2) if failed_at else None,
            "failures_until_s": round(max(failed_at) - t_kill, 2) if failed_at else None,
            "first_answer_after_kill_s": round(t_back - t_kill, 2),
            "longest_gap_between_answers_s": round(max(gaps), 2) if gaps else None,
            "_acked": acked}


def check_store(db: str | Path, acked: list[str]) -> dict[str, int]:
    """How the acknowledged events stand in the SQLite store: missing, duplicated, stored rows."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        counts = dict(con.execute("SELECT event_id, COUNT(*) FROM events GROUP BY event_id").fetchall())
    return {"store_rows": sum(counts.values()),
            "acknowledged_missing": sum(1 for e in set(acked) if e not in counts),
            "acknowledged_duplicated": sum(1 for e in set(acked) if counts.get(e, 0) > 1),
            "acknowledged_distinct": len(set(acked))}
