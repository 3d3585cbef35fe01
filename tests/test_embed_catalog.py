"""Catalog embedding: vectors artifact, incremental reuse of unchanged images, removals."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from embed_fixtures import COLOURS, draw, ingest, write_catalog
from mmrec.artifacts import ArtifactStore
from mmrec.config import load_config

pytest.importorskip("torch")


@pytest.fixture
def store_with_encoder(tmp_path):
    from mmrec.embed.train import train_encoder

    store = ArtifactStore(tmp_path / "art")
    src = write_catalog(tmp_path / "src", 24)
    ingest(store, src)
    cfg = load_config("embed", profile="tiny", overrides=["train.epochs=0"])
    train_encoder(store, cfg, progress=False)
    return store, src, cfg


def test_incremental_embedding_skips_unchanged_items(store_with_encoder):
    from mmrec.embed.catalog import embed_catalog, load_vectors

    store, src, cfg = store_with_encoder
    first = embed_catalog(store, cfg, progress=False)
    assert (first.embedded, first.reused, first.removed) == (24, 0, 0)
    art, table, vecs = load_vectors(store)
    assert vecs.shape == (24, 32) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert set(table.column("encoder_id").to_pylist()) == {art.manifest["encoder_id"]}
    assert art.manifest["items_version"] == store.current_version("items")

    again = embed_catalog(store, cfg, progress=False)  # nothing changed: nothing embedded or written
    assert again.unchanged and again.embedded == 0 and again.reused == 24
    assert store.current_version("vectors") == art.version

    # one image changes, one product leaves the catalog: only the changed image is embedded
    draw(src / "images" / "1005.jpg", "ellipse", COLOURS["Green"], jitter=3)
    lines = (src / "styles.csv").read_text().splitlines()
    (src / "styles.csv").write_text("\n".join(ln for ln in lines if not ln.startswith("1007,")) + "\n")
    ingest(store, src)
    third = embed_catalog(store, cfg, progress=False)
    assert (third.embedded, third.reused, third.removed) == (1, 22, 1)
    art3, table3, vecs3 = load_vectors(store)
    ids3 = table3.column("item_id").to_pylist()
    assert "1007" not in ids3 and len(ids3) == 23
    old = dict(zip(table.column("item_id").to_pylist(), vecs))
    new = dict(zip(ids3, vecs3))
    assert not np.allclose(old["1005"], new["1005"])
    assert all(np.array_equal(old[i], new[i]) for i in ids3 if i != "1005")


def test_full_re_embed_matches_incremental_vectors(store_with_encoder):
    from mmrec.embed.catalog import embed_catalog, load_vectors

    store, _, cfg = store_with_encoder
    embed_catalog(store, cfg, progress=False)
    _, t1, v1 = load_vectors(store)
    res = embed_catalog(store, cfg, progress=False, incremental=False, force_new_version=True)
    assert res.embedded == 24 and res.reused == 0
    _, t2, v2 = load_vectors(store)
    assert t1.column("item_id").to_pylist() == t2.column("item_id").to_pylist()
    np.testing.assert_allclose(v1, v2, atol=1e-6)


def test_new_encoder_re_embeds_everything(store_with_encoder):
    from mmrec.embed.catalog import embed_catalog
    from mmrec.embed.train import train_encoder

    store, _, cfg = store_with_encoder
    embed_catalog(store, cfg, progress=False)
    train_encoder(store, cfg, progress=False)  # a new encoder version: a new vector space
    res = embed_catalog(store, cfg, progress=False)
    assert res.embedded == 24 and res.reused == 0
    table = pq.read_table(res.artifact.file("vectors.parquet"))
    assert set(table.column("encoder_id").to_pylist()) == {res.artifact.manifest["encoder_id"]}


@pytest.mark.slow
def test_ray_data_path_matches_local(store_with_encoder):
    from mmrec.embed.catalog import embed_catalog, load_vectors

    store, _, cfg = store_with_encoder
    embed_catalog(store, cfg, progress=False)
    _, t1, v1 = load_vectors(store)
    ray_cfg = cfg.model_copy(deep=True)
    ray_cfg.catalog.engine = "ray"
    res = embed_catalog(store, ray_cfg, progress=False, incremental=False, force_new_version=True)
    assert res.embedded == 24 and res.artifact.metrics["engine"] == "ray"
    _, t2, v2 = load_vectors(store)
    assert t1.column("item_id").to_pylist() == t2.column("item_id").to_pylist()
    np.testing.assert_allclose(v1, v2, atol=1e-5)
