"""`mmrec demo`: the main job on the embedded default (mini profile, the shared catalog).

Builds what is missing, reusing every artifact that already exists. Later stages (SFT,
encoder, index, ranker, serving) join this command as they land.
"""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("demo", help="build what is missing and run the pipeline end to end")
    p.add_argument("--source", type=Path, default=Path("../shared/data"),
                   help="folder holding myntra/ (default: ../shared/data)")
    p.set_defaults(handler=_demo)


def _demo(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.catalog.ingest import ingest_catalog
    from mmrec.config import load_config
    from mmrec.errors import InputError

    myntra = args.source / "myntra"
    if not (myntra / "styles.csv").is_file():
        raise InputError(f"{myntra}/styles.csv not found; pass --source DIR holding myntra/")
    store = ArtifactStore(args.artifacts)
    cfg = load_config("ingest", profile=args.profile, config_dir=args.config_dir,
                      overrides=["format=myntra"])
    print(f"[1/1] catalog ingest from {myntra}", file=sys.stderr)
    res = ingest_catalog(myntra, cfg, store, progress=not args.quiet)
    art = res.artifact or store.load("items")
    state = "unchanged, reused" if res.unchanged else "new version"
    print(f"items/{art.version} ({state}): {art.metrics['items_out']} items, "
          f"error rate {art.metrics['error_rate']:.2%}", file=sys.stderr)
    print(f"next: mmrec --artifacts {args.artifacts} catalog show", file=sys.stderr)
    return 0
