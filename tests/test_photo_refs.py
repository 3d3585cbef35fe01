"""Reference photos: labelled phone photos whose slots vote on a kiosk photo's slot."""

from __future__ import annotations

import numpy as np
import pytest

from mmrec.api_models import RecommendRequest, RequestFilters
from mmrec.artifacts import ArtifactStore
from mmrec.embed.photo_refs import PhotoRefs
from mmrec.outfit.photo import PhotoAnalysis
from mmrec.taxonomy import default_taxonomy
from test_embed_mixed import TABLE, write_real_photos


def table_categories(label: str) -> set[str]:
    """The categories the shipped label table allows for ``label``, read independently."""
    import yaml

    return set(yaml.safe_load(open(TABLE))["labels"][label]["categories"])


def test_built_from_train_photographers_only_and_refused_for_another_encoder(tmp_path):
    """`mmrec embed photo-refs`: the train photographers' labelled photos (never val or test
    photographers, never "could not tell" probes) with their slots, in the encoder's space;
    a kiosk reading photos with another encoder gets no reference photos and a note why."""
    from mmrec.cli import main
    from mmrec.embed.config import ModelSpec
    from mmrec.embed.encoder import Encoder
    from mmrec.embed.photo_refs import build_photo_refs

    src = write_real_photos(tmp_path / "real_photos")
    encoder = Encoder.create(ModelSpec(name="mmrec-clip-tiny", device="cpu"), encoder_id="tiny@1")
    store = ArtifactStore(tmp_path / "artifacts")
    art = build_photo_refs(store, encoder, src, TABLE, default_taxonomy())
    assert art.metrics["photos"] == 4 and art.metrics["senders"] == 3
    assert art.metrics["slots"] == {"one-piece": 1, "bottom": 1, "top": 2}
    refs, notes = PhotoRefs.load(store, "tiny@1")
    assert notes == [] and sorted(refs.photo_ids) == ["a1", "a2", "a4", "a6"]
    assert refs.vectors.shape == (4, encoder.dim)
    assert sorted(refs.nearest_slots(refs.vectors[0], 10)) == ["bottom", "one-piece", "top", "top"]
    # each reference keeps its garment label and the categories the label allows
    by_id = dict(zip(refs.photo_ids, zip(refs.labels, refs.classes)))
    assert all(label and classes for label, classes in by_id.values())
    assert all(table_categories(label) == set(classes) for label, classes in by_id.values())
    other, notes = PhotoRefs.load(store, "another@2")
    assert other is None and "embedded by tiny@1" in notes[0]
    # the CLI refuses a folder without images.csv with the path in the message
    assert main(["--artifacts", str(tmp_path / "artifacts"), "--quiet", "embed", "photo-refs",
                 "--source", str(tmp_path / "nowhere")]) != 0


@pytest.fixture
def anchored():
    """A catalog whose items all sit near the ``bag`` direction (none near ``bottom``), and
    reference photos whose bottoms sit at ``bottom``: a photo pointing at ``bottom`` has
    arbitrary catalog items as its nearest, and bottoms as its nearest reference photos."""
    from mmrec.outfit.scenes import SceneBook
    from mmrec.recall.build import meta_row
    from mmrec.recall.config import IndexConfig, RecallConfig
    from mmrec.recall.index import VectorIndex
    from mmrec.recall.service import Recall
    from mmrec.recommend import Recommender, RecommenderConfig
    from outfit_fixtures import ALL, item_rows, item_table

    items = item_table(ALL)
    bag, bottom, top = np.eye(3, dtype=np.float32)
    vecs = np.stack([bag + 0.05 * i * top for i in range(len(items.rows))])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    items.attach_vectors(list(items.ids), vecs, "test")
    index = VectorIndex.build(vecs, list(items.ids), [meta_row(r) for r in items.rows], IndexConfig(),
                              kind="flat", encoder_id="enc@1")
    recall = Recall.from_parts(index, items_table_of(item_rows(ALL)), encoder=None, cfg=RecallConfig())
    ref_vecs = np.stack([bottom] * 10 + [top] * 4).astype(np.float32)
    refs = PhotoRefs("r1", "enc@1", [f"r{i}" for i in range(14)],
                     np.array(["bottom"] * 10 + ["top"] * 4), ref_vecs)
    rec = Recommender(items, SceneBook.load(), recall=recall, config=RecommenderConfig(photo_similar_k=3),
                      photo_refs=refs)
    return rec, {"bag": bag, "bottom": bottom}


def items_table_of(rows):
    from mmrec.catalog.ingest import items_table

    return items_table(rows)


def test_an_unread_slot_is_voted_by_the_nearest_reference_photos(anchored):
    """The tagger cannot name the garment; its nearest catalog images say nothing of bottoms,
    its nearest labelled phone photos are bottoms: the photo is read as a bottom. Reference photos embedded
    by another encoder are another space: then the catalog votes."""
    rec, v = anchored
    unsure = {"category": {"value": "jeans", "confidence": 0.1}}
    photo = PhotoAnalysis(attributes=unsure, vector=v["bottom"].tolist(), encoder_id="enc@1")
    slot, how, _ = rec.photos.similar_to_photo(photo, 3)
    assert (slot, how) == ("bottom", "neighbours")
    resp = rec.recommend(RecommendRequest(scene="casual weekend", k=1, filters=RequestFilters(genders=["men"])),
                         photo=photo)
    assert resp.photo.slot == "bottom" and resp.photo.slot_source == "neighbours"
    refs = rec.photos.refs
    rec.photos.refs = PhotoRefs("r0", "enc@0", refs.photo_ids, refs.slots, refs.vectors)  # an older encoder's
    catalog = [rec.items.row(i)["slot"] for i in rec.photos.similar(photo, None, None, 10, [], tags=False)]
    voted = rec.photos.majority_slot(catalog)
    assert voted != "bottom" and rec.photos.similar_to_photo(photo, 3)[:2] == (voted, "neighbours")


def test_a_live_catalog_change_keeps_the_photo_reading(anchored):
    """An upsert or delete derives a new recommender over the changed catalog; it must read
    photos as the old one did: same reference photos, same slot calibrator (before, the
    calibrator was dropped and photos were never declined after the first catalog change)."""
    from mmrec.recommend.catalog_live import derive
    from mmrec.recommend.slot_confidence import FEATURES, SlotCalibrator

    rec, _ = anchored
    rec.photos.calibrator = SlotCalibrator(coef=[0.0] * len(FEATURES), intercept=0.0, threshold=0.7)
    gone = rec.items.ids[0]
    derived, n = derive(rec, [("delete", gone, None, None, None)])
    assert n == 1 and gone not in derived.items.index
    assert derived.photos.refs is rec.photos.refs and derived.photos.calibrator is rec.photos.calibrator
    assert derived.photos.abstain_below == 0.7


def test_the_demo_re_embeds_reference_photos_after_a_new_encoder(tmp_path):
    """`mmrec demo` rebuilds the reference photos when the CURRENT encoder is not the one that
    embedded them (a retrained encoder reads photos in another space), and not otherwise."""
    from mmrec import kinds
    from mmrec.commands.demo import _photo_refs_stale
    from mmrec.embed.config import ModelSpec
    from mmrec.embed.encoder import Encoder
    from mmrec.embed.photo_refs import build_photo_refs

    store = ArtifactStore(tmp_path / "artifacts")
    src = write_real_photos(tmp_path / "real_photos")
    encoders = []
    for _ in range(2):
        enc = Encoder.create(ModelSpec(name="mmrec-clip-tiny", device="cpu"))
        with store.write(kinds.ENCODER, config={}) as w:
            enc.save(w.path, encoder_id=f"tiny@{w.version}", version=w.version)
        encoders.append(Encoder.load(store, w.version))
    assert _photo_refs_stale(store)  # none yet: to build
    build_photo_refs(store, encoders[1], src, TABLE, default_taxonomy())  # the CURRENT encoder's
    assert not _photo_refs_stale(store)
    build_photo_refs(store, encoders[0], src, TABLE, default_taxonomy())  # an older encoder's
    assert _photo_refs_stale(store)
