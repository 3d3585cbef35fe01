"""Photo slot confidence and abstention: evidence, calibrator fit and threshold, the artifact's
tie to the models, and the photo route in-process (abstains below the threshold, obeys the
shopper's slot/category hint, 422 on a bad hint, never calls another slot's item 'similar')."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mmrec import kinds
from mmrec.bench.slot_calibration import Reading, choose_threshold, evaluate, fit, save
from mmrec.errors import InputError
from mmrec.outfit.photo import PhotoAnalysis
from mmrec.recommend import Recommender
from mmrec.recommend.slot_confidence import (CHOOSABLE_SLOTS, FEATURES, SlotCalibrator, SlotHint,
                                             evidence_of, expected_calibration_error, parse_slot_hint,
                                             slot_choices)
from mmrec.serving.app import create_app
from mmrec.serving.settings import ServeSettings
from mmrec.taxonomy import default_taxonomy
from outfit_fixtures import jpeg_bytes, write_items

KEY = "slot-test-key"
TAX = default_taxonomy()


def calibrator(intercept: float, threshold: float = 0.5, **kw) -> SlotCalibrator:
    return SlotCalibrator(coef=[0.0] * len(FEATURES), intercept=intercept, threshold=threshold, **kw)


def test_evidence_is_relative_to_the_read_slot():
    tagged = {"category": {"value": "shirts", "confidence": 0.8}}
    ev = evidence_of("top", tagged, ["top", "top", "bottom", "other"], TAX)
    f = dict(zip(FEATURES, ev.features()))
    assert ev.tagger_slot == "top" and ev.neighbour_slot == "top"
    assert f["tagger_for"] == 0.8 and f["tagger_against"] == 0.0 and f["agree"] == 1.0
    assert f["neighbour_share"] == pytest.approx(0.5) and f["read_top"] == 1.0 and f["read_bottom"] == 0.0
    against = dict(zip(FEATURES, evidence_of("bottom", tagged, ["bottom"], TAX).features()))
    assert against["tagger_for"] == 0.0 and against["tagger_against"] == 0.8
    assert against["neighbour_share"] == 1.0 and against["agree"] == 0.0
    silent = evidence_of("shoes", {}, [], TAX)
    assert silent.features()[FEATURES.index("tagger_silent")] == 1.0
    assert calibrator(5.0).confidence(evidence_of(None, {}, [], TAX)) == 0.0  # no slot, no confidence


def test_slot_choices_put_the_guess_first_then_the_neighbours_votes():
    ev = evidence_of("bottom", {}, ["shoes", "shoes", "top", "other", "bottom"], TAX)
    assert slot_choices(ev) == ["bottom", "shoes", "top", "one-piece", "outerwear", "bag", "accessory"]
    # no slot read and no votes: the fixed order, nothing presented as likelier
    assert slot_choices(evidence_of(None, {}, [], TAX)) == list(CHOOSABLE_SLOTS)


def test_calibrator_refuses_other_features():
    with pytest.raises(ValueError, match="refit"):
        SlotCalibrator(features=["tagger_for"], coef=[1.0], intercept=0.0, threshold=0.5)


def test_slot_hint_is_checked_against_the_taxonomy():
    assert parse_slot_hint(None, None, TAX) is None
    assert parse_slot_hint("bottom", None, TAX) == SlotHint("bottom")
    assert parse_slot_hint(None, "Trousers", TAX) == SlotHint("bottom", "trousers")  # implied slot
    for slot, cat, said in [("hat", None, "unknown slot 'hat'"), ("other", None, "unknown slot"),
                            (None, "spaceship", "unknown category"),
                            ("top", "trousers", "fills the 'bottom' slot")]:
        with pytest.raises(InputError, match=said):
            parse_slot_hint(slot, cat, TAX)


def _readings(n_right: int, n_wrong: int, n_unsure_right: int, n_unsure_wrong: int) -> list[Reading]:
    """Confident agreeing readings mostly right, unsure ones mostly wrong, over 10 senders."""
    out = []
    sure = {"category": {"value": "shirts", "confidence": 0.95}}
    unsure = {"category": {"value": "shorts", "confidence": 0.2}}
    rows = ([(sure, "top", "top")] * n_right + [(sure, "top", "bottom")] * n_wrong
            + [(unsure, "top", "top")] * n_unsure_right + [(unsure, "top", "shoes")] * n_unsure_wrong)
    for i, (attrs, slot, truth) in enumerate(rows):
        near = ["top"] * 8 if attrs is sure else ["shoes", "bag", "top"]
        out.append(Reading(f"p{i}", str(i % 10), truth, slot, evidence_of(slot, attrs, near, TAX)))
    return out


def test_fit_orders_evidence_and_picks_the_lowest_threshold_meeting_the_target():
    readings = _readings(38, 2, 5, 35)
    cal = fit(readings, target_accuracy=0.9)
    sure, unsure = readings[0].evidence, readings[-1].evidence
    assert cal.confidence(sure) > 0.8 > 0.3 > cal.confidence(unsure)
    assert cal.fitted_on["c"] in (0.1, 0.3, 1.0, 3.0, 10.0)  # chosen by held-out log-loss
    got = evaluate(cal, readings)
    assert got["accuracy_kept"] >= 0.9 and got["kept"] == 40 and got["abstain"] == pytest.approx(0.5)
    assert got["auroc"] > 0.8 and got["ece"] < 0.1 and sum(b["count"] for b in got["bins"]) == 80
    assert cal.fitted_on["threshold_from"] == "held_out" and cal.fitted_on["held_out_accuracy_kept"] >= 0.9
    # unreachable target: abstain on everything rather than claim it
    assert fit(readings, target_accuracy=0.99).threshold == 1.0


def test_threshold_is_chosen_on_photos_the_calibrator_did_not_fit():
    """One photographer's readings are right where the look-alikes agree completely; everyone
    else's look-alike agreement means nothing. Fitted on all of them, those ten photos top the
    ranking and a 90% threshold keeps them; held out by photographer, the pattern does not
    carry, so the calibrator promises nothing it cannot keep."""
    rows = ([("0", 1.0, "top")] * 10 + [(str(s), 0.9, "shoes") for s in range(1, 10)]
            + [(str(s), 0.5, "top" if n % 2 else "shoes") for s in range(1, 10) for n in range(4)])
    readings = [Reading(f"p{i}", sender, truth, "top",
                        evidence_of("top", {}, ["top"] * round(10 * share) + ["bag"] * round(10 * (1 - share)), TAX))
                for i, (sender, share, truth) in enumerate(rows)]
    cal = fit(readings, target_accuracy=0.9)
    in_sample = choose_threshold([cal.confidence(r.evidence) for r in readings],
                                 [r.correct for r in readings], 0.9)
    assert in_sample < 1.0  # what choosing on the fitted photos would have promised
    assert cal.threshold == 1.0 and cal.fitted_on["threshold_from"] == "held_out"
    assert cal.fitted_on["held_out_kept"] == 0


def test_choose_threshold_keeps_ties_together_and_needs_support():
    assert choose_threshold([0.9] * 5 + [0.5] * 5, [True] * 5 + [False] * 5, 0.9) == 0.9
    assert choose_threshold([0.9] * 3 + [0.5] * 7, [True] * 3 + [False] * 7, 0.9) == 1.0  # 3 < MIN_KEPT
    # the five right readings tie with a wrong one: a threshold cannot split them (5/6 < 0.9)
    assert choose_threshold([0.9] * 6 + [0.1], [True] * 5 + [False, True], 0.9) == 1.0
    assert expected_calibration_error([0.8, 0.8, 0.2, 0.2], [True, False, False, False]) == pytest.approx(0.25)  # (0.3 + 0.2) / 2


def test_calibrator_artifact_is_tied_to_its_models(store):
    models = {"vlm": "v1", "encoder": "e1", "index": None}
    cal, notes = SlotCalibrator.load(store, models)
    assert cal is None and "no slot_calibration artifact" in notes[0]
    save(store, calibrator(0.0, 0.7, models=models), {"val.ece": 0.01})
    cal, notes = SlotCalibrator.load(store, models)
    assert cal is not None and cal.threshold == 0.7 and not notes
    cal, notes = SlotCalibrator.load(store, {**models, "vlm": "v2"})
    assert cal is None and "fitted on other models" in notes[0] and "vlm v1 (loaded: v2)" in notes[0]
    assert store.load(kinds.SLOT_CALIBRATION).metrics["val.ece"] == 0.01
    # reference photos added after the fit change the vote it was fitted on; none is as before
    assert SlotCalibrator.load(store, {**models, "photo_refs": None})[0] is not None
    cal, notes = SlotCalibrator.load(store, {**models, "photo_refs": "r1"})
    assert cal is None and "photo_refs None (loaded: r1)" in notes[0]


# -- the photo route, in-process ------------------------------------------------------------

class ShirtReader:
    """Photo backend: the tagger reads every photo as a pink shirt (a top)."""

    async def analyze(self, image):
        return PhotoAnalysis(attributes={"category": {"value": "shirts", "confidence": 0.9},
                                         "colour": {"value": "pink", "confidence": 0.8}},
                             versions={"tagger": "fixed"})


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    from mmrec.artifacts import ArtifactStore

    root = tmp_path_factory.mktemp("slotconf")
    st = ArtifactStore(root / "artifacts")
    write_items(st, images_dir=root / "images")
    return Recommender.from_store(st)


@pytest.fixture(scope="module")
def client(rec):
    with TestClient(create_app(rec, ServeSettings().with_key(KEY), photo=ShirtReader()),
                    raise_server_exceptions=False) as c:
        c.headers.update({"X-API-Key": KEY})
        yield c


def _post(client, **fields):
    return client.post("/v1/recommend/photo", files={"image": ("p.jpg", jpeg_bytes(), "image/jpeg")},
                       data={"scene": "casual_weekend", "k": "2", "filters": '{"genders": ["men"]}', **fields})


def _with(rec, cal):
    rec.photos.calibrator, rec.photos.abstain_below = cal, (cal.threshold if cal else None)


def test_unsure_reading_abstains_and_lists_the_slot_choices(client, rec):
    _with(rec, calibrator(-4.0))  # confidence ~0.02 for every reading
    try:
        r = _post(client)
    finally:
        _with(rec, None)
    assert r.status_code == 200, r.text
    body = r.json()
    photo = body["photo"]
    assert photo["abstained"] and photo["slot"] is None and photo["slot_guess"] == "top"
    assert photo["slot_confidence"] == pytest.approx(0.018, abs=0.001)
    # every slot is offered, the reading's guess first
    choices = photo["slot_choices"]
    assert sorted(choices) == sorted(CHOOSABLE_SLOTS) and choices[0] == "top" and not photo["similar"]
    assert body["outfits"] == []  # nothing composed around a guess
    said = [n for n in body["notes"] if "could not be read" in n]
    assert said and "0.02 is below 0.50" in said[0] and "bottom" in said[0]
    # a calibrator that keeps its target nowhere asks on every photo, and says why
    _with(rec, calibrator(4.0, threshold=1.0))
    try:
        photo = _post(client).json()["photo"]
    finally:
        _with(rec, None)
    assert photo["abstained"] and "not reliable enough on such photos" in photo["abstain_reason"]


def test_confident_reading_is_served_with_its_confidence(client, rec):
    _with(rec, calibrator(4.0))
    try:
        body = _post(client).json()
    finally:
        _with(rec, None)
    assert not body["photo"]["abstained"] and body["photo"]["slot"] == "top"
    assert body["photo"]["slot_confidence"] == pytest.approx(0.982, abs=0.001) and body["outfits"]
    # without a calibrator: no confidence, never declined
    plain = _post(client).json()["photo"]
    assert plain["slot_confidence"] is None and not plain["abstained"] and plain["slot"] == "top"


@pytest.mark.parametrize("hint", [{"slot": "bottom"}, {"category": "shorts"}, {"slot": "bottom", "category": "shorts"}])
def test_hint_anchors_in_the_named_slot_even_when_unsure(client, rec, hint):
    _with(rec, calibrator(-4.0))
    try:
        r = _post(client, **hint)
    finally:
        _with(rec, None)
    assert r.status_code == 200, r.text
    body = r.json()
    photo = body["photo"]
    assert not photo["abstained"] and photo["slot"] == "bottom" and photo["slot_source"] == "shopper"
    assert photo["slot_confidence"] is None
    bottoms = {i: rec.items.row(i) for i in photo["similar"]}
    assert all(r["slot"] == "bottom" for r in bottoms.values())
    if "category" in hint:
        # (no index here: look-alikes are category + tagged colour matches; no pink shorts exist)
        assert all(r["category"] == "shorts" for r in bottoms.values())
    assert body["outfits"]
    for o in body["outfits"]:
        assert "bottom" in [it["slot"] for it in o["items"]]
        # the tagger read a shirt: no top (or anything outside the bottom slot) is "similar"
        for f in o["explanation"]["facts"]:
            if f["field"] == "recall_route" and f["value"] == "image":
                assert rec.items.row(f["item_id"])["slot"] == "bottom", o["explanation"]["text"]
        if "similar to your photo" in o["explanation"]["text"]:
            assert not any(it["slot"] == "top" and it["title"] in o["explanation"]["text"] for it in o["items"])


@pytest.mark.parametrize("hint,said", [({"slot": "hat"}, "unknown slot 'hat'"),
                                       ({"category": "spaceship"}, "unknown category"),
                                       ({"slot": "top", "category": "shorts"}, "fills the 'bottom' slot")])
def test_bad_hint_is_422_with_the_choices(client, hint, said):
    r = _post(client, **hint)
    assert r.status_code == 422 and said in r.text, r.text
    assert r.json()["error"] == "invalid_request"


# -- with a recall index: look-alikes come from the image route ---------------------------------

@pytest.fixture(scope="module")
def indexed_store(tmp_path_factory):
    pytest.importorskip("torch")
    from mmrec.artifacts import ArtifactStore
    from mmrec.config import load_config
    from mmrec.embed.catalog import embed_catalog
    from mmrec.embed.train import train_encoder
    from mmrec.recall.build import build_index
    from mmrec.serving.threads import limit_threads

    limit_threads()
    store = ArtifactStore(tmp_path_factory.mktemp("slotidx") / "artifacts")
    write_items(store, images_dir=store.root.parent / "images")
    ecfg = load_config("embed", profile="tiny", overrides=["train.epochs=1"])
    train_encoder(store, ecfg, progress=False)
    embed_catalog(store, ecfg, progress=False)
    build_index(store, load_config("index", profile="tiny"))
    return store


@pytest.fixture(scope="module")
def indexed(indexed_store):
    return Recommender.from_store(indexed_store, profile="tiny")


def test_indexed_lookalikes_stay_in_the_hinted_slot_and_evidence_is_read(indexed):
    from mmrec.api_models import RecommendRequest, RequestFilters
    from mmrec.images import load_image

    assert any("no slot_calibration artifact" in n for n in indexed.load_notes)
    photo = indexed.analyze_photo(load_image(jpeg_bytes((245, 245, 245))))
    req = RecommendRequest(scene="casual weekend", k=2, filters=RequestFilters(genders=["men"]))
    for hint in (SlotHint("bottom"), SlotHint("shoes", "casual shoes")):
        resp = indexed.recommend(req, photo=photo, slot_hint=hint)
        assert resp.photo.slot == hint.slot and resp.photo.similar
        rows = [indexed.items.row(i) for i in resp.photo.similar]
        assert all(r["slot"] == hint.slot for r in rows)
        assert not hint.category or all(r["category"] == hint.category for r in rows)
        assert all(hint.slot in [i.slot for i in o.items] for o in resp.outfits) and resp.outfits
    ev = indexed.photos.evidence(photo, "top", [])
    assert sum(ev.neighbour_shares.values()) == pytest.approx(1.0) and ev.tagger_slot is None
    indexed.photos.calibrator, indexed.photos.abstain_below = calibrator(-4.0), 0.5
    try:
        unsure = indexed.recommend(req, photo=photo)
    finally:
        indexed.photos.calibrator = indexed.photos.abstain_below = None
    assert unsure.photo.abstained and unsure.outfits == [] and unsure.photo.slot_guess in CHOOSABLE_SLOTS


def test_calibrate_slot_command_fits_on_val_and_calibration_and_serving_uses_it(indexed_store, tmp_path):
    """`mmrec bench calibrate-slot` end to end on a stand-in real_photos folder: the catalog's own
    photos labelled by slot (plus mislabelled and unsure ones) from 4 val, 2 calibration and 2
    test senders; the fit reads val and calibration, never test."""
    import csv
    import json
    import shutil

    import yaml

    from mmrec.cli import main

    rows = []
    items = Recommender.from_store(indexed_store, profile="tiny").items
    label = {"top": "Shirt", "bottom": "Pants", "shoes": "Shoes", "accessory": "Hat"}
    images = tmp_path / "real_photos" / "images"
    images.mkdir(parents=True)
    for n, r in enumerate(items.rows):
        if r["slot"] not in label:
            continue
        # every fourth photo mislabelled, so that some readings are wrong whatever the encoder
        said = label[r["slot"]] if n % 4 else ("Pants" if r["slot"] != "bottom" else "Shirt")
        shutil.copyfile(r["image_uri"], images / f"{r['item_id']}.jpg")
        rows.append({"image": r["item_id"], "sender_id": str(1 + n % 8), "label": said, "kids": "False"})
    rows.append({"image": rows[0]["image"], "sender_id": "1", "label": "Not sure", "kids": "False"})
    with open(tmp_path / "real_photos" / "images.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "sender_id", "label", "kids"])
        w.writeheader()
        w.writerows(rows)
    table = {"schema_version": 1, "source": "real_photos", "senders": {"val": [1, 2, 3, 4], "calibration": [5, 6],
                                                                 "test": [7, 8]},
             "labels": {"Shirt": {"slot": "top", "categories": ["shirts"]},
                        "Pants": {"slot": "bottom", "categories": ["trousers"]},
                        "Shoes": {"slot": "shoes", "categories": ["casual shoes"]},
                        "Hat": {"slot": "accessory", "categories": ["caps"]}, "Not sure": {"probe": True}}}
    (tmp_path / "table.yaml").write_text(yaml.safe_dump(table))
    out = tmp_path / "cal.json"
    assert main(["--artifacts", str(indexed_store.root), "--profile", "tiny", "--quiet", "bench",
                 "calibrate-slot", "--data", str(tmp_path), "--table", str(tmp_path / "table.yaml"),
                 "--test", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    fitted = got["calibrator"]["fitted_on"]
    assert fitted["split"] == "val+calibration" and got["calibrator"]["models"]["encoder"]
    assert fitted["photos_by_split"] == {"val": got["val"]["photos"], "calibration": got["calibration"]["photos"]}
    assert got["fit"]["photos"] == fitted["photos"] == got["val"]["photos"] + got["calibration"]["photos"]
    assert fitted["photos"] + got["test"]["photos"] == len(rows) - 1  # the probe has no slot truth
    assert 0 <= got["test"]["ece"] <= 1 and 0 <= got["calibrator"]["threshold"] <= 1
    art = indexed_store.load(kinds.SLOT_CALIBRATION)
    assert art.version == got["version"] and "test.ece" in art.metrics
    served = Recommender.from_store(indexed_store, profile="tiny")
    assert served.photos.calibrator is not None and served.versions["slot_calibration"] == art.version
    assert not any("slot_calibration" in n for n in served.load_notes)


def test_calibration_refuses_reference_photos_of_held_out_photographers(tmp_path):
    """A store whose reference photos predate the calibration split holds photos of photographers
    the calibrator now fits on: `calibrate-slot` must not fit on their flattered readings."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmrec.artifacts import ArtifactStore
    from mmrec.bench.photo_sources import RealPhotoTable
    from mmrec.bench.slot_calibration import held_out_reference_senders
    from mmrec.embed.photo_refs import REFS_FILE, VECTORS_FILE

    table = RealPhotoTable(labels={"Not sure": {"probe": True}},
                           senders={"val": [3], "calibration": [5], "test": [8]})
    store = ArtifactStore(tmp_path / "art")
    assert held_out_reference_senders(store, table) == []  # no reference photos: nothing to check

    def refs(senders: list[str]) -> None:
        with store.write(kinds.PHOTO_REFS, config={"encoder_id": "e"}) as w:
            pq.write_table(pa.table({"photo_id": [f"p{i}" for i in range(len(senders))], "sender": senders,
                                     "label": ["Shirt"] * len(senders), "slot": ["top"] * len(senders)}),
                           w.path / REFS_FILE)
            np.save(w.path / VECTORS_FILE, np.zeros((len(senders), 4), np.float32))

    refs(["2", "5", "kiosk", "6"])  # built when 5 was a train photographer
    assert held_out_reference_senders(store, table) == ["5"]
    refs(["2", "6", "kiosk"])       # rebuilt after the split (kiosk answers have no photographer)
    assert held_out_reference_senders(store, table) == []
