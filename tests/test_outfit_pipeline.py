"""The Recommender facade end to end on a small catalog (no Ray, no HTTP)."""

from __future__ import annotations

import pytest

from mmrec.api_models import RecommendRequest, RequestFilters
from mmrec.errors import InputError
from mmrec.outfit.priors import write_priors
from mmrec.outfit.photo import ComponentMissing, PhotoAnalysis
from mmrec.recommend import Recommender
from outfit_fixtures import write_items, write_polyvore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mmrec.artifacts import ArtifactStore

    root = tmp_path_factory.mktemp("pipe")
    st = ArtifactStore(root / "artifacts")
    write_items(st)
    write_priors(st, write_polyvore(root / "polyvore"))
    return st


@pytest.fixture(scope="module")
def rec(store):
    return Recommender.from_store(store)


def test_degradations_are_reported_not_faked(rec):
    v = rec.versions
    assert v["recall"].startswith("absent") and v["ranker"].startswith("absent")
    assert v["tagger"] == "absent" and v["encoder"] == "absent"
    assert v["outfit_priors"] != "absent" and v["items"]
    notes = " ".join(rec.load_notes)
    assert "catalog filter" in notes and "recall order" in notes


@pytest.mark.parametrize("scene", ["office", "party", "beach holiday", "sports/gym",
                                   "festive/ethnic", "winter outdoor", "travel"])
def test_every_outfit_keeps_its_scene_rules(rec, scene):
    resp = rec.recommend(RecommendRequest(scene=scene, k=3))
    sc = rec.scenes.get(scene)
    assert resp.outfits, resp.notes
    seen = set()
    for o in resp.outfits:
        rows = [rec.items.row(i.item_id) for i in o.items]
        assert sc.outfit_violations(rows) == []
        ids = [i.item_id for i in o.items]
        assert not seen & set(ids)
        seen |= set(ids)
        e = o.explanation
        assert e is not None and e.supported == e.statements > 0 and not e.fallback
    assert resp.versions == {**rec.versions}
    assert set(resp.timings) >= {"recall_ms", "rank_ms", "compose_ms", "explain_ms", "total_ms"}


def test_filters_are_hard(rec):
    resp = rec.recommend(RecommendRequest(scene="office", k=5, filters=RequestFilters(genders=["women"])))
    assert resp.outfits
    assert all(i.gender in ("women", "unisex") for o in resp.outfits for i in o.items)
    resp = rec.recommend(RecommendRequest(scene="office", k=5,
                                          filters=RequestFilters(exclude_item_ids=["t1"], genders=["men"])))
    assert "t1" not in {i.item_id for o in resp.outfits for i in o.items}
    resp = rec.recommend(RecommendRequest(scene="office", k=2, filters=RequestFilters(budget=200, genders=["men"])))
    assert resp.outfits and all(sum(rec.items.row(i.item_id)["price"] for i in o.items) <= 200
                                for o in resp.outfits)


def test_too_few_items_is_said(rec):
    resp = rec.recommend(RecommendRequest(scene="business formal", k=20))
    assert len(resp.outfits) < 20
    assert any("outfits: the catalog has too few items" in n for n in resp.notes)


def test_unknown_scene_and_user(rec):
    with pytest.raises(InputError, match="unknown scene"):
        rec.recommend(RecommendRequest(scene="moon"))
    resp = rec.recommend(RecommendRequest(scene="office", user_id="nobody"))
    assert any("anonymous" in n or "cold-start" in n for n in resp.notes)


def test_photo_needs_a_model(rec):
    from PIL import Image

    with pytest.raises(ComponentMissing):
        rec.recommend(RecommendRequest(scene="office"), image=Image.new("RGB", (64, 64)))


def test_photo_analysis_from_elsewhere_builds_the_look(rec):
    # tagged attributes as a separate photo deployment would return them
    photo = PhotoAnalysis(attributes={"category": {"value": "shirts", "confidence": 0.9},
                                      "colour": {"value": "pink", "confidence": 0.8}},
                          versions={"tagger": "t-test"})
    resp = rec.recommend(RecommendRequest(scene="office", k=2, filters=RequestFilters(genders=["men"])),
                         photo=photo)
    assert resp.photo.slot == "top" and resp.photo.slot_source == "tagger"
    assert resp.photo.similar and resp.versions["tagger"] == "t-test"
    assert all(o.items[0].item_id in resp.photo.similar for o in resp.outfits)


def test_model_predictions_fill_gaps_and_are_cited_with_confidence(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmrec.artifacts import ArtifactStore
    from mmrec.schemas import ATTRIBUTE_PREDICTIONS_SCHEMA

    st = ArtifactStore(tmp_path / "artifacts")
    write_items(st)
    rows = [  # b1 has no material: filled; t1's pattern comes from its title: kept
        {"item_id": "b1", "field": "material", "value": "wool", "confidence": 0.91, "model_version": "v1"},
        {"item_id": "t1", "field": "pattern", "value": "checked", "confidence": 0.99, "model_version": "v1"},
        {"item_id": "t1", "field": "category", "value": "tshirts", "confidence": 0.99, "model_version": "v1"},
    ]
    with st.write("attribute_predictions", config={}) as w:
        pq.write_table(pa.Table.from_pylist(rows, schema=ATTRIBUTE_PREDICTIONS_SCHEMA),
                       w.path / "predictions.parquet")
    from mmrec.outfit.explain import ExplainConfig
    from mmrec.recommend import RecommenderConfig

    # room for every claim: the tagger's detail is the least telling and the default budget of
    # three sentences leaves it out; material is cited from 0.9 here (not a default field)
    roomy = RecommenderConfig(explain=ExplainConfig(max_sentences=12, max_words=300,
                                                    model_confidence={"material": 0.9}))
    rec = Recommender.from_store(st, config=roomy)
    assert rec.items.row("b1")["attributes"]["material"] == {"value": "wool", "source": "model", "confidence": 0.91}
    assert rec.items.row("t1")["attributes"]["pattern"]["source"] == "title"
    assert rec.items.row("t1")["category"] == "shirts"
    assert rec.versions["attribute_predictions"] == st.current_version("attribute_predictions")
    resp = rec.recommend(RecommendRequest(scene="office", k=1, filters=RequestFilters(genders=["men"])))
    e = resp.outfits[0].explanation
    assert "The trousers look made of wool to our tagger (91%)." in e.text
    assert e.supported == e.statements
    assert any(f.source == "model" and f.confidence == 0.91 for f in e.facts)


def test_typed_text_steers_its_slot(rec):
    resp = rec.recommend(RecommendRequest(scene="office", k=1, query_text="pink shirt"))
    top = next(i for i in resp.outfits[0].items if i.slot == "top")
    assert top.item_id == "t2"  # the pink shirt, although the white one scores higher
    resp = rec.recommend(RecommendRequest(scene="party", k=2, query_text="a red dress please"))
    assert all(o.template == ["one-piece", "shoes", "bag"] for o in resp.outfits)
    assert resp.outfits[0].items[0].item_id == "w5"
    resp = rec.recommend(RecommendRequest(scene="office", k=1, query_text="flip flops"))
    assert any("do not use" in n for n in resp.notes)  # not office shoes: said, rules kept
    assert all(i.category != "flip flops" for o in resp.outfits for i in o.items)



@pytest.fixture(scope="module")
def look_alikes():
    """A catalog with hand-set image vectors: bags point one way (``bag``), the men's formal
    shirts mostly another (``top``), everything else away from both; a look-alike search returns
    one item per look-alike slot (``photo_similar_k=1``). The slot vote is the 10 nearest items
    on the image alone, so each direction holds 10 items: a vote by its own kind."""
    import numpy as np

    from mmrec.catalog.ingest import items_table
    from mmrec.outfit.scenes import SceneBook
    from mmrec.recall.build import meta_row
    from mmrec.recall.config import IndexConfig, RecallConfig
    from mmrec.recall.index import VectorIndex
    from mmrec.recall.service import Recall
    from mmrec.recommend import RecommenderConfig
    from outfit_fixtures import ALL, item_rows, item_table

    extra = [(f"t{k}", "men", "shirts", "white", "formal", "summer", "solid", 40.0 + k) for k in range(5, 14)] + [
        (f"g{k}", "men", cat, "black", "casual", "fall", None, 30.0 + k)
        for k, cat in enumerate(["messenger bag", "backpacks"] * 4)]
    items = item_table(ALL + extra)
    bag, top, other = np.eye(3, dtype=np.float32)
    vecs = []
    for r in items.rows:
        if r["slot"] == "bag":
            vecs.append(bag - 0.1 * top)
        elif r["category"] == "shirts" and r["usage"] == "formal":
            vecs.append(0.6 * bag + 0.8 * top)
        else:
            vecs.append(-0.5 * bag - 0.2 * top + other)
    items.attach_vectors(list(items.ids), np.stack(vecs), "test")
    # the look-alikes are searched in recall's index, as in production (no second search)
    index = VectorIndex.build(np.stack(vecs), list(items.ids), [meta_row(r) for r in items.rows],
                              IndexConfig(), kind="flat")
    recall = Recall.from_parts(index, items_table(item_rows(ALL + extra)), encoder=None, cfg=RecallConfig())
    rec = Recommender(items, SceneBook.load(), recall=recall, config=RecommenderConfig(photo_similar_k=1))
    req = RecommendRequest(scene="casual weekend", k=2, filters=RequestFilters(genders=["men"]))
    return rec, req, {"bag": bag, "top": top, "other": other}


def _shirt_photo(vector):
    return PhotoAnalysis(attributes={"category": {"value": "shirts", "confidence": 0.9}}, vector=vector.tolist())


def test_a_misread_photo_is_matched_by_its_look_alikes_slot(look_alikes):
    """A kiosk photo of a bag that the tagger reads as a shirt: the only shirts like it are
    formal, which a casual weekend bans, so the tagged slot leaves no outfit. The photo's nearest
    catalog items (bags) then decide its slot, and the look is built around a bag."""
    rec, req, v = look_alikes
    resp = rec.recommend(req, photo=_shirt_photo(v["bag"]))
    assert resp.outfits, resp.notes
    assert resp.photo.slot == "bag" and resp.photo.slot_source == "neighbours"
    assert any("reads as a top item" in n and "look-alikes" in n for n in resp.notes)
    assert not any("0 of 2 outfits" in n for n in resp.notes)
    for o in resp.outfits:
        bags = [i.item_id for i in o.items if i.slot == "bag"]
        assert bags and bags[0] in resp.photo.similar
        assert rec.scenes.get("casual weekend").outfit_violations([rec.items.row(i.item_id) for i in o.items]) == []
    # a photo of a casual shirt keeps the tagger's slot and is not retried
    ok = rec.recommend(req, photo=_shirt_photo(v["other"]))
    assert ok.outfits and ok.photo.slot == "top" and ok.photo.slot_source == "tagger"
    assert not any("reads as" in n for n in ok.notes)


def test_an_unread_slot_is_voted_by_the_image_not_by_the_tagged_colour(look_alikes):
    """The tagger cannot name the garment but is sure of its colour and use (white, formal):
    the slot is voted by the photo's look-alikes on the image alone (bags), not by a search
    that mixes in the tagged colour and returns the catalog's white formal shirts."""
    rec, req, v = look_alikes
    photo = PhotoAnalysis(attributes={"category": {"value": "shirts", "confidence": 0.2},
                                      "colour": {"value": "white", "confidence": 0.95},
                                      "usage": {"value": "formal", "confidence": 0.95}},
                          vector=v["bag"].tolist())
    slot, how, _ = rec.photos.similar_to_photo(photo, 3)
    assert (slot, how) == ("bag", "neighbours")
    resp = rec.recommend(req, photo=photo)
    assert resp.photo.slot == "bag" and resp.photo.slot_source == "neighbours"


def test_a_photo_nothing_goes_with_gets_the_scene_s_outfits_in_its_colours(look_alikes):
    """A formal shirt on a casual weekend: its look-alikes are formal shirts too (no other slot
    to try), so the outfits are the scene's own, matched to the photo's colours, and say so."""
    rec, req, v = look_alikes
    resp = rec.recommend(req, photo=_shirt_photo(v["top"]))
    assert resp.outfits, resp.notes
    assert resp.photo.slot is None and resp.photo.slot_source == "none"
    assert any("reads as a top item" in n and "colours only" in n for n in resp.notes)
    assert not any("None" in n or "slot" in n for n in resp.notes), resp.notes
    sc = rec.scenes.get("casual weekend")
    for o in resp.outfits:
        rows = [rec.items.row(i.item_id) for i in o.items]
        assert sc.outfit_violations(rows) == [] and all(r["usage"] != "formal" for r in rows)
