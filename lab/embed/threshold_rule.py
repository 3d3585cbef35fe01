"""Which rule for the photo abstention threshold keeps its promise on photographers it never saw.

The slot calibrator (`mmrec.bench.slot_calibration`) is fitted on the real-photo val
photographers' readings, and the threshold is the lowest confidence at which the photos kept
are right at least ``target`` of the time. Rules for choosing it:

  in_sample  on the confidences of the photos the calibrator was fitted on (the rule until
             2026-12-07 afternoon)
  held_out   on held-out confidences: each photographer's photos scored by a calibrator fitted
             without them (5 folds by photographer), then applied to the calibrator fitted on all
  held_out_lb  held_out, and the 90% lower Wilson bound of the kept accuracy must reach the target
  expected   on held-out confidences, where their mean over the photos kept reaches the target
             (the calibrator's estimate of the kept accuracy instead of the right/wrong counts)

Judged by nested cross-validation on val alone: for each of 5 outer folds of photographers, the
rule is applied to the other four folds' readings and the photos of the held fold are kept or
declined by its threshold; reported is what share of val photos was answered and how many of
those were right. The test split is never read here.

Measured 2026-12-07 (demo models, 151 val photos): at target 0.92 in_sample answered 4.0% (6
photos) at 0.667, held_out and held_out_lb answered none; at 0.85 in_sample 10.6% (16) at 0.812,
held_out 2.0% (3) at 1.000; at 0.80 in_sample 11.3% (17) at 0.824, held_out 4.6% (7) at 0.857.
In-sample breaks its promise on photographers it did not see; adopted: held_out
(`slot_calibration.fit`). With the demo models no threshold reaches 0.92: the kiosk asks.

With the calibration split (2026-12-07, night; `--with-calibration`: 854 photos, 80
photographers), three `make demo` builds (./artifacts and two builds from empty): at 0.92
held_out answered 38.3% at 0.914, 19.8% at 0.923 and 26.0% at 0.896; expected (first two builds)
24.5% at 0.962 and 5.9% at 0.940 (the calibrator under-states the top: more conservative, NOT
ADOPTED); at 0.85 held_out answered 67.7% at 0.849, 65.8% at 0.852 and 52.7% at 0.856. The 92%
target sits where kept accuracy is flat over a wide range of coverage, so the answered share
jumps with the build; at 85% it moves less
(docs/results/calibration-split-20261207/threshold_rule_fit_{demo,build2,build3}.json).

Usage (repo root):
  .venv/bin/python -m lab.embed.threshold_rule --artifacts artifacts
  .venv/bin/python -m lab.embed.threshold_rule --artifacts artifacts --with-calibration --rules held_out,expected
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from lab.embed.photo_probe import TABLE, photo_args, write_result

FOLDS = 5


def wilson_lower(right: int, n: int, z: float = 1.2816) -> float:
    """Lower bound of the (one-sided 90%) Wilson interval of right / n."""
    if n == 0:
        return 0.0
    p = right / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def lower_bound_threshold(conf, correct, target: float) -> float:
    """Lowest confidence whose kept readings' Wilson lower bound reaches ``target`` (1.0: none)."""
    pairs = sorted(zip(conf, correct), key=lambda p: -p[0])
    best, right = 1.0, 0
    for n, (c, ok) in enumerate(pairs, start=1):
        right += ok
        tie = n < len(pairs) and pairs[n][0] == c
        if not tie and wilson_lower(right, n) >= target:
            best = c
    return float(best)


def expected_threshold(conf, target: float) -> float:
    """Lowest confidence whose kept readings' mean (held-out) confidence reaches ``target``: the
    calibrator's own estimate of the kept accuracy, smoother than the right/wrong counts."""
    order = np.sort(np.asarray(conf, dtype=float))[::-1]
    if not len(order):
        return 1.0
    means = np.cumsum(order) / np.arange(1, len(order) + 1)
    ok = np.nonzero(means >= target)[0]
    ok = ok[ok + 1 >= 5]  # as `choose_threshold`: at least a handful kept
    return float(order[ok[-1]]) if len(ok) else 1.0


def apply_rule(readings, rule: str, target: float):
    """(calibrator, threshold) that ``rule`` picks on ``readings``."""
    from mmrec.bench import slot_calibration as SC

    cal = SC.fit(readings, target_accuracy=target)  # the product's rule: held_out
    if rule == "held_out":
        return cal, cal.threshold
    if rule == "in_sample":
        conf = [cal.confidence(r.evidence) for r in readings if r.slot is not None]
        return cal, SC.choose_threshold(conf, [r.correct for r in readings if r.slot is not None], target)
    held = SC.held_out_confidences(readings, cal.fitted_on.get("c", 1.0))
    if rule == "expected":
        return cal, (expected_threshold(held[0], target) if held else 1.0)
    return cal, (lower_bound_threshold(*held, target) if held else 1.0)


def nested(readings, rule: str, target: float) -> dict[str, float | int | None]:
    """Answered share and accuracy on held photographers when ``rule`` is applied without them."""
    senders = sorted({r.sender for r in readings}, key=str)
    kept = []
    for f in range(FOLDS):
        held = set(senders[f::FOLDS])
        cal, t = apply_rule([r for r in readings if r.sender not in held], rule, target)
        kept += [r.correct for r in readings
                 if r.sender in held and r.slot is not None and cal.confidence(r.evidence) >= t]
    return {"answered": len(kept) / len(readings), "kept": len(kept),
            "accuracy_kept": float(np.mean(kept)) if kept else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    photo_args(p, threads=2)
    p.add_argument("--targets", default="0.92,0.85,0.8")
    p.add_argument("--with-calibration", action="store_true",
                   help="judge on val + the calibration photographers (what calibrate-slot fits on)")
    p.add_argument("--rules", default="in_sample,held_out,held_out_lb,expected")
    args = p.parse_args(argv)
    if args.split != "val":
        p.error("the rules are judged on val (and the calibration split) only")

    import torch

    from mmrec.artifacts import ArtifactStore
    from mmrec.bench.photo_sources import load_real_photo_table, real_photos
    from mmrec.bench.slot_calibration import read_photos
    from mmrec.config import load_config
    from mmrec.recommend import Recommender

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    store = ArtifactStore(args.artifacts)
    rec = Recommender.from_store(store, config=load_config("recommend").model_copy(update={"prewarm_recall": False}))
    table = load_real_photo_table(TABLE, rec.tax)
    splits = ["val", "calibration"] if args.with_calibration else ["val"]
    readings = [r for sp in splits for r in read_photos(rec, real_photos(args.data / "real_photos", table, sp))]
    out = {"split": "+".join(splits), "photos": len(readings), "versions": dict(rec.versions),
           **{f"target_{t}": {rule: nested(readings, rule, float(t)) for rule in args.rules.split(",")}
              for t in args.targets.split(",")},
           "seconds": round(time.perf_counter() - t0, 1)}
    write_result(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
