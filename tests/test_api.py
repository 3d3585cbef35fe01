"""HTTP API in-process (fastapi.testclient): keys, limits, validation, images, items, metrics."""

from __future__ import annotations

import io
import zlib
import struct

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mmrec.outfit.photo import PhotoAnalysis
from mmrec.recommend import Recommender
from mmrec.serving.app import create_app
from mmrec.serving.holder import RecommenderHolder
from mmrec.serving.settings import ApiKey, ServeSettings, hash_key
from outfit_fixtures import jpeg_bytes, write_items

KEY, READ_ONLY = "test-key-123", "reader-456"


class TaggedPhotos:
    """Photo backend answering from a fixed tagger output (a real Recommender does the rest)."""

    async def analyze(self, image):
        assert image.mode == "RGB" and max(image.size) <= 512
        return PhotoAnalysis(attributes={"category": {"value": "shirts", "confidence": 0.9},
                                         "colour": {"value": "pink", "confidence": 0.8}},
                             versions={"tagger": "fixed"})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mmrec.artifacts import ArtifactStore

    root = tmp_path_factory.mktemp("api")
    st = ArtifactStore(root / "artifacts")
    write_items(st, images_dir=root / "images")
    return st


def settings(**kw) -> ServeSettings:
    keys = [ApiKey(name="app", sha256=hash_key(KEY), scopes=["recommend", "admin"]),
            ApiKey(name="reader", sha256=hash_key(READ_ONLY), scopes=["recommend"])]
    return ServeSettings(api_keys=keys, max_body_bytes=200_000, **kw)


@pytest.fixture(scope="module")
def rec(store):
    return Recommender.from_store(store)


@pytest.fixture(scope="module")
def client(rec):
    app = create_app(rec, settings(), photo=TaggedPhotos())
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers.update({"X-API-Key": KEY})
        yield c


def anon(client) -> TestClient:
    c = TestClient(client.app, raise_server_exceptions=False)
    return c


def test_health_needs_no_key(client):
    c = anon(client)
    assert c.get("/healthz").json() == {"status": "ok"}
    r = c.get("/readyz")
    assert r.status_code == 200 and r.json()["versions"]["items"]


@pytest.mark.parametrize("method, path", [
    ("post", "/v1/recommend"), ("get", "/v1/scenes"), ("get", "/v1/items/t1"),
    ("get", "/v1/items/t1/image"), ("get", "/metrics"), ("get", "/openapi.json"),
    ("post", "/v1/tag"), ("post", "/v1/recommend/photo"), ("post", "/v1/admin/reload"),
])
def test_every_other_route_needs_a_key(client, method, path):
    c = anon(client)
    r = getattr(c, method)(path)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = getattr(c, method)(path, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401


def test_bearer_and_scopes(client):
    c = anon(client)
    assert c.get("/v1/scenes", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert c.get("/v1/scenes", headers={"X-API-Key": READ_ONLY}).status_code == 200
    assert c.post("/v1/admin/reload", headers={"X-API-Key": READ_ONLY}).status_code == 403


def test_recommend_carries_versions_and_explanations(client, rec):
    r = client.post("/v1/recommend", json={"scene": "office", "k": 2, "filters": {"genders": ["men"]}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["versions"] == rec.versions and body["request_id"]
    assert r.headers["x-request-id"]
    first = body["outfits"][0]
    assert [i["item_id"] for i in first["items"]] == ["t1", "b1", "s1", "a1"]
    assert first["explanation"]["facts"] and first["explanation"]["supported"] == first["explanation"]["statements"]
    assert first["items"][0]["image_url"] == "/v1/items/t1/image"


@pytest.mark.parametrize("body", [
    {"scene": "office", "k": 0}, {"scene": "office", "k": 21}, {"scene": ""},
    {"scene": "office", "query_text": "x" * 201}, {"scene": "office", "colour": "red"},
    {"scene": "office", "user_id": "bad id!"}, {"scene": "office", "filters": {"genders": ["aliens"]}},
    {"scene": "office", "filters": {"exclude_item_ids": ["x"] * 201}}, {"k": 3}, [],
])
def test_bounded_fields_answer_422(client, body):
    r = client.post("/v1/recommend", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_request"


def test_unknown_scene_is_a_client_error(client):
    r = client.post("/v1/recommend", json={"scene": "moon landing"})
    assert r.status_code == 400 and "choose one of" in r.json()["detail"]


def test_body_cap_with_and_without_content_length(client):
    big = b'{"scene": "office", "pad": "' + b"x" * 300_000 + b'"}'
    r = client.post("/v1/recommend", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "Content-Length" in r.json()["detail"]

    def chunks():  # no Content-Length: sent chunked, counted while it streams
        for _ in range(30):
            yield b"x" * 10_000

    r = client.post("/v1/recommend", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "arrived" in r.json()["detail"]
    m = client.get("/metrics").text
    assert 'mmrec_rejected_total{reason="body_declared"}' in m
    assert 'mmrec_rejected_total{reason="body_streamed"}' in m


def _png_bomb(side: int = 30_000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (zlib-compressed zeros)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = zlib.compress(b"\x00" * (side // 8 + 1) * 64)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, "GIF")
    return buf.getvalue()


@pytest.mark.parametrize("data, status", [
    (b"not an image at all", 400),
    (jpeg_bytes()[:200], 400),            # truncated
    (jpeg_bytes(size=(8, 8)), 400),       # too small
    (_gif(), 415),                        # format not allowed
    (_png_bomb(), 413),                   # decompression bomb: refused from the header
    (b"", 400),
])
@pytest.mark.parametrize("route", ["/v1/recommend/photo", "/v1/tag"])
def test_bad_images_are_client_errors(client, data, status, route):
    r = client.post(route, files={"image": ("p.jpg", data, "image/jpeg")}, data={"scene": "office"})
    assert r.status_code == status, r.text


def test_photo_recommend_and_tag(client):
    r = client.post("/v1/recommend/photo", files={"image": ("p.jpg", jpeg_bytes(size=(900, 1200)), "image/jpeg")},
                    data={"scene": "office", "k": "2", "filters": '{"genders": ["men"]}'})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["photo"]["slot"] == "top" and body["versions"]["tagger"] == "fixed"
    assert body["outfits"] and all(o["items"][0]["item_id"] in body["photo"]["similar"] for o in body["outfits"])
    bad = client.post("/v1/recommend/photo", files={"image": ("p.jpg", jpeg_bytes(), "image/jpeg")},
                      data={"scene": "office", "filters": '{"genders": "men"}'})
    assert bad.status_code == 422
    t = client.post("/v1/tag", files={"image": ("p.jpg", jpeg_bytes(), "image/jpeg")})
    assert t.status_code == 200 and t.json()["attributes"]["category"]["value"] == "shirts"
    assert t.json()["slot"] == "top"


def test_items_and_images(client):
    r = client.get("/v1/items/t1")
    assert r.status_code == 200 and r.json()["category"] == "shirts"
    assert r.json()["attributes"]["pattern"] == {"value": "solid", "source": "title", "confidence": None}
    img = client.get("/v1/items/t1/image")
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(img.content)).size == (60, 80)
    assert client.get("/v1/items/nope").status_code == 404
    assert client.get("/v1/items/" + "x" * 65).status_code == 422
    assert client.get("/v1/items/bad%20id").status_code == 422


def test_metrics_and_openapi(client):
    client.get("/v1/scenes")
    text = client.get("/metrics").text
    assert 'mmrec_http_requests_total{route="/v1/scenes",status="200"}' in text
    assert "mmrec_http_request_seconds_bucket" in text
    spec = client.get("/openapi.json").json()
    assert {"/v1/recommend", "/v1/recommend/photo", "/v1/tag", "/v1/items/{item_id}",
            "/v1/items/{item_id}/image", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert spec["components"]["schemas"]["RecommendRequest"]["properties"]["k"]["maximum"] == 20


def test_backpressure_429_and_503_with_retry_after(rec):
    app = create_app(rec, settings(max_inflight=1, max_queue=0, retry_after_s=3))
    gate = app.state.gate
    with TestClient(app, raise_server_exceptions=False) as c:
        c.portal.call(gate.__aenter__)  # a request in flight holds the only slot
        try:
            r = c.post("/v1/recommend", json={"scene": "office"}, headers={"X-API-Key": KEY})
            assert r.status_code == 429 and r.headers["retry-after"] == "3"
        finally:
            c.portal.call(gate.__aexit__, None, None, None)
        assert c.post("/v1/recommend", json={"scene": "office"}, headers={"X-API-Key": KEY}).status_code == 200
    app = create_app(rec, settings(max_inflight=1, max_queue=5, queue_timeout_s=0.2))
    gate = app.state.gate
    with TestClient(app, raise_server_exceptions=False) as c:
        c.portal.call(gate.__aenter__)
        try:
            r = c.post("/v1/recommend", json={"scene": "office"}, headers={"X-API-Key": KEY})
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
        finally:
            c.portal.call(gate.__aexit__, None, None, None)


def test_not_ready_is_503(store):
    holder = RecommenderHolder(lambda: Recommender.from_store(store), store)
    with TestClient(create_app(holder, settings()), raise_server_exceptions=False) as c:
        r = c.post("/v1/recommend", json={"scene": "office"}, headers={"X-API-Key": KEY})
        assert r.status_code == 503 and "retry-after" in r.headers
        assert c.get("/readyz").status_code == 503
        holder.load()
        assert c.get("/readyz").status_code == 200


def test_versions_switch_without_restart(tmp_path):
    from mmrec.artifacts import ArtifactStore
    from outfit_fixtures import ALL

    st = ArtifactStore(tmp_path / "artifacts")
    v1 = write_items(st, ALL[:-1])
    holder = RecommenderHolder(lambda: Recommender.from_store(st), st)
    holder.load()
    with TestClient(create_app(holder, settings()), raise_server_exceptions=False) as c:
        c.headers.update({"X-API-Key": KEY})
        assert c.post("/v1/recommend", json={"scene": "office"}).json()["versions"]["items"] == v1
        assert c.get("/v1/items/x15").status_code == 404
        v2 = write_items(st, ALL)  # a new catalog version becomes CURRENT
        r = c.post("/v1/admin/reload").json()
        assert r["reloaded"] and r["versions"]["items"] == v2
        assert c.post("/v1/recommend", json={"scene": "office"}).json()["versions"]["items"] == v2
        assert c.get("/v1/items/x15").status_code == 200
        assert c.post("/v1/admin/reload").json()["reloaded"] is False  # nothing changed since


def test_frozen_heap_still_frees_the_replaced_recommender(tmp_path):
    import gc
    import weakref

    from mmrec.artifacts import ArtifactStore
    from outfit_fixtures import ALL

    st = ArtifactStore(tmp_path / "artifacts")
    write_items(st, ALL[:-1])
    holder = RecommenderHolder(lambda: Recommender.from_store(st), st, freeze_heap=True)
    try:
        old = holder.load()
        assert gc.get_freeze_count() > 0  # the loaded objects are out of the collector's sight
        old.self_cycle = old  # a cycle: only a collection (not refcounts) can free it
        gone = weakref.ref(old)
        del old
        write_items(st, ALL)
        assert holder.reload()["reloaded"]
        assert gone() is None, "the replaced recommender leaked: frozen cycles were never collected"
    finally:
        gc.unfreeze()


def test_watcher_reloads_by_itself(tmp_path):
    import time

    from mmrec.artifacts import ArtifactStore
    from outfit_fixtures import ALL

    st = ArtifactStore(tmp_path / "artifacts")
    write_items(st, ALL[:-1])
    holder = RecommenderHolder(lambda: Recommender.from_store(st), st, poll_s=0.05)
    holder.load()
    holder.start()
    try:
        v2 = write_items(st, ALL)
        deadline = time.monotonic() + 10
        while holder.current.versions["items"] != v2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert holder.current.versions["items"] == v2
    finally:
        holder.stop()


def test_kiosk_page_is_served(client):
    c = anon(client)
    r = c.get("/kiosk/")
    assert r.status_code == 200 and "Outfit finder" in r.text and "X-API-Key" in r.text
    assert c.get("/", follow_redirects=False).headers["location"] == "/kiosk/"


def test_response_cache_is_per_artifact_version_and_can_be_off(rec):
    app = create_app(rec, settings())
    with TestClient(app, raise_server_exceptions=False, headers={"X-API-Key": KEY}) as c:
        a = c.post("/v1/recommend", json={"scene": "office", "k": 2}).json()
        b = c.post("/v1/recommend", json={"scene": "office", "k": 2}).json()
        c3 = c.post("/v1/recommend", json={"scene": "office", "k": 2}).json()
        assert a["request_id"] != b["request_id"] and a["outfits"] == b["outfits"] == c3["outfits"]
        assert b["request_id"] != c3["request_id"]  # every hit gets its own id
        assert all(len(x["request_id"]) == 32 and int(x["request_id"], 16) >= 0 for x in (b, c3))
        assert b["timings"] == {"cache_hit": 1.0} and "total_ms" in a["timings"]
        m = c.get("/metrics").text
        assert 'mmrec_response_cache_total{result="hit"} 2.0' in m
    off = create_app(rec, settings(response_cache_size=0))
    with TestClient(off, raise_server_exceptions=False, headers={"X-API-Key": KEY}) as c:
        c.post("/v1/recommend", json={"scene": "office"})
        assert "total_ms" in c.post("/v1/recommend", json={"scene": "office"}).json()["timings"]
