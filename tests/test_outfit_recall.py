"""The Recommender over a real recall stack built in-process: tiny encoder trained on the
catalog photos -> vectors -> FAISS index -> multi-route recall; photos read by that encoder."""

from __future__ import annotations

import pytest

from mmrec.api_models import RecommendRequest, RequestFilters
from mmrec.recommend import Recommender
from outfit_fixtures import jpeg_bytes, write_items

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    from mmrec.artifacts import ArtifactStore
    from mmrec.config import load_config
    from mmrec.embed.catalog import embed_catalog
    from mmrec.embed.train import train_encoder
    from mmrec.recall.build import build_index
    from mmrec.serving.threads import limit_threads

    limit_threads()
    root = tmp_path_factory.mktemp("recall")
    store = ArtifactStore(root / "artifacts")
    write_items(store, images_dir=root / "images")
    ecfg = load_config("embed", profile="tiny", overrides=["train.epochs=1"])
    train_encoder(store, ecfg, progress=False)
    embed_catalog(store, ecfg, progress=False)
    build_index(store, load_config("index", profile="tiny"))
    return Recommender.from_store(store, profile="tiny")


def test_recall_index_vectors_and_encoder_are_used(rec):
    v = rec.versions
    assert v["recall"] == "loaded" and v["index"] and v["vectors"]
    assert v["encoder"] != "absent" and v["tagger"] == "absent"
    assert rec.items.vectors is not None and "embedding" in rec.compat.components
    assert not any("recall index" in n for n in rec.load_notes)


@pytest.mark.parametrize("scene", ["office", "party", "beach holiday", "sports/gym", "festive/ethnic"])
def test_outfits_keep_rules_with_recalled_candidates(rec, scene):
    resp = rec.recommend(RecommendRequest(scene=scene, k=2))
    sc = rec.scenes.get(scene)
    assert resp.outfits
    for o in resp.outfits:
        assert sc.outfit_violations([rec.items.row(i.item_id) for i in o.items]) == []
        assert o.explanation.supported == o.explanation.statements


def test_typed_text_through_recall(rec):
    resp = rec.recommend(RecommendRequest(scene="office", k=1, query_text="pink shirt",
                                          filters=RequestFilters(genders=["men"])))
    top = next(i for i in resp.outfits[0].items if i.slot == "top")
    assert top.item_id == "t2"
    assert "matches your search" in resp.outfits[0].explanation.text


def test_photo_read_by_the_encoder_builds_the_look(rec):
    from mmrec.images import load_image

    resp = rec.recommend(RecommendRequest(scene="casual weekend", k=2), image=load_image(jpeg_bytes((245, 245, 245))))
    assert resp.photo is not None and resp.photo.slot_source == "neighbours"
    assert resp.photo.similar and resp.versions["encoder"] == rec.versions["encoder"]
    sc = rec.scenes.get("casual weekend")
    for o in resp.outfits:
        assert sc.outfit_violations([rec.items.row(i.item_id) for i in o.items]) == []
    assert "photo_ms" in resp.timings
    # how many photos shared the models' pass: what the serve bench reports as photo_batch_mean
    assert resp.timings["photo_batch"] == 1.0 and resp.timings["photo_models_ms"] > 0
    three = rec.photo.analyze_many([load_image(jpeg_bytes((245, 245, 245)))] * 3)
    assert [a.timings["photo_batch"] for a in three] == [3.0, 3.0, 3.0]


def test_photos_sent_together_share_one_models_pass(rec):
    """What the serving layer does with concurrent kiosk photos (PhotoModels deployment, or the
    local backend): one tagger/encoder pass for all of them, each told how long it queued."""
    import asyncio

    from mmrec.images import load_image
    from mmrec.serving.batching import BatchedPhotos

    photos = BatchedPhotos(lambda: rec.photo, max_batch=8, gather_ms=0)
    img = load_image(jpeg_bytes((20, 20, 120)))

    async def three_shoppers():
        return await asyncio.gather(*(photos.analyze(img) for _ in range(3)))

    out = asyncio.run(three_shoppers())
    assert photos.batcher.batches == 1
    assert [a.timings["photo_batch"] for a in out] == [3.0, 3.0, 3.0]
    assert all(a.timings["photo_wait_ms"] >= 0 and a.vector for a in out)
    alone = rec.photo.analyze(img)
    assert out[0].vector == pytest.approx(alone.vector, abs=1e-5)  # batching changes no answer


def test_a_photo_misread_as_another_gender_still_gets_the_shoppers_outfits(rec):
    """The shopper's stated gender outranks the tagger's reading of the photo: a kiosk photo of a
    men's shirt that the tagger calls women's must not veto every men's item (0 outfits)."""
    import dataclasses

    from mmrec.images import load_image

    photo = rec.photo.analyze(load_image(jpeg_bytes((245, 245, 245))))
    misread = dataclasses.replace(photo, attributes={"gender": {"value": "women", "confidence": 0.99},
                                                     "category": {"value": "shirts", "confidence": 0.9}})
    resp = rec.recommend(RecommendRequest(scene="office", k=2, filters=RequestFilters(genders=["men"])),
                         photo=misread)
    assert resp.outfits, "\n".join(resp.notes)
    assert all(i.gender in ("men", "unisex") for o in resp.outfits for i in o.items)
    assert any("women" in n and "men" in n for n in resp.notes)  # the answer says what it overrode
    assert resp.photo.attributes["gender"]["value"] == "women"  # and still reports what was read


def test_cached_candidates_never_carry_one_requests_filters_to_another(rec):
    def ids(resp):
        return {i.item_id for o in resp.outfits for i in o.items}

    plain = RecommendRequest(scene="office", k=2)
    first = ids(rec.recommend(plain))
    assert first
    # an exclusion (never cached) and a gender filter (its own cache entry) in between
    excluded = rec.recommend(RecommendRequest(scene="office", k=2,
                                              filters=RequestFilters(exclude_item_ids=sorted(first))))
    assert not ids(excluded) & first
    men = rec.recommend(RecommendRequest(scene="office", k=2, filters=RequestFilters(genders=["men"])))
    assert all(rec.items.row(i)["gender"] in ("men", "unisex") for i in ids(men))
    # a photo marks its look-alikes' routes: the cached per-item route dicts stay untouched
    from mmrec.images import load_image

    rec.recommend(RecommendRequest(scene="office", k=2), image=load_image(jpeg_bytes((20, 20, 90))))
    again = rec.recommend(plain)
    assert ids(again) == first
    assert all("image" not in f.value for o in again.outfits for f in o.explanation.facts
               if f.field == "recall_route")
