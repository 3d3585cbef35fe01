"""Claim-level explanation judge: every statement of an explanation text, checked on truth.

The structured ``facts`` of a response are the system's own account of what it said; this
judge does not read them. It splits the text into statements, recognises what each one
claims by its wording, names the outfit items it refers to by reading the category and
colour words against the items' TRUE attributes, and checks the claim:

- ``outfit``      "Office look: white shirt, navy trousers ..." -> each named item exists in
                  the outfit with that category and colour;
- ``usage``       "Formal wear per the catalog: ..." -> the named items' true occasion;
- ``title``       "The shirt is striped (from the title)." -> the item's title says so;
- ``tagger``      "The shirt looks striped to our tagger (83%)." -> the item's true value;
- ``harmony``     "Colours: neutral colours throughout." -> recomputed from true colours;
- ``scene_rules`` 'Meets the Office rules: "..."' -> each quoted rule holds on truth;
- ``history``     "From your history, you often choose navy." -> the shopper's visible
                  history (items before the held-out cut) holds the value at least twice;
- ``profile``     "Your profile lists formal occasions." -> the persona's profile;
- ``photo``       "The navy trousers are similar to your photo." -> the named item is of the
                  photographed garment's slot, and of its colour family where one is stated;
- ``query``       '... matches your search "..."' -> every named item matches the terms the
                  query states (categories, colour family, gender, negations);
- anything else is ``unchecked``: counted and listed, never assumed true.

A statement whose claim needs a truth that does not exist (a pattern no catalog states) is
unchecked too. Precision is true / (true + false) over all statements of all kinds.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from mmrec.bench.judges import Row, number_variants, truth_value
from mmrec.taxonomy import Taxonomy, normalize

KINDS = ("outfit", "usage", "title", "tagger", "harmony", "scene_rules", "history", "profile",
         "photo", "query", "unchecked")
# The harmony phrases a text may use, by what they claim (recomputed by `_harmony`).
HARMONY_WORDS = {"neutral colours throughout": "all neutrals",
                 "one accent colour on neutrals": "one accent",
                 "tonal colours from one family": "tonal", "a few accent colours": "accents"}
_SENTENCE = re.compile(r'(?:[^."!?]|"[^"]*")*[.!?]|(?:[^."!?]|"[^"]*")+$')


@dataclass
class Claim:
    """One statement and its verdict (True / False / None = unchecked)."""

    text: str
    kind: str
    ok: bool | None
    why: str = ""
    items: list[str] = field(default_factory=list)  # outfit items the statement names

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "kind": self.kind, "ok": self.ok, "why": self.why,
                "items": self.items}


@dataclass
class ClaimContext:
    """The truth a claim may be checked against (never the system's own facts)."""

    scene: Any                                   # mmrec.outfit.scenes.Scene
    rules_held: Sequence[str] = ()               # rule reasons that hold on truth
    history: Mapping[str, Counter] = field(default_factory=dict)  # field -> true value counts
    profile_occasions: Sequence[str] = ()
    photo: Mapping[str, Any] | None = None       # {"slot", "colour_family"} of the photo
    query: Mapping[str, Any] | None = None       # {"categories", "colour_family", "gender", ...}


def split_statements(text: str) -> list[str]:
    """Sentences of ``text``; a full stop inside a quoted phrase does not end one."""
    return [s.strip() for s in _SENTENCE.findall(text or "") if s.strip(" .!?")]


class ClaimJudge:
    """Reads explanation statements with the taxonomy and checks them on catalog truth."""

    def __init__(self, taxonomy: Taxonomy):
        self.tax = taxonomy
        terms: dict[str, tuple[str, str]] = {}
        for fld in ("category", "colour", "pattern", "material", "fit", "usage"):
            for v in taxonomy.values(fld):
                key = normalize(v)
                terms.setdefault(key, (fld, v))
                if fld == "category":
                    for var in number_variants(key):
                        terms.setdefault(var, (fld, v))
        self._terms = terms
        self._pattern = re.compile(r"(?<![\w])(" + "|".join(
            re.escape(k) for k in sorted(terms, key=len, reverse=True)) + r")(?![\w])")

    # -- reading ---------------------------------------------------------------------------
    def mentions(self, text: str) -> list[tuple[str, str]]:
        """(field, canonical value) of each vocabulary term in ``text``, in order."""
        return [self._terms[m.group(1)] for m in self._pattern.finditer(normalize(text))]

    def phrases(self, text: str) -> list[tuple[str, str | None]]:
        """(category, colour or None) of each item the text names: a colour word binds to the
        category word that follows it."""
        out: list[tuple[str, str | None]] = []
        colour = None
        for fld, v in self.mentions(text):
            if fld == "colour":
                colour = v
            elif fld == "category":
                out.append((v, colour))
                colour = None
        return out

    def resolve(self, text: str, rows: Sequence[Row]) -> tuple[list[Row], str | None]:
        """Outfit rows the text names, or (rows so far, why) when a named item is not there."""
        named: list[Row] = []
        for cat, colour in self.phrases(text):
            hits = [r for r in rows if truth_value(r, "category") == cat
                    and (colour is None or truth_value(r, "colour") == colour)]
            if not hits:
                said = f"{colour} {cat}" if colour else cat
                return named, f"names a {said!r}, which no outfit item is on catalog truth"
            named.append(hits[0])
        return named, None

    # -- judging ---------------------------------------------------------------------------
    def judge(self, text: str, rows: Sequence[Row], ctx: ClaimContext) -> list[Claim]:
        return [self.judge_statement(s, rows, ctx) for s in split_statements(text)]

    def judge_statement(self, s: str, rows: Sequence[Row], ctx: ClaimContext) -> Claim:
        low = normalize(s)
        kind = _kind(low, ctx)
        check = getattr(self, f"_check_{kind}", None)
        if check is None:
            return Claim(s, "unchecked", None, "no judge reads this kind of statement")
        named, missing = self.resolve(_unquoted(s), rows) if kind in _NAMING else ([], None)
        ids = [str(r.get("item_id")) for r in named]
        if missing:
            return Claim(s, kind, False, missing, ids)
        ok, why = check(s, low, named, rows, ctx)
        return Claim(s, kind, ok, why, ids)

    def _check_outfit(self, s, low, named, rows, ctx):
        label = normalize(ctx.scene.label)
        if not low.startswith(label):
            return False, f"opens with another scene than {ctx.scene.label!r}"
        return (True, "") if named else (None, "names no item")

    def _check_usage(self, s, low, named, rows, ctx):
        usage = next((v for f, v in self.mentions(low.split("wear per the catalog")[0]) if f == "usage"), None)
        if usage is None or not named:
            return None, "no occasion or item named"
        bad = [str(r["item_id"]) for r in named if truth_value(r, "usage") != usage]
        return (False, f"{bad} are not {usage!r} on catalog truth") if bad else (True, "")

    def _check_title(self, s, low, named, rows, ctx):
        vals = [(f, v) for f, v in self.mentions(low) if f in ("pattern", "material", "fit")]
        if not vals or not named:
            return None, "no detail or item named"
        row = named[0]
        title = f" {normalize(str(row.get('title') or ''))} "
        for fld, v in vals:
            words = [normalize(v), *(normalize(x) for x in (self.tax.spec(fld, v).synonyms or ()))]
            # with the taxonomy's plural rule ("Stripes" says stripe, a synonym of striped)
            if not any(f" {w}{end} " in title for w in words for end in ("", "s", "es")):
                return False, f"the title {row.get('title')!r} does not say {v!r}"
        return True, ""

    def _check_tagger(self, s, low, named, rows, ctx):
        vals = [(f, v) for f, v in self.mentions(low) if f in ("pattern", "material", "fit")]
        if not vals or not named:
            return None, "no detail or item named"
        fld, v = vals[0]
        truth = truth_value(named[0], fld) or _mapped(named[0], fld)
        if truth is None:
            return None, f"the catalog does not state {fld} for {named[0]['item_id']}"
        return (True, "") if truth == v else (False, f"catalog says {fld} {truth!r}, not {v!r}")

    def _check_harmony(self, s, low, named, rows, ctx):
        claimed = next((k for phrase, k in HARMONY_WORDS.items() if phrase in low), None)
        truth = _harmony([truth_value(r, "colour") for r in rows], self.tax)
        if claimed is None or truth is None:
            return None, "harmony phrase or a true colour unknown"
        return (True, "") if claimed == truth else (False, f"true colours give {truth!r}")

    def _check_scene_rules(self, s, low, named, rows, ctx):
        quoted = re.findall(r'"([^"]*)"', s)
        bad = [q for q in quoted if q not in ctx.rules_held]
        if not quoted:
            return None, "no rule quoted"
        return (False, f"rules not met on truth: {bad}") if bad else (True, "")

    def _check_history(self, s, low, named, rows, ctx):
        said = [(f, v) for f, v in self.mentions(low) if f in ("colour", "category")]
        if not said:
            return None, "no value named"
        for fld, v in said:  # "often": at least twice among the items the shopper engaged with
            counts = ctx.history.get(fld) or Counter()
            if counts[v] < 2:
                return False, (f"{v!r} appears {counts[v]} time(s) in the shopper's visible history "
                               f"(most frequent: {[x for x, _ in counts.most_common(3)]})")
        return True, ""

    def _check_profile(self, s, low, named, rows, ctx):
        said = [v for f, v in self.mentions(low) if f == "usage"]
        if not said:
            return None, "no occasion named"
        bad = [v for v in said if v not in ctx.profile_occasions]
        return (False, f"the profile does not list {bad}") if bad else (True, "")

    def _check_photo(self, s, low, named, rows, ctx):
        photo = ctx.photo or {}
        if not named or photo.get("slot") is None:
            return None, "no item named or the photo's slot is unknown"
        for r in named:
            if truth_value(r, "slot") != photo["slot"]:
                return False, (f"{r['item_id']} is a {truth_value(r, 'slot')} item; the photo shows "
                               f"a {photo['slot']} garment")
        stated = [c for c in (c for _, c in self.phrases(_unquoted(s))) if c]
        want = photo.get("colour_family")
        for c in stated:
            if want is not None and self.tax.colour_family(c) != want:
                return False, f"says {c!r}; the photo's colour family is {want!r}"
        return True, ""

    def _check_query(self, s, low, named, rows, ctx):
        q = ctx.query or {}
        terms = [k for k in ("categories", "colour_family", "gender") if q.get(k)]
        if not named:
            return None, "names no item"
        if not terms:
            return False, "the query names no item attribute that an item could match"
        for r in named:
            why = item_misses_query(r, q, self.tax)
            if why:
                return False, f"{r['item_id']} {why}"
        return True, ""


_NAMING = ("outfit", "usage", "title", "tagger", "photo", "query")


def _kind(low: str, ctx: ClaimContext) -> str:
    if "similar to your photo" in low:
        return "photo"
    if "matches your search" in low or "match your search" in low:
        return "query"
    if "your history" in low or "you often" in low:
        return "history"
    if "your profile" in low:
        return "profile"
    if low.startswith("meets the") and "rules" in low:
        return "scene_rules"
    if low.startswith("colours"):
        return "harmony"
    if "from the title" in low:
        return "title"
    if "our tagger" in low:
        return "tagger"
    if "wear per the catalog" in low:
        return "usage"
    if " look " in f" {low} "[: len(normalize(ctx.scene.label)) + 7]:
        return "outfit"
    return "unchecked"


def item_misses_query(row: Row, q: Mapping[str, Any], tax: Taxonomy) -> str | None:
    """Why a catalog row does not match the item terms a query states (None: it matches).

    ``q``: categories (any of), colour_family (of the first category's item, or any item
    when no category is stated), gender, not_categories, not_colour_families.
    """
    cat = truth_value(row, "category")
    fam = tax.colour_family(truth_value(row, "colour"))
    cats = list(q.get("categories") or [])
    if cats and cat not in cats:
        return f"is {cat!r}, the query asks for {cats}"
    want_fam = q.get("colour_family")
    if want_fam and (not cats or cat == cats[0]) and fam != want_fam:
        return f"is {fam!r}, the query asks for {want_fam!r}"
    g = truth_value(row, "gender")
    if q.get("gender") and g not in (q["gender"], "unisex"):
        return f"is {g!r}, the query asks for {q['gender']!r}"
    if cat in (q.get("not_categories") or []):
        return f"is {cat!r}, which the query excludes"
    if fam is not None and fam in (q.get("not_colour_families") or []):
        return f"is {fam!r}, which the query excludes"
    return None


def _mapped(row: Row, fld: str) -> str | None:
    attrs = row.get("attributes") or {}
    if isinstance(attrs, list):
        attrs = dict(attrs)
    v = attrs.get(fld)
    if isinstance(v, Mapping) and v.get("source") in ("catalog", "title"):
        return v.get("value")
    return None


def _harmony(colours: Sequence[str | None], tax: Taxonomy) -> str | None:
    """The harmony class of true colours, computed here from the taxonomy's families."""
    if not colours or any(c is None for c in colours):
        return None
    accents = [tax.colour_family(c) for c in colours if not tax.is_neutral(c)]
    if not accents:
        return "all neutrals"
    if len(set(accents)) == 1:
        return "one accent" if len(accents) == 1 else "tonal"
    return "accents"


def _unquoted(s: str) -> str:
    return re.sub(r'"[^"]*"', " ", s)
