"""`mmrec feedback export | prune | loadtest`: the feedback store (impressions, events, profiles).

The store is the SQLite file the server writes (serve.yaml ``feedback.path``, default
``<artifacts>/feedback/feedback.sqlite``); ``--store`` points at another one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path

from mmrec import kinds
from mmrec.commands import add_config_args, served_feedback_store, stage_config


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as e:
        from mmrec.cli import ArgumentError

        raise ArgumentError(f"--since must be a date like 2026-12-01, got {text!r}") from e


def register(sub) -> None:
    p = sub.add_parser("feedback", help="the feedback store: export to Parquet, prune by retention, load test")
    s = p.add_subparsers(dest="feedback_command", metavar="SUBCOMMAND")
    s.required = True

    e = s.add_parser("export", help="write date-partitioned Parquet (DIR/impressions/date=.../, DIR/events/date=.../)")
    e.add_argument("--out", type=Path, required=True, help="output folder (a local path; sync it to object storage)")
    e.add_argument("--since", type=_date, default=None, help="first UTC day to export (YYYY-MM-DD); default: all")
    e.add_argument("--store", type=Path, default=None, help="the SQLite file (default: from serve.yaml)")
    add_config_args(e)
    e.set_defaults(handler=_export)

    r = s.add_parser("prune", help="delete events and impressions older than feedback.retention_days")
    r.add_argument("--retention-days", type=int, default=None, help="override feedback.retention_days")
    r.add_argument("--store", type=Path, default=None, help="the SQLite file (default: from serve.yaml)")
    add_config_args(r)
    r.set_defaults(handler=_prune)

    lt = s.add_parser("loadtest", help="measure POST /v1/events ingest on 127.0.0.1 (events/s, batch p50/p99)")
    lt.add_argument("--seconds", type=float, default=20, help="load duration (default 20)")
    lt.add_argument("--batch", type=int, default=50, help="events per request (default 50)")
    lt.add_argument("--concurrency", type=int, default=4, help="client connections (default 4)")
    lt.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL",
                    help="durability of the events connection (default FULL, as served)")
    lt.add_argument("--max-batches", type=int, default=100_000, help="bound on requests sent")
    lt.add_argument("--serve", choices=("inprocess", "uvicorn", "ray"), default="inprocess",
                    help="the server: the events API alone with uvicorn in this process (default), or "
                         "`mmrec serve` in its own process over the artifacts' catalog (--no-ray / local Ray)")
    lt.add_argument("--serve-config", type=Path, default=None, help="Ray Serve config for --serve ray")
    lt.set_defaults(handler=_loadtest)


def _store_path(args) -> Path:
    from mmrec.errors import InputError

    if args.store is not None:
        path = args.store
    else:
        path = served_feedback_store(args)
    if not path.is_file():
        raise InputError(f"no feedback store at {path}: serve with feedback.enabled first, or pass --store")
    return path


def _export(args) -> int:
    from mmrec.feedback.export import export
    from mmrec.feedback.store import FeedbackStore

    store = FeedbackStore(_store_path(args))
    try:
        written = export(store, args.out, args.since)
    finally:
        store.close()
    for table, days in written.items():
        print(f"{table}: {sum(days.values())} rows in {len(days)} day partitions under {args.out / table}",
              file=sys.stderr)
    print(json.dumps(written, indent=1))
    return 0


def _prune(args) -> int:
    from mmrec.feedback.photo_answers import prune_files
    from mmrec.feedback.store import FeedbackStore

    days = args.retention_days
    if days is None:
        days = stage_config(args, "serve").feedback.retention_days
    if days < 1:
        from mmrec.cli import ArgumentError

        raise ArgumentError(f"--retention-days must be >= 1, got {days}")
    cut = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)
    store = FeedbackStore(_store_path(args))
    try:
        counts = store.prune(cut)
        counts["photo_answer_files"] = prune_files(store)
    finally:
        store.close()
    print(json.dumps({"older_than": cut.isoformat(timespec="seconds"), "deleted": counts}))
    return 0


def _loadtest(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.serving.events_load import run_events_load

    if not (1 <= args.batch <= 10_000) or args.seconds <= 0 or not (1 <= args.concurrency <= 64):
        from mmrec.cli import ArgumentError

        raise ArgumentError("--batch must be 1..10000, --seconds > 0, --concurrency 1..64")
    load_before = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    with tempfile.TemporaryDirectory(prefix="mmrec-events-load-") as tmp:
        if args.serve == "inprocess":
            m = run_events_load(Path(tmp) / "load.sqlite", seconds=args.seconds, batch=args.batch,
                                concurrency=args.concurrency, synchronous=args.synchronous,
                                max_batches=args.max_batches)
        else:
            m = _served_load(args, Path(tmp) / "load.sqlite")
    m["date"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    m["note"] = "loopback; client process and server share this machine's CPUs"
    m["cpu_count"], m["loadavg_1m_before"] = os.cpu_count(), round(load_before, 2)
    store = ArtifactStore(args.artifacts)
    with store.write(kinds.FEEDBACK_LOADTEST, config={k: m[k] for k in (
            "batch", "concurrency", "synchronous")}) as w:
        (w.path / "metrics.json").write_text(json.dumps(m, indent=1), encoding="utf-8")
        w.metrics = {k: m[k] for k in ("server", "events_per_s", "batch_ms_p50", "batch_ms_p99")}
    print(json.dumps(m, indent=1))
    print(f"wrote {store.root}/{kinds.FEEDBACK_LOADTEST}/{w.version}/metrics.json", file=sys.stderr)
    return 0


def _served_load(args, db: Path) -> dict:
    """`mmrec serve` (uvicorn or local Ray) in its own process, its events going to ``db``; load it."""
    from mmrec.artifacts import ArtifactStore
    from mmrec.catalog.ingest import load_items
    from mmrec.feedback.store import FeedbackStore
    from mmrec.serving.events_load import load_events
    from mmrec.serving.local import free_port, serve_cmd, start_subprocess
    from mmrec.serving.settings import new_key

    items = load_items(ArtifactStore(args.artifacts), columns=["item_id"]).column("item_id").to_pylist()
    key, port = new_key(), free_port()
    cmd = serve_cmd(port, artifacts=args.artifacts, profile=args.profile, no_ray=args.serve == "uvicorn",
                    sets=["feedback.enabled=true", f"feedback.path={db}",
                          f"feedback.events_synchronous={args.synchronous}",
                          f"feedback.max_batch={max(args.batch, 500)}"],
                    options=["--serve-config", str(args.serve_config)] if args.serve_config else [])
    kind = "uvicorn" if args.serve == "uvicorn" else "ray"
    print(f"starting `mmrec serve` ({kind}) ...", file=sys.stderr)
    server = start_subprocess(cmd, f"http://127.0.0.1:{port}", key, kind)
    print(f"ready in {server.startup_s:.1f}s; posting batches of {args.batch} for {args.seconds:g}s ...",
          file=sys.stderr)
    try:
        m = load_events(server.url, key, items, seconds=args.seconds, batch=args.batch,
                        concurrency=args.concurrency, max_batches=args.max_batches)
    finally:
        server.stop()
    return {**m, "server": f"mmrec serve ({'local Ray Serve' if kind == 'ray' else 'uvicorn, --no-ray'})",
            "serve_config": str(args.serve_config) if args.serve_config else None,
            "synchronous": args.synchronous, "stored_events": FeedbackStore(db).count("events")}
