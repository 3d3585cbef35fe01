"""How the tagger alone reads outside photos: slot and garment class from its category value.

For every labelled photo of one real-photo photographer split (probes excluded), or H&M's
packshots (``--split hm``), the tagger's category reading is judged against the photo's label:

  slot_acc        the slot of the category read (taxonomy) is the label's slot
  garment_acc     the category read is one the label allows ("Pants": trousers, jeans, ...)
  confident       share of photos whose category confidence >= --min-confidence (the
                  serving threshold, `recommend.photo_min_confidence`), and slot_acc on them
  ece             expected calibration error of the category confidence as P(slot right)

Choose recipes on ``--split val``; read ``--split test`` once per adopted recipe.

Usage (repo root):
  .venv/bin/python -m lab.sft.photo_eval --artifacts artifacts --vlm <version> --split val \
      --out docs/results/<name>/tagger_photos_val.json
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from lab.embed.photo_probe import labelled_photos, photo_args, write_result

def judge(readings: list[dict], photos: list, taxonomy, min_confidence: float) -> dict:
    """Slot / garment accuracy of the category readings against the photos' truth."""
    from mmrec.bench.metrics import calibration

    slot_ok, garment_ok, conf = [], [], []
    for r, p in zip(readings, photos):
        cat = r.get("category", {})
        value, c = cat.get("value"), float(cat.get("confidence") or 0.0)
        slot_ok.append(value is not None and taxonomy.slot_of(value) == p.slot)
        garment_ok.append(value in p.categories)
        conf.append(c)
    slot_ok, conf = np.array(slot_ok), np.array(conf)
    kept = conf >= min_confidence
    cal = calibration([{"confidence": c, "correct": bool(ok)} for c, ok in zip(conf, slot_ok)]) or {}
    return {"photos": len(photos), "slot_acc": float(slot_ok.mean()), "garment_acc": float(np.mean(garment_ok)),
            "confident_share": float(kept.mean()),
            "slot_acc_confident": float(slot_ok[kept].mean()) if kept.any() else None,
            "ece": cal.get("ece"),
            "read_slots": dict(Counter(taxonomy.slot_of(v) if (v := r.get("category", {}).get("value")) else "none"
                                       for r in readings).most_common()),
            "true_slots": dict(Counter(p.slot for p in photos).most_common())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    photo_args(p, threads=2)
    p.add_argument("--vlm", default=None, help="vlm version (default: CURRENT)")
    p.add_argument("--min-confidence", type=float, default=0.5)
    args = p.parse_args(argv)

    import torch

    from mmrec.artifacts import ArtifactStore
    from mmrec.attributes.tagger import Tagger
    from mmrec.images import load_image
    from mmrec.taxonomy import default_taxonomy

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    tax = default_taxonomy()
    tagger = Tagger.load(ArtifactStore(args.artifacts), args.vlm)
    photos = labelled_photos(args.data, args.split, tax)
    readings = tagger.tag([load_image(ph.uri) for ph in photos])
    out = {"vlm": tagger.version, "split": args.split, **judge(readings, photos, tax, args.min_confidence),
           "seconds": round(time.perf_counter() - t0, 1)}
    write_result(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
