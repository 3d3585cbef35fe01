"""Recall routes without models: BM25, attribute parsing/matching, popularity, shared filters."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pytest

from mmrec.recall.config import AttributeRouteConfig, BM25RouteConfig, PopularityRouteConfig
from mmrec.recall.routes import (AttributeRoute, BM25Route, PopularityRoute, RecallCatalog,
                                 parse_attributes, tokenize)
from mmrec.recall.types import Filters
from mmrec.taxonomy import default_taxonomy

ROWS = [
    dict(item_id="1", title="Arrow Men Navy Blue Formal Shirt", category="shirts", slot="top",
         gender="men", colour="navy blue", usage="formal", pattern="solid", price=30.0, in_stock=True),
    dict(item_id="2", title="Puma Men Navy Blue Sports Tshirt", category="tshirts", slot="top",
         gender="men", colour="navy blue", usage="sports", pattern=None, price=20.0, in_stock=True),
    dict(item_id="3", title="Vero Moda Women Black Formal Shirt", category="shirts", slot="top",
         gender="women", colour="black", usage="formal", pattern=None, price=None, in_stock=True),
    dict(item_id="4", title="Red Tape Men Brown Formal Shoes", category="formal shoes", slot="shoes",
         gender="men", colour="brown", usage="formal", pattern=None, price=60.0, in_stock=False),
    dict(item_id="5", title="Levis Men Navy Blue Jeans", category="jeans", slot="bottom",
         gender="men", colour="navy blue", usage="casual", pattern=None, price=45.0, in_stock=True),
]


@pytest.fixture(scope="module")
def catalog():
    return RecallCatalog(pa.Table.from_pylist(ROWS))


@pytest.fixture(scope="module")
def taxonomy():
    return default_taxonomy()


def test_tokenize_folds_case_punctuation_and_plurals():
    assert tokenize("T-Shirts for MEN, navy-blue") == ["t", "shirt", "for", "men", "navy", "blue"]
    assert tokenize("dress") == ["dress"]  # "ss" is not a plural


def test_bm25_matches_a_hand_computed_score():
    cfg = BM25RouteConfig(k1=1.2, b=0.75)
    docs = ["red shirt", "red red shoe", "blue shirt shirt"]
    bm = BM25Route(docs, ["a", "b", "c"], cfg)
    n, avgdl = 3, (2 + 3 + 3) / 3

    def w(tf, df, dl):
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        return idf * tf * (cfg.k1 + 1) / (tf + cfg.k1 * (1 - cfg.b + cfg.b * dl / avgdl))

    s = bm.scores("red shirts")  # "shirts" folds to "shirt"
    np.testing.assert_allclose(s, [w(1, 2, 2) + w(1, 2, 2), w(2, 2, 3), w(2, 2, 3)])
    res = bm.search("red shirts", np.array([True, True, False]), 10)
    assert res.item_ids == ["a", "b"] and res.name == "bm25"
    assert bm.search("unknown words", np.ones(3, bool), 10).item_ids == []


def test_parse_attributes_longest_ngram_first(taxonomy):
    p = parse_attributes("navy blue shirt men formal", taxonomy)
    assert p.values == {"colour": "navy blue", "category": "shirts", "gender": "men", "usage": "formal"}
    assert parse_attributes("formal shoes for women", taxonomy).values == {
        "category": "formal shoes", "gender": "women"}
    assert parse_attributes("shoes", taxonomy).values == {"slot": "shoes"}  # a slot, not a category
    # "tops" spells Myntra's category; only the singular names the slot
    assert parse_attributes("white tops women casual", taxonomy).values == {
        "colour": "white", "category": "tops", "gender": "women", "usage": "casual"}
    assert parse_attributes("a black top", taxonomy).values == {"colour": "black", "slot": "top"}
    p = parse_attributes("something for the beach", taxonomy)
    assert p.values == {} and p.rest == ["something", "for", "the", "beach"]


def test_attribute_route_scores_weighted_matches(catalog, taxonomy):
    route = AttributeRoute(catalog, taxonomy, AttributeRouteConfig())
    values, info = route.query_values("navy blue shirt men formal", {})
    res = route.search(values, catalog.allowed(Filters(in_stock_only=False)), 10)
    # 1 matches all four (3+2+1+1); 2 and 5 colour+gender (3); 3 category+usage (4); 4 gender+usage (2)
    assert res.item_ids == ["1", "3", "2", "5", "4"]
    assert res.scores == [7.0, 4.0, 3.0, 3.0, 2.0]
    # explicit attributes win over parsed words and unknown values name the fix
    values, _ = route.query_values("navy shirt", {"colour": "Black"})
    assert values == {"colour": "black", "category": "shirts"}
    from mmrec.errors import InputError

    with pytest.raises(InputError, match="not a known value"):
        route.query_values(None, {"colour": "ultraviolet"})
    with pytest.raises(InputError, match="unknown attribute field"):
        route.query_values(None, {"flavour": "sweet"})


def test_filters_apply_inside_every_catalog_route(catalog, taxonomy):
    f = Filters(genders=["men"], price_max=50.0, exclude_ids=["5"])  # in stock by default
    allowed = catalog.allowed(f)
    assert [catalog.item_ids[i] for i in np.flatnonzero(allowed)] == ["1", "2"]
    route = AttributeRoute(catalog, taxonomy, AttributeRouteConfig())
    values, _ = route.query_values("navy blue", {})
    assert route.search(values, allowed, 10).item_ids == ["1", "2"]
    bm = BM25Route([r["title"] for r in ROWS], catalog.item_ids, BM25RouteConfig())
    assert set(bm.search("formal navy", allowed, 10).item_ids) <= {"1", "2"}
    # unknown price never satisfies a price bound; no bound keeps it
    assert not catalog.allowed(Filters(price_min=0.0))[2] and catalog.allowed(Filters())[2]


def test_popularity_per_segment_with_decay_and_fallback(catalog):
    now = dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)
    ev = [("u1", "2", "purchase", 0), ("u1", "2", "click", 1), ("u2", "3", "click", 0),
          ("u2", "3", "click", 0), ("u2", "3", "click", 0), ("u1", "1", "purchase", 60),
          ("u3", "5", "impression", 0), ("u3", "nope", "click", 0)]
    inter = pa.table({"user_id": [e[0] for e in ev], "item_id": [e[1] for e in ev],
                      "event": [e[2] for e in ev],
                      "ts": pa.array([now - dt.timedelta(days=e[3]) for e in ev], pa.timestamp("us", tz="UTC"))})
    profiles = pa.table({"user_id": ["u1", "u2", "u3"], "segment": ["men:25-34", "women:18-24", "men:25-34"]})
    cfg = PopularityRouteConfig(half_life_days=30.0, min_segment_events=1.0)
    pop = PopularityRoute.from_interactions(catalog, inter, profiles, cfg, "interactions_sim/v1")
    allowed = catalog.allowed(Filters(in_stock_only=False))
    # global: item 2 = 4 + 0.5^(1/30) ~ 4.98; item 3 = 3 clicks; item 1 = 4 * 0.25 (60 days old)
    assert pop.search(None, allowed, 10).item_ids == ["2", "3", "1"]
    seg = pop.search("women:18-24", allowed, 10)
    assert seg.item_ids == ["3"] and seg.info == {"segment": "women:18-24", "source": "interactions_sim/v1"}
    assert pop.search("unknown-segment", allowed, 10).info["segment"] == "global"
    assert pop.search(None, catalog.allowed(Filters(genders=["women"])), 10).item_ids == ["3"]
    assert 0 <= pop.prior().min() and pop.prior().max() < 1
