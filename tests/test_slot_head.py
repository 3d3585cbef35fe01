"""The encoder's slot head: trained next to the contrastive loss on catalog items and phone
photos, saved and loaded with the encoder, and read first when the kiosk places a photo."""

from __future__ import annotations

import numpy as np
import pytest

from mmrec.config import load_config
from mmrec.embed.slot_head import HEAD_SLOTS, IGNORE, SlotHead, slot_targets
from mmrec.outfit.photo import PhotoAnalysis
from mmrec.recommend.slot_confidence import FEATURES, evidence_of, slot_choices
from mmrec.taxonomy import default_taxonomy
from test_embed_mixed import TABLE, write_real_photos

TAX = default_taxonomy()


def test_targets_skip_rows_without_an_outfit_slot():
    assert slot_targets(["top", "other", None, "shoes"]).tolist() == [0, IGNORE, IGNORE, HEAD_SLOTS.index("shoes")]


def test_head_probabilities_and_round_trip(tmp_path):
    w = np.zeros((len(HEAD_SLOTS), 2), np.float32)
    w[HEAD_SLOTS.index("bottom")] = [1, 0]
    w[HEAD_SLOTS.index("shoes")] = [0, 1]
    head = SlotHead(HEAD_SLOTS, w, np.zeros(len(HEAD_SLOTS), np.float32), 10.0)
    p = head.probs(np.array([[1, 0], [0, 1]], np.float32))
    assert np.allclose(p.sum(axis=1), 1.0)
    assert [HEAD_SLOTS[i] for i in p.argmax(axis=1)] == ["bottom", "shoes"]
    head.save(tmp_path)
    back = SlotHead.load(tmp_path)
    assert back.slots == HEAD_SLOTS and np.allclose(back.probs(np.eye(2, dtype=np.float32)), head.probs(np.eye(2)))
    assert SlotHead.load(tmp_path / "none") is None  # an encoder trained without a head


def test_training_with_a_slot_head_saves_it_with_the_encoder(tmp_path):
    pytest.importorskip("torch")
    from embed_fixtures import ingest, write_catalog
    from mmrec.artifacts import ArtifactStore
    from mmrec.embed.encoder import Encoder
    from mmrec.embed.train import train_encoder

    store = ArtifactStore(tmp_path / "art")
    ingest(store, write_catalog(tmp_path / "src", 40))
    src = write_real_photos(tmp_path / "real_photos")
    over = ["train.epochs=2", "train.batch_size=16", "train.real_photos.share=0.25",
            f"train.real_photos.source={src}", f"train.real_photos.table={TABLE}"]
    plain = train_encoder(store, load_config("embed", profile="tiny", overrides=over), progress=False, log=lambda s: None)
    assert Encoder.from_dir(plain.path, device="cpu").slot_head is None
    art = train_encoder(store, load_config("embed", profile="tiny", overrides=over + ["train.slot_head.weight=1.0"]),
                        progress=False, log=lambda s: None)
    enc = Encoder.from_dir(art.path, device="cpu")
    assert enc.slot_head is not None and enc.slot_head.slots == HEAD_SLOTS
    # the head was trained: it no longer gives every slot the same probability
    probs = enc.slot_head.probs(np.eye(enc.dim, dtype=np.float32)[:4])
    assert probs.shape == (4, len(HEAD_SLOTS)) and probs.std() > 1e-3


def test_the_slot_head_places_the_photo_and_orders_the_question():
    """Read first: the head's slot, not the tagger's category of another slot; its
    probability is evidence; the question lists the slots in the head's order."""
    from mmrec.recommend.photo_anchor import PhotoAnchoring

    probs = {s: 0.01 for s in HEAD_SLOTS} | {"bottom": 0.6, "shoes": 0.3}
    photo = PhotoAnalysis(attributes={"category": {"value": "shirts", "confidence": 0.9}}, slot_probs=probs)
    anchoring = PhotoAnchoring.__new__(PhotoAnchoring)
    anchoring.tax, anchoring.min_confidence = TAX, 0.5
    assert anchoring.read_slot(photo) == ("bottom", "encoder")
    assert anchoring.read_slot(PhotoAnalysis(attributes=photo.attributes)) == ("top", "tagger")
    ev = evidence_of("bottom", photo.attributes, ["top"] * 5, TAX, probs)
    assert dict(zip(FEATURES, ev.features()))["head_for"] == 0.6
    assert slot_choices(ev)[:3] == ["bottom", "shoes", "top"]
    assert dict(zip(FEATURES, evidence_of("bottom", {}, [], TAX).features()))["head_for"] == 0.0


def test_the_reading_never_names_a_category_of_another_slot_than_the_outfits_use():
    """A photo the head places as a bottom while the tagger says "shirts": the kiosk must not say
    "reads as shirts; outfits are built around a bottom". The category comes from the look-alikes
    in the read slot (or the shopper), and a category of the read slot is left as the tagger said."""
    from outfit_fixtures import item_table
    from mmrec.recommend.photo_anchor import PhotoAnchoring
    from mmrec.recommend.slot_confidence import SlotHint

    anchoring = PhotoAnchoring.__new__(PhotoAnchoring)
    anchoring.tax, anchoring.items, anchoring.refs = TAX, item_table(), None
    photo = PhotoAnalysis(attributes={"category": {"value": "shirts", "confidence": 0.9},
                                      "colour": {"value": "blue", "confidence": 0.8}})
    read = anchoring.reading(photo, "bottom", ["b2", "b1", "b2"])
    assert read["category"] == {"value": "jeans", "confidence": 0.6667, "source": "look-alikes", "tagger": "shirts"}
    assert read["colour"] == {"value": "blue", "confidence": 0.8}
    assert "category" not in anchoring.reading(photo, "bottom", [])  # nothing to say instead
    assert anchoring.reading(photo, "top", ["t1"])["category"] == {"value": "shirts", "confidence": 0.9}
    told = anchoring.reading(photo, "bottom", ["b2"], SlotHint(slot="bottom", category="trousers"))
    assert told["category"]["value"] == "trousers" and told["category"]["source"] == "shopper"
    assert photo.attributes["category"]["value"] == "shirts"  # the analysis itself is untouched


def test_the_nearest_labelled_phone_photos_name_the_garment_class():
    """A phone photo of trousers read as a bottom: the nearest labelled reference photos of the
    bottom slot say "Pants", so the kiosk names a category "Pants" allows (the tagger's if it is
    one, else the look-alikes' commonest such); references of other slots, references without a
    class (a kiosk answer that named only a slot) and another encoder's references do not vote."""
    from outfit_fixtures import item_table
    from mmrec.embed.photo_refs import PhotoRefs
    from mmrec.recommend.photo_anchor import PhotoAnchoring

    pants = ("trousers", "jeans", "track pants")
    near, far = [1.0, 0.0], [0.6, 0.8]
    refs = PhotoRefs("r1", "enc@1", ["p1", "p2", "p3", "p4", "p5", "p6"],
                     np.asarray(["bottom", "bottom", "bottom", "bottom", "top", "bottom"]),
                     np.asarray([near, near, far, far, near, near], dtype=np.float32),
                     labels=np.asarray(["Pants", "Pants", "Pants", "Shorts", "Shirt", "bottom"]),
                     classes=[pants, pants, pants, ("shorts",), ("shirts",), ()])
    anchoring = PhotoAnchoring.__new__(PhotoAnchoring)
    anchoring.tax, anchoring.items, anchoring.refs = TAX, item_table(), refs
    photo = PhotoAnalysis(attributes={"category": {"value": "shirts", "confidence": 0.9}},
                          vector=near, encoder_id="enc@1")
    read = anchoring.reading(photo, "bottom", ["b2", "b1", "b2"])
    assert read["category"] == {"value": "jeans", "confidence": 0.75, "source": "reference photos",
                                "label": "Pants", "tagger": "shirts"}
    tagged = PhotoAnalysis(attributes={"category": {"value": "track pants", "confidence": 0.4}},
                           vector=near, encoder_id="enc@1")
    assert anchoring.reading(tagged, "bottom", ["b2"])["category"]["value"] == "track pants"
    # a slot without named references falls back (here: nothing to say)
    assert "category" not in anchoring.reading(photo, "shoes", [])
    other = PhotoAnalysis(attributes=photo.attributes, vector=near, encoder_id="enc@2")
    assert anchoring.reading(other, "bottom", ["b2"])["category"]["source"] == "look-alikes"
