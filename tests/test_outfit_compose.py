"""Composer on hand-made catalogs whose best outfits are known."""

from __future__ import annotations

import numpy as np
import pytest

from mmrec.outfit.compat import CompatScorer, Features
from mmrec.outfit.compose import Anchor, ComposeConfig, Composer, SlotPool
from mmrec.outfit.scenes import SceneBook
from mmrec.taxonomy import default_taxonomy
from outfit_fixtures import item_table

TAX = default_taxonomy()
BOOK = SceneBook.load()


def pools_for(items, scene, propensity=None, genders=None):
    """Candidates per slot passing the scene's hard rules (what the Recommender hands over)."""
    out = {}
    for slot in scene.template_slots():
        pos = [p for p, r in enumerate(items.rows) if r["slot"] == slot
               and not scene.item_violations(r) and (genders is None or r["gender"] in genders)]
        prop = np.array([(propensity or {}).get(items.ids[p], 0.5) for p in pos], np.float32)
        out[slot] = SlotPool(slot, np.array(pos, dtype=np.int64), prop)
    return out


def ids(items, outfit):
    return [items.ids[p] for p in outfit.positions]


@pytest.fixture
def items():
    return item_table()


def composer(items, **cfg):
    return Composer(items, CompatScorer(items, TAX, None), ComposeConfig(**cfg))


def test_best_office_outfit_is_the_formal_neutral_one(items):
    office = BOOK.get("office")
    outs = composer(items).compose(office, pools_for(items, office, genders={"men", "unisex"}), k=3)
    assert ids(items, outs[0]) == ["t1", "b1", "s1", "a1"]  # formal white/black, all neutral
    # what is left: the grey sweater beats the pink shirt (neutral vs accent colour), and the
    # navy backpack (an office bag) the silver watch
    assert ids(items, outs[1]) == ["x13", "b2", "s3", "x15"]
    assert len(outs) == 2  # no third outfit without repeating an item
    for o in outs:
        assert office.outfit_violations([items.rows[p] for p in o.positions]) == []
    assert outs[0].score > outs[1].score and outs[0].compat > outs[1].compat


def test_propensity_changes_the_choice(items):
    office = BOOK.get("office")
    pools = pools_for(items, office, genders={"men", "unisex"}, propensity={"t2": 1.0, "t1": 0.01})
    best = composer(items).compose(office, pools, k=1)[0]
    assert ids(items, best)[0] == "t2"


def test_repeats_only_when_allowed(items):
    office = BOOK.get("office")
    pools = pools_for(items, office, genders={"men", "unisex"})
    outs = composer(items).compose(office, pools, k=5, allow_repeats=True)
    assert len(outs) == 5
    assert len({frozenset(o.positions) for o in outs}) == 5  # outfits still differ
    seen = [p for o in composer(items).compose(office, pools, k=5) for p in o.positions]
    assert len(seen) == len(set(seen))


def test_genders_never_mix(items):
    office = BOOK.get("office")
    outs = composer(items).compose(office, pools_for(items, office), k=6)
    assert len(outs) >= 3
    for o in outs:
        genders = {items.rows[p]["gender"] for p in o.positions} - {"unisex"}
        assert len(genders) == 1, ids(items, o)
    women = [o for o in outs if "women" in {items.rows[p]["gender"] for p in o.positions}]
    assert women and all(set(ids(items, o)) <= {"w1", "w2", "w3", "w4", "w5", "w6"} for o in women)


def test_budget_is_a_hard_constraint(items):
    office = BOOK.get("office")
    pools = pools_for(items, office, genders={"men", "unisex"})
    unbounded = composer(items).compose(office, pools, k=2)
    assert ids(items, unbounded[0]) == ["t1", "b1", "s1", "a1"]  # the best outfit costs 190
    outs = composer(items).compose(office, pools, k=2, max_total_price=185.0)
    assert outs and all(sum(items.price[p] for p in o.positions) <= 185.0 for o in outs)
    assert ["t1", "b1", "s1", "a1"] not in [ids(items, o) for o in outs]


def test_one_piece_template_for_dresses(items):
    party = BOOK.get("party")
    outs = composer(items).compose(party, pools_for(items, party, genders={"women", "unisex"}), k=3)
    templates = [o.template for o in outs]
    assert ["one-piece", "shoes", "bag"] in templates
    dress = next(o for o in outs if o.template == ["one-piece", "shoes", "bag"])
    assert ids(items, dress)[0] == "w5"


def test_anchor_photo_steers_colours_and_slot(items):
    office = BOOK.get("office")
    pools = pools_for(items, office, genders={"men", "unisex"})
    # a photo of a pink shirt: the top slot offers its look-alikes only
    pools["top"] = SlotPool("top", items.positions(["t2"]), np.array([1.0], np.float32))
    feats = Features.of_attributes({"category": "shirts", "colour": "pink", "usage": "casual"},
                                   items, TAX)
    outs = composer(items).compose(office, pools, k=2, anchor=Anchor(feats, "top"))
    assert len(outs) == 1 and ids(items, outs[0])[0] == "t2"


def test_empty_pool_gives_no_outfit(items):
    office = BOOK.get("office")
    pools = pools_for(items, office, genders={"men", "unisex"})
    pools["shoes"] = SlotPool("shoes", np.zeros(0, np.int64), np.zeros(0, np.float32))
    assert composer(items).compose(office, pools, k=3) == []
