"""Judges: small pure functions that score one answer against ground truth.

Ground truth is what the system under test never sees at request time: catalog attributes
(``items.parquet`` rows), held-out interactions and the true attributes of held-out photos.
Judges never read the system's own claims about items (predicted attributes, its compatibility
score, its rule checks): a rule is judged on the catalog row of the item, so a system that
mislabels an item cannot talk its way past a judge. The checks are re-implemented here from
the scene data rather than calling the composer's helpers, so a bug there is not mirrored.

Every judge is deterministic and takes plain Python values (rows as mappings), so each can be
tested on hand-made inputs with known answers (tests/test_bench_judges.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from mmrec.taxonomy import SLOTS, Taxonomy, normalize

Row = Mapping[str, Any]

# How dressed-up each occasion is (the judge's own scale; 0 sport .. 3 formal).
FORMALITY = {"sports": 0, "casual": 1, "travel": 1, "smart casual": 2, "party": 2, "ethnic": 2,
             "formal": 3}
# Slots whose formality must agree; watches, bags and belts go with most outfits.
GARMENT_SLOTS = ("top", "bottom", "one-piece", "outerwear", "shoes")
# Accent colour-family pairs that a stylist would call a clash when worn together.
CLASHES = frozenset(frozenset(p) for p in (("red", "pink"), ("red", "orange"), ("pink", "orange"),
                                           ("purple", "yellow"), ("green", "pink"),
                                           ("red", "green")))
ADULT_GENDERS = {"men", "women", "boys", "girls"}
# Fields whose values the explanation text may mention; gender and slot are structural words.
TEXT_FIELDS = ("category", "colour", "pattern", "material", "fit", "sleeve", "neckline",
               "usage", "season")


@dataclass(frozen=True)
class Failure:
    """One failed check, shown in the report's gallery: which check, which item, and why."""

    check: str
    item_id: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "item_id": self.item_id, "detail": self.detail}


# -- catalog truth -----------------------------------------------------------------------------

def truth_value(row: Row, field: str) -> str | None:
    """The catalog's value of ``field`` for an item, or None when the catalog does not know it.

    A column value whose recorded provenance is a model prediction is not ground truth: a
    judge must not score the tagger (or the composer) against the tagger's own output.
    """
    value = row.get(field)
    if value is None:
        return None
    attrs = row.get("attributes") or {}
    if isinstance(attrs, list):  # pyarrow map -> list of (key, struct) pairs
        attrs = dict(attrs)
    prov = attrs.get(field)
    if isinstance(prov, Mapping) and prov.get("source") == "model":
        return None
    return str(value)


# -- scene rules and outfit structure ----------------------------------------------------------

def rule_failures(scene: Any, row: Row, slot: str) -> list[str]:
    """Why ``row`` (catalog truth) may not fill ``slot`` of ``scene``; empty when it may.

    Semantics follow configs/scenes.yaml: a ``must`` rule fails on an unknown value (the
    catalog cannot show it holds); a ``must_not`` rule passes on one (nothing shows a breach).
    """
    out: list[str] = []
    spec = scene.slots.get(slot)
    category = truth_value(row, "category")
    if spec is None:
        out.append(f"slot {slot!r} is not part of scene {scene.name!r}")
    elif category not in spec.categories:
        out.append(f"category {category!r} not allowed as {slot} for {scene.name}")
    for r in scene.must:
        if r.slots is None or slot in r.slots:
            v = truth_value(row, r.field)
            if v not in r.values:
                out.append(f"must: {r.field} in {list(r.values)} ({r.reason}); catalog says {v!r}")
    for r in scene.must_not:
        if r.slots is None or slot in r.slots:
            v = truth_value(row, r.field)
            if v is not None and v in r.values:
                out.append(f"must not: {r.field} {v!r} ({r.reason})")
    return out


def judge_scene_rules(scene: Any, outfit: Sequence[tuple[str, Row]]) -> list[Failure]:
    """Scene rule breaches of one outfit, item by item, on catalog truth."""
    fails: list[Failure] = []
    for slot, row in outfit:
        for why in rule_failures(scene, row, slot):
            fails.append(Failure("scene_rule", str(row.get("item_id")), why))
    return fails


def judge_structure(scene: Any, outfit: Sequence[tuple[str, Row]]) -> tuple[bool, list[bool], list[Failure]]:
    """Completeness and slot validity of one outfit.

    Returns:
        (complete, valid per item, failures): complete when the claimed slots are exactly one of
        the scene's templates AND every item really is of its claimed slot (catalog truth);
        an item's slot is valid when the catalog slot matches the claim and the scene uses it.
    """
    fails: list[Failure] = []
    valid: list[bool] = []
    for slot, row in outfit:
        true_slot = truth_value(row, "slot")
        ok = true_slot == slot and slot in scene.slots
        if not ok:
            fails.append(Failure("slot", str(row.get("item_id")),
                                 f"returned as {slot!r}, catalog slot is {true_slot!r}"
                                 + ("" if slot in scene.slots else f"; {scene.name} has no {slot}")))
        valid.append(ok)
    claimed = sorted(slot for slot, _ in outfit)
    matches = any(sorted(t) == claimed for t in scene.all_templates())
    if not matches:
        fails.append(Failure("template", None, f"slots {claimed} match no template of "
                                               f"{scene.name}: {[list(t) for t in scene.all_templates()]}"))
    return matches and all(valid), valid, fails


# -- constraints -------------------------------------------------------------------------------

def gender_ok(item_gender: str | None, shopper_gender: str | None) -> bool:
    """An item suits the shopper unless both genders are known and differ (unisex suits all)."""
    if shopper_gender is None or item_gender is None or item_gender == "unisex":
        return True
    return item_gender == shopper_gender


def judge_gender(outfit: Sequence[tuple[str, Row]], shopper_gender: str | None) -> tuple[list[bool], bool, list[Failure]]:
    """(violation per item, outfit mixes men's and women's ranges, failures) on catalog truth."""
    per_item, fails = [], []
    for _, row in outfit:
        g = truth_value(row, "gender")
        bad = not gender_ok(g, shopper_gender)
        per_item.append(bad)
        if bad:
            fails.append(Failure("gender", str(row.get("item_id")),
                                 f"item is {g!r}, shopper asked for {shopper_gender!r}"))
    groups = {truth_value(r, "gender") for _, r in outfit} & ADULT_GENDERS
    mixed = len(groups) > 1
    if mixed:
        fails.append(Failure("gender", None, f"outfit mixes {sorted(groups)}"))
    return per_item, mixed, fails


def known_price(p: Any) -> bool:
    """Whether a catalog price is stated (None and NaN are not)."""
    return p is not None and not (isinstance(p, float) and math.isnan(p))


def judge_budget(outfit: Sequence[tuple[str, Row]], budget: float | None) -> tuple[bool | None, list[Failure]]:
    """Whether an outfit breaks a total budget; None when no budget or a price is unknown."""
    if budget is None:
        return None, []
    prices = [row.get("price") for _, row in outfit]
    if not all(known_price(p) for p in prices):
        return None, []
    total = float(sum(prices))
    if total > budget:
        return True, [Failure("budget", None, f"outfit costs {total:.2f} > budget {budget:.2f}")]
    return False, []


# -- compatibility and diversity -----------------------------------------------------------------

def compatibility(rows: Sequence[Row], taxonomy: Taxonomy) -> float | None:
    """Style coherence of an outfit in [0, 1]: mean of formality agreement and colour harmony.

    Formality: 1 - spread/3 of the garments' occasion levels. Colour: 1 with at most one accent
    (non-neutral) colour family, 0.75 with two, 0.5 with three, 0.25 beyond; halved when two
    accents clash. None when neither component has evidence.
    """
    parts: list[float] = []
    levels = [FORMALITY[u] for r in rows if truth_value(r, "slot") in GARMENT_SLOTS
              for u in [truth_value(r, "usage")] if u in FORMALITY]
    if len(levels) >= 2:
        parts.append(1.0 - (max(levels) - min(levels)) / 3.0)
    colours = [truth_value(r, "colour") for r in rows]
    known = [c for c in colours if taxonomy.colour_family(c) is not None]
    if len(known) >= 2:
        accents = {taxonomy.colour_family(c) for c in known if not taxonomy.is_neutral(c)}
        harmony = {0: 1.0, 1: 1.0, 2: 0.75, 3: 0.5}.get(len(accents), 0.25)
        if any(frozenset((a, b)) in CLASHES for a in accents for b in accents if a < b):
            harmony *= 0.5
        parts.append(harmony)
    return sum(parts) / len(parts) if parts else None


def diversity_within(rows: Sequence[Row], taxonomy: Taxonomy) -> float | None:
    """Distinct colour families / items with a known colour (1: no two items share a family)."""
    fams = [taxonomy.colour_family(truth_value(r, "colour")) for r in rows]
    fams = [f for f in fams if f is not None]
    return len(set(fams)) / len(fams) if len(fams) >= 2 else None


def diversity_across(outfits: Sequence[Sequence[str]]) -> tuple[float | None, float | None]:
    """(1 - mean pairwise Jaccard of item sets, share of item slots that repeat an earlier item).

    Both None with fewer than two outfits. Repeats are what "no item repeated" forbids.
    """
    sets = [set(o) for o in outfits if o]
    if len(sets) < 2:
        return None, None
    jac = [len(a & b) / len(a | b) for i, a in enumerate(sets) for b in sets[i + 1:]]
    seen: set[str] = set()
    repeats = total = 0
    for o in outfits:
        for item in o:
            total += 1
            repeats += item in seen
        seen.update(o)
    return 1.0 - sum(jac) / len(jac), repeats / total


def coverage(recommended: Iterable[str], catalog_slots: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """Share of the catalog (per slot and in total) that appears in some answer.

    Args:
        recommended: every item id returned in the run (repeats allowed).
        catalog_slots: item id -> slot, for the items that could be recommended (in stock).
    """
    seen = set(recommended) & set(catalog_slots)
    per: dict[str, list[int]] = {}
    for item, slot in catalog_slots.items():
        c = per.setdefault(slot, [0, 0])
        c[0] += item in seen
        c[1] += 1
    out = {s: {"value": hit / n, "count": n} for s, (hit, n) in sorted(per.items())}
    out["total"] = {"value": len(seen) / max(len(catalog_slots), 1), "count": len(catalog_slots)}
    return out


# -- explanations --------------------------------------------------------------------------------

def _same(a: Any, b: Any) -> bool:
    return a is not None and b is not None and normalize(str(a)) == normalize(str(b))


def judge_fact(fact: Mapping[str, Any], rows: Mapping[str, Row], context: Mapping[str, Any]) -> bool | None:
    """Whether one stated fact is true: True, False, or None when nothing can check it.

    Item facts (``item_id`` set) are checked against the item's catalog row: the item must be
    in the outfit and the catalog must hold the stated value (column or attributes map). A
    model-sourced fact about a field the catalog does not know cannot be checked (None); one
    that contradicts the catalog is false. Other facts are checked against ``context``: the
    scene (its name, label, usages, seasons and rule reasons) and the shopper profile the
    benchmark sent.
    """
    item_id, field, value = fact.get("item_id"), fact.get("field"), fact.get("value")
    if item_id is not None and str(field).startswith("history."):
        # "this item's colour matches your history": true on the item AND in the history
        seen = context.get(str(field))
        inner = judge_fact({**fact, "field": str(field)[len("history."):]}, rows, context)
        if inner is not True or seen is None:
            return inner
        return any(_same(value, h) for h in seen)
    if item_id is not None:
        row = rows.get(str(item_id))
        if row is None:
            return False  # a fact about an item that is not in the outfit
        truth = truth_value(row, str(field)) if field in row else None
        attrs = row.get("attributes") or {}
        if isinstance(attrs, list):
            attrs = dict(attrs)
        mapped = attrs.get(field)
        if truth is None and isinstance(mapped, Mapping) and mapped.get("source") != "model":
            truth = mapped.get("value")
        if truth is None:
            return None
        if isinstance(value, (list, tuple)):
            return any(_same(v, truth) for v in value)
        return _same(value, truth)
    known = context.get(str(field))
    if known is None:
        return None
    values = value if isinstance(value, (list, tuple)) else [value]
    pool = known if isinstance(known, (list, tuple, set)) else [known]
    return all(any(_same(v, k) for k in pool) for v in values)


def scan_mentions(text: str, taxonomy: Taxonomy, fields: Sequence[str] = TEXT_FIELDS) -> list[str]:
    """Canonical taxonomy values named in ``text`` (longest match first, each span used once).

    Only canonical values and their simple plural/singular forms are matched: synonyms such as
    "polo" or "henley" belong to several fields and would make the judge guess.
    """
    norm = f" {normalize(text)} "
    terms: dict[str, str] = {}
    # "top", "bag": slot words every outfit description uses, never a claim about a category
    structural = {normalize(s) for s in SLOTS} | {"shoe", "bags"}
    values = [(normalize(v), v) for f in fields for v in taxonomy.values(f)]
    for key, v in values:  # canonical forms first: a variant never shadows a real value
        terms.setdefault(key, v)
    for key, v in values:
        for variant in number_variants(key):
            terms.setdefault(variant, v)
    found: list[str] = []
    for key in sorted(set(terms) - structural, key=len, reverse=True):
        pat = re.compile(rf"(?<=\s){re.escape(key)}(?=\s)")
        while True:
            m = pat.search(norm)
            if m is None:
                break
            found.append(terms[key])
            norm = norm[: m.start()] + "#" * len(key) + norm[m.end():]
    return found


def number_variants(key: str) -> list[str]:
    """Singular/plural spellings of a value: "watches" -> "watch", "caps" -> "cap", "belt" -> "belts"."""
    if key.endswith(("ches", "shes", "sses", "xes")):
        return [key[:-2]]
    if key.endswith("s") and not key.endswith("ss") and len(key) > 3:
        return [key[:-1]]
    return [key + "s"]


def judge_text(text: str, facts: Sequence[Mapping[str, Any]], rows: Mapping[str, Row],
               context: Mapping[str, Any], taxonomy: Taxonomy) -> list[tuple[str, bool]]:
    """Each attribute value the explanation text names, and whether it is grounded.

    Grounded: stated by a fact that ``judge_fact`` does not find false, or true of some outfit
    item on catalog truth, or part of the request context (scene vocabulary, shopper profile).
    """
    grounded: set[str] = set()
    for f in facts:
        if judge_fact(f, rows, context) is not False:
            vals = f.get("value")
            for v in vals if isinstance(vals, (list, tuple)) else [vals]:
                if v is not None:
                    grounded.add(normalize(str(v)))
    for row in rows.values():
        for field in TEXT_FIELDS:
            v = truth_value(row, field)
            if v is not None:
                grounded.add(normalize(v))
    for v in context.values():
        for x in v if isinstance(v, (list, tuple, set)) else [v]:
            if isinstance(x, str):
                grounded.add(normalize(x))
    return [(m, normalize(m) in grounded) for m in scan_mentions(text, taxonomy)]


# -- query relevance ---------------------------------------------------------------------------

def matches(row: Row, expect: Mapping[str, str]) -> bool:
    """True when the catalog row holds every expected attribute value."""
    return all(_same(truth_value(row, f), v) for f, v in expect.items())


def judge_text_match(outfit_rows: Sequence[Row], expect: Mapping[str, str]) -> bool | None:
    """A text query ("navy blue shirt") is honoured when some outfit item matches it all."""
    if not expect:
        return None
    return any(matches(r, expect) for r in outfit_rows)


def judge_photo_match(outfit: Sequence[tuple[str, Row]], photo: Row, field: str) -> bool | None:
    """The outfit item in the photo's slot shares ``field`` with the photographed product.

    None when the outfit has no item in that slot (the look was completed around the photo
    rather than with a look-alike) or the catalog does not know the field for the photo.
    """
    slot, want = truth_value(photo, "slot"), truth_value(photo, field)
    same_slot = [r for s, r in outfit if s == slot]
    if want is None or not same_slot:
        return None
    return any(_same(truth_value(r, field), want) for r in same_slot)


# -- component probes ----------------------------------------------------------------------------

def tagging_correct(pred: Mapping[str, Any], truth: Row, fields: Sequence[str]) -> dict[str, bool]:
    """Per field, whether the tagger's value equals catalog truth (fields the catalog knows)."""
    out: dict[str, bool] = {}
    for f in fields:
        t = truth_value(truth, f)
        if t is None:
            continue
        p = pred.get(f)
        if isinstance(p, Mapping):
            p = p.get("value")
        out[f] = _same(p, t)
    return out
