"""Signals an explanation cites beyond single items: the outfit's colour harmony (computed
from the taxonomy's colour families) and the shopper's taste (frequent values in their history).
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any, Iterable, Mapping

from mmrec.outfit.items import ItemTable
from mmrec.taxonomy import Taxonomy

# How each harmony key reads in text; the verifier maps the phrase back to its key.
HARMONY_PHRASES = {
    "all neutrals": "neutral colours throughout",
    "one accent": "one accent colour on neutrals",
    "tonal": "tonal colours from one family",
    "accents": "a few accent colours",
}


@functools.lru_cache(maxsize=4096)
def _colour_kind(tax: Taxonomy, colour: str) -> tuple[str | None, bool]:
    return tax.colour_family(colour), tax.is_neutral(colour)


def harmony_of(colours: Iterable[str | None], tax: Taxonomy) -> str | None:
    """Colour-harmony key of an outfit's colours (None when a colour is unknown)."""
    cols = list(colours)
    if not cols or any(c is None for c in cols):
        return None
    kinds = [_colour_kind(tax, c) for c in cols]
    accents = {fam for fam, neutral in kinds if not neutral}
    if not accents:
        return "all neutrals"
    if len(accents) == 1:
        n_acc = sum(1 for _, neutral in kinds if not neutral)
        return "one accent" if n_acc == 1 else "tonal"
    return "accents"


def taste_from_history(items: ItemTable, history: Iterable[Mapping[str, Any]], top: int = 3,
                       min_count: int = 2) -> dict[str, list[str]]:
    """Most frequent colours and categories among a shopper's engaged items."""
    counts: dict[str, Counter] = {"colour": Counter(), "category": Counter()}
    for h in history:
        iid = str(h.get("item_id"))
        if iid not in items.index:
            continue
        row = items.row(iid)
        for fld in counts:
            if row.get(fld):
                counts[fld][row[fld]] += 1
    return {fld: [v for v, n in c.most_common(top) if n >= min_count] for fld, c in counts.items()}
