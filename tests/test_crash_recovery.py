"""kill -9 of the serving process under events + recommend load (issue #24): after a restart
every acknowledged event is in the store exactly once, and clients that retry see no failure.

A real `mmrec serve --no-ray` process on loopback, killed with SIGKILL mid-load and started again
on the same artifacts and feedback store; the clients are `mmrec.serving.client.MmrecClient`.
The slow test does the same to the Ingress replica of `mmrec serve` on local Ray Serve (Ray's
controller restarts it), through `mmrec.serving.crash_drill`."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from outfit_fixtures import ALL, write_items

KEY = "crash-test-key"


def _start(cmd: list[str], url: str) -> subprocess.Popen:
    from mmrec.serving.local import wait_ready

    env = {**os.environ, "MMREC_API_KEY": KEY}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(url, timeout_s=180)
    return proc


def test_kill_9_loses_no_acknowledged_event_and_fails_no_retried_request(tmp_path):
    from mmrec.artifacts import ArtifactStore
    from mmrec.serving.client import MmrecClient
    from mmrec.serving.local import free_port

    store = ArtifactStore(tmp_path / "artifacts")
    write_items(store)
    db = tmp_path / "feedback.sqlite"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mmrec.cli", "--artifacts", str(store.root), "--quiet", "serve", "--no-ray",
           "--port", str(port), "--source", str(tmp_path / "no-data"),
           "--set", "feedback.enabled=true", "--set", f"feedback.path={db}"]
    proc = _start(cmd, url)
    items = [row[0] for row in ALL]
    acked: list[str] = []
    failures: list[str] = []
    sent = {"recommend": 0, "events": 0}
    stop = threading.Event()

    def shopper(n: int) -> None:
        # a retry budget that outlasts a restart: 12 retries with backoff wait ~100 s at most
        with MmrecClient(url, KEY, max_retries=12, timeout_s=5, seed=n) as c:
            k = 0
            while not stop.is_set():
                try:
                    c.recommend({"scene": "office", "k": 1})
                    sent["recommend"] += 1
                    batch = [{"event_id": f"c{n}-e{k + j}", "item_id": items[(k + j) % len(items)],
                              "type": "click", "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                             for j in range(5)]
                    k += 5
                    out = c.events(batch)
                    sent["events"] += len(batch)
                    acked.extend(r["event_id"] for r in out["results"] if r["status"] in ("accepted", "duplicate"))
                except Exception as e:  # noqa: BLE001 - counted: the test asserts there are none
                    failures.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=shopper, args=(n,)) for n in range(3)]
    try:
        for t in threads:
            t.start()
        time.sleep(3)
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown hook runs: the store is left as it was
        proc.wait()
        killed_at = len(acked)
        proc = _start(cmd, url)
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
        proc.terminate()
        proc.wait(timeout=60)
    assert failures == [] and killed_at > 0 and len(acked) > killed_at, (failures[:3], killed_at, len(acked))
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT event_id, COUNT(*) FROM events GROUP BY event_id").fetchall()
    counts = dict(rows)
    missing = [e for e in acked if e not in counts]
    assert missing == [] and all(n == 1 for n in counts.values())
    assert sent["recommend"] > 0
    print(f"acked {len(acked)} events ({killed_at} before the kill), {sent['recommend']} recommends, "
          f"0 failures, store rows {len(counts)}")


def test_replica_pids_finds_only_the_named_replica_under_the_given_process(tmp_path):
    from mmrec.serving.crash_drill import check_store, replica_pids, wait_for

    # a parent whose grandchild carries a replica's title in its command line, as Ray's workers do
    inner = "import time; time.sleep(60)"
    outer = (f"import subprocess, sys; subprocess.run([sys.executable, '-c', {inner!r}, "
             "'ray::ServeReplica:mmrec:Ingress'])")
    proc = subprocess.Popen([sys.executable, "-c", outer])
    try:
        found = wait_for(lambda: replica_pids(proc.pid), 20, "the grandchild")
        assert len(found) == 1 and found[0] != proc.pid
        assert replica_pids(proc.pid, deployment="PhotoModels") == []
        assert replica_pids(found[0]) == []  # only descendants are searched, never the process itself
    finally:
        for pid in replica_pids(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=20)
    db = tmp_path / "s.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE events (event_id TEXT)")
        con.executemany("INSERT INTO events VALUES (?)", [("a",), ("b",), ("b",)])
    assert check_store(db, ["a", "b", "c"]) == {"store_rows": 3, "acknowledged_missing": 1,
                                                "acknowledged_duplicated": 1, "acknowledged_distinct": 3}


@pytest.mark.slow
def test_kill_9_of_the_ingress_replica_under_ray_serve(tmp_path):
    """Ray Serve on local Ray with one Ingress replica: its process gets SIGKILL mid-load, Ray's
    controller starts another; every acknowledged event is stored once, retrying clients never fail."""
    import yaml

    from mmrec.artifacts import ArtifactStore
    from mmrec.serving.crash_drill import check_store, replica_pids, run_drill, wait_for
    from mmrec.serving.local import free_port, start_subprocess
    from mmrec.serving.settings import DEFAULT_SERVE_CONFIG

    store = ArtifactStore(tmp_path / "artifacts")
    write_items(store)
    cfg = yaml.safe_load(DEFAULT_SERVE_CONFIG.read_text())
    ingress = cfg["applications"][0]["deployments"][0]
    ingress.pop("autoscaling_config", None)
    ingress["num_replicas"] = 1  # one replica to kill: every request then waits for the new one
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(cfg))
    db = tmp_path / "feedback.sqlite"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mmrec.cli", "--artifacts", str(store.root), "--quiet", "serve",
           "--port", str(port), "--source", str(tmp_path / "no-data"), "--serve-config", str(tmp_path / "serve.yaml"),
           "--set", "feedback.enabled=true", "--set", f"feedback.path={db}"]
    server = start_subprocess(cmd, url, KEY, "ray")
    try:
        before = replica_pids(server.pid)
        assert len(before) == 1, before
        m = run_drill(url, KEY, [row[0] for row in ALL], lambda: os.kill(before[0], signal.SIGKILL),
                      before_s=3, after_s=3)
        after = wait_for(lambda: replica_pids(server.pid), 30, "a new Ingress replica")
    finally:
        server.stop()
    counts = check_store(db, m["_acked"])
    assert m["client_failures"] == 0, m["failure_samples"]
    assert 0 < m["acknowledged_before_kill"] < m["events_acknowledged"]
    assert counts["acknowledged_missing"] == counts["acknowledged_duplicated"] == 0
    assert counts["store_rows"] >= counts["acknowledged_distinct"] == m["events_acknowledged"]
    assert after and after != before
