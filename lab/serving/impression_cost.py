"""What the impression log costs recommend latency: `mmrec serve loadtest` (JSON recommends at
concurrency 8) with ``feedback.log_impressions`` on and off, alternated, each run on a fresh
`mmrec serve` (local Ray, one Ingress replica: lab/serving/serve_config.one_replica.yaml).

Alternating (on, off, on, off, ...) spreads the drift of a shared machine over both arms; the
outcome is the difference of the per-arm medians of p99 (and p50, req/s). Each run's store is a
temporary file, so the demo's own feedback store is never written.

    .venv/bin/python -m lab.serving.impression_cost --pairs 2 --seconds 30 \
        --out docs/results/serving-http-20261207/impression-log.json

Outcome (2026-12-07, 2 shared cores): docs/serving.md "Impression log cost".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "lab" / "serving" / "serve_config.one_replica.yaml"


def one_run(artifacts: Path, log_on: bool, seconds: float, warmup: float, concurrency: int,
            tmp: Path, n: int) -> dict:
    store = artifacts.resolve()
    before = {p.name for p in (store / "serve_loadtest").glob("*")} if (store / "serve_loadtest").is_dir() else set()
    cmd = [sys.executable, "-m", "mmrec.cli", "--artifacts", str(store), "--quiet", "serve", "loadtest",
           "--serve-config", str(CONFIG), "--concurrency", str(concurrency), "--seconds", str(seconds),
           "--rps-seconds", "0", "--photos", "0", "--warmup", str(warmup),
           "--set", f"feedback.path={tmp / f'run{n}.sqlite'}",
           "--set", f"feedback.log_impressions={'true' if log_on else 'false'}"]
    load = os.getloadavg()[0]
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    new = sorted({p.name for p in (store / "serve_loadtest").glob("*")} - before - {"CURRENT"})
    m = json.loads((store / "serve_loadtest" / new[-1] / "metrics.json").read_text())
    j = m["json"]
    return {"log_impressions": log_on, "started": time.strftime("%H:%M:%S", time.gmtime(t0)),
            "loadavg_1m_before": round(load, 2), "requests": j["requests"], "errors": j["errors"],
            "throughput_rps": j["throughput_rps"], "p50_ms": j["p50_ms"], "p99_ms": j["p99_ms"],
            "max_ms": j["max_ms"], "cache_hit_ratio": m["response_cache"].get("hit_ratio"),
            "artifact": f"serve_loadtest/{new[-1]}"}


def cpu_per_impression(artifacts: Path, tmp: Path, n: int = 5000) -> dict:
    """CPU the log costs per answered request, measured directly (no HTTP, no load): building the
    log's parts from a real demo answer, `ImpressionLogger.log` (the request's own work), and the
    writer thread's pseudonymise + insert (which shares the replica's GIL with the requests)."""
    from mmrec.api_models import RecommendRequest
    from mmrec.artifacts import ArtifactStore
    from mmrec.config import load_config
    from mmrec.feedback.impressions import ImpressionLogger, impression_parts
    from mmrec.rank.interactions import Pseudonymiser
    from mmrec.recommend import Recommender

    rec = Recommender.from_store(ArtifactStore(artifacts), config=load_config("recommend", profile="mini"))
    resp = rec.recommend(RecommendRequest(scene="office", k=3, user_id="u1"))
    pseudo = Pseudonymiser(os.urandom(32), namespace="api").one
    t0 = time.process_time()
    for _ in range(n):
        parts = impression_parts(resp)
    t_parts = time.process_time() - t0
    logger = ImpressionLogger(tmp / "micro.sqlite", pseudo, queue_size=n + 1)
    t0 = time.perf_counter()
    for i in range(n):
        logger.log(f"r{i}", "u1", "app", parts)
    t_log = time.perf_counter() - t0
    c0 = time.process_time()  # the writer thread's CPU: all of this process's while it drains
    assert logger.flush(timeout=120)
    t_write = time.process_time() - c0
    logger.close()
    return {"impressions": n, "outfits_per_answer": len(resp.outfits),
            "impression_parts_us": round(t_parts / n * 1e6, 1), "log_call_us": round(t_log / n * 1e6, 1),
            "writer_cpu_us": round(t_write / n * 1e6, 1),
            "note": "parts: CPU per distinct answer (kept beside a cached answer); log_call: wall time of "
                    "the log() loop per call, the writer thread running beside it (so part of its work "
                    "falls here); writer_cpu: this process's CPU per impression while the rest of the "
                    "queue drained. log_call + writer_cpu bounds what every answer costs the replica"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    ap.add_argument("--pairs", type=int, default=2, help="on/off pairs (runs alternate)")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--start-with", choices=("on", "off"), default="on",
                    help="the arm that opens each pair (run a block of each to cancel an order effect)")
    ap.add_argument("--append", action="store_true", help="add these runs to those already in --out")
    ap.add_argument("--micro-only", action="store_true",
                    help="only the direct CPU measurement, added to an existing --out file")
    a = ap.parse_args(argv)
    if a.micro_only:
        with tempfile.TemporaryDirectory(prefix="mmrec-impression-cost-") as tmp:
            micro = cpu_per_impression(a.artifacts, Path(tmp))
        out = json.loads(a.out.read_text()) if a.out.is_file() else {}
        out["cpu_per_impression"] = {**micro, "command": "python -m lab.serving.impression_cost "
                                     + " ".join(argv or sys.argv[1:])}
        a.out.write_text(json.dumps(out, indent=1), encoding="utf-8")
        print(json.dumps(micro, indent=1))
        return 0
    old = json.loads(a.out.read_text()) if a.out.is_file() else {}
    runs = list(old.get("runs", [])) if a.append else []
    commands = list(old.get("commands", [old["command"]] if "command" in old else [])) if a.append else []
    with tempfile.TemporaryDirectory(prefix="mmrec-impression-cost-") as tmp:
        for i in range(2 * a.pairs):
            on = (i % 2 == 0) == (a.start_with == "on")
            r = one_run(a.artifacts, on, a.seconds, a.warmup, a.concurrency, Path(tmp), i)
            print(json.dumps(r), file=sys.stderr)
            runs.append(r)

    def arm(on: bool, k: str) -> float:
        return round(statistics.median(r[k] for r in runs if r["log_impressions"] is on), 2)

    summary = {k: {"on": arm(True, k), "off": arm(False, k), "on_minus_off": round(arm(True, k) - arm(False, k), 2)}
               for k in ("p50_ms", "p99_ms", "throughput_rps")}
    out = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": f"{os.cpu_count()} shared CPU cores, no GPU",
           "server": "mmrec serve, local Ray Serve, one Ingress replica (lab/serving/serve_config.one_replica.yaml)",
           "load": f"JSON recommend, closed loop, concurrency {a.concurrency}, {a.seconds:g} s after {a.warmup:g} s warm-up, "
                   "response cache on (as served)",
           "commands": commands + ["python -m lab.serving.impression_cost " + " ".join(argv or sys.argv[1:])],
           "median_of_runs": summary,
           # back-to-back pairs (runs 0-1, 2-3, ...): the drift of a shared machine cancels best here
           "pairs_p99_on_minus_off_ms": [round((x if x["log_impressions"] else y)["p99_ms"]
                                               - (y if x["log_impressions"] else x)["p99_ms"], 2)
                                         for x, y in zip(runs[::2], runs[1::2])],
           "runs": runs}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    if "cpu_per_impression" in old:  # keep a --micro-only measurement written there before
        out["cpu_per_impression"] = old["cpu_per_impression"]
    a.out.write_text(json.dumps(out, indent=1), encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
