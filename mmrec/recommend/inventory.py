"""Live inventory: stock and price changes applied to a running recommender, no rebuild.

The change reaches every place a request reads stock or price: the items table (hard masks,
response items), recall's index filters (its metadata; vectors untouched), and the caches that
hold candidates chosen under the old stock (the candidate cache is dropped and the generation
bumped, so the API's response cache starts afresh).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from mmrec.recommend.recommender import next_generation

if TYPE_CHECKING:
    from mmrec.recommend.recommender import Recommender

StockUpdate = tuple[str, "bool | None", "float | None"]  # (item_id, in_stock, price); None: unchanged


def apply_stock(rec: "Recommender", updates: Iterable[StockUpdate]) -> int:
    """Apply ``updates`` (unknown items skipped); returns how many items changed."""
    items = rec.items
    changed: dict[str, dict] = {}
    for item_id, in_stock, price in updates:
        k = items.index.get(item_id)
        if k is None:
            continue
        row = items.rows[k]
        if in_stock is not None:
            row["in_stock"] = bool(in_stock)
            items.in_stock[k] = bool(in_stock)
        if price is not None:
            row["price"] = float(price)
            items.price[k] = float(price)
        changed[item_id] = row
    if not changed:
        return 0
    for index in (getattr(rec.recall, "index", None), getattr(rec.recall, "fresh", None)):
        if index is not None:  # the main index and the live-added vectors, where the item is
            from mmrec.recall.build import meta_row

            index.set_metadata(list(changed), [meta_row(r) for r in changed.values()])
    # candidates chosen under the old stock must not be served again
    rec.candidates.forget()
    rec.generation = next_generation()
    return len(changed)

