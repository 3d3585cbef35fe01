"""Test-time views for the slot head: does averaging a photo's mirror (and crops) read better?

For the labelled photos of one photographer split, the slot head's accuracy on the photo alone
(``o``), its mirror (``f``), and the sum of the head's probabilities over views: ``o+f``, and
centre crops of 85% / 70% of the side added (``c85``, ``c70``). With several ``--encoder``
versions, only ``o``, ``f`` and ``o+f`` per encoder: whether a gain holds across encoders or is
one model's luck.

Measured 2026-12-07 (night) on val (151 photos), NOT ADOPTED: on the demo encoder
20261207T174417788Z-6fba46 ``o`` 0.775, ``o+f`` 0.801, ``o+f+c70`` 0.815 -- but over the 14
encoders with a slot head in the store (quick, full-budget, lab arms and the calibration-split
encoder 20261207T204308800Z-3b5357: 0.728 -> 0.748) ``o+f`` minus ``o`` was -2.6 to +3.3
points, -0.3 on average: a gain on one encoder is within the spread of 151 photos, and the
encoders are not mirror-invariant (``f`` alone is below ``o`` on 10 of 14)
(docs/results/calibration-split-20261207/slot_tta_val_encoders.json).
Crops off-centre (corners at 85%) read 0.66-0.71 alone and pull the sum down. The kiosk reads
one view. Rerun:

  .venv/bin/python -m lab.embed.slot_tta --split val
  .venv/bin/python -m lab.embed.slot_tta --split val --encoder <v1> --encoder <v2> ...
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import ImageOps

from lab.embed.photo_probe import labelled_photos, open_encoder, photo_args, write_result


def _crop(im, side: float):
    w, h = im.size
    cw, ch = int(w * side), int(h * side)
    left, top = (w - cw) // 2, (h - ch) // 2
    return im.crop((left, top, left + cw, top + ch))


VIEWS = {"o": lambda im: im, "f": ImageOps.mirror,
         "c85": lambda im: _crop(im, 0.85), "c70": lambda im: _crop(im, 0.70)}
SUMS = (("o", "f"), ("o", "f", "c85"), ("o", "f", "c70"))


def view_probs(encoder, images, views) -> dict[str, np.ndarray]:
    """The head's probabilities [n, slots] of every view of the images."""
    return {v: encoder.slot_head.probs(encoder.encode_images([VIEWS[v](im) for im in images])) for v in views}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    photo_args(p, threads=2)
    p.add_argument("--encoder", action="append", default=None, help="encoder version(s) (default: CURRENT)")
    args = p.parse_args(argv)

    from mmrec.images import load_image
    from mmrec.taxonomy import default_taxonomy

    t0 = time.perf_counter()
    photos = labelled_photos(args.data, args.split, default_taxonomy())
    images = [load_image(ph.uri) for ph in photos]
    truth = np.asarray([ph.slot for ph in photos])
    versions = args.encoder or [None]
    out: dict = {"split": args.split, "photos": len(photos), "encoders": {}}
    for version in versions:
        args.encoder = version
        _, art, encoder = open_encoder(args)
        if encoder.slot_head is None:
            continue
        slots = np.asarray(encoder.slot_head.slots)
        probs = view_probs(encoder, images, VIEWS if len(versions) == 1 else ("o", "f"))
        acc = {v: float(np.mean(slots[pr.argmax(1)] == truth)) for v, pr in probs.items()}
        for combo in SUMS:
            if all(v in probs for v in combo):
                acc["+".join(combo)] = float(np.mean(slots[sum(probs[v] for v in combo).argmax(1)] == truth))
        out["encoders"][art.version] = acc
    gains = [a["o+f"] - a["o"] for a in out["encoders"].values()]
    out["mirror_gain_mean"] = float(np.mean(gains)) if gains else None
    out["seconds"] = round(time.perf_counter() - t0, 1)
    write_result(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
