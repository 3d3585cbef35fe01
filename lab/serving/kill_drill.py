"""kill -9 under events + recommend load, on local Ray Serve (issue #24): the Ingress replica (Ray's
controller restarts it) or the whole serving process tree (restarted here, as a supervisor
would). Afterwards every acknowledged event must be in the store exactly once, and the shoppers
(`MmrecClient`, retrying) must see no failed request. The drill is `mmrec.serving.crash_drill`.

    .venv/bin/python -m lab.serving.kill_drill --target replica \
        --out docs/results/serving-http-20261207/kill-ingress-replica.json

Each run serves the demo artifacts with one Ingress replica (lab/serving/serve_config.one_replica.yaml)
and a temporary feedback store. Outcome (2026-12-07): docs/serving.md "kill -9 under load".
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "lab" / "serving" / "serve_config.one_replica.yaml"


def main(argv: list[str] | None = None) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.catalog.ingest import load_items
    from mmrec.serving.crash_drill import descendants, check_store, replica_pids, run_drill, wait_for
    from mmrec.serving.local import free_port, start_subprocess
    from mmrec.serving.settings import new_key

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    ap.add_argument("--target", choices=("replica", "process", "driver"), default="replica",
                    help="replica: the Ingress replica's process; process: `mmrec serve` and every "
                         "process under it (Ray's daemons, replicas, HAProxy), as a container's death would; "
                         "driver: `mmrec serve` alone (Ray's daemons should follow it: the drill waits 30 s, "
                         "counts and kills any that did not, then restarts)")
    ap.add_argument("--shoppers", type=int, default=3)
    ap.add_argument("--before", type=float, default=10, help="seconds of load before the kill")
    ap.add_argument("--after", type=float, default=10, help="seconds of load after the first answer that follows it")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)

    load_before = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    items = load_items(ArtifactStore(a.artifacts), columns=["item_id"]).column("item_id").to_pylist()
    key, port = new_key(), free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="mmrec-kill-drill-") as tmp:
        db = Path(tmp) / "feedback.sqlite"
        cmd = [sys.executable, "-m", "mmrec.cli", "--artifacts", str(a.artifacts.resolve()), "--quiet", "serve",
               "--port", str(port), "--serve-config", str(CONFIG),
               "--set", "feedback.enabled=true", "--set", f"feedback.path={db}"]
        t0 = time.perf_counter()
        server = start_subprocess(cmd, url, key, "ray")
        print(f"served on local Ray in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        state: dict = {"server": server}
        replicas_before = replica_pids(server.pid)

        def kill_replica() -> None:
            os.kill(replicas_before[0], signal.SIGKILL)

        def kill_tree() -> None:
            tree = [server.pid, *descendants(server.pid)]
            for pid in tree:  # the driver first: nothing gets to shut down in order
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            state["killed"] = len(tree)

        def alive(pid: int) -> bool:  # a zombie (ended, not yet reaped) counts as gone
            try:
                return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            except (OSError, IndexError):
                return False

        def kill_driver() -> None:
            tree = descendants(server.pid)
            os.kill(server.pid, signal.SIGKILL)
            t = time.monotonic()
            while time.monotonic() - t < 30 and any(alive(p) for p in tree):
                time.sleep(0.5)
            left = [p for p in tree if alive(p)]
            state["survivors"] = [Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")[-60:]
                                  for p in left if Path(f"/proc/{p}/cmdline").exists()]
            state["daemons_gone_s"] = round(time.monotonic() - t, 1)
            for p in left:  # our own orphans, by PID: the restart must not meet them
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        def restart() -> None:
            state["server"] = start_subprocess(cmd, url, key, "ray")

        try:
            kill = {"replica": kill_replica, "process": kill_tree, "driver": kill_driver}[a.target]
            m = run_drill(url, key, items, kill, restart=restart if a.target != "replica" else None,
                          shoppers=a.shoppers,
                          before_s=a.before, after_s=a.after, log=lambda s: print(s, file=sys.stderr))
            replicas_after = wait_for(lambda: replica_pids(state["server"].pid), 30, "an Ingress replica")
        finally:
            state["server"].stop()
        acked = m.pop("_acked")
        m.update(check_store(db, acked))
    m.update({
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "target": a.target,
        "machine": f"{os.cpu_count()} shared CPU cores, no GPU", "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "server": "mmrec serve, local Ray Serve, one Ingress replica (lab/serving/serve_config.one_replica.yaml)",
        "ingress_replica_pids": {"before": replicas_before, "after": replicas_after},
        "processes_killed": state.get("killed", 1),
        **({"descendants_alive_after_30s": state.get("survivors"), "descendants_gone_after_s": state.get("daemons_gone_s")}
           if a.target == "driver" else {}),
        "command": "python -m lab.serving.kill_drill " + " ".join(argv or sys.argv[1:]),
    })
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(m, indent=1), encoding="utf-8")
    print(json.dumps(m, indent=1))
    ok = m["client_failures"] == 0 and m["acknowledged_missing"] == 0 and m["acknowledged_duplicated"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
