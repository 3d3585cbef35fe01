"""`mmrec catalog ingest | validate | show | versions`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mmrec import kinds
from mmrec.commands import add_config_args, stage_config

FORMATS = ("myntra", "hm", "generic")


def register(sub) -> None:
    p = sub.add_parser("catalog", help="ingest, validate and inspect the product catalog")
    s = p.add_subparsers(dest="catalog_command", metavar="SUBCOMMAND")
    s.required = True

    ing = s.add_parser("ingest", help="validate a catalog and write a new items artifact")
    _source_args(ing)
    ing.add_argument("--force-new-version", action="store_true",
                     help="write a new version even when nothing changed")
    ing.set_defaults(handler=_ingest)

    val = s.add_parser("validate", help="validate a catalog without writing an artifact")
    _source_args(val)
    val.add_argument("--report", type=Path, default=None, help="write report.json here")
    val.set_defaults(handler=_validate)

    show = s.add_parser("show", help="summarise the current (or a given) items artifact")
    show.add_argument("--version", default=None, help="items version (default: CURRENT)")
    show.add_argument("--item", action="append", default=[], help="print this item as JSON")
    show.set_defaults(handler=_show)

    ver = s.add_parser("versions", help="list items versions")
    ver.set_defaults(handler=_versions)


def _source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default=None, help="source adapter (default: myntra)")
    p.add_argument("--source", type=Path, required=True,
                   help="myntra: folder with styles.csv + images/; hm: folder with the articles "
                        "parquet + images/; generic: a .csv or .parquet file")
    p.add_argument("--max-error-rate", type=float, default=None,
                   help="refuse (exit 2, nothing written) above this share of bad rows")
    add_config_args(p)


def _cfg(args):
    return stage_config(args, "ingest", format=args.format, max_error_rate=args.max_error_rate)


def _print_report_summary(report, out=None) -> None:
    out = out or sys.stderr  # resolved at call time: tests swap sys.stderr
    d = report.as_dict()
    print(f"rows in: {d['rows_in']}  items out: {d['items_out']}  "
          f"rows with errors: {d['rows_with_errors']} ({d['error_rate']:.2%})", file=out)
    if d["error_counts"]:
        print("errors by kind: " + ", ".join(f"{k}={v}" for k, v in d["error_counts"].items()), file=out)
    if d["warning_counts"]:
        print("warnings by kind: " + ", ".join(f"{k}={v}" for k, v in d["warning_counts"].items()), file=out)
    if d["coverage"]:
        print("field coverage: " + ", ".join(f"{k}={v:.0%}" for k, v in d["coverage"].items()), file=out)


def _ingest(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.catalog.ingest import ingest_catalog

    cfg = _cfg(args)
    t0 = time.perf_counter()
    res = ingest_catalog(args.source, cfg, ArtifactStore(args.artifacts), progress=not args.quiet,
                         force_new_version=args.force_new_version)
    _print_report_summary(res.report)
    elapsed = time.perf_counter() - t0
    if res.unchanged:
        print(f"catalog unchanged since items/{res.diff['previous_version']}; nothing written "
              f"({elapsed:.1f}s)", file=sys.stderr)
        print(res.diff["previous_version"])
        return 0
    d = res.diff
    print(f"diff vs {d.get('previous_version')}: +{len(d['added'])} -{len(d['removed'])} "
          f"~{len(d['changed'])}", file=sys.stderr)
    print(f"wrote {res.artifact.path} in {elapsed:.1f}s", file=sys.stderr)
    print(res.artifact.version)
    return 0


def _validate(args) -> int:
    from mmrec.catalog.ingest import read_and_validate

    cfg = _cfg(args)
    _, report = read_and_validate(args.source, cfg, progress=not args.quiet)
    _print_report_summary(report)
    if args.report:
        args.report.write_text(json.dumps(report.as_dict(), indent=1), encoding="utf-8")
        print(f"report written to {args.report}", file=sys.stderr)
    if report.error_rate > cfg.max_error_rate:
        print(f"error rate {report.error_rate:.2%} > max_error_rate {cfg.max_error_rate:.2%}",
              file=sys.stderr)
        return 2
    return 0


def _show(args) -> int:
    from collections import Counter

    from mmrec.artifacts import ArtifactStore
    from mmrec.catalog.ingest import load_items

    store = ArtifactStore(args.artifacts)
    art = store.load(kinds.ITEMS, args.version)
    table = load_items(store, art.version)
    if args.item:
        ids = set(args.item)
        rows = [r for r in table.to_pylist() if r["item_id"] in ids]
        missing = ids - {r["item_id"] for r in rows}
        for r in rows:
            r["attributes"] = dict(r["attributes"] or [])
            print(json.dumps(r, default=str, indent=1))
        if missing:
            print(f"error: no item(s) {sorted(missing)} in items/{art.version}", file=sys.stderr)
            return 2
        return 0
    m = art.manifest
    print(f"items/{art.version}  created {m['created_at']}  format {m.get('source_format')}")
    print(f"items: {table.num_rows}   metrics: " + json.dumps(
        {k: v for k, v in m["metrics"].items() if k != "coverage"}))
    for col in ("slot", "gender", "usage", "season"):
        counts = Counter(table.column(col).to_pylist())
        print(f"{col}: " + ", ".join(f"{k}={v}" for k, v in counts.most_common(10)))
    print("top categories: " + ", ".join(
        f"{k}={v}" for k, v in Counter(table.column("category").to_pylist()).most_common(12)))
    cov = m["metrics"].get("coverage", {})
    print("coverage: " + ", ".join(f"{k}={v:.0%}" for k, v in cov.items()))
    return 0


def _versions(args) -> int:
    from mmrec.artifacts import ArtifactStore

    store = ArtifactStore(args.artifacts)
    current = store.current_version(kinds.ITEMS)
    for v in store.versions(kinds.ITEMS):
        art = store.load(kinds.ITEMS, v, verify=False)
        mark = "*" if v == current else " "
        print(f"{mark} {v}  items={art.metrics.get('items_out')}  +{art.metrics.get('added')} "
              f"-{art.metrics.get('removed')} ~{art.metrics.get('changed')}")
    return 0
