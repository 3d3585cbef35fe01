"""Does an ensemble of encoder runs read phone photos' slots better, or more steadily?

The last closing note proposed "an ensemble of encoder runs" as the way to a steadier kiosk. This
measures it before anyone builds it: for the labelled photos of one photographer split, each
store's CURRENT encoder's slot head alone, and the mean of their probabilities over every subset
of two or more stores; with the accuracy of the photos whose top probability reaches 0.8 / 0.9
(how pure the confident end is, which decides how much the kiosk can answer at its 92% promise).

Measured 2026-12-07 (late night) on three `mmrec demo` builds of the same recipe (./artifacts
20261207T204308800Z-3b5357, /tmp/a 20261207T214602829Z-7b2440, /tmp/b 20261207T221450611Z-712cb2),
NOT ADOPTED: val (151) singles 0.728 / 0.715 / 0.762, all three 0.728; calibration (703) singles
0.725 / 0.711 / 0.708, all three 0.725 -- the mean of three is the best single run's accuracy,
not above it (the runs make the same mistakes: outerwear, dresses and shoes read as tops). The
confident end is a little purer (calibration, top >= 0.9: 0.883 on 56% vs 0.843-0.863 on
59-62%), not enough for three times the encoder's 13 minutes in the demo and three towers per
kiosk photo (docs/results/tagger-time-20261207/slot_ensemble_*.json). Rerun (stores built with
`mmrec --artifacts <dir> demo --source ../shared/data --no-serve`):

  .venv/bin/python -m lab.embed.slot_ensemble --split val --store artifacts --store /tmp/a --store /tmp/b
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from lab.embed.photo_probe import labelled_photos, photo_args, write_result

CONFIDENT = (0.8, 0.9)


def confident_end(probs: np.ndarray, slots: np.ndarray, truth: np.ndarray) -> dict:
    """Accuracy over all photos, and share / accuracy of those whose top probability reaches each level."""
    top, right = probs.max(axis=1), slots[probs.argmax(axis=1)] == truth
    out = {"slot": float(right.mean())}
    for level in CONFIDENT:
        sure = top >= level
        out[f"share_at_{level}"] = float(sure.mean())
        out[f"slot_at_{level}"] = float(right[sure].mean()) if sure.any() else None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    photo_args(p, threads=2)
    p.add_argument("--store", action="append", type=Path, required=True,
                   help="an artifact store whose CURRENT encoder joins (repeat, two or more)")
    args = p.parse_args(argv)
    if len(args.store) < 2:
        p.error("give two or more --store")

    import torch

    from mmrec.artifacts import ArtifactStore
    from mmrec.embed.encoder import Encoder
    from mmrec.images import load_image
    from mmrec.kinds import ENCODER
    from mmrec.taxonomy import default_taxonomy

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    photos = labelled_photos(args.data, args.split, default_taxonomy())
    images = [load_image(ph.uri) for ph in photos]
    truth = np.asarray([ph.slot for ph in photos])
    probs, versions, slots = [], [], None
    for root in args.store:
        art = ArtifactStore(root).load(ENCODER, None)
        encoder = Encoder.from_dir(art.path, device="cpu")
        if encoder.slot_head is None:
            p.error(f"{root}: encoder {art.version} has no slot head")
        head_slots = np.asarray(encoder.slot_head.slots)
        if slots is not None and list(head_slots) != list(slots):
            p.error(f"{root}: encoder {art.version} orders its slots differently")
        slots = head_slots
        probs.append(encoder.slot_head.probs(encoder.encode_images(images)))
        versions.append(art.version)
    out = {"split": args.split, "photos": len(photos), "encoders": versions,
           "single": [confident_end(pr, slots, truth) for pr in probs], "ensembles": []}
    for k in range(2, len(probs) + 1):
        for combo in itertools.combinations(range(len(probs)), k):
            mean = np.mean([probs[i] for i in combo], axis=0)
            out["ensembles"].append({"encoders": [versions[i] for i in combo], **confident_end(mean, slots, truth)})
    out["seconds"] = round(time.perf_counter() - t0, 1)
    write_result(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
