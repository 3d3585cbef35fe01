"""`mmrec outfit priors | recommend | scenes`: outfit priors artifact and in-process recommendations."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("outfit", help="outfit priors, scenes, and recommendations without a server")
    s = p.add_subparsers(dest="outfit_command", metavar="SUBCOMMAND")
    s.required = True

    pr = s.add_parser("priors", help="learn slot/category co-occurrence priors from Polyvore outfits")
    pr.add_argument("--source", type=Path, default=Path("../shared/data/polyvore_outfits"),
                    help="Polyvore Outfits folder (categories.csv, train_category.json, valid.json)")
    pr.set_defaults(handler=_priors)

    sc = s.add_parser("scenes", help="list the scenes and their templates (configs/scenes.yaml)")
    sc.set_defaults(handler=_scenes)

    rec = s.add_parser("recommend", help="outfits for a scene, printed as JSON (the API's response)")
    rec.add_argument("--scene", required=True)
    rec.add_argument("--user", default=None, help="user id (simulated shoppers for Myntra)")
    rec.add_argument("--text", default=None, help="what the shopper typed")
    rec.add_argument("--photo", type=Path, default=None, help="a kiosk photo to build the look around")
    rec.add_argument("-k", type=int, default=3, help="outfits (1..20)")
    rec.add_argument("--gender", action="append", default=None, choices=("men", "women", "boys", "girls", "unisex"))
    rec.add_argument("--no-explain", action="store_true")
    rec.set_defaults(handler=_recommend)


def _priors(args) -> int:
    from mmrec.artifacts import ArtifactStore
    from mmrec.outfit.priors import write_priors

    t0 = time.perf_counter()
    art = write_priors(ArtifactStore(args.artifacts), args.source)
    print(f"wrote {art.path} in {time.perf_counter() - t0:.1f}s: {json.dumps(art.metrics)}", file=sys.stderr)
    print(art.version)
    return 0


def _scenes(args) -> int:
    from mmrec.outfit.scenes import SceneBook

    book = SceneBook.load()
    print(f"scenes {book.version} ({book.path})")
    for s in book.scenes.values():
        print(f"- {s.name} ({s.label}): usages {', '.join(s.usages)}; templates "
              + " | ".join("+".join(t) for t in s.templates))
    return 0


def _recommend(args) -> int:
    from mmrec.api_models import RecommendRequest, RequestFilters
    from mmrec.artifacts import ArtifactStore
    from mmrec.config import load_config
    from mmrec.images import load_image
    from mmrec.recommend import Recommender

    cfg = load_config("recommend", profile=args.profile, config_dir=args.config_dir)
    t0 = time.perf_counter()
    rec = Recommender.from_store(ArtifactStore(args.artifacts), config=cfg, profile=args.profile)
    print(f"loaded in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    req = RecommendRequest(scene=args.scene, user_id=args.user, query_text=args.text, k=args.k,
                           explain=not args.no_explain,
                           filters=RequestFilters(genders=args.gender) if args.gender else RequestFilters())
    image = load_image(args.photo) if args.photo else None
    resp = rec.recommend(req, image=image)
    print(resp.model_dump_json(indent=1))
    return 0
