"""Which evidence the photo slot calibrator should read: all of it, or without the tagger.

For one artifact store's photo models, the val + calibration photographers' readings
(`mmrec.bench.slot_calibration.read_photos`), scored by logistic calibrators fitted on other
photographers (5 folds by photographer, C = 3) on three feature sets: every `FEATURES` entry;
without the tagger's (neighbour share, head probability, the read slot); the head's alone.
Reported: held-out log-loss, AUROC, and the share of photos the held-out rule would answer at
the 92% target (`choose_threshold` on the held-out confidences).

Measured 2026-12-07 (night) on three `make demo` builds (./artifacts, and two builds from empty
in /tmp/a and /tmp/b), NOT ADOPTED: all features log-loss 0.472 / 0.486 / 0.502, AUROC 0.800 /
0.789 / 0.767, answered 45.4% / 26.7% / 23.8%; without the tagger 0.483 / 0.489 / 0.508, 0.792 /
0.791 / 0.761, answered 36.7% / 35.6% / 21.1%; head alone 11.0% / 13.2% / 9.8%. The tagger's
evidence sharpens the score a little in every build; the third build answered little either
way, so dropping it does not steady the kiosk (docs/benchmark.md "Builds, and the 92% target").

Usage (repo root):
  .venv/bin/python -m lab.embed.calibrator_features --artifacts artifacts
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lab.embed.photo_probe import TABLE, photo_args, write_result

FOLDS = 5


def held_out(x: np.ndarray, y: np.ndarray, senders: np.ndarray, c: float = 3.0) -> np.ndarray:
    """P(right) of each reading from a calibrator fitted without its photographer's fold."""
    from sklearn.linear_model import LogisticRegression

    names = sorted(set(senders.tolist()), key=str)
    p = np.zeros(len(y))
    for f in range(FOLDS):
        held = np.isin(senders, names[f::FOLDS])
        p[held] = LogisticRegression(C=c, max_iter=2000).fit(x[~held], y[~held]).predict_proba(x[held])[:, 1]
    return p


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    photo_args(p, threads=2)
    args = p.parse_args(argv)

    from mmrec.artifacts import ArtifactStore
    from mmrec.bench.photo_sources import load_real_photo_table, real_photos
    from mmrec.bench.slot_calibration import choose_threshold, read_photos
    from mmrec.config import load_config
    from mmrec.rank.metrics import auc
    from mmrec.recommend import Recommender
    from mmrec.recommend.slot_confidence import FEATURES

    t0 = time.perf_counter()
    rec = Recommender.from_store(ArtifactStore(args.artifacts),
                                 config=load_config("recommend").model_copy(update={"prewarm_recall": False}))
    table = load_real_photo_table(TABLE, rec.tax)
    readings = [r for sp in ("val", "calibration")
                for r in read_photos(rec, real_photos(args.data / "real_photos", table, sp)) if r.slot is not None]
    x = np.array([r.evidence.features() for r in readings])
    y = np.array([r.correct for r in readings], dtype=int)
    senders = np.array([str(r.sender) for r in readings])
    read_slot = [f for f in FEATURES if f.startswith("read_")]
    sets = {"all": list(FEATURES), "without_tagger": ["neighbour_share", "head_for", *read_slot],
            "head_only": ["head_for", *read_slot]}
    out = {"artifacts": str(args.artifacts), "photos": len(readings), "versions": dict(rec.versions)}
    for name, cols in sets.items():
        prob = held_out(x[:, [FEATURES.index(c) for c in cols]], y, senders)
        clipped = np.clip(prob, 1e-6, 1 - 1e-6)
        t = choose_threshold(prob.tolist(), y.astype(bool).tolist(), 0.92)
        out[name] = {"log_loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))),
                     "auroc": float(auc(prob, y.astype(bool))), "answered_at_0.92": float(np.mean(prob >= t))}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    write_result(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
