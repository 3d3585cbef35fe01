"""How well an encoder's slot head reads the slot of outside photos.

For the labelled photos of one real-photo photographer split (probes excluded), or H&M's
packshots (``--split hm``): the head's most probable slot right (``head_slot``), the true slot
among its two most probable (``head_top2``), and the tagger's confident reading on the photos
where it is confident (``--vlm``: its slot right there, and the head's on the same photos), which
decides whether the kiosk should read the head or the tagger first.

Measured 2026-12-07 with this script on the demo encoder 20261207T161009142Z-4e9839 (weight 1.0,
287 steps) and the demo tagger: val (151) head 0.609, top two 0.801; on the 38 photos where the
tagger is confident (>= 0.5) tagger 0.711, head 0.737 -> the head is read first
(`PhotoAnchoring.read_slot`; the first measurement, on the 288-step arm with the readings of the
benchmark's reader, gave 0.623 and 37 photos at 0.676 / 0.784). Test, once: 0.603 / 0.781; (116)
tagger 0.655, head 0.638. H&M: 0.33 / 0.53. Choose on val.

Usage (repo root):
  .venv/bin/python -m lab.embed.slot_head_eval --encoder <version> --split val [--vlm CURRENT]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lab.embed.photo_probe import labelled_photos, open_encoder, photo_args, write_result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    photo_args(p, threads=2)
    p.add_argument("--encoder", default=None, help="encoder version (default: CURRENT)")
    p.add_argument("--vlm", default=None, help="also compare with this tagger's confident readings "
                                               "(CURRENT: the current one)")
    p.add_argument("--min-confidence", type=float, default=0.5, help="the tagger's confident reading")
    args = p.parse_args(argv)

    from mmrec.images import load_image
    from mmrec.taxonomy import default_taxonomy

    t0 = time.perf_counter()
    store, enc_art, encoder = open_encoder(args)
    if encoder.slot_head is None:
        p.error(f"encoder {enc_art.version} has no slot head (trained with train.slot_head.weight 0)")
    tax = default_taxonomy()
    photos = labelled_photos(args.data, args.split, tax)
    images = [load_image(ph.uri) for ph in photos]
    probs = encoder.slot_head.probs(encoder.encode_images(images))
    slots = np.asarray(encoder.slot_head.slots)
    truth = np.asarray([ph.slot for ph in photos])
    order = np.argsort(-probs, axis=1)
    out = {"encoder": enc_art.version, "split": args.split, "photos": len(photos),
           "head_slot": float(np.mean(slots[order[:, 0]] == truth)),
           "head_top2": float(np.mean([t in slots[o[:2]] for t, o in zip(truth, order)]))}
    if args.vlm:
        from mmrec.attributes.tagger import Tagger

        tagger = Tagger.load(store, None if args.vlm == "CURRENT" else args.vlm, device="cpu")
        tagged = []
        for tags in tagger.tag(images):
            cat = tags.get("category") or {}
            ok = cat.get("value") and (cat.get("confidence") or 0) >= args.min_confidence
            slot = tax.slot_of(cat["value"]) if ok else None
            tagged.append(slot if slot and slot != "other" else None)
        sure = np.asarray([t is not None for t in tagged])
        out.update({"tagger_confident": int(sure.sum()),
                    "tagger_slot_where_confident": float(np.mean([t == s for t, s, c in zip(tagged, truth, sure) if c]))
                    if sure.any() else None,
                    "head_slot_where_tagger_confident": float(np.mean(slots[order[sure, 0]] == truth[sure]))
                    if sure.any() else None})
    out["seconds"] = round(time.perf_counter() - t0, 1)
    write_result(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
