"""How much colour family these photos and labels give away: simple references on the SFT
dataset's split, next to the tagger, and contact sheets of the tagger's commonest family errors.

    .venv/bin/python -m lab.sft.colour_ceiling [--artifacts artifacts] [--out runs/colour_ceiling]

Each reference is fitted on the train split's products (one row per product) and scored on the
test split's products that have a colour label, by colour family (`Taxonomy.colour_family`):

- ``hist_lr``: logistic regression on a foreground colour histogram (``lab.sft.colour_histogram``:
  HSV 12 x 4 x 4 bins over the pixels that are not near-white studio background, the mean
  foreground RGB and the foreground's share of the photo);
- ``hist_gbm``: LightGBM on the same features;
- ``clip_lr``: logistic regression on the in-house CLIP image vectors (the ``vectors`` artifact);
- ``clip_hist_lr``: both feature sets together.

``tagger`` is the CURRENT ``attribute_predictions`` (the catalog tagged by the tagger), also
broken down by the photo's pixel size (``tagger_by_photo_size``: the catalog mixes 224 x 224
squares with 225 x 300 and 60 x 80 portraits). ``tagger_plus_clip_hist`` (test split only) is
an ensemble of two unrelated readers: the tagger's answer (one-hot times its confidence) mixed
with ``clip_hist_lr``'s probabilities, the mixing weight chosen on the validation split. Writes
``metrics.json`` and one contact sheet per frequent family confusion of the tagger
(``<truth>_as_<predicted>.png``: photo, catalog colour / tagged colour) under ``--out``.
The colour histograms are cached under ``--out`` (decoding 10,600 photos at 48 x 64 px took
most of the first run, 10 minutes while the box was also training; 51 s once cached).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np


def colour_features(path: str) -> np.ndarray:
    """The foreground colour histogram of one photo at 48 x 64 px (``lab.sft.colour_histogram``)."""
    from PIL import Image

    from lab.sft.colour_histogram import colour_histogram

    return colour_histogram(np.asarray(Image.open(path).convert("RGB").resize((48, 64))))


def _logreg(xtr, ytr, xte, c: float, *, proba: bool = False):
    """Predicted classes of ``xte`` (``proba``: (classes, probabilities) of each ``xte`` in the list)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scale = StandardScaler().fit(xtr)
    model = LogisticRegression(max_iter=3000, C=c).fit(scale.transform(xtr), ytr)
    if proba:
        return list(model.classes_), [model.predict_proba(scale.transform(x)) for x in xte]
    return model.predict(scale.transform(xte))


def _blend(classes: list[str], probs: list[np.ndarray], tagged: list[list[tuple[str | None, float]]],
           truths: list[np.ndarray]) -> tuple[float, float, float]:
    """(weight, validation accuracy, test accuracy) of ``w * tagger + (1 - w) * probs``; the
    weight (0, 0.1, ..., 1) is the best on the first split (validation), then applied to the second."""
    col = {c: i for i, c in enumerate(classes)}

    def mix(w: float, k: int) -> np.ndarray:
        onehot = np.zeros_like(probs[k])
        for i, (fam, conf) in enumerate(tagged[k]):
            if fam in col:
                onehot[i, col[fam]] = conf
        return np.asarray(classes)[(w * onehot + (1 - w) * probs[k]).argmax(1)]

    grid = [round(0.1 * i, 1) for i in range(11)]
    val = {w: float(np.mean(mix(w, 0) == truths[0])) for w in grid}
    best = max(grid, key=lambda w: (val[w], -abs(w - 0.5)))
    return best, val[best], float(np.mean(mix(best, 1) == truths[1]))


def _by_photo_size(products, correct) -> dict[str, dict[str, float]]:
    from PIL import Image

    groups: dict[str, list[bool]] = {}
    for p, ok in zip(products, correct):
        with Image.open(p["image_path"]) as im:  # the header only
            groups.setdefault(f"{im.width}x{im.height}", []).append(bool(ok))
    return {k: {"n": len(v), "accuracy": round(float(np.mean(v)), 4)}
            for k, v in sorted(groups.items(), key=lambda kv: -len(kv[1])) if len(v) >= 20}


def _gbm(xtr, ytr, xte):
    import lightgbm as lgb

    classes = sorted(set(ytr))
    code = {c: i for i, c in enumerate(classes)}
    model = lgb.LGBMClassifier(n_estimators=400, learning_rate=0.05, num_leaves=31, min_child_samples=10,
                               subsample=0.8, subsample_freq=1, colsample_bytree=0.5, verbose=-1, n_jobs=2,
                               random_state=0)
    model.fit(xtr, [code[c] for c in ytr])
    return [classes[i] for i in model.predict(xte)]


def _sheet(rows: list[tuple[str, str, str]], path: Path, cols: int = 4) -> None:
    """Photos with "catalog colour / tagged colour" under each."""
    from PIL import Image, ImageDraw

    cell_w, cell_h = 150, 210
    sheet = Image.new("RGB", (cols * cell_w, -(-len(rows) // cols) * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (image, truth, pred) in enumerate(rows):
        img = Image.open(image).convert("RGB")
        img.thumbnail((cell_w, cell_h - 20))
        x, y = (k % cols) * cell_w, (k // cols) * cell_h
        sheet.paste(img, (x, y))
        draw.text((x + 2, y + cell_h - 18), f"{truth} / {pred}", fill="black")
    sheet.save(path)


def _features(path: Path, products) -> np.ndarray:
    """Colour histograms of ``products``' photos, cached in ``path`` (decoding is most of the time)."""
    if path.is_file():
        x = np.load(path)
        if len(x) == len(products):
            return x
    x = np.stack([colour_features(p["image_path"]) for p in products])
    np.save(path, x)
    return x


def _current(store, kind: str):
    """The CURRENT version of an artifact kind, or None when there is none yet (references
    that need it are then left out)."""
    from mmrec.errors import ArtifactNotFound

    try:
        return store.load(kind)
    except ArtifactNotFound:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--dataset", default=None, help="sft_dataset version (default: CURRENT)")
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--out", default="runs/colour_ceiling")
    ap.add_argument("--sheets", type=int, default=4, help="contact sheets of the commonest confusions")
    args = ap.parse_args()

    import pyarrow.parquet as pq

    from mmrec.artifacts import ArtifactStore
    from mmrec.attributes.train import load_parts
    from mmrec.taxonomy import default_taxonomy

    t0 = time.perf_counter()
    tax = default_taxonomy()
    store = ArtifactStore(args.artifacts)
    parts = load_parts(store, args.dataset)
    train = [p for p in parts.split("train") if p["colour"]]
    test = [p for p in parts.split(args.split) if p["colour"]]
    family = tax.colour_family
    ytr = [family(p["colour"]) for p in train]
    yte = np.array([family(p["colour"]) for p in test])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hist_tr = _features(out / f"hist_{parts.art.version}_train.npy", train)
    hist_te = _features(out / f"hist_{parts.art.version}_{args.split}.npy", test)

    vec_art = _current(store, "vectors")
    vec = {}
    if vec_art is not None:
        table = pq.read_table(vec_art.file("vectors.parquet"), columns=["item_id", "vector"])
        vec = dict(zip(table.column("item_id").to_pylist(),
                       np.asarray(table.column("vector").to_pylist(), np.float32)))
    have = bool(vec) and all(p["item_id"] in vec for p in train + test)
    scores: dict[str, float] = {}
    preds = {"hist_lr": _logreg(hist_tr, ytr, hist_te, 3.0), "hist_gbm": _gbm(hist_tr, ytr, hist_te)}
    if have:
        clip_tr = np.stack([vec[p["item_id"]] for p in train])
        clip_te = np.stack([vec[p["item_id"]] for p in test])
        preds["clip_lr"] = _logreg(clip_tr, ytr, clip_te, 0.1)
        preds["clip_hist_lr"] = _logreg(np.hstack([clip_tr, hist_tr]), ytr,
                                        np.hstack([clip_te, hist_te]), 0.1)
    for name, p in preds.items():
        scores[name] = round(float(np.mean(np.asarray(p) == yte)), 4)

    pred_art = _current(store, "attribute_predictions")
    tagged: dict = {}
    if pred_art is not None:
        ptable = pq.read_table(pred_art.file("predictions.parquet")).to_pylist()
        tagged = {r["item_id"]: r["value"] for r in ptable if r["field"] == "colour"}
        confidence = {r["item_id"]: r["confidence"] for r in ptable if r["field"] == "colour"}
    tag_fam = [family(tagged[p["item_id"]]) if p["item_id"] in tagged else None for p in test]
    by_size, blend = None, None
    if tagged:
        scores["tagger"] = round(float(np.mean([t == y for t, y in zip(tag_fam, yte)])), 4)
        by_size = _by_photo_size(test, [t == y for t, y in zip(tag_fam, yte)])
    if tagged and have and args.split == "test":
        val = [p for p in parts.split("val") if p["colour"]]
        hist_va = _features(out / f"hist_{parts.art.version}_val.npy", val)
        clip_va = np.stack([vec[p["item_id"]] for p in val])
        classes, probs = _logreg(np.hstack([clip_tr, hist_tr]), ytr, [np.hstack([clip_va, hist_va]),
                                 np.hstack([clip_te, hist_te])], 0.1, proba=True)

        def answers(products):
            return [(family(tagged[p["item_id"]]), confidence[p["item_id"]]) if p["item_id"] in tagged
                    else (None, 0.0) for p in products]

        w, acc_val, acc_test = _blend(classes, probs, [answers(val), answers(test)],
                                      [np.array([family(p["colour"]) for p in val]), yte])
        scores["tagger_plus_clip_hist"] = round(acc_test, 4)
        blend = {"tagger_weight": w, "val_accuracy": round(acc_val, 4)}

    confusions = Counter((y, t) for t, y in zip(tag_fam, yte) if t is not None and t != y)
    sheets = []
    for (truth, pred), n in confusions.most_common(args.sheets):
        rows = [(p["image_path"], p["colour"], tagged[p["item_id"]]) for p, t, y in zip(test, tag_fam, yte)
                if y == truth and t == pred][:16]
        name = f"{truth}_as_{pred}.png"
        _sheet(rows, out / name)
        sheets.append({"truth": truth, "predicted": pred, "count": n, "sheet": name})
    majority = round(float(np.mean(yte == Counter(ytr).most_common(1)[0][0])), 4)
    metrics = {"split": args.split, "products": len(test), "train_products": len(train),
               "colour_family_accuracy": scores, "tagger_by_photo_size": by_size,
               "tagger_plus_clip_hist": blend, "majority": majority,
               "tagger_predictions": pred_art and pred_art.version, "vectors": vec_art and vec_art.version,
               "dataset": parts.art.version, "confusions": sheets,
               "seconds": round(time.perf_counter() - t0, 1)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    for name, acc in scores.items():
        print(f"{name:22s} colour family {acc:.3f}")
    for size, row in (by_size or {}).items():
        print(f"tagger, {size:>9s} photos colour family {row['accuracy']:.3f} ({row['n']})")
    print(f"{len(test)} {args.split} products, {len(train)} train; sheets and metrics.json in {out} "
          f"({metrics['seconds']} s)")


if __name__ == "__main__":
    main()
