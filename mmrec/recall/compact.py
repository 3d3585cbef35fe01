"""Fold live catalog changes into a new index artifact (``mmrec index compact``).

While serving, `POST /v1/admin/catalog` never edits the FAISS structure: a deleted or
re-embedded item is a tombstone in the main index (flags only) and a new vector lives in a small
side index (`mmrec.recommend.catalog_live`). Both grow until this runs: it loads the CURRENT
index, removes every item deleted or re-photographed since, adds the stored vectors of new and
re-embedded items, rebuilds the structure from the live vectors (`VectorIndex.compact`: no
tombstones, labels renumbered) and publishes a new version. Servers pick it up like any index
update (the holder's watcher or ``/v1/admin/reload``); the stored changes are still replayed on
top and are idempotent there (a delete of an absent item and a re-add of the same vector
change nothing).

Run it from cron or after a bulk change; how often is a trade between the side index's size
(exact search, so its cost grows with it) and one index rebuild.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.recall.build import load_index, meta_row, publish
from mmrec.recall.config import IndexConfig

if TYPE_CHECKING:
    from mmrec.feedback.store import CatalogChange as Change


def fold(changes: Iterable[Change], encoder_id: str | None, tag_of: Callable[[str], str | None]
         ) -> tuple[set[str], dict[str, tuple[list[float], dict[str, Any]]], dict[str, dict[str, Any]]]:
    """(ids to drop from the index, id -> (vector, row) to add, id -> stock/price now) after
    ``changes`` in order; vectors of another encoder are not added (their space differs).

    An upsert without a vector keeps the indexed vector when the photo is the same one
    (``tag_of``: the image sha256 the indexed vector was made from), as the server does."""
    drop: set[str] = set()
    add: dict[str, tuple[list[float], dict[str, Any]]] = {}
    stock: dict[str, dict[str, Any]] = {}
    for op, item_id, in_stock, price, body in changes:
        if op == "delete":
            drop.add(item_id)
            add.pop(item_id, None)
        elif op == "upsert":
            vec, row = body.get("vector"), dict(body["row"])
            if vec is not None and body.get("encoder_id") == encoder_id:
                drop.add(item_id)  # the old vector (if any) no longer describes the item
                add[item_id] = (vec, row)
            elif item_id in add:
                if add[item_id][1].get("image_sha256") == row.get("image_sha256"):
                    add[item_id] = (add[item_id][0], row)
                else:
                    del add[item_id]
            elif tag_of(item_id) != row.get("image_sha256"):
                drop.add(item_id)  # a new photo and no vector of it: the old vector is wrong
        elif op == "stock":
            s = stock.setdefault(item_id, {})
            if in_stock is not None:
                s["in_stock"] = bool(in_stock)
            if price is not None:
                s["price"] = float(price)
    for iid, s in stock.items():
        if iid in add:
            add[iid][1].update(s)
    return drop, add, stock


def compact_index(store: ArtifactStore, cfg: IndexConfig, changes: Iterable[Change], *,
                  through_seq: int | None = None) -> tuple[Artifact, dict[str, Any]]:
    """Publish the CURRENT index with ``changes`` folded in and no tombstones; returns stats."""
    t0 = time.perf_counter()
    art, index = load_index(store, cfg)
    drop, add, stock = fold(changes, index.encoder_id, index.tag_of)
    keep_upserts = [i for i in drop if i in add and i in index]  # unchanged vectors stay as they are
    same = {i for i in keep_upserts
            if np.allclose(index.vector_of(i), np.asarray(add[i][0], np.float32), atol=1e-6)}
    removed = index.remove(sorted(drop - same))
    new = [i for i in add if i not in same]
    added = 0
    if new:
        vecs = np.asarray([add[i][0] for i in new], np.float32)
        added = sum(index.upsert(new, vecs, [meta_row(add[i][1]) for i in new],
                                 [add[i][1].get("image_sha256") for i in new]))
    live = [i for i in stock if i in index and i not in add]
    if live:  # stock and price now, so that the artifact's filters match the served catalog
        rows = index.metadata_of(live)
        index.set_metadata(live, [{**r, **stock[i]} for i, r in zip(live, rows)])
    dead = index.n_dead
    if dead:
        index.compact()
    manifest = art.manifest
    stats = {"removed": removed, "added": added, "tombstones_dropped": dead,
             "vectors": index.n_alive, "through_seq": through_seq,
             "seconds": round(time.perf_counter() - t0, 3)}
    out = publish(store, index, cfg, vectors_version=manifest.get("vectors_version", ""),
                  items_version=manifest["items_version"], inputs=[art], metrics={"compact": stats})
    return out, stats
