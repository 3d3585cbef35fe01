"""`mmrec index build | add | remove | compact | latency`: the FAISS index over catalog vectors."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mmrec.commands import add_config_args, stage_config


def register(sub) -> None:
    p = sub.add_parser("index", help="build and update the FAISS vector index; measure its latency")
    s = p.add_subparsers(dest="index_command", metavar="SUBCOMMAND")
    s.required = True

    b = s.add_parser("build", help="build a new index from a vectors artifact (+ items metadata)")
    b.add_argument("--vectors", default=None, help="vectors version (default: CURRENT)")
    b.add_argument("--items", default=None, help="items version for filter metadata "
                                                 "(default: the one the vectors were made from)")
    add_config_args(b)
    b.set_defaults(handler=_build)

    a = s.add_parser("add", help="add new and update changed items in the current index "
                                 "(no rebuild); writes a new version and swaps CURRENT")
    a.add_argument("--vectors", default=None, help="vectors version (default: CURRENT)")
    a.add_argument("--items", default=None, help="items version (default: the vectors' items)")
    a.add_argument("--ids", nargs="*", default=None, help="only these item ids (default: all changed)")
    add_config_args(a)
    a.set_defaults(handler=_add)

    r = s.add_parser("remove", help="remove items from the current index (no rebuild)")
    r.add_argument("--ids", nargs="*", default=None, help="item ids to remove")
    r.add_argument("--ids-file", type=Path, default=None, help="file with one item id per line")
    r.add_argument("--missing", action="store_true",
                   help="remove every indexed item that is absent from the vectors artifact")
    r.add_argument("--vectors", default=None, help="with --missing: vectors version (default: CURRENT)")
    add_config_args(r)
    r.set_defaults(handler=_remove)

    c = s.add_parser("compact", help="fold the live catalog changes (POST /v1/admin/catalog) into a new "
                                     "index version: deleted items' vectors dropped, new ones added, "
                                     "no tombstones left")
    c.add_argument("--feedback-db", type=Path, required=True,
                   help="the serving feedback store (serve.yaml feedback.path) holding the changes")
    add_config_args(c)
    c.set_defaults(handler=_compact)

    lat = s.add_parser("latency", help="ANN latency and recall on synthetic clustered vectors, filters "
                                       "on (writes index_latency/<version>/metrics.json)")
    lat.add_argument("--n", type=int, default=1_000_000, help="vectors in the index")
    lat.add_argument("--dim", type=int, default=128)
    lat.add_argument("--queries", type=int, default=1000)
    lat.add_argument("--k", type=int, default=100)
    lat.add_argument("--threads", type=int, default=1, help="faiss OpenMP threads (build and search)")
    lat.add_argument("--ef-search", type=int, nargs="*", default=None,
                     help="HNSW efSearch values to sweep (default: config)")
    lat.add_argument("--nprobe", type=int, nargs="*", default=None,
                     help="IVF nprobe values to sweep (default: config)")
    add_config_args(lat)
    lat.set_defaults(handler=_latency)


def _build(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.recall.build import build_index

    cfg = stage_config(args, "index")
    t0 = time.perf_counter()
    art = build_index(ArtifactStore(args.artifacts), cfg, vectors_ref=args.vectors,
                      items_ref=args.items)
    print(f"wrote {art.path} in {time.perf_counter() - t0:.1f}s: {json.dumps(art.metrics)}",
          file=sys.stderr)
    print(art.version)
    return 0


def _add(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.recall.build import update_index

    cfg = stage_config(args, "index")
    art, stats = update_index(ArtifactStore(args.artifacts), cfg, vectors_ref=args.vectors,
                              items_ref=args.items, only_ids=args.ids)
    print(f"added {stats['added']}, updated {stats['updated']}, metadata-only {stats['metadata']}; "
          f"wrote {art.path}", file=sys.stderr)
    print(art.version)
    return 0


def _remove(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.errors import InputError
    from mmrec.recall.build import remove_from_index

    ids = list(args.ids or [])
    if args.ids_file:
        try:
            ids += [ln.strip() for ln in args.ids_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except OSError as e:
            raise InputError(f"--ids-file {args.ids_file}: {e.strerror}") from e
    if not ids and not args.missing:
        raise InputError("nothing to remove: pass --ids ID..., --ids-file FILE or --missing")
    cfg = stage_config(args, "index")
    art, stats = remove_from_index(ArtifactStore(args.artifacts), cfg, ids=ids,
                                   missing=args.missing, vectors_ref=args.vectors)
    print(f"removed {stats['removed']} (not indexed: {stats['unknown']}); wrote {art.path}",
          file=sys.stderr)
    print(art.version)
    return 0


def _compact(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.errors import InputError
    from mmrec.feedback.store import FeedbackStore
    from mmrec.recall.compact import compact_index

    if not args.feedback_db.is_file():
        raise InputError(f"--feedback-db {args.feedback_db}: no such file (the server's feedback.path)")
    fb = FeedbackStore(args.feedback_db)
    try:
        changes = fb.catalog_changes_since(0)
    finally:
        fb.close()
    cfg = stage_config(args, "index")
    art, stats = compact_index(ArtifactStore(args.artifacts), cfg, [c[1:] for c in changes],
                               through_seq=changes[-1][0] if changes else None)
    print(f"compacted: {json.dumps(stats)}; wrote {art.path}", file=sys.stderr)
    print(art.version)
    return 0


def _latency(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.recall.ann_latency import format_latency, run_ann_latency

    cfg = stage_config(args, "index")
    art = run_ann_latency(ArtifactStore(args.artifacts), cfg, n=args.n, dim=args.dim,
                          n_queries=args.queries, k=args.k, threads=args.threads,
                          ef_search=args.ef_search, nprobe=args.nprobe, progress=not args.quiet)
    print(format_latency(json.loads(art.file("metrics.json").read_text(encoding="utf-8"))), file=sys.stderr)
    print(f"wrote {art.path / 'metrics.json'}", file=sys.stderr)
    print(art.version)
    return 0
