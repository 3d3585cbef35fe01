"""Which garment class should the kiosk name for a phone photo whose slot it read?

Today the photo's category is the tagger's reading when it lies in the read slot, else the
commonest category of the photo's catalog look-alikes in the slot (`PhotoAnchoring.reading`).
The labelled reference photos (`photo_refs`: the train photographers' phone photos with their
garment label, "Pants", "Hoodie", ...) are real photos of the same world, so their nearest
ones may name the class better than catalog packshots or a tagger that reads phone photos'
categories right 44% of the time. For the labelled photos of the chosen splits, on the photos
whose slot is read right (where the class can be right at all), each rule's class is right when
the photo's label allows it:

  served       the reading the kiosk serves today
  tagger       the tagger's category when in the read slot, else nothing
  look-alikes  the commonest category of the look-alikes in the slot
  refs         the commonest garment label among the K nearest reference photos of the read
               slot; its category: the look-alikes' commonest one the label allows, else the
               tagger's if the label allows it, else the label's first category
  refsK-tagger the same label; its category: the tagger's if the label allows it, else as refs

Measured 2026-12-07 (late night) on the demo models (encoder 20261207T204308800Z-3b5357), val +
calibration, 620 photos with the slot read right: served 0.773, look-alikes 0.782, refs 5 / 10 /
20 0.811 / 0.808 / 0.816, refs20-tagger 0.818 -> ADOPTED as `PhotoAnchoring.reference_class`
(20 nearest, the tagger's category when the label allows it). Test, read once through the
benchmark: garment class on the answered photos 0.691 -> 0.733
(docs/results/garment-class-20261207/garment_vote_valcal.json, docs/benchmark.md "Garment class
from reference photos"). The label vote is the product's `PhotoRefs.nearest_class`, so the store's
reference photos must carry their classes (built since 2026-12-08), and ``served`` is then the
adopted rule itself (refs20-tagger); the "served before" number above came from the older refs.
Rerun, and choose on val + calibration; read test once for an adopted rule (repo root):
  .venv/bin/python -m lab.embed.garment_vote --artifacts artifacts --split val --split calibration
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np

from lab.embed.photo_probe import write_result

KS = (5, 10, 20)


def class_of_label(label_categories: list[str], look_alike_categories: list[str], tagged: str | None) -> str:
    """A catalog category for a garment label: the look-alikes' commonest one it allows, else
    the tagger's if allowed, else the label's first."""
    votes = Counter(c for c in look_alike_categories if c in label_categories)
    if votes:
        return votes.most_common(1)[0][0]
    return tagged if tagged in label_categories else label_categories[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--table", type=Path, default=Path("benchmark/suites/photos/real_photos.yaml"))
    p.add_argument("--split", action="append", choices=("val", "calibration", "test"), default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    splits = args.split or ["val", "calibration"]

    from mmrec.artifacts import ArtifactStore
    from mmrec.bench.photo_sources import load_real_photo_table, real_photos
    from mmrec.config import load_config
    from mmrec.images import load_image
    from mmrec.recommend import Recommender

    t0 = time.perf_counter()
    store = ArtifactStore(args.artifacts)
    cfg = load_config("recommend", profile="mini").model_copy(update={"prewarm_recall": False})
    rec = Recommender.from_store(store, config=cfg, profile="mini")
    table = load_real_photo_table(args.table, rec.tax)
    refs = rec.photos.refs
    if refs is None or refs.classes is None:
        p.error("no photo_refs with garment classes of the CURRENT encoder (mmrec embed photo-refs)")
    scene = next(iter(rec.scenes.scenes.values()))
    rec.photos.calibrator = None  # read every photo: the class is judged where the slot is right
    rows = []
    for split in splits:
        photos = [ph for ph in real_photos(args.data / "real_photos", table, split) if ph.slot and not ph.probe]
        for at in range(0, len(photos), 16):
            chunk = photos[at:at + 16]
            for ph, a in zip(chunk, rec.photo.analyze_many([load_image(c.uri) for c in chunk])):
                placed = rec.photos.anchor(a, scene, None, [])
                slot = placed.out.slot
                if slot != ph.slot:
                    continue
                tagged = (a.attributes.get("category") or {}).get("value")
                look = [rec.items.row(i)["category"] for i in placed.out.similar]
                row = {"split": split, "allowed": set(ph.categories),
                       "served": (placed.out.attributes.get("category") or {}).get("value"),
                       "tagger": tagged if tagged and rec.tax.slot_of(tagged) == slot else None,
                       "look-alikes": Counter(look).most_common(1)[0][0] if look else None}
                for k in KS:
                    found = refs.nearest_class(a.vector, slot, k)
                    cats = list(found[1]) if found else []
                    row[f"refs{k}"] = class_of_label(cats, look, tagged) if found else None
                    row[f"refs{k}-tagger"] = (tagged if tagged in cats else class_of_label(cats, look, None)) if found else None
                rows.append(row)
    rules = ["served", "tagger", "look-alikes", *(f"refs{k}" for k in KS), *(f"refs{k}-tagger" for k in KS)]
    out = {"artifacts": str(args.artifacts), "splits": splits, "slot_right": len(rows)}
    for split in [*splits, "all"]:
        sel = [r for r in rows if split == "all" or r["split"] == split]
        out[split] = {"photos": len(sel), **{rule: round(float(np.mean([r[rule] in r["allowed"] for r in sel])), 4)
                                             if sel else None for rule in rules}}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    write_result(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
