"""`mmrec embed train | catalog | photo-refs | eval`: the CLIP encoder, catalog vectors, reference
photos for the kiosk's slot vote, held-out evaluation."""

from __future__ import annotations

import json
import sys
import time

from mmrec.commands import add_config_args, stage_config


def register(sub) -> None:
    p = sub.add_parser("embed", help="train the CLIP encoder, embed the catalog, evaluate retrieval")
    s = p.add_subparsers(dest="embed_command", metavar="SUBCOMMAND")
    s.required = True

    tr = s.add_parser("train", help="train (mini/tiny) or package (standard, pretrained) an encoder")
    tr.add_argument("--items", default=None, help="items version (default: CURRENT)")
    add_config_args(tr)
    tr.set_defaults(handler=_train)

    cat = s.add_parser("catalog", help="embed catalog images into a vectors artifact (incremental)")
    cat.add_argument("--items", default=None, help="items version (default: CURRENT)")
    cat.add_argument("--encoder", default=None, help="encoder version or folder (default: CURRENT)")
    cat.add_argument("--full", action="store_true",
                     help="re-embed everything instead of reusing unchanged vectors")
    cat.add_argument("--engine", choices=("local", "ray"), default=None,
                     help="local threads, or Ray Data map_batches (default: config catalog.engine)")
    add_config_args(cat)
    cat.set_defaults(handler=_catalog)

    pr = s.add_parser("photo-refs", help="embed the train photographers' labelled phone photos as "
                                         "reference photos for the kiosk's slot vote (photo_refs)")
    pr.add_argument("--source", default="../shared/data/real_photos",
                    help="the real_photos folder (images.csv + images/)")
    pr.add_argument("--table", default="benchmark/suites/photos/real_photos.yaml",
                    help="reviewed label table with the photographer split (train photographers only)")
    pr.add_argument("--encoder", default=None, help="encoder version (default: CURRENT)")
    pr.add_argument("--answers", nargs="?", const="served", default=None, metavar="STORE",
                    help="also the kiosk photos shoppers agreed to keep with their answer, from the "
                         "feedback store STORE (default: the one `mmrec serve` writes)")
    add_config_args(pr)
    pr.set_defaults(handler=_photo_refs)

    ev = s.add_parser("eval", help="held-out retrieval metrics per route and fused "
                                   "(writes embed_eval/<version>/metrics.json)")
    ev.add_argument("--vectors", default=None, help="vectors version (default: CURRENT)")
    ev.add_argument("--encoder", default=None, help="encoder version (default: the vectors' encoder)")
    ev.add_argument("--split", choices=("test", "val"), default="test",
                    help="gallery: test = held-out products (report these), val = for tuning")
    ev.add_argument("--tune", action="store_true",
                    help="also score every route-weight combination of eval.tune_grid (use with --split val)")
    add_config_args(ev)
    ev.set_defaults(handler=_eval)


def _train(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.embed.train import train_encoder

    cfg = stage_config(args, "embed")
    t0 = time.perf_counter()
    art = train_encoder(ArtifactStore(args.artifacts), cfg, items_version=args.items,
                        progress=not args.quiet)
    m = art.metrics
    print(f"wrote {art.path} in {time.perf_counter() - t0:.0f}s: "
          + json.dumps({k: m[k] for k in ("train_items", "epochs_done", "train_minutes",
                                          "train_images_per_s", "final") if k in m}),
          file=sys.stderr)
    print(art.version)
    return 0


def _photo_refs(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.embed.encoder import Encoder
    from mmrec.embed.photo_refs import build_photo_refs
    from mmrec.taxonomy import default_taxonomy

    store = ArtifactStore(args.artifacts)
    t0 = time.perf_counter()
    tax = default_taxonomy()
    answers = []
    if args.answers:
        from mmrec.commands import served_feedback_store
        from mmrec.feedback.photo_answers import answer_photos

        path = served_feedback_store(args, serve_overrides=False) if args.answers == "served" else args.answers
        answers = answer_photos(path, tax)
    art = build_photo_refs(store, Encoder.load(store, args.encoder), args.source, args.table, tax,
                           answers=answers)
    print(f"wrote {art.path} in {time.perf_counter() - t0:.0f}s: {json.dumps(art.metrics)}", file=sys.stderr)
    print(art.version)
    return 0


def _catalog(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.embed.catalog import embed_catalog

    cfg = stage_config(args, "embed")
    if args.engine:
        cfg.catalog.engine = args.engine
    store = ArtifactStore(args.artifacts)
    t0 = time.perf_counter()
    res = embed_catalog(store, cfg, items_version=args.items, encoder_ref=args.encoder,
                        incremental=not args.full, progress=not args.quiet)
    dt = time.perf_counter() - t0
    print(f"embedded {res.embedded}, reused {res.reused}, dropped {res.removed}, "
          f"failed {len(res.failures)} in {dt:.1f}s"
          + (f" ({res.embedded / res.embed_seconds:.0f} img/s)" if res.embedded and res.embed_seconds else ""),
          file=sys.stderr)
    if res.unchanged:
        print(f"vectors unchanged since vectors/{res.artifact.version}; nothing written", file=sys.stderr)
    else:
        print(f"wrote {res.artifact.path}", file=sys.stderr)
    print(res.artifact.version)
    return 0


def _eval(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.config import load_config
    from mmrec.embed.evaluate import evaluate, format_table, read_metrics

    store = ArtifactStore(args.artifacts)
    cfg = stage_config(args, "embed")  # --set applies to the embed config (eval.*)
    recall_cfg = load_config("recall", profile=args.profile, config_dir=args.config_dir)
    art = evaluate(store, cfg, recall_cfg, vectors_ref=args.vectors, encoder_ref=args.encoder,
                   split=args.split, tune=args.tune, progress=not args.quiet)
    print(format_table(read_metrics(art)), file=sys.stderr)
    print(f"wrote {art.path / 'metrics.json'}", file=sys.stderr)
    print(art.version)
    return 0
