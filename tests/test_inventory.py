"""Live inventory (issue #24): POST /v1/admin/catalog takes an item out of stock (or changes its
price) without a restart; no answer after the acknowledgement serves it, and every replica on the
same store follows within about a second."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from mmrec.serving.app import create_app
from mmrec.serving.settings import ServeSettings
from outfit_fixtures import write_items
from test_feedback import KEY, _key, make_settings  # noqa: F401 (_key: the pseudonym key fixture)

OFFICE = {"scene": "office", "k": 2, "filters": {"genders": ["men"]}}


def _rec(root):
    from mmrec.artifacts import ArtifactStore
    from mmrec.recommend import Recommender

    st = ArtifactStore(root / "artifacts")
    if st.current_version("items") is None:
        write_items(st)
    return Recommender.from_store(st)


def _served(client, body=OFFICE) -> set[str]:
    r = client.post("/v1/recommend", json=body)
    assert r.status_code == 200, r.text
    return {i["item_id"] for o in r.json()["outfits"] for i in o["items"]}


def _client(rec, db):
    c = TestClient(create_app(rec, make_settings(db)), raise_server_exceptions=False)
    c.headers.update({"X-API-Key": KEY})
    return c


def test_a_stock_out_is_never_served_after_it_is_acknowledged(tmp_path):
    with _client(_rec(tmp_path), tmp_path / "fb.sqlite") as c:
        before = _served(c)  # fills the candidate and response caches too
        gone = sorted(before)[0]
        r = c.post("/v1/admin/catalog", json={"updates": [{"item_id": gone, "in_stock": False}]})
        assert r.status_code == 200 and r.json()["changed"] == 1, r.text
        for _ in range(3):  # the cached answer and cached candidates are not reused
            assert gone not in _served(c)
        assert c.get(f"/v1/items/{gone}").json()["in_stock"] is False
        r = c.post("/v1/admin/catalog", json={"updates": [{"item_id": gone, "in_stock": True, "price": 9.5}]})
        assert r.status_code == 200
        assert _served(c) == before  # back in stock: the same outfits as before
        assert c.get(f"/v1/items/{gone}").json()["price"] == 9.5


def test_every_replica_on_the_store_follows_within_a_second(tmp_path):
    db = tmp_path / "fb.sqlite"
    with _client(_rec(tmp_path), db) as a, _client(_rec(tmp_path), db) as b:
        before = _served(b)
        gone = sorted(before)[0]
        assert a.post("/v1/admin/catalog", json={"updates": [{"item_id": gone, "in_stock": False}]}).status_code == 200
        time.sleep(1.1)
        assert gone not in _served(b)
    # a recommender loaded later (a restart or reload) applies the stored changes at its first request
    with _client(_rec(tmp_path), db) as fresh:
        assert gone not in _served(fresh)


@pytest.mark.parametrize("body,words", [
    ({"updates": [{"item_id": "nope", "in_stock": False}]}, "unknown item_id ['nope']"),
    ({"updates": [{"item_id": "t1"}]}, "changes nothing"),
    ({"updates": [{"item_id": "t1", "price": -1}]}, "greater than or equal to 0"),
    ({"updates": []}, "at least 1"),
])
def test_bad_updates_are_refused_and_nothing_is_stored(tmp_path, body, words):
    with _client(_rec(tmp_path), tmp_path / "fb.sqlite") as c:
        r = c.post("/v1/admin/catalog", json=body)
        assert r.status_code == 422 and words in r.text, r.text
        assert c.app.state.feedback.store.stock_updates_since(0) == []


def test_needs_the_admin_scope_and_the_store(tmp_path):
    rec = _rec(tmp_path)
    only_recommend = make_settings(tmp_path / "fb.sqlite").with_key("app-key", name="app", scopes=("recommend",))
    with TestClient(create_app(rec, only_recommend), raise_server_exceptions=False) as c:
        r = c.post("/v1/admin/catalog", json={"updates": [{"item_id": "t1", "in_stock": False}]},
                   headers={"X-API-Key": "app-key"})
        assert r.status_code in (401, 403)
    with TestClient(create_app(rec, ServeSettings().with_key(KEY)), raise_server_exceptions=False) as c:
        r = c.post("/v1/admin/catalog", json={"updates": [{"item_id": "t1", "in_stock": False}]},
                   headers={"X-API-Key": KEY})
        assert r.status_code == 503 and "feedback.enabled" in r.text


def test_a_stock_out_reaches_recall_s_index_filters():
    """With a recall index the change lands in the index's filter metadata too (no rebuild)."""
    import numpy as np

    from mmrec.api_models import RecommendRequest, RequestFilters
    from mmrec.catalog.ingest import items_table
    from mmrec.outfit.scenes import SceneBook
    from mmrec.recall.build import meta_row
    from mmrec.recall.config import IndexConfig, RecallConfig
    from mmrec.recall.index import VectorIndex
    from mmrec.recall.service import Recall
    from mmrec.recall.types import Filters, RecallQuery
    from mmrec.recommend import Recommender
    from mmrec.recommend.inventory import apply_stock
    from outfit_fixtures import ALL, item_rows, item_table

    items = item_table()
    vecs = np.random.default_rng(0).normal(size=(len(items), 8)).astype(np.float32)
    index = VectorIndex.build(vecs, list(items.ids), [meta_row(r) for r in items.rows], IndexConfig(), kind="flat")
    recall = Recall.from_parts(index, items_table(item_rows(ALL)), encoder=None, cfg=RecallConfig())
    rec = Recommender(items, SceneBook.load(), recall=recall)
    req = RecommendRequest(scene="office", k=2, filters=RequestFilters(genders=["men"]))
    gone = rec.recommend(req).outfits[0].items[0].item_id
    generation = rec.generation
    assert apply_stock(rec, [(gone, False, None), ("not-an-item", False, None)]) == 1
    assert rec.generation != generation  # the API's response cache starts afresh
    hits = recall.search(RecallQuery(image_vector=vecs[items.index[gone]].tolist(), k=50,
                                     filters=Filters(in_stock_only=True)))
    assert gone not in {h.item_id for h in hits}
    assert all(gone not in {i.item_id for i in o.items} for o in rec.recommend(req).outfits)
