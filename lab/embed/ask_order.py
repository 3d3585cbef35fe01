"""In which order the kiosk should offer the slots when it asks "what is it?".

For the labelled photos of one real-photo photographer split (probes excluded), read as a kiosk
request reads them (`mmrec.bench.slot_calibration.read_photos`: the served tagger, encoder,
index and reference photos, uncalibrated), the rank of the true slot among the offered choices
under each ordering:

  fixed      `CHOOSABLE_SLOTS` as listed (what the kiosk offered before)
  prior      by how common the slot is among the train photographers' photos
  guess      the reading's guess first, then the rest in the fixed order
  votes      the guess first, then by share of the image's nearest neighbours (catalog
             look-alikes and reference photos), ties in the fixed order: `slot_choices`
  votes+tag  as votes, with the tagger's confidence added to its slot's share

Measured 2026-12-07 on val (149 photos with a choosable slot, demo models; in the order
fixed / prior / guess / votes / votes+tag): first choice right 0.483 / 0.483 / 0.577 / 0.577 /
0.577, among the first two 0.732 / 0.732 / 0.738 / 0.758 / 0.752, mean rank 2.09 / 1.98 / 1.96 /
2.01 / 2.01. Adopted: votes (`mmrec.recommend.slot_confidence.slot_choices`), for the first two
(a shopper reads the first buttons; the mean rank counts the tail, where "guess" keeps the fixed
order). Differences of 2 points are 3 photos here. The test split is read by the benchmark
(`real_photo.ask_first`, `real_photo.ask_top2`).

Usage (repo root):
  .venv/bin/python -m lab.embed.ask_order --artifacts artifacts --split val
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from lab.embed.photo_probe import TABLE, photo_args, write_result


def orderings(train_slots: list[str]):
    """name -> f(evidence) -> offered slots, likeliest first."""
    from mmrec.recommend.slot_confidence import CHOOSABLE_SLOTS, slot_choices

    fixed = list(CHOOSABLE_SLOTS)
    common = Counter(train_slots)
    prior = sorted(fixed, key=lambda s: (-common[s], fixed.index(s)))

    def guess_first(ev):
        return sorted(fixed, key=lambda s: (s != ev.slot, fixed.index(s)))

    def votes_and_tagger(ev):
        def score(s):
            return ev.neighbour_shares.get(s, 0.0) + (ev.tagger_confidence if ev.tagger_slot == s else 0.0)
        return sorted(fixed, key=lambda s: (s != ev.slot, -score(s), fixed.index(s)))

    return {"fixed": lambda ev: fixed, "prior": lambda ev: prior, "guess": guess_first,
            "votes": slot_choices, "votes+tag": votes_and_tagger}


def rank_metrics(readings, order) -> dict[str, float]:
    """Share of photos whose true slot is offered first / among the first two, and its mean rank."""
    ranks = np.array([order(r.evidence).index(r.truth) + 1 for r in readings])
    return {"first": float(np.mean(ranks == 1)), "top2": float(np.mean(ranks <= 2)),
            "mean_rank": float(ranks.mean())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    photo_args(p, threads=2)
    args = p.parse_args(argv)

    import torch

    from mmrec.artifacts import ArtifactStore
    from mmrec.bench.photo_sources import load_real_photo_table, real_photos, training_photos
    from mmrec.bench.slot_calibration import read_photos
    from mmrec.config import load_config
    from mmrec.recommend import Recommender
    from mmrec.recommend.slot_confidence import CHOOSABLE_SLOTS

    if args.split == "hm":
        p.error("the ordering is measured on phone photos (val or test)")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    store = ArtifactStore(args.artifacts)
    cfg = load_config("recommend").model_copy(update={"prewarm_recall": False})
    rec = Recommender.from_store(store, config=cfg)
    table = load_real_photo_table(TABLE, rec.tax)
    readings = [r for r in read_photos(rec, real_photos(args.data / "real_photos", table, args.split))
                if r.truth in CHOOSABLE_SLOTS]
    train = [ph.slot for ph in training_photos(args.data / "real_photos", TABLE, rec.tax)]
    out = {"split": args.split, "photos": len(readings), "versions": dict(rec.versions),
           **{name: rank_metrics(readings, f) for name, f in orderings(train).items()},
           "seconds": round(time.perf_counter() - t0, 1)}
    write_result(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
