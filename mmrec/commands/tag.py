"""`mmrec tag IMAGE...` and `mmrec tag --catalog`: attribute predictions from the tagger."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mmrec.commands import add_config_args, stage_config


def register(sub) -> None:
    p = sub.add_parser("tag", help="tag photos (or the whole catalog) with fine-grained attributes")
    p.add_argument("images", nargs="*", type=Path, help="image files to tag (JSON per line on stdout)")
    p.add_argument("--vlm", default=None, help="vlm version or path (default: CURRENT)")
    p.add_argument("--catalog", action="store_true",
                   help="tag every item of the items artifact; writes an attribute_predictions artifact")
    p.add_argument("--items-version", default=None, help="with --catalog: items version (default: CURRENT)")
    p.add_argument("--limit", type=int, default=None, help="with --catalog: only the first N items")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    add_config_args(p)
    p.set_defaults(handler=_tag)


def _tag(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.attributes.tagger import Tagger, tag_catalog
    from mmrec.errors import InputError
    from mmrec.images import load_image

    if bool(args.images) == bool(args.catalog):
        raise InputError("give image files to tag, or --catalog (not both)")
    if args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    store = ArtifactStore(args.artifacts)
    cfg = stage_config(args, "sft")
    tagger = Tagger.load(store, args.vlm, device=args.device, batch_size=cfg.decode.batch_size,
                         hflip_tta=cfg.decode.hflip_tta)
    if args.images:
        images = [load_image(p) for p in args.images]
        for path, result in zip(args.images, tagger.tag(images)):
            print(json.dumps({"image": str(path), "model_version": tagger.version, "attributes": result}))
        return 0
    t0 = time.perf_counter()
    art = tag_catalog(store, tagger, items_version=args.items_version, limit=args.limit,
                      progress=not args.quiet)
    print(f"tagged {art.metrics['items']} items ({art.metrics['predictions']} predictions) in "
          f"{time.perf_counter() - t0:.1f}s -> {art.path}", file=sys.stderr)
    print(art.version)
    return 0
