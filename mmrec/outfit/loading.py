"""Catalog extras loaded beside the items: the tagger's predictions and the item embeddings."""

from __future__ import annotations

from mmrec import kinds
from mmrec.artifacts import ArtifactStore
from mmrec.errors import ArtifactNotFound
from mmrec.outfit.items import ItemTable


def merge_predictions(items: ItemTable, store: ArtifactStore) -> int:
    """Add the tagger's catalog predictions to the attributes map where the catalog and the
    title rules are silent (source ``model`` with its confidence); returns how many."""
    if store.current_version(kinds.ATTRIBUTE_PREDICTIONS) is None:
        return 0
    import pyarrow.parquet as pq

    art = store.load(kinds.ATTRIBUTE_PREDICTIONS)
    names = [n for n in art.manifest["files"] if n.endswith(".parquet")]
    if not names:
        return 0
    table = pq.read_table(art.file(names[0]), columns=["item_id", "field", "value", "confidence"])
    added = 0
    for iid, fld, value, conf in zip(*(table.column(c).to_pylist() for c in
                                       ("item_id", "field", "value", "confidence"))):
        k = items.index.get(iid)
        if k is None or fld in ("category", "gender", "slot"):
            continue  # catalog columns are never overridden, not even shown alongside
        attrs = items.rows[k]["attributes"]
        if fld not in attrs and items.taxonomy.is_valid(fld, value):
            attrs[fld] = {"value": value, "source": "model", "confidence": round(float(conf), 4)}
            added += 1
    return added


def attach_vectors(items: ItemTable, store: ArtifactStore, version: str | None) -> str | None:
    """Give compatibility the catalog embeddings the index was built from (the ``vectors``
    artifact); returns the version attached, or None when there is none."""
    from mmrec.embed.catalog import load_vectors

    try:
        art, table, vecs = load_vectors(store, version)
    except ArtifactNotFound:
        return None
    items.attach_vectors(table.column("item_id").to_pylist(), vecs, f"vectors/{art.version}")
    return art.version
