"""Slot and category co-occurrence priors learned from Polyvore outfits (a generated artifact).

Polyvore users assembled outfits by hand; how often two kinds of item appear together is a
prior for "do these go in one outfit" that no single catalog can give. Polyvore's fine-grained
categories are mapped onto the taxonomy's categories (synonyms first, then a small table
below for names the taxonomy does not list); its semantic categories map onto slots. The
table is small (counts per category and per pair) and is written as
``artifacts/outfit_priors/<version>/priors.json``; the raw data is never copied.

Score of a pair: smoothed pointwise mutual information squashed to (0, 1) with a logistic,
backing off from categories to slots when a category is rare.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from mmrec import kinds
from mmrec.artifacts import ArtifactStore, Artifact
from mmrec.config import StrictModel
from mmrec.errors import InputError
from mmrec.taxonomy import Taxonomy, default_taxonomy

FILE = "priors.json"

SEMANTIC_SLOT = {
    "tops": "top", "bottoms": "bottom", "all-body": "one-piece", "outerwear": "outerwear",
    "shoes": "shoes", "bags": "bag", "jewellery": "accessory", "accessories": "accessory",
    "hats": "accessory", "scarves": "accessory", "sunglasses": "accessory",
}
# Polyvore names that the taxonomy's synonyms do not cover (after dropping a "male " prefix).
EXTRA_NAMES = {
    "purse": "handbags", "winter hat": "hat", "turtleneck sweater": "sweaters",
    "one-piece swimsuit": "swimwear", "swimsuit top": "swimwear", "swimsuit bottom": "swimwear",
    "jacket/coat": "jackets", "closed shoes": "casual shoes", "long skirt": "skirts",
    "heeled boots": "boots", "over-the-knee boots": "boots", "flat boots": "booties",
    "platform shoes": "heels", "bodie": "bodysuit", "pyjama pants": "lounge pants",
    "sports long-sleeve shirt": "tshirts", "formal jacket": "blazers", "suit jacket": "blazers",
    "activity wristband": "wristbands", "set/suit": "suits", "cufflings": "cufflinks",
    "knee-length shorts": "shorts", "sports shorts": "shorts", "sports shirt": "tshirts",
    "polos": "tshirts", "suit pants": "trousers", "swim shorts": "swimwear",
}


class PriorsConfig(StrictModel):
    """How pair counts become scores."""

    smoothing: float = 1.0  # added to every count (Laplace) before the PMI
    min_category_count: int = 15  # below this many outfits a category backs off to its slot
    temperature: float = 1.0  # PMI is divided by this before the logistic


def map_category(name: str, tax: Taxonomy) -> str | None:
    """Taxonomy category of a Polyvore fine-grained category name, or None."""
    base = name.strip()
    if base.lower().startswith("male "):
        base = base[5:]
    base = base.lower()
    return tax.canonical("category", EXTRA_NAMES.get(base, base))


def build_priors(source: str | Path, taxonomy: Taxonomy | None = None) -> dict[str, Any]:
    """Count slot and category (pair) occurrences over every outfit file in ``source``.

    Args:
        source: the Polyvore folder holding categories.csv, train_category.json (item ->
            category id) and outfit lists (train/valid/test.json, whichever exist).
    """
    tax = taxonomy or default_taxonomy()
    src = Path(source)
    need = [src / "categories.csv", src / "train_category.json"]
    missing = [p.name for p in need if not p.is_file()]
    outfit_files = [src / f"{n}.json" for n in ("train", "valid", "test") if (src / f"{n}.json").is_file()]
    if missing or not outfit_files:
        raise InputError(f"{src} is not a Polyvore Outfits folder: missing "
                         f"{missing or ['train/valid/test.json']}")
    cat_names: dict[str, tuple[str | None, str | None]] = {}
    with open(src / "categories.csv", newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) >= 3:
                cat_names[row[0].strip()] = (map_category(row[1], tax),
                                             SEMANTIC_SLOT.get(row[2].strip()))
    item_cat: dict[str, str] = json.loads((src / "train_category.json").read_text(encoding="utf-8"))
    cats, cat_pairs, slots, slot_pairs = Counter(), Counter(), Counter(), Counter()
    n_outfits = n_items = n_mapped = 0
    unmapped: Counter = Counter()
    for path in outfit_files:
        for outfit in json.loads(path.read_text(encoding="utf-8")):
            oc, os_ = set(), set()
            for it in outfit.get("items", []):
                n_items += 1
                cid = item_cat.get(str(it.get("item_id")))
                cat, slot = cat_names.get(cid, (None, None)) if cid else (None, None)
                if slot is None:
                    continue
                os_.add(slot)
                if cat is not None and tax.slot_of(cat) == slot:
                    oc.add(cat)
                    n_mapped += 1
                else:
                    unmapped[cid] += 1
            if len(os_) < 2:
                continue
            n_outfits += 1
            cats.update(oc)
            slots.update(os_)
            cat_pairs.update("|".join(p) for p in combinations(sorted(oc), 2))
            slot_pairs.update("|".join(p) for p in combinations(sorted(os_), 2))
    if n_outfits == 0:
        raise InputError(f"{src}: no outfit with two mapped slots; check the files")
    return {
        "n_outfits": n_outfits, "n_items": n_items, "n_category_mapped": n_mapped,
        "categories": dict(cats), "category_pairs": dict(cat_pairs),
        "slots": dict(slots), "slot_pairs": dict(slot_pairs),
        "files": [p.name for p in outfit_files],
    }


def write_priors(store: ArtifactStore, source: str | Path, cfg: PriorsConfig | None = None,
                 taxonomy: Taxonomy | None = None) -> Artifact:
    """Build the priors from ``source`` and write a new ``outfit_priors`` artifact."""
    cfg = cfg or PriorsConfig()
    table = build_priors(source, taxonomy)
    with store.write(kinds.OUTFIT_PRIORS, config=cfg.model_dump(mode="json")) as w:
        (w.path / FILE).write_text(json.dumps(table, indent=0, sort_keys=True), encoding="utf-8")
        for name in ("categories.csv", "train_category.json", *table["files"]):
            w.add_input(Path(source) / name)
        w.metrics = {k: table[k] for k in ("n_outfits", "n_items", "n_category_mapped")}
        w.metrics["category_coverage"] = round(table["n_category_mapped"] / max(1, table["n_items"]), 4)
        w.metrics["n_categories"] = len(table["categories"])
    return store.load(kinds.OUTFIT_PRIORS)


class CooccurrencePriors:
    """Pair scores in (0, 1) from the counts; 0.5 means "no evidence either way"."""

    def __init__(self, table: dict[str, Any], cfg: PriorsConfig | None = None, version: str = "inline"):
        self.cfg = cfg or PriorsConfig()
        self.version = version
        self.n = float(table["n_outfits"])
        self.cats: dict[str, int] = table["categories"]
        self.cat_pairs: dict[str, int] = table["category_pairs"]
        self.slots: dict[str, int] = table["slots"]
        self.slot_pairs: dict[str, int] = table["slot_pairs"]

    @classmethod
    def load(cls, store: ArtifactStore, version: str | None = None) -> "CooccurrencePriors":
        art = store.load(kinds.OUTFIT_PRIORS, version)
        table = json.loads(art.file(FILE).read_text(encoding="utf-8"))
        return cls(table, PriorsConfig.model_validate(art.config), art.version)

    def _pmi(self, na: float, nb: float, nab: float) -> float:
        a = self.cfg.smoothing
        return math.log((nab + a) * (self.n + a) / ((na + a) * (nb + a)))

    def _squash(self, pmi: float) -> float:
        return 1.0 / (1.0 + math.exp(-pmi / self.cfg.temperature))

    def slot_score(self, sa: str, sb: str) -> float:
        if sa == sb:
            return 0.5
        key = "|".join(sorted((sa, sb)))
        return self._squash(self._pmi(self.slots.get(sa, 0), self.slots.get(sb, 0),
                                      self.slot_pairs.get(key, 0)))

    def score(self, cat_a: str, slot_a: str, cat_b: str, slot_b: str) -> float:
        """Prior that items of these categories (in these slots) share an outfit."""
        na, nb = self.cats.get(cat_a, 0), self.cats.get(cat_b, 0)
        if min(na, nb) < self.cfg.min_category_count:
            return self.slot_score(slot_a, slot_b)
        key = "|".join(sorted((cat_a, cat_b)))
        return self._squash(self._pmi(na, nb, self.cat_pairs.get(key, 0)))

    def category_matrix(self, categories: list[str], tax: Taxonomy) -> np.ndarray:
        """[C, C] scores for the taxonomy's categories, for vectorised lookups."""
        slots = [tax.slot_of(c) for c in categories]
        m = np.full((len(categories), len(categories)), 0.5, dtype=np.float32)
        for i, (ca, sa) in enumerate(zip(categories, slots)):
            for j in range(i + 1, len(categories)):
                m[i, j] = m[j, i] = self.score(ca, sa, categories[j], slots[j])
        return m
