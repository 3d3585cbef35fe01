"""`mmrec bench run | report | compare`: the scene-aligned benchmark.

Exit codes: 0 ok, 2 bad input, 1 internal error, 3 the release gate failed (compare).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mmrec import kinds
from mmrec.commands import add_config_args, stage_config

GATE_FAILED = 3


def register(sub) -> None:
    p = sub.add_parser("bench", help="scene-aligned benchmark: run suites, report, compare runs")
    s = p.add_subparsers(dest="bench_command", metavar="SUBCOMMAND")
    s.required = True

    run = s.add_parser("run", help="run a suite against the Recommender (or a live API) and judge it")
    run.add_argument("--suite", type=Path, required=True, help="suite YAML (benchmark/suites/*.yaml)")
    run.add_argument("--out", type=Path, default=None,
                     help="run directory (default: runs/<suite name>); an unfinished run there resumes")
    run.add_argument("--url", default=None,
                     help="judge a running API (http://127.0.0.1:PORT) instead of the in-process Recommender")
    run.add_argument("--api-key", default=None, help="API key for --url (default: $MMREC_API_KEY)")
    run.add_argument("--limit", type=int, default=None, help="run only the first N cases")
    run.add_argument("--data", type=Path, default=None,
                     help="real data root holding real_photos/ and hm_sample/ (default: the suite's `data`)")
    run.add_argument("--fresh", action="store_true", help="discard an existing run in --out first")
    run.add_argument("--retry-errors", action="store_true", help="re-run cases that failed before")
    run.add_argument("--full-truth", action="store_true",
                     help="serve every product with its catalog attributes (no withheld slice; for a "
                          "store without a tagger): the withheld.* quality metrics are not measured")
    run.add_argument("--no-users", action="store_true",
                     help="ignore user data: every persona runs as its anonymous archetype")
    run.add_argument("--no-report", action="store_true", help="skip report.html")
    run.add_argument("--no-publish", action="store_true",
                     help="do not copy the results into artifacts/bench_eval/<version>")
    add_config_args(run)  # --config/--set configure the system under test (stage `recommend`)
    run.set_defaults(handler=_run)

    rep = s.add_parser("report", help="(re)write report.html of a run")
    rep.add_argument("run_dir", type=Path)
    rep.add_argument("--template", type=Path, default=None,
                     help="HTML template (default: benchmark/templates/report.html)")
    rep.add_argument("--max-gallery", type=int, default=30, help="failing cases shown")
    rep.set_defaults(handler=_report)

    cmp_ = s.add_parser("compare", help="compare two runs; exit 3 when the release gate fails")
    cmp_.add_argument("run_a", type=Path, help="baseline run directory")
    cmp_.add_argument("run_b", type=Path, help="candidate run directory")
    cmp_.add_argument("--gate", type=Path, default=None, help="gate YAML (default: benchmark/gate.yaml)")
    cmp_.add_argument("--json", type=Path, default=None, help="also write the comparison here")
    cmp_.set_defaults(handler=_compare)

    cal = s.add_parser("calibrate-slot", help="fit the photo slot confidence on the real-photo val "
                       "and calibration senders, choose the abstention threshold, write a "
                       "slot_calibration artifact")
    cal.add_argument("--data", type=Path, default=Path("../shared/data"),
                     help="real data root holding real_photos/")
    cal.add_argument("--table", type=Path, default=Path("benchmark/suites/photos/real_photos.yaml"),
                     help="label table + photographer split")
    cal.add_argument("--target-accuracy", type=float, default=0.92,
                     help="slot accuracy the photos kept must reach (held-out photographers)")
    cal.add_argument("--test", action="store_true",
                     help="also read the test senders and report the fitted calibrator on them "
                          "(never used for fitting; do it once per calibrator)")
    cal.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    add_config_args(cal)
    cal.set_defaults(handler=_calibrate_slot)


def _run(args: argparse.Namespace) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.bench.runner import Runner, prepare, publish

    store = ArtifactStore(args.artifacts)
    if store.current_version(kinds.ITEMS) is None:
        from mmrec.errors import InputError

        raise InputError(f"no items artifact under {store.root}: the judges need catalog truth; "
                         "run `mmrec catalog ingest --source ../shared/data/myntra` first")
    t0 = time.perf_counter()
    # a live API serves its own catalog: only the in-process system can receive new arrivals
    prepared = prepare(args.suite, store, use_users=not args.no_users, limit=args.limit,
                       data_root=args.data, withhold=not (args.full_truth or args.url))
    out = args.out or Path("runs") / prepared.loaded.suite.name
    if args.fresh and out.exists():
        for name in ("results.jsonl", "run.json", "metrics.json", "report.html"):
            (out / name).unlink(missing_ok=True)
    if args.url:
        from mmrec.bench.system import HttpSystem

        system = HttpSystem(args.url, api_key=args.api_key or os.environ.get("MMREC_API_KEY"))
        if prepared.loaded.suite.withheld is not None:
            system.notes.append("withheld truth needs the in-process system (a live API serves its "
                                "own catalog): the withheld.* metrics are not measured")
    else:
        from mmrec.bench.system import InProcessSystem
        from mmrec.bench.withheld import served_items

        items = summary = None
        if prepared.truth.withheld:
            out.mkdir(parents=True, exist_ok=True)
            items, summary = served_items(store, set(prepared.truth.withheld), out,
                                          progress=not args.quiet)
        system = InProcessSystem.from_store(store, config=stage_config(args, "recommend"),
                                            items_table=items)
        if summary is not None:
            system.withheld = summary
            system.notes.append(f"{summary['served_as_arrivals']} products ({', '.join(prepared.loaded.suite.withheld.splits)} "
                                "splits) served as new arrivals: photo and title only, attributes read "
                                f"by tagger {summary['tagger']} and the title rules")
        system.hide_heldout(store, prepared.users)
    print(f"suite {prepared.loaded.suite.name}: {len(prepared.cases)} cases, "
          f"{sum(p.resolved_from != 'archetype' for p in prepared.personas)}/{len(prepared.personas)} "
          f"personas with user data; system ready in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    metrics = Runner(prepared, system, out, retry_errors=args.retry_errors,
                     progress=not args.quiet).run()
    for w in metrics["run"].get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    if not args.no_report:
        from mmrec.bench.report import render_report

        render_report(out, prepared.truth.rows)
    if not args.no_publish:
        version = publish(store, out, metrics)
        print(f"published bench_eval/{version}", file=sys.stderr)
    _print_headline(metrics, out, time.perf_counter() - t0)
    return 0


def _print_headline(metrics: dict, out: Path, wall: float) -> None:
    t = metrics["totals"]
    keys = ("real_photo.slot", "real_photo.category", "real_photo.abstain", "other_retailer.slot",
            "other_retailer.category", "other_retailer.gender", "query.constraints",
            "claims.precision", "claims.query", "claims.photo", "withheld.scene_rules",
            "withheld.claims", "answered", "scene_rules", "complete", "fact_precision",
            "text_match", "tag.category", "rank.ndcg@10")
    for k in keys:
        if k in t:
            print(f"  {k:22} {t[k]['value']:.4f}  (n={t[k]['count']}, cases={t[k]['cases']})")
    for mode, s in metrics["latency_ms"]["by_mode"].items():
        print(f"  latency {mode:14} p50 {s['p50']:.1f} ms  p99 {s['p99']:.1f} ms  (n={s['count']})")
    run = metrics["run"]
    report = f", {out}/report.html" if (out / "report.html").is_file() else ""
    print(f"{run['n_cases']} cases ({run['n_errors']} errors) in {wall:.0f}s -> {out}/metrics.json{report}")


def _report(args: argparse.Namespace) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.bench.report import render_report
    from mmrec.bench.runner import catalog_rows

    if not (args.run_dir / "metrics.json").is_file():
        from mmrec.errors import InputError

        raise InputError(f"{args.run_dir} has no metrics.json; run `mmrec bench run --out "
                         f"{args.run_dir}` first")
    rows, version = catalog_rows(ArtifactStore(args.artifacts))
    meta_path = args.run_dir / "run.json"
    if meta_path.is_file():
        want = json.loads(meta_path.read_text()).get("items_version")
        if want and want != version:
            print(f"note: run judged items/{want}; photos and titles come from items/{version}",
                  file=sys.stderr)
    path = render_report(args.run_dir, rows, template=args.template, max_gallery=args.max_gallery)
    print(path)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from mmrec.artifacts import atomic_write_text
    from mmrec.bench.compare import compare_runs, format_table, load_gate

    result = compare_runs(args.run_a, args.run_b, load_gate(args.gate))
    print(format_table(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    return 0 if result["passed"] else GATE_FAILED



def _calibrate_slot(args: argparse.Namespace) -> int:
    from mmrec.artifacts import ArtifactStore, atomic_write_text
    from mmrec.bench import slot_calibration as SC
    from mmrec.bench.photo_sources import load_real_photo_table, real_photos
    from mmrec.recommend import Recommender
    from mmrec.recommend.loading import photo_model_versions

    store = ArtifactStore(args.artifacts)
    cfg = stage_config(args, "recommend").model_copy(update={"prewarm_recall": False})
    rec = Recommender.from_store(store, config=cfg, profile=args.profile)
    table = load_real_photo_table(args.table, rec.tax)
    stale = SC.held_out_reference_senders(store, table)
    if stale:
        from mmrec.errors import InputError

        raise InputError(f"the reference photos ({kinds.PHOTO_REFS}/{store.current_version(kinds.PHOTO_REFS)}) include "
                         f"photographers {args.table} now holds out ({', '.join(stale[:5])}"
                         f"{', ...' if len(stale) > 5 else ''}): they were built, and the encoder and "
                         "tagger likely trained, before the split; retrain them (mmrec demo from empty "
                         "artifacts, or embed train, sft train, then embed photo-refs) and fit again")
    root = args.data / "real_photos"
    t0 = time.perf_counter()
    # val and, where the table names it, the calibration split: photographers no model trained on
    splits = [sp for sp in SC.FIT_SPLITS if table.senders.get(sp)]
    by_split = {sp: SC.read_photos(rec, real_photos(root, table, sp)) for sp in splits}
    fit_on = [r for sp in splits for r in by_split[sp]]
    models = photo_model_versions(store)
    cal = SC.fit(fit_on, target_accuracy=args.target_accuracy, models=models,
                 fitted_on={"source": "real_photos", "table": str(args.table), "split": "+".join(splits),
                            "photos": len(fit_on), "senders": len({r.sender for r in fit_on}),
                            "photos_by_split": {sp: len(by_split[sp]) for sp in splits}})
    out = {"calibrator": cal.model_dump(), "fit": SC.evaluate(cal, fit_on),
           "fit_cross_validated": SC.cross_validated(fit_on, cal.fitted_on.get("c", 1.0)),
           **{sp: SC.evaluate(cal, by_split[sp]) for sp in splits}}
    if args.test:
        out["test"] = SC.evaluate(cal, SC.read_photos(rec, real_photos(root, table, "test")))
    flat = {f"{split}.{k}": v for split in ("fit", *splits, "test") if split in out
            for k, v in out[split].items() if k not in ("bins", "coverage")}
    cv = out["fit_cross_validated"] or {}
    flat.update({f"fit_cv.{k}": v for k, v in cv.items()})
    out["version"] = SC.save(store, cal, flat)
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=2, sort_keys=True))
    for k, v in flat.items():
        print(f"  {k:34} {v:.4f}" if isinstance(v, float) else f"  {k:34} {v}")
    print(f"slot_calibration/{out['version']}: threshold {cal.threshold:.4f} "
          f"({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
    return 0
