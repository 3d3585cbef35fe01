"""Live catalog (issue #24 item 5): POST /v1/admin/catalog adds, replaces and deletes items without
a restart. A new item is served (catalog-filter path and recall path); a deleted one is never
served after the acknowledgement, nor after a restart; bad rows get their own errors; `mmrec
index compact` writes an index without the deleted vectors and with the new ones."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mmrec.serving.app import create_app
from outfit_fixtures import write_items
from test_feedback import KEY, _key, make_settings  # noqa: F401 (_key: the pseudonym key fixture)

OFFICE = {"scene": "office", "k": 2, "filters": {"genders": ["men"]}}
NEW_SHOES = {"item_id": "n1", "title": "Men Black Leather Formal Oxford Shoes", "category": "formal shoes",
             "gender": "Men", "colour": "black", "usage": "formal", "season": "winter", "price": 70.0}
# s1 and s3 are the only shoes an office outfit for men may take (s2 is sportswear)
DROP_SHOES = ["s1", "s3"]


def _rec(root):
    from mmrec.artifacts import ArtifactStore
    from mmrec.recommend import Recommender

    st = ArtifactStore(root / "artifacts")
    if st.current_version("items") is None:
        write_items(st)
    return Recommender.from_store(st)


def _client(rec, db):
    c = TestClient(create_app(rec, make_settings(db)), raise_server_exceptions=False)
    c.headers.update({"X-API-Key": KEY})
    return c


def _served(client, body=OFFICE) -> list[set[str]]:
    r = client.post("/v1/recommend", json=body)
    assert r.status_code == 200, r.text
    return [{i["item_id"] for i in o["items"]} for o in r.json()["outfits"]]


def test_a_new_item_is_served_and_deleted_ones_never_again(tmp_path):
    """Catalog-filter path (no recall index): the new shoes are the only office shoes left."""
    with _client(_rec(tmp_path), tmp_path / "fb.sqlite") as c:
        before = _served(c)  # fills the caches
        assert any(o & set(DROP_SHOES) for o in before)
        r = c.post("/v1/admin/catalog", json={"upserts": [NEW_SHOES], "deletes": DROP_SHOES})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["accepted"] == 3 and body["errors"] == 0 and body["changed"] == 3
        for req in (OFFICE, {**OFFICE, "filters": {"genders": ["men"], "in_stock_only": False}}):
            outfits = _served(c, req)
            assert outfits and all("n1" in o for o in outfits)  # shoes are in every office outfit
            assert not any(o & set(DROP_SHOES) for o in outfits)
        item = c.get("/v1/items/n1").json()
        assert item["category"] == "formal shoes" and item["gender"] == "men" and item["slot"] == "shoes"
        assert c.get("/v1/items/s1").status_code == 404
        # a stock change of the new item works like any other (in place, same sequence)
        r = c.post("/v1/admin/catalog", json={"updates": [{"item_id": "n1", "in_stock": False}]})
        assert r.status_code == 200 and r.json()["changed"] == 1
        assert not any("n1" in o for o in _served(c))
        assert c.post("/v1/recommend", json=OFFICE).json()["versions"]["catalog_seq"] == "4"


def test_tombstones_and_new_items_survive_a_restart_and_reach_other_replicas(tmp_path):
    db = tmp_path / "fb.sqlite"
    with _client(_rec(tmp_path), db) as a, _client(_rec(tmp_path), db) as b:
        _served(b)
        assert a.post("/v1/admin/catalog", json={"upserts": [NEW_SHOES], "deletes": DROP_SHOES}).status_code == 200
        import time

        time.sleep(1.1)  # the other replica looks at most once a second
        assert all("n1" in o for o in _served(b))
    with _client(_rec(tmp_path), db) as fresh:  # a restart replays the stored changes
        outfits = _served(fresh)
        assert outfits and all("n1" in o and not o & set(DROP_SHOES) for o in outfits)
        assert fresh.get("/v1/items/s3").status_code == 404


def test_bad_rows_get_their_own_errors_and_the_good_ones_are_stored(tmp_path):
    bad = [
        {**NEW_SHOES, "item_id": "n2", "category": "spacesuits"},   # not in the taxonomy
        {**NEW_SHOES, "item_id": "n3", "title": ""},                 # empty title
        {**NEW_SHOES, "item_id": "n4", "price": "cheap"},            # not a number
        {**NEW_SHOES, "item_id": "bad id!"},                         # id pattern
        {**NEW_SHOES, "item_id": "n5", "image_uri": str(tmp_path / "missing.jpg")},
        {**NEW_SHOES, "item_id": "n6", "colour": "octarine"},        # kept, colour dropped: a warning
    ]
    with _client(_rec(tmp_path), tmp_path / "fb.sqlite") as c:
        r = c.post("/v1/admin/catalog", json={"upserts": bad + [NEW_SHOES], "deletes": ["nope", "s1"]})
        assert r.status_code == 207, r.text
        res = {(x["op"], x["item_id"]): x for x in r.json()["results"]}
        assert "spacesuits" in res[("upsert", "n2")]["error"] and "taxonomy" in res[("upsert", "n2")]["error"]
        assert res[("upsert", "n3")]["error"].startswith("title")
        assert res[("upsert", "n4")]["error"].startswith("price")
        assert res[("upsert", "bad id!")]["error"].startswith("item_id")
        assert "missing.jpg" in res[("upsert", "n5")]["error"]
        assert res[("upsert", "n6")]["status"] == "accepted" and "octarine" in res[("upsert", "n6")]["warning"]
        assert res[("delete", "nope")]["status"] == "error" and "unknown item" in res[("delete", "nope")]["error"]
        assert res[("upsert", "n1")]["status"] == res[("delete", "s1")]["status"] == "accepted"
        stored = c.app.state.feedback.store.catalog_changes_since(0)
        assert [(op, i) for _, op, i, *_ in stored] == [("upsert", "n6"), ("upsert", "n1"), ("delete", "s1")]
        assert c.get("/v1/items/n6").json()["colour"] is None
        # stock updates stay all-or-nothing: an unknown id refuses the request, nothing stored
        r = c.post("/v1/admin/catalog", json={"upserts": [{**NEW_SHOES, "item_id": "n7"}],
                                             "updates": [{"item_id": "nope", "in_stock": False}]})
        assert r.status_code == 422 and len(c.app.state.feedback.store.catalog_changes_since(0)) == 3


def test_a_schema_2_store_keeps_its_stock_changes_when_upgraded(tmp_path):
    from mmrec.feedback.store import MIGRATIONS, SCHEMA_VERSION, FeedbackStore

    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    for v in (1, 2):
        for stmt in MIGRATIONS[v]:
            con.execute(stmt)
    con.execute("PRAGMA user_version=2")
    con.execute("INSERT INTO stock_updates (received_us, item_id, in_stock, price) VALUES (1, 't1', 0, NULL)")
    con.execute("INSERT INTO stock_updates (received_us, item_id, in_stock, price) VALUES (2, 'b1', NULL, 9.5)")
    con.commit()
    con.close()
    store = FeedbackStore(path)  # opening migrates forward
    assert store.catalog_changes_since(0) == [(1, "stock", "t1", False, None, None),
                                              (2, "stock", "b1", None, 9.5, None)]
    assert store.stock_updates_since(0) == [(1, "t1", False, None), (2, "b1", None, 9.5)]
    seq = store.add_catalog_changes([("delete", "t1", None, None, None)])
    assert seq == 3 and store.stock_updates_since(0)[-1][0] == 2  # a delete is not a stock change
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4


# -- with a real recall stack: tiny encoder -> vectors -> FAISS index ----------------------------

@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    pytest.importorskip("torch")
    from mmrec.artifacts import ArtifactStore
    from mmrec.config import load_config
    from mmrec.embed.catalog import embed_catalog
    from mmrec.embed.train import train_encoder
    from mmrec.recall.build import build_index
    from mmrec.serving.threads import limit_threads

    limit_threads()
    root = tmp_path_factory.mktemp("live")
    store = ArtifactStore(root / "artifacts")
    write_items(store, images_dir=root / "images")
    ecfg = load_config("embed", profile="tiny", overrides=["train.epochs=1"])
    train_encoder(store, ecfg, progress=False)
    embed_catalog(store, ecfg, progress=False)
    build_index(store, load_config("index", profile="tiny"))
    return root, store


def _recall_rec(store):
    from mmrec.recommend import Recommender

    return Recommender.from_store(store, profile="tiny")


def test_a_new_item_is_recalled_by_its_photo_and_a_deleted_one_is_not(stack, tmp_path):
    from mmrec.recall.types import Filters, RecallQuery
    from outfit_fixtures import PHOTO_COLOURS, jpeg_bytes

    root, store = stack
    photo = tmp_path / "n1.jpg"
    photo.write_bytes(jpeg_bytes(PHOTO_COLOURS["black"]))
    rec = _recall_rec(store)
    s1_vec = rec.recall.index.vector_of("s1")
    with _client(rec, tmp_path / "fb.sqlite") as c:
        r = c.post("/v1/admin/catalog", json={"upserts": [{**NEW_SHOES, "image_uri": str(photo)}],
                                             "deletes": DROP_SHOES})
        assert r.status_code == 200, r.text
        live = c.app.state.holder.current
        assert live is not rec and live.recall.fresh is not None and "n1" in live.recall.fresh
        assert rec.recall.index.n_alive == live.recall.index.n_alive  # shared index, tombstoned
        assert "s1" not in live.recall.index and "s1" in live.recall.index.item_ids
        n1_vec = live.recall.fresh.vector_of("n1")
        shoes = Filters(slots=["shoes"])
        hits = [x.item_id for x in live.recall.search(RecallQuery(image_vector=n1_vec.tolist(), k=5, filters=shoes))]
        assert hits[0] == "n1"
        hits = [x.item_id for x in live.recall.search(RecallQuery(image_vector=s1_vec.tolist(), k=20, filters=shoes))]
        assert "s1" not in hits and "s3" not in hits and "n1" in hits
        outfits = _served(c)
        assert outfits and all("n1" in o and not o & set(DROP_SHOES) for o in outfits)
        assert live.candidates.recall is not None  # answered through recall, not the catalog filter


def test_compact_drops_tombstoned_vectors_and_keeps_the_new_ones(stack, tmp_path):
    from mmrec import kinds
    from mmrec.cli import main
    from mmrec.config import load_config
    from mmrec.recall.build import load_index
    from outfit_fixtures import PHOTO_COLOURS, jpeg_bytes

    root, store = stack
    photo = tmp_path / "n1.jpg"
    photo.write_bytes(jpeg_bytes(PHOTO_COLOURS["black"]))
    db = tmp_path / "fb.sqlite"
    with _client(_recall_rec(store), db) as c:
        assert c.post("/v1/admin/catalog", json={"upserts": [{**NEW_SHOES, "image_uri": str(photo)}],
                                                "deletes": DROP_SHOES}).status_code == 200
        n1_vec = c.app.state.holder.current.recall.fresh.vector_of("n1")
    before = store.current_version(kinds.INDEX)
    assert main(["--artifacts", str(store.root), "index", "compact", "--feedback-db", str(db)]) == 0
    assert store.current_version(kinds.INDEX) != before
    _, index = load_index(store, load_config("index", profile="tiny"))
    assert "s1" not in index.item_ids and "s3" not in index.item_ids and index.n_dead == 0
    assert np.allclose(index.vector_of("n1"), n1_vec, atol=1e-6)
    # a server on the compacted index replays the same changes on top: same answers, and the
    # side index of live vectors is empty again (n1's vector is the main index's now)
    with _client(_recall_rec(store), db) as c:
        outfits = _served(c)
        assert outfits and all("n1" in o and not o & set(DROP_SHOES) for o in outfits)
        live = c.app.state.holder.current
        assert live.recall.fresh is None and "n1" in live.recall.index and "s1" not in live.items.index
    store.set_current(kinds.INDEX, before)  # leave the module's store as the other tests expect


def test_the_stockout_measurement_counts_answers_after_the_ack():
    from mmrec.serving.stockout_load import Answer, Change, Run, summarise

    run = Run(changes=[Change("x", "stock", sent=10.0, acked=10.1, status=200, appearances_before=3)])
    run.answers = [
        Answer(0, 9.0, 9.5, frozenset({"x"})),    # before the ack: not counted
        Answer(0, 10.0, 10.3, frozenset({"x"})),  # in flight at the ack: counted, not a broken promise
        Answer(1, 10.5, 10.6, frozenset({"x"})),  # the other replica had not looked yet
        Answer(1, 16.0, 16.2, frozenset({"x"})),  # past the 5 s window
        Answer(0, 10.2, 10.4, frozenset({"y"})),
    ]
    out = summarise(run)
    c = out["changes"][0]
    assert c["answers_holding_it_after_ack"] == 3 and c["answers_after_ack"] == 4
    assert c["last_seen_after_ack_s"] == pytest.approx(6.1) and c["answers_after_window"] == 1
    assert c["sent_after_ack_same_replica"] == 0 and c["sent_after_ack_other_replicas"] == 2
    assert c["other_replicas_last_send_after_ack_s"] == pytest.approx(5.9)
    assert out["answers_after_window_total"] == 1 and out["sent_after_ack_same_replica_total"] == 0


def test_an_ab_experiment_keeps_its_variants_over_the_changed_catalog(tmp_path):
    """Under an A/B split the control is derived and split again: every variant serves the new
    item, none the deleted ones, and each keeps its own settings."""
    from mmrec.ab.config import ABConfig
    from mmrec.ab.router import VariantRecommender

    ab = ABConfig.model_validate({"experiment": "e1", "variants": [
        {"name": "control"}, {"name": "treat", "compose": {"w_compat": 1.5}}]})
    rec = VariantRecommender(_rec(tmp_path), ab)
    with _client(rec, tmp_path / "fb.sqlite") as c:
        assert c.post("/v1/admin/catalog", json={"upserts": [NEW_SHOES], "deletes": DROP_SHOES}).status_code == 200
        live = c.app.state.holder.current
        assert isinstance(live, VariantRecommender) and live is not rec and live.ab is ab
        assert live.variants["treat"].cfg.compose.w_compat == 1.5
        for user in ("u1", "u2", "u3", "u4", None):
            r = c.post("/v1/recommend", json={**OFFICE, **({"user_id": user} if user else {})})
            outfits = [{i["item_id"] for i in o["items"]} for o in r.json()["outfits"]]
            assert outfits and all("n1" in o and not o & set(DROP_SHOES) for o in outfits)
            assert r.json()["versions"]["catalog_seq"] == "3"


def test_compaction_folds_changes_as_the_server_applies_them():
    from mmrec.recall.compact import fold

    tags = {"a": "sha-a", "b": "sha-b", "c": "sha-c"}.get

    def up(i, sha, vec=None, enc="e1", **kw):
        return ("upsert", i, None, None, {"row": {"item_id": i, "image_sha256": sha, **kw},
                                          "vector": vec, "encoder_id": enc if vec else None})

    drop, add, stock = fold([
        up("a", "sha-a", price=5.0),          # same photo, no vector: the indexed one stays
        up("b", "sha-b2"),                    # a new photo, no vector: the old vector goes
        up("n", None, [1.0, 0.0]),            # a new item with a vector
        up("m", None, [0.0, 1.0], enc="e0"),  # another encoder's vector: not added
        ("stock", "n", False, 9.0, None),
        ("delete", "c", None, None, None),
        up("x", None, [1.0, 0.0]), ("delete", "x", None, None, None),  # added, then deleted
    ], "e1", tags)
    assert drop == {"b", "c", "n", "x"}  # "n": a label-free no-op; "a" and "m" keep what they have
    assert set(add) == {"n"} and add["n"][1]["in_stock"] is False and add["n"][1]["price"] == 9.0
    assert stock == {"n": {"in_stock": False, "price": 9.0}}


def test_an_upsert_of_a_known_item_replaces_it_in_place(tmp_path):
    with _client(_rec(tmp_path), tmp_path / "fb.sqlite") as c:
        # b2 (casual blue jeans) re-listed as black formal trousers: office outfits may take it now
        r = c.post("/v1/admin/catalog", json={"upserts": [{
            "item_id": "b2", "title": "Men Black Slim Formal Trousers", "category": "trousers",
            "gender": "men", "colour": "black", "usage": "formal", "price": 42.0}], "deletes": ["b1"]})
        assert r.status_code == 200, r.text
        item = c.get("/v1/items/b2").json()
        assert (item["category"], item["colour"], item["price"]) == ("trousers", "black", 42.0)
        outfits = _served(c)
        assert outfits and all("b2" in o and "b1" not in o for o in outfits)
        assert c.app.state.holder.current.items.ids.count("b2") == 1  # replaced, not added twice
