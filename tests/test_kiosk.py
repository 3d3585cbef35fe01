"""The kiosk page in headless Chromium: upload a photo, pick a scene, see outfits with product
photos and explanations. Driven over the Chrome DevTools Protocol (websockets), against the
API served by uvicorn in this process; photos are read by a real (tiny, untrained) encoder,
the no-tagger path: the photo's slot comes from its nearest catalog neighbours.
About 20 s on 2 cores (chromium start and the torch import), so not marked slow."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from outfit_fixtures import PHOTO_COLOURS, write_items

pytest.importorskip("websockets.sync.client", reason="dev extra: pip install -e '.[dev]'")
KEY = "kiosk-test-key"


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and this user cannot apt-get install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            pytest.skip(f"could not install chromium: {r.stderr[-300:]}")
    return shutil.which("chromium") or pytest.skip("chromium still missing after apt-get")


class DevTools:
    """Minimal synchronous Chrome DevTools Protocol client for one page."""

    def __init__(self, ws):
        self.ws = ws
        self.n = 0

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"{expression} never became true; status: {self.js(STATUS)!r}")



STATUS = "document.getElementById('status').textContent"


def upload(browser, url: str, photo: Path, *, lang: str | None = None, timeout_s: float = 30.0) -> None:
    """Open the kiosk afresh, pick the casual weekend scene (and ``lang``), send ``photo``."""
    browser.call("Page.navigate", url="about:blank")
    browser.call("Page.navigate", url=f"{url}/kiosk/#key={KEY}")
    browser.wait_for("document.querySelectorAll('#scene option').length >= 11", timeout_s=timeout_s)
    if lang:
        browser.js(f"(l => {{ l.value = '{lang}'; l.dispatchEvent(new Event('change')); }})"
                   "(document.getElementById('lang'))")
    browser.js("document.getElementById('scene').value = 'casual_weekend'")
    doc = browser.call("DOM.getDocument")
    node = browser.call("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector="#photo")
    browser.call("DOM.setFileInputFiles", files=[str(photo)], nodeId=node["nodeId"])
    browser.wait_for("document.getElementById('preview').style.display === 'block'")
    browser.js("document.getElementById('go').click()")


@pytest.fixture(scope="module")
def kiosk_rec(tmp_path_factory):
    import numpy as np

    from mmrec.artifacts import ArtifactStore
    from mmrec.embed.config import ModelSpec
    from mmrec.embed.encoder import Encoder
    from mmrec.images import load_image
    from mmrec.outfit.photo import PhotoModels
    from mmrec.recommend import Recommender

    root = tmp_path_factory.mktemp("kiosk")
    st = ArtifactStore(root / "artifacts")
    write_items(st, images_dir=root / "images")
    encoder = Encoder.create(ModelSpec(name="mmrec-clip-tiny", device="cpu"))
    rec = Recommender.from_store(st, with_photo_models=False)
    uris = [r["image_uri"] for r in rec.items.rows]
    vecs = encoder.encode_images([load_image(u) for u in uris])
    rec.items.attach_vectors(rec.items.ids, np.asarray(vecs), encoder.encoder_id)
    rec.photo = PhotoModels(tagger=None, encoder=encoder)
    rec.versions.update(rec.photo.versions)
    return rec


@pytest.fixture(scope="module")
def server(kiosk_rec):
    from mmrec.serving.app import create_app
    from mmrec.serving.local import start_uvicorn
    from mmrec.serving.settings import ServeSettings

    srv = start_uvicorn(create_app(kiosk_rec, ServeSettings().with_key(KEY)))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    exe = chromium_binary()
    profile = tmp_path_factory.mktemp("chrome-profile")
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--no-default-browser-check", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0", "--window-size=1200,1600", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("chromium did not start (no DevToolsActivePort)")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        import httpx

        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(p for p in pages if p["type"] == "page")
        from websockets.sync.client import connect

        with connect(page["webSocketDebuggerUrl"], max_size=50_000_000, open_timeout=10) as ws:
            yield DevTools(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_kiosk_shows_outfits_after_an_upload(server, browser, tmp_path):
    from PIL import Image

    photo = tmp_path / "visitor.jpg"
    Image.new("RGB", (300, 400), PHOTO_COLOURS["white"]).save(photo, "JPEG")
    upload(browser, server.url, photo)
    assert "#key=" not in browser.js("location.href")  # the key left the address bar
    n = browser.wait_for("document.querySelectorAll('.outfit').length")
    assert n >= 1, browser.js(STATUS)
    # every product photo arrives (fetched with the key, shown as a blob)
    browser.wait_for("[...document.querySelectorAll('.outfit img')].every(i => i.complete && i.naturalWidth > 0)")
    texts = browser.js("[...document.querySelectorAll('.explanation')].map(e => e.textContent)")
    assert texts and all(t.startswith("Casual weekend look:") for t in texts)
    info = browser.js("document.getElementById('photo-info').textContent")
    assert "Your photo" in info
    assert "encoder=" in browser.js("document.getElementById('versions').textContent")
    shot = browser.call("Page.captureScreenshot", format="png")["data"]
    png = base64.b64decode(shot)
    (tmp_path / "kiosk.png").write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_kiosk_scene_only_and_errors(server, browser):
    browser.call("Page.navigate", url="about:blank")  # a fresh document, not a fragment change
    browser.call("Page.navigate", url=f"{server.url}/kiosk/#key={KEY}")
    browser.wait_for("document.querySelectorAll('#scene option').length >= 11")
    assert browser.js("document.querySelectorAll('.outfit').length") == 0
    browser.js("document.getElementById('scene').value = 'office'")
    browser.js("document.getElementById('go').click()")
    browser.wait_for(f"{STATUS}.endsWith(' outfits')")
    texts = browser.js("[...document.querySelectorAll('.explanation')].map(e => e.textContent)")
    assert texts and all(t.startswith("Office look:") for t in texts)
    # a wrong key is reported, not hidden
    browser.js("sessionStorage.setItem('mmrec-key', 'wrong'); document.getElementById('go').click()")
    browser.wait_for(f"{STATUS}.startsWith('401')")


def test_kiosk_switches_to_chinese_and_explains_in_chinese(server, browser):
    """The language control: page words, scene names and the API's explanations in Chinese."""
    browser.call("Page.navigate", url="about:blank")
    browser.call("Page.navigate", url=f"{server.url}/kiosk/#key={KEY}")
    browser.wait_for("document.querySelectorAll('#scene option').length >= 11")
    switch = "(l => {{ l.value = '{}'; l.dispatchEvent(new Event('change')); }})(document.getElementById('lang'))"
    browser.js(switch.format("zh"))
    assert browser.js("document.getElementById('go').textContent") == "查看搭配"
    browser.js("document.getElementById('scene').value = 'office'")
    assert browser.js("document.getElementById('scene').selectedOptions[0].textContent") == "办公室"
    browser.js("document.getElementById('go').click()")
    browser.wait_for(f"{STATUS}.endsWith(' 套搭配')")
    texts = browser.js("[...document.querySelectorAll('.explanation')].map(e => e.textContent)")
    assert texts and all(t.startswith("办公室造型：") for t in texts)
    browser.js(switch.format("en"))
    browser.wait_for(f"{STATUS}.endsWith(' outfits')")


def test_kiosk_asks_what_the_item_is_when_the_photo_cannot_be_read(server, browser, kiosk_rec, tmp_path):
    """A reading under the calibrated threshold: no outfits, the question with a button per slot
    (in the chosen language); a choice re-sends the photo with the slot hint."""
    from PIL import Image

    from mmrec.recommend.slot_confidence import CHOOSABLE_SLOTS, FEATURES, SlotCalibrator

    photo = tmp_path / "unclear.jpg"
    Image.new("RGB", (300, 400), PHOTO_COLOURS["black"]).save(photo, "JPEG")
    photos = kiosk_rec.photos
    photos.calibrator = SlotCalibrator(coef=[0.0] * len(FEATURES), intercept=-4.0, threshold=0.5)
    photos.abstain_below = 0.5
    # labelled reference photos like this one say "shoes": the reading leans to shoes
    from mmrec.embed.photo_refs import PhotoRefs
    from mmrec.images import load_image

    import numpy as np

    vec = np.asarray(kiosk_rec.photo.encoder.encode_images([load_image(photo)]), dtype=np.float32)
    photos.refs = PhotoRefs("r1", kiosk_rec.photo.encoder.encoder_id, ["a", "b", "c"],
                            np.asarray(["shoes"] * 3), np.repeat(vec, 3, axis=0))
    switch = "(l => {{ l.value = '{}'; l.dispatchEvent(new Event('change')); }})(document.getElementById('lang'))"
    try:
        upload(browser, server.url, photo)
        browser.wait_for("!!document.getElementById('ask')")
        assert browser.js("document.querySelector('#ask p').textContent") == \
            "We could not read this item — what is it?"
        slots = browser.js("[...document.querySelectorAll('#ask button')].map(b => b.dataset.slot)")
        assert sorted(slots) == sorted(CHOOSABLE_SLOTS) and slots[0] == "shoes"
        # the reading's guess leads, styled as the default answer; the others are secondary
        classes = browser.js("[...document.querySelectorAll('#ask button')].map(b => b.className)")
        assert classes == ["likely"] + ["secondary"] * (len(slots) - 1), classes
        assert browser.js("document.querySelector('#ask .hint').textContent") == "Likeliest first."
        assert browser.js(STATUS) == "We could not read the item in your photo."
        assert browser.js("document.querySelectorAll('.outfit').length") == 0
        # the language switch asks again, in Chinese
        browser.js(switch.format("zh"))
        browser.wait_for("(document.querySelector('#ask p') || {}).textContent === '我们没能识别这件单品——它是什么？'")
        assert browser.js("document.querySelector('#ask button[data-slot=bottom]').textContent") == "下装（裤子、裙子…）"
        browser.js(switch.format("en"))
        browser.wait_for("(document.querySelector('#ask p') || {}).textContent === 'We could not read this item — what is it?'")
        # keeping the photo is the shopper's choice, off until ticked
        assert browser.js("document.getElementById('share-photo').checked") is False
        browser.js("document.getElementById('share-photo').click()")
        browser.js("document.querySelector('#ask button[data-slot=bottom]').click()")
        n = browser.wait_for("document.querySelectorAll('.outfit').length")
        notes = browser.js("document.querySelector('.notes').textContent")
        assert "your photo" in notes, notes  # the server said whether it kept it
        assert n >= 1 and not browser.js("!!document.getElementById('ask')")
        info = browser.js("document.getElementById('photo-info').textContent")
        assert "built around a bottom (trousers, skirt…), as you said" in info
        per_outfit = browser.js("[...document.querySelectorAll('.outfit')].map(o => "
                                "[...o.querySelectorAll('.slot')].map(s => s.textContent))")
        assert all("bottom" in slots for slots in per_outfit), per_outfit
        texts = browser.js("[...document.querySelectorAll('.explanation')].map(e => e.textContent)")
        assert texts and all(t.startswith("Casual weekend look:") for t in texts)
    finally:
        photos.calibrator = photos.abstain_below = photos.refs = None
