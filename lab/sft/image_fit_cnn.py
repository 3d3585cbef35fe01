"""Does a way of fitting photos into the tagger's square help a reader of those pixels? A cheap proxy.

    .venv/bin/python -m lab.sft.image_fit_cnn [--budget-s 700] [--fits squash foreground]
                                               [--size 112] [--artifacts artifacts] [--out runs/image_fit_cnn]

Retraining the tagger's two stages for one preprocessing idea costs 42 minutes here; this costs
about 6 per fit. For each fit it fits the train and val photos of the
CURRENT ``sft_dataset`` (`lab.sft.image_fit.fit_square`), trains the evaluation's small CNN (`mmrec.attributes.cnn`, same
settings) for the same CPU seconds on train, and scores it on val: category, gender, colour,
colour family, usage accuracy and the steps it made. Equal CPU budgets, one seed: a difference of
about 1.4 points is one standard error at 1,320 val products. It also reports how much of the
square the product covers under each fit (``product_share``: pixels of the fitted val photo
that differ from the photo's border colour by more than the foreground tolerance).
``--share-only`` stops there (seconds).
Writes ``metrics.json`` under ``--out``. Validation only: the test split is for the tagger's
final reading.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HEADLINE = ("category", "gender", "colour", "colour_family", "usage")


def fitted_cache(store, parts, size: int, fit: str):
    """The dataset's photos fitted to ``size`` px squares: the tagger's own cache for ``squash``,
    an in-memory one for the other fits (the product caches only what it trains on)."""
    from lab.sft.image_fit import fit_square
    from mmrec.attributes.data import PixelCache
    from mmrec.attributes.train import pixel_cache
    from mmrec.images import load_image

    if fit == "squash":
        return pixel_cache(store, parts, size)
    paths = sorted({p["image_path"] for p in parts.products})
    return PixelCache(np.stack([np.asarray(fit_square(load_image(p), size, fit)) for p in paths]), paths)


def product_share(cache, products, tol: int = 24) -> float:
    """Mean share of the fitted square that is product, judged against each photo's background."""
    from lab.sft.image_fit import foreground_box
    from mmrec.images import load_image

    shares = []
    for p in products:
        _, background = foreground_box(load_image(p["image_path"]), tol=tol)
        square = np.asarray(cache.pixels[cache.index[p["image_path"]]], dtype=np.int16)
        shares.append(float((np.abs(square - np.asarray(background)).max(axis=2) > tol).mean()))
    return round(float(np.mean(shares)), 3)


def main() -> None:
    from lab.sft.image_fit import FITS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--budget-s", type=float, default=700.0, help="CNN training CPU seconds per fit")
    ap.add_argument("--fits", nargs="+", default=list(FITS), choices=list(FITS))
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--share-only", action="store_true", help="only the product share, no CNN")
    ap.add_argument("--out", default="runs/image_fit_cnn")
    args = ap.parse_args()

    from mmrec.artifacts import ArtifactStore
    from mmrec.attributes import cnn
    from mmrec.attributes.config import CnnBaseline
    from mmrec.attributes.metrics import attribute_report
    from mmrec.attributes.train import load_parts
    from mmrec.taxonomy import default_taxonomy

    store = ArtifactStore(args.artifacts)
    parts = load_parts(store, None)
    tax = default_taxonomy()
    train, val = parts.split("train"), parts.split("val")

    def labels(products):
        return [{f: p.get(f) for f in parts.fields} for p in products]

    results: dict[str, dict] = {}
    for fit in args.fits:
        t0 = time.perf_counter()
        cache = fitted_cache(store, parts, args.size, fit)

        def pixels(products):
            return cache.pixels[np.asarray([cache.index[p["image_path"]] for p in products])]

        results[fit] = {"product_share": product_share(cache, val)}
        if args.share_only:
            print(fit, json.dumps(results[fit]), flush=True)
            continue
        model, meta = cnn.train_cnn(pixels(train), labels(train), parts.fields, CnnBaseline(), args.budget_s,
                                    threads=args.threads)
        report = attribute_report(labels(val), cnn.predict_cnn(model, meta["classes"], pixels(val)),
                                  parts.fields, tax)
        results[fit] |= {**{f: report[f]["accuracy"] for f in HEADLINE}, "steps": meta["steps"],
                         "cpu_seconds": meta["cpu_seconds"], "wall_seconds": round(time.perf_counter() - t0, 1)}
        print(fit, json.dumps(results[fit]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"dataset": parts.art.version, "split": "val",
                                                  "n": len(val), "budget_s": args.budget_s,
                                                  "size": args.size, "fits": results}, indent=1))


if __name__ == "__main__":
    main()
