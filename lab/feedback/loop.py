"""The whole feedback loop on local processes, with SIMULATED shoppers (#24 item 3).

    .venv/bin/python lab/feedback/loop.py --artifacts artifacts --users 1000 --requests 3000 \
        --ab-requests 5000 [--seed 0] [--train-set logs.warm_start=false] [--control-compose w_propensity=1.3]

1. a scratch artifact root: every kind of ``--artifacts`` linked read-only, except ``ranker``
   (copied: training adds a version) and ``feedback`` (a fresh store);
2. days 1 and 2 (two days ago, yesterday) of traffic with the current ranker:
   `mmrec serve --no-ray` + `mmrec rank simulate --via-api` (the simulated shoppers);
3. `mmrec rank train --dataset logs --eval-days 1 [--set logs.KEY=VALUE ...]` (``--train-set``):
   evaluated on day 2 by a fit on day 1, then (``logs.refit_all_days``) refitted on both;
4. day 3 (today, up to now): the server restarted with an A/B experiment, control = the old
   ranker version, ``logs`` = the new one (``--control-compose``: a third arm, the old ranker
   with compose overrides), users split by `mmrec.ab`;
5. `mmrec ab report --since <day 3>`: per-answer and per-shown-item rates with 95% intervals and
   the difference.

Expected outcome (the done-when of #24 item 3): the ``logs`` variant's click rate above
control's with a 95% interval of the difference excluding 0. Measured (docs/ranker.md,
"Training from your logs"; lab/README.md): with the product's defaults at ``--users 1000
--requests 3000 --ab-requests 5000`` the per-shown-item click rate is above control's on three
seeds (interval excluding 0); the per-answer rate is ~99.6% for both arms. Nothing here writes
to ``--artifacts``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

MMREC = [sys.executable, "-m", "mmrec.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scratch_root(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for kind in sorted(p for p in src.iterdir() if p.is_dir()):
        if kind.name == "feedback":
            continue
        if kind.name == "ranker":
            shutil.copytree(kind, dst / kind.name)
        else:
            (dst / kind.name).symlink_to(kind.resolve())


class Server:
    """`mmrec serve --no-ray` on a free loopback port, stopped with SIGTERM."""

    def __init__(self, root: Path, env: dict, config: Path | None, log: Path):
        self.port = free_port()
        cmd = [*MMREC, "--artifacts", str(root), "serve", "--no-ray", "--port", str(self.port),
               "--set", "response_cache_size=0"]
        if config is not None:
            cmd += ["--config", str(config)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(1)
        raise RuntimeError(f"server not ready in 300 s; see {log}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)  # flushes the impression log on shutdown
        self.proc.wait(timeout=60)


def run(cmd: list[str], env: dict) -> str:
    print("$ mmrec " + " ".join(cmd[len(MMREC):]), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new one in /tmp)")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=3000, help="recommend calls on each of days 1-2")
    ap.add_argument("--ab-requests", type=int, default=5000, help="recommend calls on the A/B day")
    ap.add_argument("--seed", type=int, default=0, help="the simulated shoppers' seed")
    ap.add_argument("--max-seconds", type=float, default=480)
    ap.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                    help="rank config override for the retrain (e.g. logs.warm_start=false)")
    ap.add_argument("--control-compose", action="append", default=[], metavar="KEY=VALUE",
                    help="add a third arm, control_reweighted: the old ranker with these compose "
                         "overrides (e.g. w_propensity=1.5), to tell a better order from a "
                         "ranker that only weighs more against scene fit")
    ap.add_argument("--logs-compose", action="append", default=[], metavar="KEY=VALUE",
                    help="add an arm, logs_reweighted: the new ranker with these compose overrides "
                         "(e.g. w_propensity=0.72: its propensity spread brought to the old one's)")
    args = ap.parse_args(argv)
    work = args.work or Path(f"/tmp/mmrec-loop-{dt.datetime.now():%Y%m%d-%H%M%S}")
    root = work / "artifacts"
    scratch_root(args.artifacts, root)
    key = secrets.token_hex(16)
    env = {**os.environ, "MMREC_API_KEY": key, "MMREC_PSEUDONYM_KEY": os.environ.get(
        "MMREC_PSEUDONYM_KEY", secrets.token_hex(32))}
    base = [*MMREC, "--artifacts", str(root)]
    sim = ["rank", "simulate", "--users", str(args.users), "--max-seconds", str(args.max_seconds),
           "--seed", str(args.seed)]
    ab_requests = args.ab_requests
    result: dict = {"work": str(work), "users": args.users, "requests_per_day": args.requests,
                    "ab_requests": ab_requests, "seed": args.seed, "train_set": args.train_set,
                    "control_compose": args.control_compose, "logs_compose": args.logs_compose,
                    "command": "lab/feedback/loop.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    t0 = time.monotonic()

    old = (root / "ranker" / "CURRENT").read_text().strip()
    srv = Server(root, env, None, work / "serve-days-1-2.log")
    try:
        for day in (1, 2):
            out = run(base + sim + ["--requests", str(args.requests), "--via-api", srv.url,
                                    "--day", str(day)], env)
            result[f"day{day}"] = json.loads(out)
    finally:
        srv.stop()
    sets = [x for kv in args.train_set for x in ("--set", kv)]
    new = run(base + ["rank", "train", "--dataset", "logs", "--eval-days", "1", *sets], env).strip()
    manifest = json.loads((root / "ranker" / new / "manifest.json").read_text())
    result["retrain"] = {"old": old, "new": new, **manifest["metrics"]["eval_later_days"],
                         "served_as": manifest["metrics"].get("served_as"),
                         "models": manifest["metrics"]["models"]}

    ab = work / "ab.yaml"
    variants = [{"name": "control", "ranker": old}, {"name": "logs", "ranker": new}]
    if args.control_compose:
        variants.append({"name": "control_reweighted", "ranker": old, "compose": {
            k: float(v) for k, v in (kv.split("=", 1) for kv in args.control_compose)}})
    if args.logs_compose:
        variants.append({"name": "logs_reweighted", "ranker": new, "compose": {
            k: float(v) for k, v in (kv.split("=", 1) for kv in args.logs_compose)}})
    ab.write_text(json.dumps({"ab": {"experiment": "ranker-logs", "variants": variants}}))
    srv = Server(root, env, ab, work / "serve-day-3.log")
    try:
        result["day3"] = json.loads(run(base + sim + ["--requests", str(ab_requests), "--via-api", srv.url,
                                                      "--day", "3"], env))
    finally:
        srv.stop()
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    report = run(base + ["ab", "report", "--since", today, "--out", str(work / "ab_report.json")], env)
    print(report)
    result["ab_report"] = json.loads((work / "ab_report.json").read_text())
    result["seconds"] = round(time.monotonic() - t0, 1)
    (work / "loop.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {work / 'loop.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
