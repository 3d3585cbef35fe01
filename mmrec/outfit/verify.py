"""The verifier of explanations: it does not trust the generator.

It checks (1) every fact against the truth it claims to come from (item rows, scene rules, the
shopper's history, the recall routes) and (2) every statement (sentence) of the text: each
vocabulary mention (any taxonomy term or synonym, scene name, harmony phrase) must be the
value of a fact, each quoted phrase must be a fact's value, each percentage a model fact's
confidence, and each phrase claiming a source ("your history", "from the title", ...) must be
backed by a fact from that source.
"""

from __future__ import annotations

import functools
import re
from typing import Callable

from mmrec.lru import bounded_memo
from mmrec.outfit.facts import ATTRIBUTE_FIELDS, ExplainContext, Fact
from mmrec.outfit.items import ItemTable
from mmrec.outfit.scenes import Scene, SceneBook
from mmrec.outfit.taste import HARMONY_PHRASES, harmony_of
from mmrec.outfit.wording import display_category, split_statements
from mmrec.taxonomy import Taxonomy, normalize

# Vocabulary fields scanned in text; "slot" is left out because its words ("shoes", "bag")
# are also category synonyms and the templates never name slots.
_SCAN_FIELDS = ATTRIBUTE_FIELDS
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
_MARKERS = [(re.compile(rf"\b{re.escape(normalize(m))}\b"), m, src) for m, src in SOURCE_MARKERS.items()]


class Verifier:
    """Checks explanation texts and facts for one taxonomy and scene book."""

    def __init__(self, taxonomy: Taxonomy, scenes: SceneBook):
        self.tax = taxonomy
        self.scenes = scenes
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
        # Pure functions of immutable inputs, memoised: the same items and sentences recur across
        # requests, and these (with the generator's item facts) were ~1.3 ms of each
        # recommendation's explanations (cProfile).
        self._rule_cache: dict[tuple, frozenset[str]] = {}
        self._mention_cache: dict[str, tuple[tuple[str, set[tuple[str, str]]], ...]] = {}

    def rules_held(self, items: ItemTable, item_ids: list[str], sc: Scene,
                   known: Callable[[str, str], bool] | None = None) -> list[str]:
        """Reasons of the scene rules that every item they apply to satisfies (catalog truth).

        With ``known(item_id, field)``, a rule is also left out when an item it applies to has
        its field unknown or only guessed (a new arrival's unsure tagger reading): the rule may
        hold, but it cannot be said to."""
        held: list[str] = []
        rows = [items.row(i) for i in item_ids]
        satisfied = [self._satisfied(items, sc, row) for row in rows]
        for r in [*sc.must, *sc.must_not]:
            applicable = [(row, ok) for row, ok in zip(rows, satisfied) if r.applies_to(row["slot"])]
            if (applicable and all(r.reason in ok for _, ok in applicable) and r.reason not in held
                    and (known is None or all(known(row["item_id"], r.field) for row, _ in applicable))):
                held.append(r.reason)
        return held

    def _satisfied(self, items: ItemTable, sc: Scene, row: dict) -> frozenset[str]:
        # per catalog version, scene and item: rows are immutable within an ItemTable
        return bounded_memo(self._rule_cache, (id(items), items.version, sc.name, row["item_id"]),
                            lambda: frozenset(x.reason for x in sc.satisfied_rules(row)))

    def verify(self, text: str, facts: list[Fact], *, items: ItemTable | None = None,
               ctx: ExplainContext | None = None, item_ids: list[str] | None = None) -> list[str]:
        """Problems found (empty: every statement is backed by facts and every fact is true)."""
        return self.verify_counts(text, facts, items, ctx, item_ids)[0]

    def verify_counts(self, text: str, facts: list[Fact], items: ItemTable | None,
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
        named = any(f.field == "query_match" and f.item_id in mentioned_items for f in facts)
        if named and any(_norm(f.value) in map(_norm, quoted) for f in facts if f.field == "query"):
            backed_sources.add("recall:query")
        low = _norm(bare)
        for pattern, marker, source in _MARKERS:
            if source not in backed_sources and pattern.search(low):
                out.append(f"claims {marker!r} but no {source} fact backs the statement")
        return out

    def mentions(self, text: str) -> tuple[tuple[str, set[tuple[str, str]]], ...]:
        """Vocabulary mentions in ``text``, longest first: (surface term, {(field, value)})."""
        return bounded_memo(self._mention_cache, text, lambda: tuple(self._scan(text)))

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
                if f.value not in self.rules_held(items, item_ids, ctx.scene):
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
            elif f.field == "query_match" and ctx is not None and f.item_id not in ctx.query_matches:
                out.append(f"{f.item_id} is not an item the query names")
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
