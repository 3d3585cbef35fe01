"""Fit the photo slot calibrator on labelled real photos and choose the abstention threshold.

The recipe reads the real-photo *val* and *calibration* photographers (``benchmark/suites/
photos/real_photos.yaml``): the benchmark judges *test*, and the models train on the remaining
senders. Val alone (151 photos, 29 photographers) put the threshold where 92% of held-out val
photos were right, and test's kept photos were right 81% of the time (2026-12-07, evening); the
calibration split (703 photos of 51 photographers carved out of train) gives the fit and the
threshold 80 photographers.

For every labelled photo the served `Recommender` reads the slot exactly as a kiosk request
would (`PhotoAnchoring.anchor`, uncalibrated), and records the evidence
(`mmrec.recommend.slot_confidence.SlotEvidence`) and whether the slot is right. A logistic
model maps evidence to P(right); the threshold is the lowest confidence at which the photos
kept are right at least ``target_accuracy`` of the time (1.0 -- abstain on everything -- when
no threshold reaches it: the honest answer for models that cannot read such photos). The
threshold is chosen on *held-out* confidences (each photographer's photos scored by a
calibrator fitted without them): chosen on the confidences of the photos the calibrator was
fitted on, the few photos at the top are flattered by the fit itself, and the promise did not
hold (2026-12-07: kept 93% on val in-sample, 67% on val held out, 73% on test).

`evaluate` applies a fitted calibrator to another split (the test photos, once) and reports
ECE, the reliability bins, abstention and accuracy on the photos kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmrec import kinds
from mmrec.bench.metrics import calibration
from mmrec.bench.photo_sources import PhotoTruth
from mmrec.rank.metrics import auc
from mmrec.recommend.slot_confidence import CALIBRATION_FILE, FEATURES, SlotCalibrator, SlotEvidence

MIN_KEPT = 5  # a threshold must keep at least this many val photos to claim an accuracy
FIT_SPLITS = ("val", "calibration")  # photographer splits the calibrator is fitted on


@dataclass
class Reading:
    """One labelled photo as the system read it."""

    photo_id: str
    sender: str | None
    truth: str
    slot: str | None
    evidence: SlotEvidence

    @property
    def correct(self) -> bool:
        return self.slot is not None and self.slot == self.truth


def read_photos(rec: Any, photos: Sequence[PhotoTruth], batch: int = 16) -> list[Reading]:
    """Read every labelled photo (probes have no slot truth and are skipped) as a kiosk
    request would, without calibration, and collect its evidence."""
    from mmrec.images import load_image

    labelled = [p for p in photos if p.slot and not p.probe]
    scene = next(iter(rec.scenes.scenes.values()))  # the slot reading does not depend on the scene
    saved, rec.photos.calibrator = rec.photos.calibrator, None  # uncalibrated: never abstains
    out: list[Reading] = []
    try:
        for at in range(0, len(labelled), batch):
            chunk = labelled[at:at + batch]
            analyses = rec.photo.analyze_many([load_image(Path(p.uri).read_bytes()) for p in chunk])
            for p, a in zip(chunk, analyses):
                slot = rec.photos.anchor(a, scene, None, []).out.slot
                out.append(Reading(p.photo_id, p.sender, str(p.slot), slot, rec.photos.evidence(a, slot, [])))
    finally:
        rec.photos.calibrator = saved
    return out


def held_out_reference_senders(store: Any, table: Any) -> list[str]:
    """Photographers of a held-out split (val, calibration, test) among the CURRENT reference
    photos: a ``photo_refs`` built before they were held out (the calibration split, 2026-12-07).
    Their photos would vote on their own slot, and the encoder and tagger of that time trained on
    them too: a calibrator fitted on them would be flattered."""
    from mmrec.embed.photo_refs import reference_senders

    # kiosk answers carry no photographer id ("kiosk"): only numbered senders belong to a split
    return sorted(s for s in reference_senders(store) if s.isdigit() and table.split_of(s) != "train")


def _xy(readings: Sequence[Reading]) -> tuple[np.ndarray, np.ndarray]:
    read = [r for r in readings if r.slot is not None]
    x = np.array([r.evidence.features() for r in read], dtype=np.float64).reshape(-1, len(FEATURES))
    return x, np.array([r.correct for r in read], dtype=int)


def choose_threshold(conf: Sequence[float], correct: Sequence[bool], target: float) -> float:
    """Lowest confidence t such that the readings with confidence >= t are right at least
    ``target`` of the time (and at least `MIN_KEPT` are kept); 1.0 when none is."""
    pairs = sorted(zip(conf, correct), key=lambda p: -p[0])
    best, right = 1.0, 0
    for n, (c, ok) in enumerate(pairs, start=1):
        right += ok
        tie = n < len(pairs) and pairs[n][0] == c  # a threshold keeps every tie with it
        if not tie and n >= MIN_KEPT and right / n >= target:
            best = c
    return float(best)


def fit(readings: Sequence[Reading], *, target_accuracy: float = 0.92, c: float | None = None,
        models: dict[str, str | None] | None = None, fitted_on: dict[str, Any] | None = None
        ) -> SlotCalibrator:
    """A logistic calibrator over the readings' evidence, with its threshold for ``target_accuracy``.

    Args:
        c: inverse L2 strength (None: the `C_GRID` value with the best log-loss over folds of
            photographers, `choose_c`).
    """
    from sklearn.linear_model import LogisticRegression

    held = None
    if c is None:
        c, scores, held = choose_c(readings)
        fitted_on = {**(fitted_on or {}), "c": c, "cv_log_loss": scores}
    x, y = _xy(readings)
    if len(set(y.tolist())) < 2:
        raise ValueError(f"{len(y)} readings, all {'right' if y.all() else 'wrong'}: a calibrator "
                         "needs both right and wrong readings")
    lr = LogisticRegression(C=c, max_iter=1000).fit(x, y)
    cal = SlotCalibrator(coef=[float(v) for v in lr.coef_[0]], intercept=float(lr.intercept_[0]),
                         threshold=1.0, target_accuracy=target_accuracy, models=dict(models or {}),
                         fitted_on=dict(fitted_on or {}))
    if held is not None:  # the honest operating point: on photos the calibrator did not see
        cal.threshold = choose_threshold(*held, target_accuracy)
        kept = [ok for cf, ok in zip(*held) if cf >= cal.threshold]
        cal.fitted_on.update(threshold_from="held_out", held_out_kept=len(kept),
                             held_out_accuracy_kept=float(np.mean(kept)) if kept else None)
    else:  # too few photographers to hold any out (or a given c): the fitted photos themselves
        conf = [cal.confidence(r.evidence) for r in readings if r.slot is not None]
        cal.threshold = choose_threshold(conf, y.astype(bool).tolist(), target_accuracy)
        cal.fitted_on["threshold_from"] = "in_sample"
    return cal


def evaluate(cal: SlotCalibrator, readings: Sequence[Reading], bins: int = 10,
             threshold: float | None = None) -> dict[str, Any]:
    """ECE, reliability bins, abstention and accuracy on what is kept, over labelled readings
    (a photo with no slot read at all counts as abstained)."""
    t = cal.threshold if threshold is None else threshold
    conf = [cal.confidence(r.evidence) for r in readings]
    ok = [r.correct for r in readings]
    kept = [o for c, o, r in zip(conf, ok, readings) if r.slot is not None and c >= t]
    rel = reliability(conf, ok, bins)
    return {"photos": len(readings), "threshold": t, "ece": rel["ece"] if rel else float("nan"),
            "bins": rel["bins"] if rel else [], "auroc": auroc(conf, ok), "brier": float(np.mean([(c - o) ** 2 for c, o in zip(conf, ok)]))
            if conf else None,
            "accuracy_uncalibrated_all": float(np.mean(ok)) if ok else None,
            "abstain": 1 - len(kept) / len(readings) if readings else None,
            "kept": len(kept), "accuracy_kept": float(np.mean(kept)) if kept else None,
            "mean_confidence": float(np.mean(conf)) if conf else None,
            "coverage": coverage(conf, ok, [r.slot is not None for r in readings])}


def coverage(conf: Sequence[float], correct: Sequence[bool], read: Sequence[bool],
             thresholds: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)) -> list[dict[str, Any]]:
    """What other thresholds would keep: share of photos answered and their slot accuracy."""
    out = []
    for t in thresholds:
        kept = [o for c, o, r in zip(conf, correct, read) if r and c >= t]
        out.append({"threshold": t, "kept": len(kept), "answered": len(kept) / len(conf) if conf else None,
                    "accuracy": float(np.mean(kept)) if kept else None})
    return out


C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)


def held_out_confidences(readings: Sequence[Reading], c: float, folds: int = 5
                         ) -> tuple[list[float], list[bool]] | None:
    """Confidences of calibrators fitted on the other photographers (folds by sender), for
    the readings that read a slot; None when there are too few senders or one-class folds."""
    senders = sorted({r.sender for r in readings}, key=str)
    if len(senders) < folds:
        return None
    conf: list[float] = []
    ok: list[bool] = []
    for f in range(folds):
        held = set(senders[f::folds])
        try:
            cal = fit([r for r in readings if r.sender not in held], c=c)
        except ValueError:
            return None
        test = [r for r in readings if r.sender in held and r.slot is not None]
        conf += [cal.confidence(r.evidence) for r in test]
        ok += [r.correct for r in test]
    return conf, ok


def choose_c(readings: Sequence[Reading]
             ) -> tuple[float, dict[str, float], tuple[list[float], list[bool]] | None]:
    """The `C_GRID` value with the lowest held-out log-loss (a proper score: ECE alone rewards a
    constant base-rate guess), its scores, and the held-out (confidence, right) pairs at that
    value; 1.0 and no pairs when the readings are too few to cross-validate."""
    scores, held = {}, {}
    for c in C_GRID:
        got = held_out_confidences(readings, c)
        if got is None:
            return 1.0, {}, None
        p = np.clip(np.array(got[0]), 1e-6, 1 - 1e-6)
        y = np.array(got[1], dtype=float)
        scores[str(c)] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        held[str(c)] = got
    best = min(scores, key=scores.__getitem__)
    return float(best), scores, held[best]


def cross_validated(readings: Sequence[Reading], c: float) -> dict[str, Any] | None:
    """ECE and AUROC of held-out confidences (folds of photographers): how far a calibrator's
    numbers on the photos it was fitted on flatter it."""
    got = held_out_confidences(readings, c)
    if got is None:
        return None
    rel = reliability(*got)
    return {"ece": rel["ece"] if rel else float("nan"), "auroc": auroc(*got), "photos": len(got[0])}


def auroc(conf: Sequence[float], correct: Sequence[bool]) -> float | None:
    """How well the confidence ranks right readings above wrong ones (0.5: not at all; None
    without both right and wrong readings)."""
    if all(correct) or not any(correct):
        return None
    return auc(np.asarray(conf), np.asarray(correct))


def reliability(conf: Sequence[float], correct: Sequence[bool], bins: int = 10) -> dict[str, Any] | None:
    """ECE and reliability bins of confidences against right/wrong (`metrics.calibration`)."""
    return calibration([{"confidence": c, "correct": ok} for c, ok in zip(conf, correct)], bins)


def save(store: Any, cal: SlotCalibrator, metrics: dict[str, Any]) -> str:
    """Write the ``slot_calibration`` artifact (made CURRENT); returns its version."""
    with store.write(kinds.SLOT_CALIBRATION, config={"target_accuracy": cal.target_accuracy,
                                                     "fitted_on": cal.fitted_on}) as w:
        (w.path / CALIBRATION_FILE).write_text(cal.model_dump_json(indent=2), encoding="utf-8")
        for kind, version in cal.models.items():
            if version:
                w.add_input(store.kind_dir(kind) / version, kind=kind, version=version)
        w.metrics = metrics
    return w.version
