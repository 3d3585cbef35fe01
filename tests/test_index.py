"""VectorIndex on synthetic vectors: filters inside the search vs brute force, updates vs rebuild."""

from __future__ import annotations

import numpy as np
import pytest

from mmrec.recall.config import IndexConfig
from mmrec.recall.types import Filters

faiss = pytest.importorskip("faiss")

KINDS = ("flat", "hnsw", "ivf_flat", "ivf_pq", "ivf_sq8")
# search settings wide enough that every kind is exact on 3k vectors: the tests check the
# filter and update logic, not ANN quality (that is `mmrec index latency`)
EXHAUSTIVE = {"hnsw": {"m": 16, "ef_construction": 200, "ef_search": 400},
              "ivf": {"nlist": 16, "nprobe": 16, "pq_m": 8, "pq_bits": 4, "refine_k_factor": 1000.0,
                      "train_size": 3000}}


def _data(n=3000, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, d))
    v = (centres[rng.integers(0, 30, n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    rows = [{"slot": ["top", "bottom", "shoes"][i % 3], "gender": ["men", "women", "unisex"][i % 5 % 3],
             "category": f"c{i % 11}", "usage": ["casual", "formal"][i % 2],
             "price": None if i % 13 == 0 else float(i % 200), "in_stock": i % 7 != 0} for i in range(n)]
    return v, [f"i{i}" for i in range(n)], rows


def _cfg(**kw):
    return IndexConfig(**{**EXHAUSTIVE, "exact_below": 0, "threads": 1, **kw})


def _brute(v, ids, rows, q, k, f: Filters):
    ok = np.ones(len(v), bool)
    for field, allowed in (("slot", f.slots), ("gender", f.genders), ("category", f.categories),
                           ("usage", f.usages)):
        if allowed is not None:
            ok &= np.array([r[field] in allowed for r in rows])
    price = np.array([np.nan if r["price"] is None else r["price"] for r in rows])
    if f.price_min is not None:
        ok &= price >= f.price_min
    if f.price_max is not None:
        ok &= price <= f.price_max
    if f.in_stock_only:
        ok &= np.array([r["in_stock"] for r in rows])
    ok &= ~np.isin(ids, f.exclude_ids)
    s = q @ v.T
    s[:, ~ok] = -np.inf
    out = []
    for row in s:
        top = np.argsort(-row, kind="stable")[: min(k, int(ok.sum()))]
        out.append([ids[i] for i in top])
    return out


FILTERS = [
    Filters(slots=["top"], genders=["women", "unisex"]),
    Filters(categories=["c3", "c4"], price_max=120.0, exclude_ids=["i3", "i14", "i25"]),
    Filters(price_min=50.0, price_max=60.0, in_stock_only=False),
    Filters(usages=["formal"], slots=["shoes", "top"], genders=["men"]),
    Filters(categories=["no-such-category"]),  # nothing matches: an empty result
    Filters(in_stock_only=False),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("exact_below", [0, 10_000])
def test_filters_inside_search_match_brute_force(kind, exact_below):
    from mmrec.recall.index import VectorIndex

    v, ids, rows = _data()
    index = VectorIndex.build(v, ids, rows, _cfg(exact_below=exact_below), kind=kind)
    q = v[[1, 500, 2222]] + 0.01
    for f in FILTERS:
        got = [[i for i, _ in r] for r in index.search(q, 25, f)]
        assert got == _brute(v, ids, rows, q, 25, f), (kind, f)
    assert index.search(q, 25, FILTERS[4]) == [[], [], []]


def test_filters_never_over_fetch_and_drop():
    """With a filter keeping 1 item in 3000, k results still come back (no post-filtering)."""
    from mmrec.recall.index import VectorIndex

    v, ids, rows = _data()
    for kind in KINDS:
        index = VectorIndex.build(v, ids, rows, _cfg(), kind=kind)
        f = Filters(categories=["c2"], slots=["shoes"], price_max=150.0)  # ~30 items
        want = _brute(v, ids, rows, v[:1], 10, f)[0]
        assert len(want) == 10
        assert [i for i, _ in index.search(v[:1], 10, f)[0]] == want, kind


@pytest.mark.parametrize("kind", KINDS)
def test_incremental_add_remove_update_equals_rebuild(kind):
    from mmrec.recall.index import VectorIndex

    v, ids, rows = _data()
    rng = np.random.default_rng(3)
    # start from the first 2000, then: add 1000, remove 300, re-embed 100, change stock of 50
    index = VectorIndex.build(v[:2000], ids[:2000], rows[:2000], _cfg(), kind=kind)
    index.upsert(ids[2000:], v[2000:], rows[2000:])
    gone = [ids[i] for i in rng.choice(3000, 300, replace=False)]
    assert index.remove(gone) == 300 and index.remove(gone[:5]) == 0
    alive = [i for i in range(3000) if ids[i] not in set(gone)]
    moved = [alive[j] for j in rng.choice(len(alive), 100, replace=False)]
    v2 = v.copy()
    v2[moved] = np.roll(v[moved], 1, axis=0)  # new vectors for existing items
    added, updated = index.upsert([ids[i] for i in moved], v2[moved], [rows[i] for i in moved])
    assert (added, updated) == (0, 100)
    rows2 = [dict(r) for r in rows]
    restock = alive[:50]
    for i in restock:
        rows2[i]["in_stock"] = not rows2[i]["in_stock"]
    assert index.set_metadata([ids[i] for i in restock], [rows2[i] for i in restock]) == 50

    rebuilt = VectorIndex.build(v2[alive], [ids[i] for i in alive], [rows2[i] for i in alive], _cfg(), kind=kind)
    assert index.n_alive == rebuilt.n_alive == len(alive)
    q = v[[0, 7, 1500, 2500]] + 0.02
    for f in (None, *FILTERS):
        a = [[i for i, _ in r] for r in index.search(q, 20, f)]
        b = [[i for i, _ in r] for r in rebuilt.search(q, 20, f)]
        assert a == b, (kind, f)
    if kind in ("hnsw", "ivf_pq", "ivf_sq8"):  # tombstone kinds compact past the configured share
        index.cfg.compact_dead_fraction = 0.05
        index.remove([ids[alive[0]]])
        assert index.n_dead == 0 and index.n_alive == len(alive) - 1


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind, tmp_path):
    from mmrec.recall.index import VectorIndex
    from mmrec.recall.index_files import read_index_dir, write_index_dir

    v, ids, rows = _data(n=1500)
    index = VectorIndex.build(v, ids, rows, _cfg(), kind=kind, encoder_id="enc@1",
                              tags=[f"sha{i}" for i in range(1500)])
    index.remove(ids[:10])
    write_index_dir(index, tmp_path / "ix", extra_info={"items_version": "x"})
    loaded = read_index_dir(tmp_path / "ix", _cfg())
    assert (loaded.kind, loaded.dim, loaded.encoder_id, loaded.n_alive) == (kind, 16, "enc@1", 1490)
    assert loaded.tag_of("i20") == "sha20" and "i3" not in loaded
    np.testing.assert_allclose(loaded.vector_of("i20"), v[20], atol=1e-6)  # exact storage kept
    loaded.remove(["i20"])
    loaded.upsert(["i20"], v[21:22], rows[21:22])
    np.testing.assert_allclose(loaded.vector_of("i20"), v[21], atol=1e-6)
    for f in (None, FILTERS[0], FILTERS[1]):
        assert loaded.search(v[:3], 15, f) == index.search(v[:3], 15, f)


def test_index_kind_follows_size_and_bad_input_is_refused():
    from mmrec.errors import InputError
    from mmrec.recall.faiss_index import choose_kind
    from mmrec.recall.index import VectorIndex

    cfg = IndexConfig(flat_max=1000, ann="hnsw")
    assert choose_kind(1000, cfg) == "flat" and choose_kind(1001, cfg) == "hnsw"
    v, ids, rows = _data(n=100)
    with pytest.raises(InputError, match="unique"):
        VectorIndex.build(v[:2], ["a", "a"], rows[:2], cfg)
    index = VectorIndex.build(v, ids, rows, cfg)
    with pytest.raises(InputError, match=r"float32 \[n, 16\]"):
        index.search(np.zeros((1, 8), np.float32), 5)
    bad = v[:1].copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        index.upsert(["new"], bad, rows[:1])
    with pytest.raises(ValueError, match="price_min"):
        Filters(price_min=10, price_max=5)


@pytest.mark.parametrize("kind", ["ivf_flat", "ivf_sq8"])
def test_ivf_probes_the_lists_that_hold_allowed_items(kind):
    """A filter tied to far-away clusters: a plain nprobe=2 search would scan lists with no
    allowed item; filter-aware probing still returns the true top-k."""
    from mmrec.recall.faiss_index import search_params
    from mmrec.recall.index import VectorIndex

    rng = np.random.default_rng(5)
    centres = rng.normal(size=(40, 16)) * 3
    cluster = rng.integers(0, 40, 4000)
    v = (centres[cluster] + 0.3 * rng.normal(size=(4000, 16))).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    rows = [{"slot": "top", "gender": "men", "category": f"c{c}", "usage": None, "price": 1.0,
             "in_stock": True} for c in cluster]
    ids = [str(i) for i in range(4000)]
    cfg = IndexConfig(ivf={"nlist": 40, "nprobe": 2, "refine_k_factor": 4.0}, exact_below=0, threads=1)
    index = VectorIndex.build(v, ids, rows, cfg, kind=kind)
    q = v[cluster == 0][:5]  # queries from cluster 0, filter on cluster 7's category
    f = Filters(categories=["c7"])
    got = [[i for i, _ in r] for r in index.search(q, 20, f)]
    want = _brute(v, ids, rows, q, 20, f)
    recall = np.mean([len(set(g) & set(w)) / 20 for g, w in zip(got, want)])
    assert recall >= 0.95 and all(len(g) == 20 for g in got)
    # faiss's own probing of the 2 nearest lists finds (almost) nothing allowed there
    selector = faiss.IDSelectorBitmap(4000, faiss.swig_ptr(index._selection(f).bitmap))
    plain = index.index.search(q, 20, params=search_params(kind, cfg, selector, 100, 4000))[1]
    assert np.mean([(row >= 0).sum() for row in plain]) < 10
