"""Recall end to end on a tiny catalog: artifacts -> index -> routes -> RRF; updates; atomic swap."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from embed_fixtures import COLOURS, draw, ingest, write_catalog
from mmrec import kinds
from mmrec.artifacts import ArtifactStore
from mmrec.config import load_config
from mmrec.recall.types import Filters, RecallQuery

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Catalog (60 items) -> tiny encoder (trained briefly) -> vectors -> flat index."""
    from mmrec.embed.catalog import embed_catalog
    from mmrec.embed.train import train_encoder
    from mmrec.recall.build import build_index

    tmp = tmp_path_factory.mktemp("recall")
    store = ArtifactStore(tmp / "art")
    src = write_catalog(tmp / "src", 60)
    ingest(store, src)
    ecfg = load_config("embed", profile="tiny", overrides=["train.epochs=2"])
    train_encoder(store, ecfg, progress=False)
    embed_catalog(store, ecfg, progress=False)
    icfg = load_config("index", profile="tiny")
    build_index(store, icfg)
    return store, src, ecfg, icfg


def _recall(store, **kw):
    from mmrec.recall.service import Recall

    return Recall.load(store, config=load_config("recall", profile="tiny"),
                       index_config=load_config("index", profile="tiny"), **kw)


def test_search_fuses_routes_and_respects_filters(built):
    store, *_ = built
    recall = _recall(store)
    assert set(recall.versions) >= {"index", "items", "vectors", "encoder"}
    q = RecallQuery(text="navy blue tshirt men", filters=Filters(slots=["top"], genders=["men"]), k=10)
    cands = recall.search(q)
    assert 0 < len(cands) <= 10
    rows = {r["item_id"]: r for r in recall._snap.catalog.rows}
    assert all(rows[c.item_id]["slot"] == "top" and rows[c.item_id]["gender"] == "men" for c in cands)
    assert [c.score for c in cands] == sorted((c.score for c in cands), reverse=True)
    assert {"text_image", "bm25", "attribute"} <= {r for c in cands for r in c.routes}
    top = cands[0]
    assert rows[top.item_id]["colour"] == "navy blue" and rows[top.item_id]["category"] == "tshirts"
    for c in cands:
        assert set(c.routes) == set(c.route_scores) and all(r >= 1 for r in c.routes.values())
    excl = recall.search(q.model_copy(update={"filters": Filters(slots=["top"], genders=["men"],
                                                                  exclude_ids=[top.item_id])}))
    assert top.item_id not in {c.item_id for c in excl}


def test_a_repeated_query_text_is_encoded_once(built):
    store, *_ = built
    recall = _recall(store)
    calls = []
    encode = recall.encoder.encode_texts
    recall.encoder.encode_texts = lambda texts, **kw: calls.append(list(texts)) or encode(texts, **kw)
    q = RecallQuery(text="navy blue tshirt men", filters=Filters(slots=["top"]), k=10)
    first = recall.search(q)
    # the same words under other filters (another scene's slot, a gender) reuse the vector
    men = recall.search(q.model_copy(update={"filters": Filters(slots=["top"], genders=["men"])}))
    again = recall.search(q)
    recall.search(q.model_copy(update={"text": "red dress"}))
    assert calls == [["navy blue tshirt men"], ["red dress"]]
    assert [(c.item_id, c.score) for c in again] == [(c.item_id, c.score) for c in first]
    assert men


def test_photo_and_vector_queries_use_the_image_route(built):
    store, src, *_ = built
    recall = _recall(store)
    photo = Image.open(src / "images" / "1002.jpg").convert("RGB")
    cands = recall.search(RecallQuery(image=photo, filters=Filters(in_stock_only=False), k=5))
    assert cands and all(set(c.routes) == {"photo_image"} for c in cands)
    rows = {r["item_id"]: r for r in recall._snap.catalog.rows}
    assert "1002" in [c.item_id for c in cands]  # its own photo is among its neighbours
    assert (rows[cands[0].item_id]["category"], rows[cands[0].item_id]["colour"]) == ("casual shoes", "black")
    vec = recall.index.vector_of("1003")
    by_vec = {c.item_id: c for c in recall.search(RecallQuery(image_vector=vec.tolist(), k=3))}
    assert by_vec["1003"].route_scores["photo_image"] == pytest.approx(1.0, abs=1e-5)
    from mmrec.errors import InputError

    with pytest.raises(InputError, match="dim|values"):
        recall.search(RecallQuery(image_vector=[1.0, 2.0]))
    with pytest.raises(ValueError, match="PIL"):
        RecallQuery(image="not an image")


def test_attribute_only_query_and_routes_are_reported(built):
    store, *_ = built
    recall = _recall(store)
    cands = recall.search(RecallQuery(attributes={"category": "Jeans", "colour": "red"}, k=5))
    assert cands and all(set(c.routes) == {"attribute"} for c in cands)
    res = {r.name: r for r in recall.route_results(RecallQuery(text="red jeans women"))}
    assert res["attribute"].info["matched_fields"] == {"colour": "red", "category": "jeans", "gender": "women"}


def test_encoder_mismatch_is_refused(built):
    from mmrec.embed.config import ModelSpec
    from mmrec.embed.encoder import Encoder
    from mmrec.errors import InputError

    store, *_ = built
    other = Encoder.create(ModelSpec(name="mmrec-clip-tiny", device="cpu"), encoder_id="other@1")
    with pytest.raises(InputError, match="does not match"):
        _recall(store, encoder=other)


def test_index_updates_and_atomic_swap(built, tmp_path, monkeypatch):
    """add/remove publish new versions; a Recall reloads atomically; a failed write changes nothing."""
    import shutil

    from mmrec.embed.catalog import embed_catalog
    from mmrec.recall.build import publish, remove_from_index, update_index

    store0, src0, ecfg, icfg = built
    store = ArtifactStore(tmp_path / "art")  # a private copy: this test changes the catalog
    shutil.copytree(store0.root, store.root)
    src = tmp_path / "src"
    shutil.copytree(src0, src)
    recall = _recall(store)
    v0 = recall.versions["index"]
    old_snapshot = recall._snap

    # a new product arrives and one goes out of stock: re-ingest, embed incrementally, add
    lines = (src / "styles.csv").read_text().splitlines()
    new = lines[1].split(",")
    new[0], new[9] = "1999", "Brand9 Men Green Jeans 1999"
    lines.append(",".join(new))
    lines = [ln.replace(",Summer,", ",Winter,") if ln.startswith("1004,") else ln for ln in lines]
    (src / "styles.csv").write_text("\n".join(lines) + "\n")
    draw(src / "images" / "1999.jpg", "tall", COLOURS["Green"])
    ingest(store, src)
    res = embed_catalog(store, ecfg, progress=False)
    assert (res.embedded, res.removed) == (1, 0)
    art, stats = update_index(store, icfg)
    assert stats == {"added": 1, "updated": 0, "metadata": 0}  # season is no filter field
    assert store.current_version(kinds.INDEX) == art.version != v0

    # readers: the held snapshot keeps answering on the old version during and after the swap
    errors: list[BaseException] = []

    def reader():
        try:
            for _ in range(30):
                cands = recall.search(RecallQuery(text="green jeans", k=20))
                assert cands
        except BaseException as e:  # noqa: BLE001 - surfaced by the assert below
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    assert recall.reload() is True
    t.join()
    assert not errors
    assert recall.versions["index"] == art.version and "1999" in recall.index
    assert "1999" not in old_snapshot.index and old_snapshot.versions["index"] == v0
    assert recall.reload() is False

    art2, st = remove_from_index(store, icfg, ids=["1999", "nope"])
    assert st == {"removed": 1, "unknown": 1}
    recall.reload()
    assert "1999" not in {c.item_id for c in recall.search(RecallQuery(text="green jeans", k=60))}

    # a crash while writing the next version leaves CURRENT on the last complete one
    class Boom(RuntimeError):
        pass

    import mmrec.recall.build as build

    index = recall.index
    original = build.write_index_dir

    def exploding_save(index_, path, extra_info=None):
        original(index_, path, extra_info)
        raise Boom("disk full")

    monkeypatch.setattr(build, "write_index_dir", exploding_save)
    with pytest.raises(Boom):
        publish(store, index, icfg, vectors_version="v", items_version=store.current_version("items"))
    assert store.current_version(kinds.INDEX) == art2.version
    assert not any(p.name.startswith(".tmp-") for p in (store.root / kinds.INDEX).iterdir())
    assert _recall(store).versions["index"] == art2.version
