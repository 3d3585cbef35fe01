"""Index artifacts: build from vectors + items, update in place, publish atomically.

Every change writes a new `index/<version>/` (files first, manifest last, then CURRENT is
swapped with an atomic rename), so a reader holding the old version keeps a complete index and
a crash mid-write leaves CURRENT on the previous one. Updates load the current index and apply
adds, re-embeds, metadata changes and removals to it: the FAISS structure is not rebuilt.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.embed.catalog import load_vectors
from mmrec.errors import InputError
from mmrec.recall.config import FILTER_FIELDS, IndexConfig
from mmrec.recall.faiss_index import TOMBSTONE_KINDS
from mmrec.recall.index import VectorIndex
from mmrec.recall.index_files import read_index_dir, write_index_dir

SCHEMA_VERSION = 1
META_FIELDS = (*FILTER_FIELDS, "price", "in_stock")


def _items_rows(store: ArtifactStore, items_version: str) -> dict[str, dict[str, Any]]:
    from mmrec.catalog.ingest import load_items

    table = load_items(store, items_version, columns=["item_id", *META_FIELDS])
    return {r["item_id"]: r for r in table.to_pylist()}


def _items_version_of(vec_art: Artifact, items_ref: str | None) -> str:
    if items_ref:
        return items_ref
    v = vec_art.manifest.get("items_version")
    if not v:
        raise InputError(f"vectors/{vec_art.version} does not record its items version; pass --items")
    return v


def meta_row(row: dict[str, Any] | None) -> dict[str, Any]:
    """An item's filter metadata as the index stores it (stock, price, slot, gender, ...)."""
    # an item missing from the items table keeps no metadata: it fails every value filter
    return {f: (row or {}).get(f) for f in META_FIELDS} | {"in_stock": bool((row or {}).get("in_stock", False))}


def build_index(store: ArtifactStore, cfg: IndexConfig, *, vectors_ref: str | None = None,
                items_ref: str | None = None) -> Artifact:
    """Build a fresh index over a vectors artifact and publish it as the CURRENT `index`."""
    vec_art, table, vectors = load_vectors(store, vectors_ref)
    items_version = _items_version_of(vec_art, items_ref)
    meta = _items_rows(store, items_version)
    ids = table.column("item_id").to_pylist()
    t0 = time.perf_counter()
    index = VectorIndex.build(vectors, ids, [meta_row(meta.get(i)) for i in ids], cfg,
                              encoder_id=vec_art.manifest.get("encoder_id"),
                              tags=table.column("image_sha256").to_pylist())
    build_s = time.perf_counter() - t0
    return publish(store, index, cfg, vectors_version=vec_art.version, items_version=items_version,
                   inputs=[vec_art], metrics={"build_seconds": round(build_s, 2)})


def publish(store: ArtifactStore, index: VectorIndex, cfg: IndexConfig, *, vectors_version: str,
            items_version: str, inputs: Sequence[Artifact] = (),
            metrics: dict[str, Any] | None = None) -> Artifact:
    """Write ``index`` as a new `index` version and swap CURRENT to it."""
    with store.write(kinds.INDEX, config=cfg.model_dump(mode="json"), schema_version=SCHEMA_VERSION) as w:
        write_index_dir(index, w.path, extra_info={"vectors_version": vectors_version,
                                                   "items_version": items_version})
        for art in inputs:
            w.add_artifact_input(art)
        w.add_artifact_input(store.load(kinds.ITEMS, items_version, verify=False))
        w.metrics = {"kind": index.kind, "vectors": index.n_alive, "tombstones": index.n_dead
                     if index.kind in TOMBSTONE_KINDS else 0, "dim": index.dim,
                     "encoder_id": index.encoder_id, **(metrics or {})}
        w.extra.update({"vectors_version": vectors_version, "items_version": items_version,
                        "encoder_id": index.encoder_id})
    return store.load(kinds.INDEX, w.version)


def load_index(store: ArtifactStore, cfg: IndexConfig, version: str | None = None) -> tuple[Artifact, VectorIndex]:
    art = store.load(kinds.INDEX, version)
    return art, read_index_dir(art.path, cfg)


def update_index(store: ArtifactStore, cfg: IndexConfig, *, vectors_ref: str | None = None,
                 items_ref: str | None = None, only_ids: Sequence[str] | None = None,
                 ) -> tuple[Artifact, dict[str, int]]:
    """Add new items, re-embed changed ones and refresh metadata in the CURRENT index (no rebuild)."""
    idx_art, index = load_index(store, cfg)
    vec_art, table, vectors = load_vectors(store, vectors_ref)
    enc = vec_art.manifest.get("encoder_id")
    if enc != index.encoder_id:
        raise InputError(f"vectors/{vec_art.version} were made by {enc!r} but the index holds "
                         f"{index.encoder_id!r} vectors; mixing embedding spaces breaks search. "
                         "Run `mmrec index build` for a new encoder")
    items_version = _items_version_of(vec_art, items_ref)
    meta = _items_rows(store, items_version)
    ids = table.column("item_id").to_pylist()
    shas = table.column("image_sha256").to_pylist()
    wanted = None if only_ids is None else set(only_ids)
    if wanted is not None and (unknown := wanted - set(ids)):
        raise InputError(f"{len(unknown)} id(s) are not in vectors/{vec_art.version}, e.g. "
                         f"{sorted(unknown)[:5]}; embed them first (`mmrec embed catalog`)")
    up_pos, meta_ids = [], []
    for p, (iid, sha) in enumerate(zip(ids, shas)):
        if wanted is not None and iid not in wanted:
            continue
        if iid not in index or index.tag_of(iid) != sha or sha is None:
            up_pos.append(p)
        else:
            meta_ids.append(iid)
    stats = {"added": 0, "updated": 0, "metadata": 0}
    if up_pos:
        up_ids = [ids[p] for p in up_pos]
        stats["added"], stats["updated"] = index.upsert(
            up_ids, vectors[up_pos], [meta_row(meta.get(i)) for i in up_ids], [shas[p] for p in up_pos])
    current = index.metadata_of(meta_ids)
    changed = [(i, meta_row(meta.get(i))) for i, cur in zip(meta_ids, current)
               if cur != meta_row(meta.get(i))]
    if changed:
        stats["metadata"] = index.set_metadata([i for i, _ in changed], [r for _, r in changed])
    art = publish(store, index, cfg, vectors_version=vec_art.version, items_version=items_version,
                  inputs=[idx_art, vec_art], metrics={"update": stats})
    return art, stats


def remove_from_index(store: ArtifactStore, cfg: IndexConfig, *, ids: Sequence[str] = (),
                      missing: bool = False, vectors_ref: str | None = None,
                      ) -> tuple[Artifact, dict[str, int]]:
    """Remove ``ids`` (and, with ``missing``, items absent from a vectors artifact) from CURRENT."""
    idx_art, index = load_index(store, cfg)
    targets = list(dict.fromkeys(ids))
    inputs = [idx_art]
    if missing:
        vec_art, table, _ = load_vectors(store, vectors_ref)
        present = set(table.column("item_id").to_pylist())
        targets += [i for i in index.label_of if i not in present]
        inputs.append(vec_art)
    unknown = sum(1 for i in targets if i not in index)
    removed = index.remove(targets)
    info = store.load(kinds.INDEX, idx_art.version).manifest
    art = publish(store, index, cfg, vectors_version=info.get("vectors_version", ""),
                  items_version=info["items_version"], inputs=inputs,
                  metrics={"update": {"removed": removed}})
    return art, {"removed": removed, "unknown": unknown}
