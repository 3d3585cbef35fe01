"""`mmrec serve` (API + kiosk on local Ray Serve) and `mmrec serve loadtest` (loopback load test).

`mmrec serve` without a subcommand starts the service; the options of `loadtest` follow it
(`mmrec serve loadtest --url ...`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from mmrec import kinds
from mmrec.commands import add_config_args, stage_config


def register(sub) -> None:
    p = sub.add_parser("serve", help="start the outfit API and kiosk page on 127.0.0.1 (local Ray Serve)")
    p.add_argument("--serve-config", type=Path, default=None,
                   help="Ray Serve config (default: serving/serve_config.yaml)")
    p.add_argument("--port", type=int, default=None, help="port (default: the serve config's)")
    p.add_argument("--no-ray", action="store_true",
                   help="serve with uvicorn in this process instead of Ray (one replica, no photo deployment)")
    p.add_argument("--source", type=Path, default=Path("../shared/data"),
                   help="shared data folder; outfit priors are built from its polyvore_outfits when missing")
    p.add_argument("--hash-key", action="store_true",
                   help="read an API key from stdin, print its sha256 digest (for the config) and exit")
    p.add_argument("--exit-after", type=float, default=None, help=argparse.SUPPRESS)  # tests
    add_config_args(p)
    p.set_defaults(handler=_serve)
    s = p.add_subparsers(dest="serve_command", metavar="SUBCOMMAND")
    _register_loadtest(s)
    _register_stockout(s)


def _register_stockout(serve_sub) -> None:
    t = serve_sub.add_parser("stockout-test", help="how long an acknowledged stock-out or deletion stays "
                                                   "visible under load (replicas sharing one feedback store)")
    t.add_argument("--replicas", type=int, default=2, help="`mmrec serve --no-ray` processes")
    t.add_argument("--concurrency", type=int, default=4, help="recommend requests in flight")
    t.add_argument("--seconds", type=float, default=60.0, help="measured seconds (after the warm-up)")
    t.add_argument("--warmup", type=float, default=15.0, help="seconds of load before the first change")
    t.add_argument("--every", type=float, default=6.0, help="seconds between changes")
    t.add_argument("--deletes-every", type=int, default=3, help="every n-th change is a deletion (0: none)")
    t.add_argument("--typed-share", type=float, default=0.2,
                   help="share of requests with a typed query never asked before (no cache hit)")
    t.add_argument("--out", type=Path, required=True, help="metrics.json to write")
    t.add_argument("--source", type=Path, default=Path("../shared/data"))
    add_config_args(t)
    t.set_defaults(handler=_stockout)


def _stockout(args) -> int:
    import tempfile

    from mmrec.artifacts import ArtifactStore
    from mmrec.serving.stockout_load import run_stockout_test

    _require_items(ArtifactStore(args.artifacts))
    with tempfile.TemporaryDirectory(prefix="mmrec-stockout-") as tmp:
        t0 = time.time()
        out = run_stockout_test(Path(args.artifacts).resolve(), args.profile, replicas=args.replicas,
                                concurrency=args.concurrency, seconds=args.seconds, warmup_s=args.warmup,
                                every_s=args.every, deletes_every=args.deletes_every,
                                typed_share=args.typed_share,
                                db=Path(tmp) / "feedback.sqlite",
                                source=args.source if args.source.exists() else None,
                                overrides=list(args.overrides), log=lambda m: print(m, file=sys.stderr))
    out = {"command": "mmrec " + " ".join(sys.argv[1:]), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
           "note": "servers and load generator share this machine's CPUs", **out}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1), encoding="utf-8")
    keys = ("answers", "max_last_seen_after_ack_s", "answers_after_window_total",
            "sent_after_ack_same_replica_total", "max_other_replicas_last_send_after_ack_s", "max_ack_s",
            "recommend_p50_ms", "recommend_p99_ms", "errors")
    print(json.dumps({k: out[k] for k in keys}, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _register_loadtest(serve_sub) -> None:
    b = serve_sub.add_parser("loadtest", help="load-test the API on loopback and write serve_loadtest metrics")
    b.add_argument("--url", default=None,
                   help="a running service (http://127.0.0.1:PORT); default: start one on local Ray")
    b.add_argument("--api-key", default=None, help="key for --url (default: $MMREC_API_KEY)")
    b.add_argument("--no-ray", action="store_true", help="start the service with uvicorn instead of Ray")
    b.add_argument("--serve-config", type=Path, default=None,
                   help="Ray Serve config for the started service (default: serving/serve_config.yaml)")
    b.add_argument("--concurrency", type=int, default=8)
    b.add_argument("--seconds", type=float, default=30.0, help="per closed-loop phase (JSON, photo)")
    b.add_argument("--rps", type=float, default=20.0, help="open-loop request rate")
    b.add_argument("--rps-seconds", type=float, default=300.0, help="open-loop duration (0: skip)")
    b.add_argument("--photo-share", type=float, default=0.1, help="share of photo requests in the open loop")
    b.add_argument("--photos", type=int, default=40, help="kiosk photos drawn from held-out (test-split) products")
    b.add_argument("--typed-share", type=float, default=0.1,
                   help="share of JSON requests with typed text (English and Chinese with --distinct-queries)")
    b.add_argument("--max-retries", type=int, default=3,
                   help="retries of a request after a disconnect, 429, 502, 503, 504 or a non-JSON 500 "
                        "(a gateway; backoff; 0: none)")
    b.add_argument("--distinct-queries", action="store_true",
                   help="never repeat a typed query (with --set response_cache_size=0: every request a miss)")
    b.add_argument("--warmup", type=float, default=90.0,
                   help="unmeasured seconds at the same concurrency first (caches, and the autoscaler's "
                        "second replica, which takes 30-48 s to load on a busy 2-core box)")
    b.add_argument("--source", type=Path, default=Path("../shared/data"))
    add_config_args(b)
    b.set_defaults(handler=_loadtest)


def _settings(args, port: int | None = None):
    from mmrec.serving.settings import new_key

    settings = stage_config(args, "serve")
    key = os.environ.get("MMREC_API_KEY") or new_key()
    updates = {"artifacts": str(Path(args.artifacts).resolve()), "profile": args.profile}
    if port is not None:
        updates["port"] = port
    return settings.with_key(key).model_copy(update=updates), key


def _require_items(store) -> None:
    from mmrec.errors import InputError

    if store.current_version(kinds.ITEMS) is None:
        raise InputError(f"no items artifact under {store.root}: run `mmrec demo` (builds everything) "
                         "or `mmrec catalog ingest --source ../shared/data/myntra` first")


def _start(args, settings):
    from mmrec.artifacts import ArtifactStore
    from mmrec.serving.local import ensure_priors, start_ray, start_uvicorn

    store = ArtifactStore(args.artifacts)
    _require_items(store)
    ensure_priors(store, args.source if args.source.exists() else None,
                  log=lambda m: print(m, file=sys.stderr))
    if args.no_ray:
        from mmrec.serving.threads import limit_threads

        limit_threads()
        from mmrec.config import load_config
        from mmrec.ab.router import load_recommender
        from mmrec.serving.app import create_app
        from mmrec.serving.holder import RecommenderHolder

        # --config/--set configure the `serve` stage; the recommender uses its profile config
        cfg = load_config("recommend", profile=args.profile, config_dir=args.config_dir)
        holder = RecommenderHolder(lambda: load_recommender(
            store, settings.ab, config=cfg, profile=args.profile, photo_tagger=settings.photo_tagger,
            photo_mirror=settings.photo_mirror_view), store,
                                   settings.reload_poll_s, freeze_heap=True)
        holder.load()
        holder.start()
        return start_uvicorn(create_app(holder, settings), settings.host, settings.port)
    return start_ray(settings, serve_config=getattr(args, "serve_config", None), profile=args.profile)


def _serve(args) -> int:
    if args.hash_key:
        from mmrec.errors import InputError
        from mmrec.serving.settings import hash_key

        key = sys.stdin.readline().strip()
        if not key:
            raise InputError("no key on stdin; e.g. `printf %s \"$KEY\" | mmrec serve --hash-key`")
        print(hash_key(key))
        return 0
    port = args.port
    if port is None and args.serve_config is not None:
        from mmrec.serving.ray_app import read_serve_config

        port = (read_serve_config(args.serve_config).get("http_options") or {}).get("port")
    settings, key = _settings(args, port)
    print(f"starting mmrec on {'uvicorn' if args.no_ray else 'local Ray Serve'} "
          f"({args.profile} profile, artifacts {settings.artifacts}) ...", file=sys.stderr)
    t0 = time.perf_counter()
    server = _start(args, settings)
    shown = "$MMREC_API_KEY" if os.environ.get("MMREC_API_KEY") else key
    print(f"ready in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    print(f"API key (this session): {shown}", file=sys.stderr)
    print(f"kiosk: {server.url}/kiosk/#key={key}")
    print(f"API:   {server.url}/v1/recommend  (X-API-Key header; OpenAPI at /openapi.json)", file=sys.stderr)
    sys.stdout.flush()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait(args.exit_after)
    finally:
        print("stopping ...", file=sys.stderr)
        server.stop()
    return 0


def _loadtest(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.errors import InputError
    from mmrec.outfit.scenes import SceneBook
    from mmrec.serving.loadgen import REPLICA_COUNTS, run_loadtest

    store = ArtifactStore(args.artifacts)
    _require_items(store)
    photos = _held_out_photos(store, args.photos)
    scenes = SceneBook.load().names()
    users = _some_users(store)
    server = None
    if args.url:
        key = args.api_key or os.environ.get("MMREC_API_KEY")
        if not key:
            raise InputError("--url needs --api-key or $MMREC_API_KEY")
        url, kind = args.url, "external"
    else:
        # the service runs in its own process (`mmrec serve`), so that the load generator's
        # event loop never competes with the server for this process's GIL
        from mmrec.serving.local import free_port, serve_cmd, start_subprocess
        from mmrec.serving.settings import new_key

        key, port = os.environ.get("MMREC_API_KEY") or new_key(), free_port()
        options = ["--source", str(args.source)]
        if args.config_file:
            options += ["--config", args.config_file]
        if args.serve_config is not None:
            options += ["--serve-config", str(args.serve_config)]
        cmd = serve_cmd(port, artifacts=args.artifacts, profile=args.profile, no_ray=args.no_ray,
                        sets=args.overrides, options=options, config_dir=args.config_dir)
        print(f"starting the service ({'uvicorn' if args.no_ray else 'local Ray Serve'}) ...", file=sys.stderr)
        t_start = time.perf_counter()
        server = start_subprocess(cmd, f"http://127.0.0.1:{port}", key,
                                  "uvicorn" if args.no_ray else "ray")
        url, kind = server.url, server.kind
        print(f"ready in {time.perf_counter() - t_start:.1f}s at {url}", file=sys.stderr)
    t0 = time.time()
    load_before = os.getloadavg()
    try:
        phases = run_loadtest(url, key, scenes=scenes, photos=photos, user_ids=users,
                              concurrency=args.concurrency, seconds=args.seconds, rps=args.rps,
                              rps_seconds=args.rps_seconds, photo_share=args.photo_share,
                              warmup_s=args.warmup, typed_share=args.typed_share,
                              distinct_queries=args.distinct_queries, max_retries=args.max_retries,
                              log=lambda m: print(m, file=sys.stderr))
        versions = _versions(url, key)
    finally:
        if server is not None:
            server.stop()
    metrics = {
        "server": kind, "url": url, "profile": args.profile, "cpu_count": os.cpu_count(),
        "concurrency": args.concurrency, "phase_seconds": args.seconds, "rps": args.rps,
        "rps_seconds": args.rps_seconds, "photo_share": args.photo_share, "n_photos": len(photos),
        "warmup_s": args.warmup, "typed_share": args.typed_share, "distinct_queries": args.distinct_queries,
        "max_retries": args.max_retries,
        "overrides": list(args.overrides),
        "versions": versions, "wall_s": round(time.time() - t0, 1),
        "note": "load generator and server share this machine's CPUs",
        "loadavg_1m_before": round(load_before[0], 2), "loadavg_1m_after": round(os.getloadavg()[0], 2),
        **phases,
    }
    metrics["errors_total"] = sum(p.get("errors", 0) for k, p in phases.items() if k not in REPLICA_COUNTS)
    summary = ("json", "photo", "open_loop", "errors_total", *REPLICA_COUNTS)
    with store.write(kinds.SERVE_LOADTEST, config={k: metrics[k] for k in (
            "server", "profile", "concurrency", "phase_seconds", "rps", "rps_seconds", "photo_share")}) as w:
        (w.path / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
        w.metrics = {k: v for k, v in metrics.items() if k in summary}
    print(json.dumps({k: metrics.get(k) for k in summary}, indent=1))
    print(f"wrote {store.root}/{kinds.SERVE_LOADTEST}/{w.version}/metrics.json", file=sys.stderr)
    return 0


def _held_out_photos(store, n: int) -> list[bytes]:
    """Photos of test-split products (never trained on), as kiosk uploads."""
    from mmrec.catalog.ingest import load_items
    from mmrec.splits import split_of

    t = load_items(store, columns=["item_id", "image_uri", "slot"])
    out: list[bytes] = []
    for iid, uri, slot in zip(*(t.column(c).to_pylist() for c in ("item_id", "image_uri", "slot"))):
        if len(out) >= n:
            break
        if uri and slot in ("top", "bottom", "one-piece", "shoes") and split_of(iid) == "test":
            try:
                out.append(Path(uri).read_bytes())
            except OSError:
                continue
    return out


def _some_users(store, n: int = 200) -> list[str]:
    try:
        from mmrec.rank.users import UserStore

        return list(UserStore.load(store).ids()[:n])
    except Exception:  # noqa: BLE001 - no user store: anonymous load only
        return []


def _versions(url: str, key: str) -> dict:
    import httpx

    try:
        return httpx.get(f"{url}/readyz", timeout=5).json().get("versions", {})
    except Exception:  # noqa: BLE001
        return {}
