"""Kiosk photo answers: a photo the kiosk could not read is kept with the shopper's answer only
when the shopper agreed, without the upload's metadata, and joins the reference photos that vote
on later photos' slots; retention deletes rows and files."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mmrec.artifacts import ArtifactStore
from mmrec.feedback.photo_answers import answered_photos, answers_dir, prune_files
from mmrec.feedback.store import FeedbackStore
from mmrec.outfit.photo import PhotoAnalysis
from mmrec.recommend import Recommender
from mmrec.serving.app import create_app
from mmrec.serving.settings import FeedbackSettings, ServeSettings
from mmrec.taxonomy import default_taxonomy
from outfit_fixtures import write_items

KEY = "answers-test-key"


class Unsure:
    """Photo backend: the tagger is unsure of everything."""

    async def analyze(self, image):
        return PhotoAnalysis(attributes={"category": {"value": "shirts", "confidence": 0.2}},
                             versions={"tagger": "fixed"})


def photo_with_gps() -> bytes:
    """A JPEG whose EXIF says where it was taken."""
    img = Image.new("RGB", (120, 160), (20, 30, 120))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"          # Make
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 0.0)}  # GPS IFD
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    root = tmp_path_factory.mktemp("answers")
    st = ArtifactStore(root / "artifacts")
    write_items(st, images_dir=root / "images")
    return Recommender.from_store(st)


def client_for(rec, path):
    settings = ServeSettings(max_body_bytes=2_000_000, response_cache_size=0,
                             feedback=FeedbackSettings(enabled=path is not None, path=str(path) if path else None))
    c = TestClient(create_app(rec, settings.with_key(KEY), photo=Unsure()), raise_server_exceptions=False)
    c.headers.update({"X-API-Key": KEY})
    return c


def post(c, **fields):
    return c.post("/v1/recommend/photo", files={"image": ("p.jpg", photo_with_gps(), "image/jpeg")},
                  data={"scene": "casual_weekend", "k": "1", **fields})


def test_a_consented_answer_keeps_the_photo_without_its_metadata(rec, tmp_path):
    path = tmp_path / "fb" / "feedback.sqlite"
    with client_for(rec, path) as c:
        assert post(c, slot="bottom").status_code == 200  # answered, not shared: nothing kept
        r = post(c, slot="bottom", share_photo="true")
        assert r.status_code == 200, r.text
        assert "your photo is kept with your answer" in " ".join(r.json()["notes"])
        again = post(c, category="jeans", share_photo="true")  # the same photo, corrected
        assert again.status_code == 200
    store = FeedbackStore(path)
    try:
        rows = store.photo_answers()
        assert [(slot, cat) for _, _, slot, cat, _ in rows] == [("bottom", "jeans")]
        assert rows[0][4] == again.json()["request_id"]
        (kept,) = answered_photos(store)
        assert kept.path.parent == answers_dir(path) and kept.slot == "bottom"
        img = Image.open(kept.path)
        assert img.size == (120, 160) and not img.getexif()  # no camera, no place
    finally:
        store.close()


def test_sharing_needs_an_answer_and_a_feedback_store(rec, tmp_path):
    with client_for(rec, tmp_path / "fb.sqlite") as c:
        r = post(c, share_photo="true")
        assert r.status_code == 422 and "give slot or category" in r.text
    with client_for(rec, None) as c:
        r = post(c, slot="top", share_photo="true")
        assert r.status_code == 200
        assert "your photo was not kept: this server keeps no feedback" in r.json()["notes"]


def test_a_storage_failure_keeps_the_outfits_and_says_so(rec, tmp_path, monkeypatch):
    import mmrec.serving.app as app_module

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(app_module, "keep_answer", full_disk)
    with client_for(rec, tmp_path / "fb.sqlite") as c:
        r = post(c, slot="bottom", share_photo="true")
    assert r.status_code == 200 and r.json()["outfits"]
    assert any("could not be kept" in n for n in r.json()["notes"])


def test_retention_deletes_answers_and_their_photos(tmp_path):
    from mmrec.feedback.photo_answers import keep_answer

    store = FeedbackStore(tmp_path / "feedback.sqlite")
    try:
        pid = keep_answer(store, Image.new("RGB", (10, 10), (200, 0, 0)), "shoes", None, "r1")
        assert prune_files(store) == 0 and (answers_dir(store.path) / f"{pid}.jpg").is_file()
        counts = store.prune(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))
        assert counts["photo_answers"] == 1 and prune_files(store) == 1
        assert store.photo_answers() == [] and answered_photos(store) == []
    finally:
        store.close()


def test_answers_join_the_reference_photos(tmp_path):
    """`mmrec embed photo-refs --answers STORE`: the kept photos vote with their answered slot."""
    from mmrec import kinds
    from mmrec.cli import main
    from mmrec.embed.config import ModelSpec
    from mmrec.embed.encoder import Encoder
    from mmrec.embed.photo_refs import PhotoRefs
    from mmrec.feedback.photo_answers import keep_answer
    from test_embed_mixed import TABLE, write_real_photos

    src = write_real_photos(tmp_path / "real_photos")
    store = ArtifactStore(tmp_path / "artifacts")
    with store.write(kinds.ENCODER, config={}) as w:
        Encoder.create(ModelSpec(name="mmrec-clip-tiny", device="cpu")).save(w.path, encoder_id="tiny@1",
                                                                              version=w.version)
    fb = FeedbackStore(tmp_path / "fb" / "feedback.sqlite")
    try:
        keep_answer(fb, Image.new("RGB", (40, 60), (0, 90, 0)), "shoes", "sneakers", None)
    finally:
        fb.close()
    assert main(["--artifacts", str(tmp_path / "artifacts"), "--quiet", "embed", "photo-refs", "--source",
                 str(src), "--table", str(TABLE), "--answers", str(tmp_path / "fb" / "feedback.sqlite")]) == 0
    art = store.load(kinds.PHOTO_REFS)
    refs, _ = PhotoRefs.load(store, "tiny@1")
    assert art.metrics["photos"] == 5 and art.metrics["kiosk_answers"] == 1
    assert refs is not None and sum(s == "shoes" for s in refs.slots) == 1
    assert any(i.startswith("kiosk:") for i in refs.photo_ids)
    # a store that is not there is a clear error, not an empty set
    assert main(["--artifacts", str(tmp_path / "artifacts"), "--quiet", "embed", "photo-refs", "--source",
                 str(src), "--table", str(TABLE), "--answers", str(tmp_path / "missing.sqlite")]) != 0
    assert default_taxonomy().slot_of("sneakers") == "shoes"


def test_answers_train_the_encoder_beside_the_train_photographers(tmp_path):
    """`train.real_photos.answers`: kept kiosk answers become labelled training photos, a slot
    answer allowing every category of that slot."""
    pytest.importorskip("torch")
    from embed_fixtures import ingest, write_catalog
    from mmrec.config import load_config
    from mmrec.embed.train import train_encoder
    from mmrec.feedback.photo_answers import keep_answer, answer_photos
    from mmrec.errors import InputError
    from test_embed_mixed import TABLE, write_real_photos

    fb_path = tmp_path / "fb" / "feedback.sqlite"
    fb = FeedbackStore(fb_path)
    try:
        keep_answer(fb, Image.new("RGB", (40, 60), (0, 90, 0)), "shoes", "sneakers", None)
        keep_answer(fb, Image.new("RGB", (40, 60), (90, 0, 0)), "bottom", None, None)
    finally:
        fb.close()
    tax = default_taxonomy()
    got = {p.slot: p for p in answer_photos(fb_path, tax)}
    assert got["shoes"].categories == ("sneakers",) and got["shoes"].sender == "kiosk"
    assert "jeans" in got["bottom"].categories and all(tax.slot_of(c) == "bottom" for c in got["bottom"].categories)
    with pytest.raises(InputError, match="no feedback store"):
        answer_photos(tmp_path / "missing.sqlite", tax)

    store = ArtifactStore(tmp_path / "art")
    ingest(store, write_catalog(tmp_path / "src", 40))
    src = write_real_photos(tmp_path / "real_photos")
    over = ["train.epochs=1", "train.batch_size=16", "train.real_photos.share=0.25",
            f"train.real_photos.source={src}", f"train.real_photos.table={TABLE}"]
    art = train_encoder(store, load_config("embed", profile="tiny", overrides=over + [f"train.real_photos.answers={fb_path}"]),
                        progress=False, log=lambda s: None)
    assert art.metrics["real_photo_pairs"] == 4 + 2 and art.metrics["real_photo_senders"] == 3 + 1


def test_answers_join_the_taggers_training_photos(tmp_path):
    from mmrec.attributes.config import TaggerPhotos
    from mmrec.attributes.photo_labels import load_training_photos
    from mmrec.feedback.photo_answers import keep_answer
    from test_embed_mixed import TABLE, write_real_photos

    fb_path = tmp_path / "feedback.sqlite"
    fb = FeedbackStore(fb_path)
    try:
        keep_answer(fb, Image.new("RGB", (40, 60), (0, 0, 90)), "one-piece", "dresses", None)
    finally:
        fb.close()
    src = write_real_photos(tmp_path / "real_photos")
    cfg = TaggerPhotos(share=0.25, source=str(src), table=str(TABLE))
    plain = load_training_photos(cfg, log=lambda s: None)
    both = load_training_photos(cfg.model_copy(update={"answers": str(fb_path)}), log=lambda s: None)
    assert len(both) == len(plain) + 1 and both[-1].categories == ("dresses",)
