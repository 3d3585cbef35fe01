"""Grounded explanations: text built from facts only, and a verifier that re-reads the text.

Facts come from four places and carry their source: item attributes (``catalog``, ``title``
or ``model`` with a confidence, exactly as the items table records them), the scene's rules
that the items satisfy on catalog truth (``scene:<name>``), the shopper (``profile`` and
``history`` matches) and the request (``recall`` routes, the typed ``query``), plus the colour
harmony that the compatibility rules computed (``compat``).

The verifier does not trust the generator. It checks (1) every fact against the truth it
claims to come from (item rows, scene rules, the shopper's history, the recall routes) and
(2) every statement (sentence) of the text: each vocabulary mention (any taxonomy term or
synonym, scene name, harmony phrase) must be the value of a fact, each quoted phrase must be
a fact's value, each percentage a model fact's confidence, and each phrase claiming a source
("your history", "from the title", ...) must be backed by a fact from that source. Text that
fails falls back to the plain template, which is verified the same way.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from mmrec.config import StrictModel
from mmrec.outfit.items import ItemTable
from mmrec.outfit.scenes import Scene, SceneBook
from mmrec.taxonomy import Taxonomy, normalize

ATTRIBUTE_FIELDS = ("category", "colour", "pattern", "material", "fit", "sleeve", "neckline",
                    "usage", "season", "gender")
# Vocabulary fields scanned in text; "slot" is left out because its words ("shoes", "bag")
# are also category synonyms and the templates never name slots.
_SCAN_FIELDS = ATTRIBUTE_FIELDS
# Categories whose plural is also how one item is called.
_PLURAL_NOUNS = ("shoes", "sandals", "heels", "flats", "flip flops", "jeans", "trousers",
                 "shorts", "capris", "leggings", "jeggings", "track pants", "sunglasses",
                 "tights", "gloves", "booties", "boots", "cufflinks", "suspenders", "briefs",
                 "boxers", "lounge pants", "lounge shorts", "rain trousers", "tracksuits",
                 "dungarees", "churidar", "salwar", "patiala", "swimwear")
HARMONY_PHRASES = {
    "all neutrals": "neutral colours throughout",
    "one accent": "one accent colour on neutrals",
    "tonal": "tonal colours from one family",
    "accents": "a few accent colours",
}
# Recall routes that match the typed text (mmrec.recall: CLIP text->image, BM25 on titles).
TEXT_ROUTES = ("text_image", "bm25", "text")
# Phrases that claim where a statement comes from -> the fact source they need.
SOURCE_MARKERS = {
    "your history": "history", "you often": "history",
    "your profile": "profile", "you prefer": "profile",
    "from the title": "title", "per the catalog": "catalog",
    "our tagger": "model", "similar to your photo": "recall:image",
    "matches your search": "recall:query",
}


# normalize() is a regex pipeline; texts repeat the same few hundred terms, so memoise it.
_norm = functools.lru_cache(maxsize=65_536)(normalize)
_SENTENCE = re.compile(r"[^.!?]*[.!?]")
_MEMO_LIMIT = 100_000  # entries per memo before it starts over (bounded memory per replica)
_MARKERS = [(re.compile(rf"\b{re.escape(normalize(m))}\b"), m, src) for m, src in SOURCE_MARKERS.items()]


class Fact(StrictModel):
    item_id: str | None = None  # None: about the whole outfit or the shopper
    field: str
    value: str
    source: str
    confidence: float | None = None


class ExplainConfig(StrictModel):
    max_details: int = 3  # title/model detail statements per outfit
    min_model_confidence: float = 0.6  # model facts below this are not cited


@dataclass
class Explanation:
    text: str
    facts: list[Fact]
    statements: int
    supported: int
    fallback: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return 1.0 if self.statements == 0 else self.supported / self.statements


@dataclass
class ExplainContext:
    """What the explainer may cite beyond the items: the shopper, the request, the photo."""

    scene: Scene
    taste: dict[str, list[str]] = field(default_factory=dict)  # history: field -> top values
    profile_occasions: list[str] = field(default_factory=list)
    routes: dict[str, dict[str, int]] = field(default_factory=dict)  # item -> route -> rank
    query_text: str | None = None
    photo_similar: set[str] = field(default_factory=set)  # items found by the photo
    harmony: str | None = None  # key of HARMONY_PHRASES computed by the caller


def is_plural_noun(cat: str) -> bool:
    return cat.endswith(_PLURAL_NOUNS)


def display_category(cat: str) -> str:
    """How one item of ``cat`` is named in text ("shirts" -> "shirt", "jeans" stays)."""
    if is_plural_noun(cat) or not cat.endswith("s"):
        return cat
    if cat.endswith(("ches", "shes", "sses")):
        return cat[:-2]
    return cat[:-1]


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


class Explainer:
    """Template explanations and their verifier, for one taxonomy and scene book."""

    def __init__(self, taxonomy: Taxonomy, scenes: SceneBook, cfg: ExplainConfig | None = None):
        self.tax = taxonomy
        self.scenes = scenes
        self.cfg = cfg or ExplainConfig()
        vocab: dict[str, set[tuple[str, str]]] = {}

        def add(term: str, fld: str, value: str) -> None:
            key = normalize(term)
            if key:
                vocab.setdefault(key, set()).add((fld, value))

        for fld in _SCAN_FIELDS:
            for term, value in taxonomy.terms(fld):
                add(term, fld, value)
                if fld == "category":
                    add(display_category(value), fld, value)
                    k = normalize(term)
                    for cut in ("es", "s"):
                        if k.endswith(cut) and len(k) > len(cut) + 2:
                            add(k[: -len(cut)], fld, value)
        for name, sc in scenes.scenes.items():
            for term in (name.replace("_", " "), sc.label, *sc.aliases):
                add(term, "scene", name)
        for key, phrase in HARMONY_PHRASES.items():
            add(phrase, "colour_harmony", key)
        self._vocab = vocab
        self._max_ngram = max(len(k.split()) for k in vocab)
        self._rule_cache: dict[tuple, frozenset[str]] = {}
        # Pure functions of immutable inputs, memoised: the same items and sentences recur across
        # requests, and these two were ~1.3 ms of each recommendation's explanations (cProfile).
        self._fact_cache: dict[tuple, Fact | None] = {}
        self._mention_cache: dict[str, tuple[tuple[str, set[tuple[str, str]]], ...]] = {}

    # ------------------------------------------------------------------ generation
    def explain(self, items: ItemTable, item_ids: list[str], ctx: ExplainContext) -> Explanation:
        """Explanation of one outfit; verified, with the template fallback if needed."""
        facts, sentences = self._compose(items, item_ids, ctx, rich=True)
        text = " ".join(sentences)
        problems, n, bad = self._verify(text, facts, items, ctx, item_ids)
        if not problems:
            return Explanation(text, facts, n, n - bad)
        facts, sentences = self._compose(items, item_ids, ctx, rich=False)
        text = " ".join(sentences)
        again, n, bad = self._verify(text, facts, items, ctx, item_ids)
        if again:  # nothing verifiable to say: say nothing rather than something unbacked
            return Explanation("", [], 0, 0, fallback=True, problems=problems + again)
        return Explanation(text, facts, n, n - bad, fallback=True, problems=problems)

    def _item_fact(self, items: ItemTable, item_id: str, fld: str) -> Fact | None:
        # per catalog version and item, like the rule cache (Facts are never mutated)
        return _memo(self._fact_cache, (id(items), items.version, item_id, fld),
                     lambda: self._new_item_fact(items, item_id, fld))

    def _new_item_fact(self, items: ItemTable, item_id: str, fld: str) -> Fact | None:
        a = items.attribute_fact(item_id, fld)
        if a is None:
            return None
        conf = a.get("confidence")
        if a["source"] == "model" and (conf is None or conf < self.cfg.min_model_confidence):
            return None
        return Fact(item_id=item_id, field=fld, value=a["value"], source=a["source"],
                    confidence=None if conf is None else round(float(conf), 2))

    def _compose(self, items: ItemTable, item_ids: list[str], ctx: ExplainContext,
                 rich: bool) -> tuple[list[Fact], list[str]]:
        facts: list[Fact] = []
        sentences: list[str] = []
        sc = ctx.scene
        phrases: dict[str, str] = {}
        for iid in item_ids:
            cat = self._item_fact(items, iid, "category")
            col = self._item_fact(items, iid, "colour")
            facts += [f for f in (cat, col) if f is not None]
            noun = display_category(cat.value) if cat else "item"
            phrases[iid] = f"{col.value} {noun}" if col and col.source != "model" else noun
        facts.append(Fact(field="scene", value=sc.name, source=f"scene:{sc.name}"))
        sentences.append(f"{sc.label} look: {_join([phrases[i] for i in item_ids])}.")
        if not rich:
            return facts, sentences
        # occasion stated by the catalog, when it suits the scene
        suit = []
        for iid in item_ids:
            u = self._item_fact(items, iid, "usage")
            if u is not None and u.source == "catalog" and u.value in sc.usages:
                suit.append((iid, u))
        by_usage: dict[str, list[str]] = {}
        for iid, u in suit:
            facts.append(u)
            by_usage.setdefault(u.value, []).append(iid)
        for usage, iids in by_usage.items():
            sentences.append(f"{usage.capitalize()} wear per the catalog: "
                             f"{_join([phrases[i] for i in iids])}.")
        # details from the title or the tagger
        n_detail = 0
        for iid in item_ids:
            for fld in ("pattern", "material", "fit"):
                f = self._item_fact(items, iid, fld)
                if f is None or n_detail >= self.cfg.max_details or f.source == "catalog":
                    continue
                facts.append(f)
                n_detail += 1
                cat = items.row(iid)["category"]
                noun = display_category(cat)
                be, look = ("are", "look") if is_plural_noun(cat) else ("is", "looks")
                if f.source == "title":
                    sentences.append(f"The {noun} {be} {_attr_phrase(fld, f.value)} (from the title).")
                else:
                    sentences.append(f"The {noun} {look} {_attr_phrase(fld, f.value)} to our tagger "
                                     f"({round(100 * f.confidence)}%).")
        if ctx.harmony in HARMONY_PHRASES:
            facts.append(Fact(field="colour_harmony", value=ctx.harmony, source="compat"))
            sentences.append(f"Colours: {HARMONY_PHRASES[ctx.harmony]}.")
        # scene rules every item satisfies on catalog truth
        rules = self._rules_held(items, item_ids, sc)
        if rules:
            for r in rules:
                facts.append(Fact(field="scene_rule", value=r, source=f"scene:{sc.name}"))
            sentences.append(f"Meets the {sc.label} rules: " + ", ".join(f'"{r}"' for r in rules) + ".")
        # the shopper
        for fld, label in (("colour", "colours"), ("category", "categories")):
            top = set(ctx.taste.get(fld, []))
            hits = []
            for iid in item_ids:
                v = items.row(iid).get(fld)
                if v in top and v not in [h.value for h in hits]:
                    hits.append(Fact(item_id=iid, field=f"history.{fld}", value=v, source="history"))
            if hits:
                facts += hits
                shown = [display_category(h.value) if fld == "category" else h.value for h in hits]
                sentences.append(f"From your history, you often choose {_join(shown)}.")
        occ = [u for u in sc.usages if u in ctx.profile_occasions]
        if occ:
            facts += [Fact(field="profile.occasion", value=u, source="profile") for u in occ[:1]]
            sentences.append(f"Your profile lists {occ[0]} occasions.")
        # the request: photo and typed query
        similar = [i for i in item_ids if i in ctx.photo_similar]
        for iid in similar:
            facts.append(Fact(item_id=iid, field="recall_route", value="image", source="recall"))
            be = "are" if is_plural_noun(items.row(iid)["category"]) else "is"
            sentences.append(f"The {phrases[iid]} {be} similar to your photo.")
        if ctx.query_text:
            texty = [i for i in item_ids if any(r in ctx.routes.get(i, {}) for r in TEXT_ROUTES)]
            if texty:
                facts.append(Fact(field="query", value=ctx.query_text, source="request"))
                for iid in texty:
                    route = next(r for r in TEXT_ROUTES if r in ctx.routes[iid])
                    facts.append(Fact(item_id=iid, field="recall_route", value=route, source="recall"))
                sentences.append(f'{_cap(_join([phrases[i] for i in texty]))} matches your search '
                                 f'"{_quote_safe(ctx.query_text)}".')
        return facts, sentences

    def _rules_held(self, items: ItemTable, item_ids: list[str], sc: Scene) -> list[str]:
        """Reasons of the scene rules that every item they apply to satisfies (catalog truth)."""
        held: list[str] = []
        rows = [items.row(i) for i in item_ids]
        satisfied = [self._satisfied(items, sc, row) for row in rows]
        for r in [*sc.must, *sc.must_not]:
            applicable = [ok for row, ok in zip(rows, satisfied) if r.applies_to(row["slot"])]
            if applicable and all(r.reason in ok for ok in applicable) and r.reason not in held:
                held.append(r.reason)
        return held

    def _satisfied(self, items: ItemTable, sc: Scene, row: dict) -> frozenset[str]:
        # per catalog version, scene and item: rows are immutable within an ItemTable
        return _memo(self._rule_cache, (id(items), items.version, sc.name, row["item_id"]),
                     lambda: frozenset(x.reason for x in sc.satisfied_rules(row)))

    # ------------------------------------------------------------------ verification
    def verify(self, text: str, facts: list[Fact], *, items: ItemTable | None = None,
               ctx: ExplainContext | None = None, item_ids: list[str] | None = None) -> list[str]:
        """Problems found (empty: every statement is backed by facts and every fact is true)."""
        return self._verify(text, facts, items, ctx, item_ids)[0]

    def _verify(self, text: str, facts: list[Fact], items: ItemTable | None,
                ctx: ExplainContext | None, item_ids: list[str] | None) -> tuple[list[str], int, int]:
        """(problems, statements, unsupported statements)."""
        problems = self.check_facts(facts, items=items, ctx=ctx, item_ids=item_ids)
        index = _FactIndex(facts)
        sents = split_statements(text)
        bad = 0
        for sent in sents:
            found = self._check_statement(sent, facts, index)
            bad += bool(found)
            problems += [f"{sent!r}: {p}" for p in found]
        return problems, len(sents), bad

    def statement_precision(self, text: str, facts: list[Fact]) -> tuple[int, int]:
        """(statements, supported statements) of ``text`` against ``facts``."""
        index = _FactIndex(facts)
        sents = split_statements(text)
        return len(sents), sum(1 for s in sents if not self._check_statement(s, facts, index))

    def _check_statement(self, sent: str, facts: list[Fact], index: "_FactIndex") -> list[str]:
        out: list[str] = []
        values = index.values
        quoted = re.findall(r'"([^"]*)"', sent)
        for q in quoted:
            if _norm(q) not in values:
                out.append(f"quoted {q!r} is not a fact")
        bare = re.sub(r'"[^"]*"', " ", sent)
        for pct in re.findall(r"(\d+(?:\.\d+)?)\s*%", bare):
            if not any(f.confidence is not None and round(100 * f.confidence) == round(float(pct))
                       for f in facts):
                out.append(f"{pct}% is no fact's confidence")
        mentions = self.mentions(bare)
        backed_sources: set[str] = set()
        mentioned_items: set[str] = set()
        for term, options in mentions:
            hits = [f for fld, v in options for f in index.lookup(fld, v)]
            if not hits:
                out.append(f"{term!r} ({', '.join(sorted(f'{a}={b}' for a, b in options))}) is not a fact")
            backed_sources.update(f.source for f in hits)
            mentioned_items.update(f.item_id for f in hits if f.item_id is not None)
        # a route claim needs a route fact about an item the statement names
        routes = {f.value for f in facts if f.field == "recall_route" and f.item_id in mentioned_items}
        if "image" in routes:
            backed_sources.add("recall:image")
        if routes - {"image"} and any(_norm(f.value) in map(_norm, quoted)
                                      for f in facts if f.field == "query"):
            backed_sources.add("recall:query")
        low = _norm(bare)
        for pattern, marker, source in _MARKERS:
            if source not in backed_sources and pattern.search(low):
                out.append(f"claims {marker!r} but no {source} fact backs the statement")
        return out

    def mentions(self, text: str) -> tuple[tuple[str, set[tuple[str, str]]], ...]:
        """Vocabulary mentions in ``text``, longest first: (surface term, {(field, value)})."""
        return _memo(self._mention_cache, text, lambda: tuple(self._scan(text)))

    def _scan(self, text: str) -> list[tuple[str, set[tuple[str, str]]]]:
        words = _norm(text).split()
        out = []
        i = 0
        while i < len(words):
            for n in range(min(self._max_ngram, len(words) - i), 0, -1):
                term = " ".join(words[i:i + n])
                hit = self._vocab.get(term)
                if hit:
                    out.append((term, hit))
                    i += n
                    break
            else:
                i += 1
        return out

    def check_facts(self, facts: list[Fact], *, items: ItemTable | None,
                    ctx: ExplainContext | None, item_ids: list[str] | None) -> list[str]:
        """Each fact against the truth it cites."""
        out: list[str] = []
        outfit = set(item_ids or [])
        for f in facts:
            if f.item_id is not None and item_ids is not None and f.item_id not in outfit:
                out.append(f"fact about {f.item_id} which is not in the outfit")
                continue
            if f.field in ATTRIBUTE_FIELDS and f.item_id is not None and items is not None:
                truth = items.attribute_fact(f.item_id, f.field)
                if truth is None or truth["value"] != f.value or truth["source"] != f.source:
                    out.append(f"fact {f.item_id}.{f.field}={f.value!r} ({f.source}) does not match "
                               f"the catalog ({truth and (truth['value'], truth['source'])})")
            elif f.field == "scene" and ctx is not None and f.value != ctx.scene.name:
                out.append(f"scene fact {f.value!r} but the scene is {ctx.scene.name!r}")
            elif f.field == "scene_rule" and ctx is not None and items is not None and item_ids:
                if f.value not in self._rules_held(items, item_ids, ctx.scene):
                    out.append(f"scene rule {f.value!r} is not satisfied by every item")
            elif f.field.startswith("history.") and ctx is not None:
                if f.value not in ctx.taste.get(f.field.split(".", 1)[1], []):
                    out.append(f"history fact {f.value!r} is not in the shopper's history")
            elif f.field == "profile.occasion" and ctx is not None:
                if f.value not in ctx.profile_occasions:
                    out.append(f"profile fact {f.value!r} is not in the profile")
            elif f.field == "recall_route" and ctx is not None and f.item_id is not None:
                ok = (f.item_id in ctx.photo_similar) if f.value == "image" else (
                    f.value in ctx.routes.get(f.item_id, {}))
                if not ok:
                    out.append(f"{f.item_id} was not found by route {f.value!r}")
            elif f.field == "query" and ctx is not None and f.value != ctx.query_text:
                out.append("query fact differs from the request")
            elif f.field == "colour_harmony" and ctx is not None and items is not None and item_ids:
                truth = harmony_of((items.row(i).get("colour") for i in item_ids), self.tax)
                if truth != f.value:
                    out.append(f"colour harmony {f.value!r} but the colours give {truth!r}")
        return out


class _FactIndex:
    """Facts by (vocabulary field, normalised value) for fast statement checks."""

    def __init__(self, facts: list[Fact]):
        self.values = {_norm(f.value) for f in facts}
        self._by: dict[tuple[str, str], list[Fact]] = {}
        for f in facts:
            key = _norm(f.value)
            for fld in _vocab_fields(f.field):
                self._by.setdefault((fld, key), []).append(f)

    def lookup(self, fld: str, value: str) -> list[Fact]:
        return self._by.get((fld, _norm(value)), [])


def _vocab_fields(fact_field: str) -> tuple[str, ...]:
    # "history.colour" facts back colour words, "profile.occasion" backs usage words
    if fact_field.startswith("history."):
        return (fact_field.split(".", 1)[1],)
    if fact_field == "profile.occasion":
        return ("usage",)
    return (fact_field,)


def _memo(cache: dict, key, make):
    """``cache[key]``, made by ``make()`` on a miss (None too); the cache starts over past
    ``_MEMO_LIMIT`` entries, which bounds a replica's memory at no bookkeeping cost per hit."""
    try:
        return cache[key]
    except KeyError:
        pass
    if len(cache) > _MEMO_LIMIT:
        cache.clear()
    value = cache[key] = make()
    return value


def split_statements(text: str) -> list[str]:
    """Sentences of ``text`` (a statement ends with . ! or ? outside quotes)."""
    if '"' not in text:  # no quotes to respect: one regex pass instead of a loop per character
        out = [s for s in map(str.strip, _SENTENCE.findall(text)) if s.strip(".!? ")]
        tail = _SENTENCE.sub("", text).strip()
        return out + [tail] if tail.strip(".!? ") else out
    return _split_quoted(text)


def _split_quoted(text: str) -> list[str]:
    out, buf, quoted = [], [], False
    for ch in text:
        buf.append(ch)
        if ch == '"':
            quoted = not quoted
        elif ch in ".!?" and not quoted:
            s = "".join(buf).strip()
            if s.strip(".!? "):
                out.append(s)
            buf = []
    tail = "".join(buf).strip()
    if tail.strip(".!? "):
        out.append(tail)
    return out


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _attr_phrase(fld: str, value: str) -> str:
    return {"fit": f"{value} fit", "material": f"made of {value}"}.get(fld, value)


def _quote_safe(text: str) -> str:
    return text.replace('"', "'")


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
