"""The navy-track-pants case (#21 item 2), in headless Chromium against the served demo models:
a real phone photo of trousers from a *test* photographer (never trained or calibrated on)
gets outfits built around the bottom slot, or the "what is it?" prompt -- never an item of
another slot called "similar to your photo". Then the shopper answers "bottom" and gets outfits
around a bottom whose look-alikes are all bottoms.

Needs the real photos (``data``) and the models built under ./artifacts (items, index, encoder;
the tagger and slot calibration when present); skipped otherwise. ~30 s on 2 cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_kiosk import KEY, STATUS, browser, upload  # noqa: F401 -- the Chromium fixture, reused

pytestmark = pytest.mark.data
REPO = Path(__file__).resolve().parents[1]
# Test-split senders (benchmark/suites/photos/real_photos.yaml), label "Pants": dark navy
# joggers with cuffs (sender 291) and blue track pants with a side stripe (sender 8).
TRACK_PANTS = ("143ea97f-a2fd-4a68-851d-a31e5ba8a92b", "fd01c487-88aa-48fc-a9f0-f0bb4ea9e3fb")


@pytest.fixture(scope="module")
def demo():
    from mmrec import kinds
    from mmrec.artifacts import ArtifactStore

    store = ArtifactStore(REPO / "artifacts")
    missing = [k for k in (kinds.ITEMS, kinds.INDEX, kinds.ENCODER) if not store.current_version(k)]
    if missing:
        pytest.skip(f"no demo models under {store.root} ({', '.join(missing)}): build them first (README)")
    from mmrec.recommend import Recommender
    from mmrec.recommend.config import RecommenderConfig
    from mmrec.serving.app import create_app
    from mmrec.serving.local import start_uvicorn
    from mmrec.serving.settings import ServeSettings

    rec = Recommender.from_store(store, config=RecommenderConfig(prewarm_recall=False))
    srv = start_uvicorn(create_app(rec, ServeSettings().with_key(KEY)))
    yield srv, rec
    srv.stop()


def _check_similar_claims(body: dict, rec) -> None:
    """Every item the explanations call similar to the photo is in the slot it was read as."""
    slot = body["photo"]["slot"]
    for o in body["outfits"]:
        for f in o["explanation"]["facts"]:
            if f["field"] == "recall_route" and f["value"] == "image":
                assert slot is not None and rec.items.row(f["item_id"])["slot"] == slot, o["explanation"]["text"]


@pytest.mark.parametrize("image_id", TRACK_PANTS)
def test_real_track_pants_photo_anchors_a_bottom_or_asks(demo, browser, shared_data, image_id):  # noqa: F811
    import httpx

    srv, rec = demo
    photo = shared_data / "real_photos" / "images" / f"{image_id}.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} is absent")
    upload(browser, srv.url, photo, lang="en", timeout_s=60)
    browser.wait_for("document.querySelectorAll('.outfit').length > 0 || !!document.getElementById('ask')",
                     timeout_s=60)
    asked = browser.js("!!document.getElementById('ask')")
    slots = browser.js("[...document.querySelectorAll('.outfit')].map(o => "
                       "[...o.querySelectorAll('.slot')].map(s => s.textContent))")
    if asked:
        assert slots == [] and browser.js(STATUS) == "We could not read the item in your photo."
    else:
        assert slots and all("bottom" in s for s in slots), slots
        assert "built around a bottom" in browser.js("document.getElementById('photo-info').textContent")
    # the same request over HTTP: the facts behind every "similar to your photo"
    form = {"scene": "casual_weekend", "k": "3", "lang": "en"}
    with httpx.Client(base_url=srv.url, headers={"X-API-Key": KEY}, timeout=60) as c:
        body = c.post("/v1/recommend/photo", data=form,
                      files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}).json()
        assert body["photo"]["abstained"] == asked and (asked or body["photo"]["slot"] == "bottom")
        _check_similar_claims(body, rec)
        if not asked:
            return
        # the shopper answers "bottom": outfits around a bottom, look-alikes all bottoms
        browser.js("document.querySelector('#ask button[data-slot=bottom]').click()")
        n = browser.wait_for("document.querySelectorAll('.outfit').length", timeout_s=60)
        slots = browser.js("[...document.querySelectorAll('.outfit')].map(o => "
                           "[...o.querySelectorAll('.slot')].map(s => s.textContent))")
        assert n >= 1 and all("bottom" in s for s in slots), slots
        hinted = c.post("/v1/recommend/photo", data={**form, "slot": "bottom"},
                        files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}).json()
    assert hinted["photo"]["slot"] == "bottom" and hinted["photo"]["slot_source"] == "shopper"
    assert hinted["photo"]["similar"]
    assert all(rec.items.row(i)["slot"] == "bottom" for i in hinted["photo"]["similar"])
    _check_similar_claims(hinted, rec)
