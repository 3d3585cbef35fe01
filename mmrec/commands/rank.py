"""`mmrec rank ingest | simulate | train | eval | latency | user`: the propensity ranker."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mmrec.commands import add_config_args, served_feedback_store, stage_config

DATASETS = ("rtr", "hm", "myntra-sim")
# `logs`: the served answers and the shoppers' events (mmrec.rank.logs_train); train only
TRAIN_DATASETS = (*DATASETS, "logs")


def register(sub) -> None:
    p = sub.add_parser("rank", help="interactions, simulated logs, LightGBM ranker, evaluation")
    s = p.add_subparsers(dest="rank_command", metavar="SUBCOMMAND")
    s.required = True

    ing = s.add_parser("ingest", help="real interactions -> interactions_<source> artifact "
                                      "(user ids pseudonymised with a keyed hash)")
    ing.add_argument("--source", choices=("rtr", "hm"), required=True)
    ing.add_argument("--path", type=Path, default=None,
                     help="rtr: interactions.parquet; hm: folder with the *_sample.parquet files "
                          "(default: under rank.shared_data)")
    add_config_args(ing)
    ing.set_defaults(handler=_ingest)

    sim = s.add_parser("simulate", help="SIMULATED users and logs over the items artifact; "
                                        "with --via-api, the same shoppers as clients of a server")
    sim.add_argument("--items", default=None, help="items version (default: CURRENT)")
    api = sim.add_argument_group("--via-api: one simulated day of traffic through the HTTP API")
    api.add_argument("--via-api", metavar="URL", default=None,
                     help="a running server on this machine, e.g. http://127.0.0.1:8000")
    api.add_argument("--day", type=int, default=1, help="simulated day (1 = two days ago)")
    api.add_argument("--users", type=int, default=200, help="the first N simulated shoppers")
    api.add_argument("--requests", type=int, default=1000, help="recommend calls this day")
    api.add_argument("--k", type=int, default=3, help="outfits per answer")
    api.add_argument("--seed", type=int, default=0)
    api.add_argument("--max-seconds", type=float, default=600.0, help="stop sending after this")
    api.add_argument("--api-key", default=None, help="default: $MMREC_API_KEY")
    add_config_args(sim)
    sim.set_defaults(handler=_simulate)

    tr = s.add_parser("train", help="train lambdarank + binary propensity models")
    tr.add_argument("--dataset", choices=TRAIN_DATASETS, required=True,
                    help="myntra-sim and logs write kind 'ranker' (served); rtr/hm write "
                         "ranker_rtr/ranker_hm")
    tr.add_argument("--interactions", default=None, help="interactions version (default: CURRENT)")
    lg = tr.add_argument_group("--dataset logs (retraining from the feedback store)")
    lg.add_argument("--store", type=Path, default=None,
                    help="feedback store file (default: the one mmrec serve writes, serve.yaml feedback.path or <artifacts>/feedback/feedback.sqlite); "
                         "its profiles are used with --export too")
    lg.add_argument("--export", type=Path, default=None,
                    help="read impressions and events from this `mmrec feedback export` folder")
    lg.add_argument("--attribution-window-hours", type=float, default=24.0,
                    help="an event counts for an answer up to this long after it (default 24)")
    lg.add_argument("--eval-days", type=int, default=1,
                    help="the last N days of logs are the evaluation; earlier days train (default 1)")
    add_config_args(tr)
    tr.set_defaults(handler=_train)

    ev = s.add_parser("eval", help="offline evaluation -> artifacts/rank_eval/<version>/metrics.json")
    ev.add_argument("--dataset", choices=DATASETS, action="append", default=None,
                    help="repeatable; default: every dataset with a trained model")
    add_config_args(ev)
    ev.set_defaults(handler=_eval)

    b = s.add_parser("latency", help="latency of Ranker.score for one request (p50/p99, one core)")
    b.add_argument("--version", default=None, help="ranker version (default: CURRENT)")
    b.add_argument("--candidates", type=int, default=None)
    b.add_argument("--requests", type=int, default=None)
    b.add_argument("--cpu", type=int, default=0, help="pin the process to this core (-1: no pinning)")
    add_config_args(b)
    b.set_defaults(handler=_latency)

    u = s.add_parser("user", help="print a (simulated) user's profile and recent history")
    u.add_argument("user_id", nargs="?", default=None, help="default: list a few ids")
    u.add_argument("--limit", type=int, default=10)
    u.set_defaults(handler=_user)


def _cfg(args):
    return stage_config(args, "rank")


def _ingest(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.rank.interactions import ingest_source

    t0 = time.perf_counter()
    art = ingest_source(args.source, args.path, _cfg(args), ArtifactStore(args.artifacts))
    m = art.metrics
    print(f"{art.kind}/{art.version}: {m['interactions']} interactions, {m['users']} users "
          f"(pseudonymised), {m['items']} items, {m['ts_min'][:10]}..{m['ts_max'][:10]} "
          f"({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    print(art.version)
    return 0


def _simulate(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.rank.simulator import run_simulation

    if args.via_api is not None:
        return _simulate_via_api(args)

    t0 = time.perf_counter()
    art = run_simulation(ArtifactStore(args.artifacts), _cfg(args), items_version=args.items)
    n = art.manifest.get("notes", {})
    print(f"{art.kind}/{art.version} (SIMULATED): {n.get('users')} users, {n.get('requests')} "
          f"requests, {n.get('clicks')} clicks, {n.get('purchases')} purchases, CTR {n.get('ctr')} "
          f"({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    print(art.version)
    return 0


def _simulate_via_api(args) -> int:
    import os

    from mmrec.artifacts import ArtifactStore
    from mmrec.errors import InputError
    from mmrec.outfit.scenes import SceneBook
    from mmrec.rank import api_shoppers as S
    from mmrec.serving.client import MmrecClient

    S.check_loopback(args.via_api)
    key = args.api_key or os.environ.get("MMREC_API_KEY")
    if not key:
        raise InputError("--via-api needs --api-key or $MMREC_API_KEY")
    pop, sim_cfg = S.population_for_server(ArtifactStore(args.artifacts), _cfg(args))
    book = SceneBook.load()
    scenes = {n: list(book.get(n).usages) for n in book.names()}
    with MmrecClient(args.via_api, key, seed=args.seed) as client:
        out = S.run_day(client, pop, sim_cfg, scenes, day=args.day, users=args.users,
                        requests=args.requests, k=args.k, seed=args.seed, max_seconds=args.max_seconds)
    print(json.dumps(out, indent=1))
    return 0


def _train(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.rank.train import train

    if args.dataset == "logs":
        return _train_logs(args)
    t0 = time.perf_counter()
    art = train(args.dataset, ArtifactStore(args.artifacts), _cfg(args), interactions=args.interactions)
    print(f"{art.kind}/{art.version} written in {time.perf_counter() - t0:.1f}s; top features: "
          f"{art.metrics['top_features']}", file=sys.stderr)
    print(art.version)
    return 0


def _train_logs(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.rank.logs_train import train_logs

    t0 = time.perf_counter()
    store_path = args.store
    if store_path is None:
        default = served_feedback_store(args, serve_overrides=False)  # where `mmrec serve` logs
        store_path = default if (args.export is None or default.is_file()) else None
    art = train_logs(ArtifactStore(args.artifacts), _cfg(args), store_path=store_path,
                     export_dir=args.export, window_hours=args.attribution_window_hours,
                     eval_days=args.eval_days)
    ev = art.metrics["eval_later_days"]
    print(f"{art.kind}/{art.version} (provenance: logs) written in {time.perf_counter() - t0:.1f}s; "
          f"evaluation days {ev['days']}: {json.dumps({k: ev[k] for k in ('ndcg@10', 'click_auc_at_logged_positions')})}",
          file=sys.stderr)
    print(art.version)
    return 0


def _eval(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.rank.evaluate import run_eval

    art, results = run_eval(ArtifactStore(args.artifacts), _cfg(args), datasets=args.dataset)
    print(json.dumps(art.metrics, indent=1))
    print(f"wrote {art.path / 'metrics.json'}", file=sys.stderr)
    return 0


def _latency(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.rank.latency import run_latency

    cfg = _cfg(args)
    if args.candidates:
        cfg.latency.candidates = args.candidates
    if args.requests:
        cfg.latency.requests = args.requests
    art = run_latency(ArtifactStore(args.artifacts), cfg, version=args.version,
                      cpu=None if args.cpu < 0 else args.cpu)
    print(json.dumps(art.metrics, indent=1))
    return 0


def _user(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.errors import InputError
    from mmrec.rank.users import UserStore

    users = UserStore.load(ArtifactStore(args.artifacts))
    if args.user_id is None:
        print(f"{len(users)} SIMULATED users (interactions_sim/{users.version}); e.g. "
              + ", ".join(users.ids()[:5]))
        return 0
    prof = users.get(args.user_id)
    if prof is None:
        raise InputError(f"no user {args.user_id!r}; list some with `mmrec rank user`")
    print(prof.model_dump_json(indent=1, exclude={"history_counts"}))
    for h in users.history(args.user_id, args.limit):
        print(json.dumps(h))
    return 0
