"""Every encoder experiment (lab/embed/configs/*.yaml) states its outcome and loads on today's
product config; the photo probe's slot metrics agree with a count by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmrec.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "embed" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_each_encoder_experiment_states_its_outcome_and_loads(path):
    text = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    assert "ADOPTED" in text and "2026-" in text and "Rerun" in text, path.name
    cfg = load_config("embed", profile="mini", path=path)
    assert cfg.model_dump() != load_config("embed", profile="mini").model_dump()


def test_slot_metrics_count_the_neighbours():
    from lab.embed.photo_probe import slot_metrics

    pool = np.eye(4, dtype=np.float32)
    pool_slots = ["top", "top", "other", "bottom"]
    photos = np.array([[1, 0.9, 0.8, 0], [0, 0, 0.9, 1]], np.float32)
    m = slot_metrics(photos, ["top", "bottom"], pool, pool_slots, k=3)
    # photo 1: top, top, other -> 2/3, vote top; photo 2: bottom, other, top -> 1/3, vote ties
    # bottom/top at one each, the nearer (bottom) first
    assert m["neighbour_slot_P@3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert m["knn_slot_acc"] == 1.0


def test_ask_orderings_rank_the_true_slot():
    from lab.embed.ask_order import orderings, rank_metrics
    from mmrec.bench.slot_calibration import Reading
    from mmrec.recommend.slot_confidence import evidence_of
    from mmrec.taxonomy import default_taxonomy

    tax = default_taxonomy()
    # read as a top; the look-alikes lean to shoes; the truth is shoes, then bag
    ev = evidence_of("top", {}, ["shoes", "shoes", "top"], tax)
    readings = [Reading("a", "1", "shoes", "top", ev), Reading("b", "1", "bag", "top", ev)]
    order = orderings(["bottom", "bottom", "top"])
    assert order["prior"](ev)[:2] == ["bottom", "top"]
    assert order["votes"](ev)[:2] == ["top", "shoes"] and order["guess"](ev)[1] == "bottom"
    m = rank_metrics(readings, order["votes"])
    # shoes second; bag: top, shoes, then the fixed order (bottom, one-piece, outerwear, bag)
    assert m == {"first": 0.0, "top2": 0.5, "mean_rank": (2 + 6) / 2}


def test_lower_bound_threshold_needs_enough_right_readings():
    from lab.embed.threshold_rule import lower_bound_threshold, wilson_lower

    assert wilson_lower(10, 10) < 1.0 and wilson_lower(100, 100) > wilson_lower(10, 10)
    assert wilson_lower(0, 0) == 0.0
    # 5 of 5 right is not enough evidence for 90%; 40 of 40 is
    assert lower_bound_threshold([0.9] * 5 + [0.1] * 5, [True] * 5 + [False] * 5, 0.9) == 1.0
    assert lower_bound_threshold([0.9] * 40 + [0.1] * 5, [True] * 40 + [False] * 5, 0.9) == 0.9


def test_answers_accuracy_adds_the_splits_other_photos_leaving_each_out():
    from lab.embed.slot_vote import answers_accuracy

    refs = np.array([[0, 1]], np.float32)  # one reference photo, a top, far from the photos
    photos = np.array([[1, 0], [1, 0], [0.9, 0.1]], np.float32)
    # two bottoms by photographer a, a shoe by b; k=1: the nearest other photo decides
    got = answers_accuracy(photos, ["bottom", "bottom", "shoes"], ["a", "a", "b"], refs,
                           np.array(["top"]), k=1)
    # same photographer: each bottom finds the other bottom, the shoe only the top reference
    assert got["refs+same"] == pytest.approx(2 / 3)
    # other photographers: bottoms find the shoe, the shoe finds a bottom
    assert got["refs+others"] == 0.0


def test_confident_end_counts_only_photos_at_each_level():
    from lab.embed.slot_ensemble import confident_end

    slots = np.array(["top", "bottom"])
    probs = np.array([[0.95, 0.05], [0.85, 0.15], [0.4, 0.6], [0.92, 0.08]])
    truth = np.array(["top", "bottom", "bottom", "bottom"])
    m = confident_end(probs, slots, truth)
    assert m["slot"] == 0.5
    assert m["share_at_0.8"] == 0.75 and m["slot_at_0.8"] == pytest.approx(1 / 3)
    assert m["share_at_0.9"] == 0.5 and m["slot_at_0.9"] == 0.5
