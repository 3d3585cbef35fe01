"""Compatibility: colour harmony, formality, Polyvore priors, embeddings, accents."""

from __future__ import annotations

import numpy as np
import pytest

from mmrec.errors import InputError
from mmrec.outfit.compat import CompatConfig, CompatScorer, Features
from mmrec.outfit.priors import CooccurrencePriors, build_priors, map_category
from mmrec.taxonomy import default_taxonomy
from outfit_fixtures import item_table, write_polyvore

TAX = default_taxonomy()


def feats(items, *ids):
    return Features.of_items(items, items.positions(ids))


def test_colour_rules():
    items = item_table()
    cs = CompatScorer(items, TAX, None)
    # white shirt + black trousers: both neutral
    assert cs.colour(feats(items, "t1"), feats(items, "b1"))[0, 0] == pytest.approx(1.0)
    # pink shirt + black trousers: one accent on a neutral
    assert cs.colour(feats(items, "t2"), feats(items, "b1"))[0, 0] == pytest.approx(0.9)
    # red tshirt + pink shirt: a clash
    assert cs.colour(feats(items, "x5"), feats(items, "t2"))[0, 0] == pytest.approx(0.15)
    # red tshirt + green track pants: a clash too; red + yellow: two accents, no clash
    assert cs.colour(feats(items, "x5"), feats(items, "b3"))[0, 0] == pytest.approx(0.15)
    assert cs.colour(feats(items, "x5"), feats(items, "x9"))[0, 0] == pytest.approx(0.5)


def test_formality_prefers_matching_occasions():
    items = item_table()
    cs = CompatScorer(items, TAX, None)
    formal = cs.formality(feats(items, "t1"), feats(items, "b1", "b2", "b3"))[0]
    assert formal[0] > formal[1] > formal[2]  # formal > casual > sports trousers with a formal shirt


def test_priors_from_polyvore(tmp_path):
    table = build_priors(write_polyvore(tmp_path / "pv"))
    assert table["n_outfits"] == 60
    pri = CooccurrencePriors(table)
    assert pri.score("jeans", "bottom", "casual shoes", "shoes") > 0.6
    assert pri.score("jeans", "bottom", "heels", "shoes") < 0.5
    assert pri.score("dresses", "one-piece", "clutches", "bag") > pri.score("dresses", "one-piece", "casual shoes", "shoes")
    assert map_category("male formal shoes", TAX) == "formal shoes"
    assert map_category("purse", TAX) == "handbags"
    with pytest.raises(InputError, match="not a Polyvore"):
        build_priors(tmp_path)


def test_pair_uses_priors_and_embeddings_only_when_present(tmp_path):
    items = item_table()
    base = CompatScorer(items, TAX, None)
    assert base.components == ["colour", "formality"]
    pri = CooccurrencePriors(build_priors(write_polyvore(tmp_path / "pv")))
    with_pri = CompatScorer(items, TAX, pri)
    assert "cooccurrence" in with_pri.components
    # vectors: identical style vectors raise compatibility, opposite ones lower it
    q = base.pair(feats(items, "t2"), feats(items, "b1", "b2"))[0]
    r0 = base.pair(feats(items, "t1"), feats(items, "b1"))[0, 0]
    vec = np.zeros((len(items), 4), np.float32)
    vec[items.index["t2"]] = [1, 0, 0, 0]
    vec[items.index["b1"]] = [1, 0, 0, 0]
    vec[items.index["b2"]] = [-1, 0, 0, 0]
    items.attach_vectors(items.ids, vec, "test")
    emb = CompatScorer(items, TAX, None)
    assert "embedding" in emb.components
    p = emb.pair(feats(items, "t2"), feats(items, "b1", "b2"))[0]
    assert p[0] > q[0] and p[1] < q[1]
    # an item without a vector contributes no embedding evidence
    assert emb.pair(feats(items, "t1"), feats(items, "b1"))[0, 0] == pytest.approx(r0)


def test_gender_and_accents():
    items = item_table()
    ok = CompatScorer.gender_ok(feats(items, "t1"), feats(items, "w2", "x8", "b1"))[0]
    assert ok.tolist() == [False, True, True]
    cs = CompatScorer(items, TAX, None)
    fams = np.array([[4, 6, 9, 0], [1, 2, 0, 0]])  # three accents; none
    neus = np.zeros_like(fams, dtype=bool)
    assert cs.accent_factors(fams, neus, 1).tolist() == pytest.approx([0.7, 1.0 - 0.15])
    with pytest.raises(ValueError, match="unknown colour families"):
        CompatConfig(clashes=[("red", "plaid")])
