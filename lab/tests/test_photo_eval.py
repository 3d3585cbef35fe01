"""lab/sft/photo_eval.py: the tagger's category reading judged against a photo's coarse label."""

from __future__ import annotations

from lab.sft.photo_eval import judge
from mmrec.bench.photo_sources import PhotoTruth
from mmrec.taxonomy import default_taxonomy


def _photo(slot, cats):
    return PhotoTruth(photo_id="p", source="real_photo", uri="x.jpg", label="L", slot=slot, categories=tuple(cats))


def test_a_reading_is_right_on_slot_and_class_only_where_the_label_allows_it():
    tax = default_taxonomy()
    photos = [_photo("bottom", ["trousers", "jeans"]), _photo("bottom", ["trousers", "jeans"]),
              _photo("top", ["shirts"]), _photo("shoes", ["casual shoes"])]
    readings = [{"category": {"value": "jeans", "confidence": 0.9}},       # slot and class right
                {"category": {"value": "track pants", "confidence": 0.6}},  # slot right, class not allowed
                {"category": {"value": "tshirts", "confidence": 0.3}},      # slot right, unsure
                {}]                                                          # nothing read
    got = judge(readings, photos, tax, min_confidence=0.5)
    assert got["slot_acc"] == 0.75 and got["garment_acc"] == 0.25
    assert got["confident_share"] == 0.5 and got["slot_acc_confident"] == 1.0
    assert got["read_slots"]["bottom"] == 2 and got["read_slots"]["none"] == 1


def test_each_electorate_votes_by_its_own_majority():
    import numpy as np

    from lab.embed.slot_vote import vote_accuracy

    x, y = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    photos = np.stack([x, y])
    pool = np.stack([x] * 3 + [y] * 3)
    pool_slots = np.array(["top"] * 3 + ["shoes"] * 3)
    refs = np.stack([x] * 4 + [y] * 4)
    ref_slots = np.array(["bottom"] * 4 + ["shoes"] * 4)
    got = vote_accuracy(photos, ["bottom", "shoes"], pool, pool_slots, refs, ref_slots, k=3)
    # photo x: catalog says top (wrong), references bottom (right), both: 3 bottom vs 3 top,
    # the tie going to the catalog's (first counted) slot; photo y: shoes everywhere
    assert got == {"catalog": 0.5, "refs": 1.0, "both": 0.5}
