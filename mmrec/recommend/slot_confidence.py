"""How sure the photo reading is of its slot, and when the kiosk should ask instead of guess.

A photo's slot is read by a rule (`mmrec.recommend.photo_anchor`): the tagger's category when
it is confident, else the majority slot of the nearest catalog look-alikes. The evidence for
that reading is a handful of numbers (`SlotEvidence`): the tagger's confidence for or
against the read slot, the share of the ten nearest look-alikes (searched on the image
alone, in every slot) that sit in it, and whether the two sources agree. A `SlotCalibrator`
maps the evidence to the probability that the read slot is right: a logistic model fitted
on labelled photos of photographers the models never saw (the real-photo *val* senders,
`mmrec.bench.slot_calibration`), stored as the ``slot_calibration`` artifact together with
the threshold below which the answer abstains and asks the shopper what the item is.

A calibrator is tied to the tagger and encoder it was fitted on: with other models loaded
its numbers mean nothing, so the loader refuses it (the readings are then uncalibrated and
never abstain; every response says so).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from pydantic import Field, model_validator

from mmrec import kinds
from mmrec.config import StrictModel
from mmrec.errors import InputError
from mmrec.taxonomy import SLOTS, Taxonomy

# The slots a shopper may name for a photo (the catalog's "other" fills no outfit slot).
CHOOSABLE_SLOTS = tuple(s for s in SLOTS if s != "other")
# The read slot itself is evidence: on real photos the models read some slots far more
# reliably than others (on the val senders, readings of "top" were right 48% of the time,
# readings of "accessory" never), and with it the cross-validated AUROC rose from 0.59 to 0.81.
FEATURES = ("tagger_for", "tagger_against", "neighbour_share", "agree", "tagger_silent", "head_for",
            *(f"read_{s}" for s in CHOOSABLE_SLOTS))
CALIBRATION_FILE = "calibration.json"
NEIGHBOURS = 10  # look-alikes that vote on the slot


@dataclass(frozen=True)
class SlotEvidence:
    """What backs one slot reading of a photo (all in [0, 1])."""

    slot: str | None                # the slot the rule read (None: no slot at all)
    tagger_slot: str | None         # the slot of the tagger's category (any confidence)
    tagger_confidence: float        # the tagger's confidence in that category
    neighbour_slot: str | None      # the majority slot of the look-alikes
    neighbour_shares: dict[str, float]  # slot -> share of the look-alikes in it
    head_probs: dict[str, float] | None = None  # the encoder's slot head (None: no head)

    def features(self) -> list[float]:
        """The calibrator's inputs, in `FEATURES` order, relative to the read slot."""
        tagger_for = self.tagger_confidence if self.tagger_slot == self.slot else 0.0
        tagger_against = self.tagger_confidence if self.tagger_slot not in (None, self.slot) else 0.0
        share = self.neighbour_shares.get(self.slot, 0.0) if self.slot else 0.0
        agree = float(self.tagger_slot is not None and self.tagger_slot == self.neighbour_slot)
        head_for = (self.head_probs or {}).get(self.slot, 0.0) if self.slot else 0.0
        return [tagger_for, tagger_against, share, agree, float(self.tagger_slot is None), head_for,
                *(float(self.slot == s) for s in CHOOSABLE_SLOTS)]


def evidence_of(slot: str | None, attributes: dict[str, dict[str, Any]], neighbour_slots: Sequence[str],
                taxonomy: Taxonomy, head_probs: dict[str, float] | None = None) -> SlotEvidence:
    """Collect the evidence for reading a photo as ``slot``.

    Args:
        attributes: the tagger's reading (field -> {value, confidence}); empty without a tagger.
        neighbour_slots: slots of the nearest look-alikes, nearest first, searched on the image
            in every slot ("other" does not vote: it fills no outfit slot).
        head_probs: the encoder's slot head on the photo (`PhotoAnalysis.slot_probs`), if any.
    """
    cat = attributes.get("category") or {}
    t_slot = taxonomy.slot_of(cat["value"]) if cat.get("value") else None
    t_slot = None if t_slot == "other" else t_slot
    votes = Counter(s for s in neighbour_slots if s != "other")
    n = max(1, len(neighbour_slots))
    shares = {s: c / n for s, c in votes.items()}
    return SlotEvidence(slot=slot, tagger_slot=t_slot, tagger_confidence=float(cat.get("confidence") or 0.0)
                        if t_slot else 0.0, neighbour_slot=votes.most_common(1)[0][0] if votes else None,
                        neighbour_shares=shares, head_probs=head_probs)


def slot_choices(ev: SlotEvidence) -> list[str]:
    """The slots to offer a shopper for a photo the system would not read, likeliest first: the
    slot the reading leaned to, then the others by the encoder's slot head when it has one, else
    by their share of the image's nearest neighbours (ties in `CHOOSABLE_SLOTS` order). On the real-photo val photographers the first
    choice was the right one for 57.7% of photos and one of the first two for 75.8%, against
    48.3% / 73.2% in the fixed order (`python -m lab.embed.ask_order`)."""
    score = ev.head_probs if ev.head_probs else ev.neighbour_shares
    return sorted(CHOOSABLE_SLOTS, key=lambda s: (s != ev.slot, -score.get(s, 0.0), CHOOSABLE_SLOTS.index(s)))


class SlotCalibrator(StrictModel):
    """P(read slot is right) = sigmoid(intercept + coef . features); abstain below ``threshold``."""

    features: list[str] = Field(default_factory=lambda: list(FEATURES))
    coef: list[float]
    intercept: float
    threshold: float = Field(ge=0, le=1, description="answers with a lower slot confidence abstain")
    target_accuracy: float | None = Field(None, ge=0, le=1, description="what the threshold was chosen for")
    models: dict[str, str | None] = Field(default_factory=dict,
                                          description="versions of the tagger, encoder, index and "
                                                      "reference photos fitted on")
    fitted_on: dict[str, Any] = Field(default_factory=dict, description="photos, split, counts")

    @model_validator(mode="after")
    def _same_features(self) -> "SlotCalibrator":
        if self.features != list(FEATURES) or len(self.coef) != len(FEATURES):
            raise ValueError(f"calibrator features {self.features} with {len(self.coef)} coefficients; "
                             f"this mmrec reads {list(FEATURES)}: refit it (mmrec bench calibrate-slot)")
        return self

    def confidence(self, ev: SlotEvidence) -> float:
        if ev.slot is None:
            return 0.0
        z = self.intercept + sum(c * x for c, x in zip(self.coef, ev.features()))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    @classmethod
    def load(cls, store: Any, current_models: dict[str, str | None]) -> tuple["SlotCalibrator | None", list[str]]:
        """The CURRENT ``slot_calibration`` artifact if it was fitted on ``current_models``
        (kind -> version of vlm/encoder/index); else None and a note saying why."""
        version = store.current_version(kinds.SLOT_CALIBRATION)
        if not version:
            return None, ["no slot_calibration artifact: photo slot readings are uncalibrated and "
                          "never declined (mmrec bench calibrate-slot)"]
        art = store.load(kinds.SLOT_CALIBRATION, version)
        try:
            cal = cls.model_validate(json.loads(art.file(CALIBRATION_FILE).read_text(encoding="utf-8")))
        except ValueError as e:  # an older recipe's features: a note, not a failed load
            return None, [f"slot_calibration/{version} is unusable ({str(e).splitlines()[-1][:200]}): "
                          "photo slot readings are uncalibrated and never declined; refit it"]
        # a model the calibrator was fitted without (an older calibrator: no photo_refs) counts
        # as absent then: reference photos added since change every vote it was fitted on
        stale = {k: (cal.models.get(k), current_models.get(k)) for k in {*cal.models, *current_models}
                 if current_models.get(k) != cal.models.get(k)}
        if stale:
            said = ", ".join(f"{k} {a} (loaded: {b})" for k, (a, b) in sorted(stale.items()))
            return None, [f"slot_calibration/{version} was fitted on other models ({said}): photo "
                          "slot readings are uncalibrated and never declined; refit it"]
        return cal, []


@dataclass(frozen=True)
class SlotHint:
    """The shopper's answer to "what is it?": a slot, and optionally the exact category."""

    slot: str
    category: str | None = None


def parse_slot_hint(slot: str | None, category: str | None, taxonomy: Taxonomy) -> SlotHint | None:
    """Check a shopper's slot/category hint against the taxonomy.

    Raises:
        InputError: an unknown slot or category, or a category of another slot than ``slot``.
    """
    if not slot and not category:
        return None
    if slot and slot not in CHOOSABLE_SLOTS:
        raise InputError(f"unknown slot {slot!r}; choose one of {list(CHOOSABLE_SLOTS)}")
    cat = None
    if category:
        cat = taxonomy.canonical("category", category)
        if cat is None or not taxonomy.is_valid("category", cat) or taxonomy.slot_of(cat) == "other":
            raise InputError(f"unknown category {category!r}; use a catalog category such as "
                             f"{', '.join(taxonomy.values('category')[:8])} ...")
        if slot and taxonomy.slot_of(cat) != slot:
            raise InputError(f"category {cat!r} fills the {taxonomy.slot_of(cat)!r} slot, not {slot!r}")
    return SlotHint(slot or taxonomy.slot_of(cat), cat)


def expected_calibration_error(conf: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """ECE over equal-width confidence bins (the last bin holds 1.0)."""
    if not conf:
        return float("nan")
    total = 0.0
    for b in range(bins):
        sel = [(c, ok) for c, ok in zip(conf, correct)
               if b / bins <= c < (b + 1) / bins or (b == bins - 1 and c >= 1.0)]
        if sel:
            total += len(sel) * abs(sum(c for c, _ in sel) / len(sel) - sum(ok for _, ok in sel) / len(sel))
    return total / len(conf)
