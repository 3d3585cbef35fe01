"""Live catalog changes: new, replaced and deleted items applied to a running recommender.

Stock and price changes keep the catalog's shape and are applied in place
(`mmrec.recommend.inventory`). Adding or deleting an item changes the shape every per-item
array and cache is built over (hard masks, scene fit, pair compatibility, the lexical and
attribute routes), so a batch holding one builds a *derived* recommender instead: the same
scenes, models, ranker, users and recall index over the changed rows. The caller swaps it in
with one assignment (`RecommenderHolder.swap`); requests in flight finish on the old one.

A deleted item is a tombstone:
- gone from the derived recommender's items, so no mask, pool, anchor or answer can hold it
  (recall hits are kept only when they are in the items table);
- flagged dead in the shared FAISS index (`VectorIndex.tombstone`: flags only, faiss itself is
  not touched, so searches running in other threads are safe), which keeps its vector until
  `mmrec index compact` writes an index artifact without it.

A new (or re-embedded) item's vector, when the API made one with the loaded encoder, goes to a
small flat "fresh" index rebuilt at each change and searched beside the main one
(`Recall.with_catalog`); without a vector the item is still found by the catalog-filter path
and the attribute / lexical routes, which are rebuilt over the new rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from mmrec.outfit.items import ItemTable
from mmrec.recommend.inventory import apply_stock

if TYPE_CHECKING:
    # (op, item_id, in_stock, price, body): one stored change (`FeedbackStore.catalog_changes_since`)
    from mmrec.feedback.store import CatalogChange as Change
    from mmrec.recall.index import VectorIndex
    from mmrec.recommend.recommender import Recommender


@dataclass
class LiveCatalog:
    """What a recommender carries beyond its artifacts: the live-added vectors and the deletions.

    ``fresh``: item id -> (unit vector, source tag) of vectors made by the API's encoder.
    ``deleted``: ids deleted since the artifacts (tombstones).
    """

    fresh: dict[str, tuple[list[float], str | None]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)


def apply_changes(rec: Any, changes: Iterable[Change], *, seq: int | None = None) -> tuple[Any, int]:
    """Apply stored changes to ``rec``; returns (the recommender to serve, items changed).

    Only stock/price changes: applied in place, the same object comes back. Any upsert or
    delete: a derived recommender comes back (the caller swaps it in); ``rec`` is left serving
    its requests in flight, except that deleted items are already dead in the shared index.
    ``seq`` (the last change's sequence number) is reported in the derived one's versions.
    """
    changes = list(changes)
    if all(op == "stock" for op, *_ in changes):
        return rec, apply_stock(rec, [(i, st, p) for _, i, st, p, _ in changes])
    # deleted items leave the running recommender's in-stock answers at once (in place, fast),
    # before the derived one (which takes a second or so to build) replaces it
    apply_stock(rec, [(i, False, None) for op, i, *_ in changes if op == "delete"])
    control = getattr(rec, "control", None)  # an A/B router: derive its control, re-split
    base = control if control is not None else rec
    derived, n = derive(base, changes, seq=seq)
    return (rec.with_base(derived) if control is not None else derived), n


def derive(rec: "Recommender", changes: list[Change], *, seq: int | None = None
           ) -> tuple["Recommender", int]:
    """A recommender over ``rec``'s catalog with ``changes`` applied (see the module doc)."""
    from mmrec.recommend.recommender import Recommender

    live = getattr(rec, "live", None) or LiveCatalog()
    fresh, deleted = dict(live.fresh), set(live.deleted)
    rows: dict[str, dict[str, Any]] = {r["item_id"]: r for r in rec.items.rows}
    index = getattr(rec.recall, "index", None)
    enc_id = getattr(index, "encoder_id", None)
    dead: set[str] = set()  # ids whose vector in the main index no longer describes them
    touched: set[str] = set()
    for op, item_id, in_stock, price, body in changes:
        if op == "stock":
            if item_id in rows:
                r = dict(rows[item_id])  # the old recommender keeps its own row until swapped out
                if in_stock is not None:
                    r["in_stock"] = bool(in_stock)
                if price is not None:
                    r["price"] = float(price)
                rows[item_id] = r
                touched.add(item_id)
        elif op == "delete":
            if rows.pop(item_id, None) is not None:
                deleted.add(item_id)
                fresh.pop(item_id, None)
                dead.add(item_id)
                touched.add(item_id)
        elif op == "upsert":
            row = item_row(body["row"])
            old = rows.get(item_id)
            rows[item_id] = row  # a replaced item keeps its place; a new one goes last
            deleted.discard(item_id)
            touched.add(item_id)
            vec = body.get("vector")
            if vec is not None and enc_id is not None and body.get("encoder_id") == enc_id:
                if item_id in index and np.allclose(index.vector_of(item_id), vec, atol=1e-6):
                    fresh.pop(item_id, None)  # `mmrec index compact` put this vector in the index
                    dead.discard(item_id)
                else:
                    fresh[item_id] = (vec, row.get("image_sha256"))
                    dead.add(item_id)
            elif old is not None and old.get("image_sha256") != row.get("image_sha256"):
                fresh.pop(item_id, None)  # a new photo and no vector for it: the old one is wrong
                dead.add(item_id)
        else:
            raise ValueError(f"unknown catalog change op {op!r}")
    items = ItemTable.from_rows(list(rows.values()), rec.items.version, rec.items.taxonomy)
    _carry_vectors(rec.items, items, fresh)
    recall = rec.recall
    if recall is not None:
        if index is not None:
            index.tombstone(dead)
            from mmrec.recall.build import meta_row

            kept = [i for i in touched if i in index and i in rows]
            index.set_metadata(kept, [meta_row(rows[i]) for i in kept])
        recall = recall.with_catalog(_recall_table(items.rows), _fresh_index(fresh, rows, index))
    versions = dict(rec.versions)
    if seq is not None:
        versions["catalog_seq"] = str(seq)
    out = Recommender(items, rec.scenes, recall=recall, ranker=rec.ranker, users=rec.users,
                      photo=rec.photo, priors=rec.priors, config=rec.cfg, taxonomy=rec.tax,
                      versions=versions, notes=rec.load_notes, users_simulated=rec.users_simulated,
                      slot_calibrator=rec.photos.calibrator, photo_refs=rec.photos.refs)
    out.live = LiveCatalog(fresh, deleted)
    return out, len(touched)


def item_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored upsert row in `ItemTable`'s row form (attributes a dict, no updated_at)."""
    out = dict(row)
    out["attributes"] = dict(out.get("attributes") or {})
    out.pop("updated_at", None)
    return out


def _carry_vectors(old: ItemTable, new: ItemTable, fresh: dict[str, tuple[list[float], str | None]]) -> None:
    """Compatibility embeddings of the new table: the old rows' own, the fresh vectors, else zero."""
    if old.vectors is None:
        return
    out = np.zeros((len(new), old.vectors.shape[1]), np.float32)
    for k, iid in enumerate(new.ids):
        if iid in fresh and len(fresh[iid][0]) == out.shape[1]:
            out[k] = fresh[iid][0]
        elif (p := old.index.get(iid)) is not None:
            out[k] = old.vectors[p]
    new.vectors, new.vector_source = out, old.vector_source


def _recall_table(rows: list[dict[str, Any]]):
    """The rows as the table recall's catalog routes read (they never read ``attributes``)."""
    import pyarrow as pa

    return pa.Table.from_pylist([{k: v for k, v in r.items() if k != "attributes"} for r in rows])


def _fresh_index(fresh: dict[str, tuple[list[float], str | None]], rows: dict[str, dict[str, Any]],
                 main: "VectorIndex | None") -> "VectorIndex | None":
    """A flat index of the live-added vectors (rebuilt whole: a few thousand at most between
    compactions, milliseconds), with the items' filter metadata."""
    ids = [i for i in fresh if i in rows]
    if not ids or main is None:
        return None
    from mmrec.recall.build import meta_row
    from mmrec.recall.index import VectorIndex

    vecs = np.asarray([fresh[i][0] for i in ids], np.float32)
    return VectorIndex.build(vecs, ids, [meta_row(rows[i]) for i in ids], main.cfg,
                             encoder_id=main.encoder_id, kind="flat", tags=[fresh[i][1] for i in ids])
