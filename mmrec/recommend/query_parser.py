"""Shoppers' typed queries, English, Chinese (Simplified or Traditional) or mixed, read into
constraints: gender, wanted and excluded taxonomy values, a price ceiling, the scene an occasion
implies, and what was understood (``terms``) or not (``unknown_terms``).

How a query is read:
1. NFKC (full-width letters, digits and ``＜`` become ASCII), Traditional -> Simplified (OpenCC),
   casefold, apostrophes dropped (``women's`` -> ``womens``, as :func:`mmrec.taxonomy.normalize`).
2. Price ceilings are cut out first ("under 2000", "2000元以内", "不超过两千"), so that their
   numbers and words are neither attributes nor unknown.
3. Chinese runs are segmented by a private jieba tokenizer that knows the taxonomy's ``zh`` terms
   and the cue words; English words are matched longest phrase first against the taxonomy's
   terms and synonyms (the vocabulary explanations cite), with its plural and spacing rules
   (:meth:`Taxonomy.canonical`). A Chinese word the segmenter keeps whole but no term names
   (白衬衫) is read as its terms when they cover it entirely (白 + 衬衫), else reported unknown.
4. Negation cues ("no", "without", "不要", "别要") exclude the terms that follow, across lists
   ("no heels or prints"), until punctuation, a positive word ("but", "要") or an unknown word.
5. Context cues ("for", "to go with" after a wanted item; 配 ... 的) mark what the wanted item
   goes with: "black belt for formal trousers" wants a belt, not trousers (``context``).

Pure Python (no torch); the segmenter and OpenCC load on first use.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from mmrec.errors import InputError
from mmrec.outfit.scenes import SceneBook
from mmrec.recommend import query_lexicon as lex
from mmrec.recommend.query_price import price_spans
from mmrec.recommend.zh_text import Segmenter, has_cjk, to_simplified
from mmrec.taxonomy import Taxonomy, normalize

# Taxonomy fields a shopper can name, in the order a word that names several is read (a
# category wins: "polo" is a polo shirt before a polo collar). Slot last: "footwear", "配饰".
PARSE_FIELDS = ("category", "colour", "pattern", "material", "fit", "sleeve", "neckline",
                "usage", "season", "gender", "slot")  # fmt: skip
# Fields that describe a garment (a context cue makes them describe what the wanted item goes
# with); occasion and season words describe the outing ("for a summer date") and stay wanted.
_GARMENT_FIELDS = frozenset(("category", "colour", "pattern", "material", "fit", "sleeve", "neckline", "slot"))
MAX_QUERY_CHARS = 1000  # the API caps query_text at 200; this bounds the parser for any caller
# Length words that are also dress synonyms or plural forms ("mini", "short" -> shorts): before
# another category they describe it ("short dress", "maxi skirt") and are not a second category.
_LENGTH_WORDS = frozenset(("short", "mini", "midi", "maxi"))
_NEG, _POS, _CONJ, _CTX = ("_cue", "neg"), ("_cue", "pos"), ("_cue", "conj"), ("_cue", "context")

_CJK_CHARS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"(?P<run>[a-z0-9{_CJK_CHARS}]+)|(?P<sep>[,;.!?，。；！？:：()（）\[\]【】\n\x00]+)"
                    r"|(?P<conj>[、/])|(?P<other>\S)")
_ASCII_WORD = re.compile(r"[a-z0-9]+")
_DROP = re.compile(r"['\u2019`]")


@dataclass(frozen=True)
class QueryTerm:
    """One understood span: its text as read, what it names, and whether it was negated.

    ``field`` is a taxonomy field, ``"scene"`` (value: a scene name) or ``"price_max"``.
    """

    text: str
    field: str
    value: str | float
    negated: bool = False
    context: bool = False  # what the wanted item goes with ("for formal trousers"), not wanted

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "field": self.field, "value": self.value, "negated": self.negated,
                "context": self.context}


@dataclass(frozen=True)
class ParsedQuery:
    """What a typed query states. Empty text gives an empty query (no constraint)."""

    text: str
    lang: str | None = None  # "en", "zh", "mixed"; None when there is no word
    gender: str | None = None  # the one gender stated; None when none or several
    wanted: dict[str, tuple[str, ...]] = field(default_factory=dict)
    excluded: dict[str, tuple[str, ...]] = field(default_factory=dict)
    context: dict[str, tuple[str, ...]] = field(default_factory=dict)  # what it goes with
    price_max: float | None = None
    scenes: tuple[str, ...] = ()  # scenes the occasion words imply, in the order stated
    terms: tuple[QueryTerm, ...] = ()
    unknown_terms: tuple[str, ...] = ()

    @property
    def scene(self) -> str | None:
        """The first scene the text implies, if any."""
        return self.scenes[0] if self.scenes else None

    def to_dict(self) -> dict[str, Any]:
        """The shape apps receive (``query: {terms, unknown_terms, ...}``)."""
        return {
            "lang": self.lang, "gender": self.gender, "price_max": self.price_max,
            "scene": self.scene, "wanted": {k: list(v) for k, v in self.wanted.items()},
            "excluded": {k: list(v) for k, v in self.excluded.items()},
            "context": {k: list(v) for k, v in self.context.items()},
            "terms": [t.to_dict() for t in self.terms], "unknown_terms": list(self.unknown_terms),
        }  # fmt: skip


@dataclass
class _Span:
    text: str
    kind: str  # "read" (has readings), "stop", "unknown", "sep", "price"
    readings: frozenset = frozenset()
    price: float | None = None


class QueryParser:
    """Reads queries with one taxonomy and (optionally) one scene book; build once, reuse.

    Args:
        taxonomy: attribute words (English terms and synonyms, ``zh`` terms).
        scenes: occasion words (scene names, labels, aliases, and the lexicon's Chinese words
            for the scenes the book has); None reads no occasions.
    """

    def __init__(self, taxonomy: Taxonomy, scenes: SceneBook | None = None):
        self.tax = taxonomy
        en: dict[str, set] = {}
        zh: dict[str, set] = {}

        def add(vocab: dict[str, set], term: str, reading: tuple) -> None:
            key = normalize(term) if vocab is en else "".join(term.casefold().split())
            if key:
                vocab.setdefault(key, set()).add(reading)

        for fld in PARSE_FIELDS:
            for term, value in taxonomy.terms(fld):
                if (fld, value) != ("slot", "other"):  # "misc" is no outfit constraint
                    add(en, term, (fld, value))
        for term, pairs in taxonomy.zh_terms().items():
            for fld, value in pairs:
                if fld in PARSE_FIELDS and (fld, value) != ("slot", "other"):
                    add(zh, term, (fld, value))
        if scenes is not None:
            for name, sc in scenes.scenes.items():
                for term in (name.replace("_", " "), sc.label, *sc.aliases):
                    add(en, term, ("scene", name))
                for term in lex.OCCASIONS_ZH.get(name, ()):
                    add(zh, term, ("scene", name))
        for gender, cues in lex.GENDER_CUES.items():
            for cue in cues:
                add(zh if has_cjk(cue) else en, cue, ("gender", gender))
        for cues, reading in ((lex.NEGATION_EN, _NEG), (lex.POSITIVE_EN, _POS)):
            for cue in cues:
                en.setdefault(normalize(cue), set()).add(reading)
        for cues, reading in ((lex.NEGATION_ZH, _NEG), (lex.POSITIVE_ZH, _POS)):
            for cue in cues:
                zh.setdefault(cue, set()).add(reading)
        for cue in lex.CONTEXT_EN:
            en.setdefault(normalize(cue), set()).add(_CTX)
        for cue in lex.CONTEXT_ZH:
            zh.setdefault(cue, set()).add(_CTX)
        for cue in lex.CONJUNCTIONS:
            (zh if has_cjk(cue) else en).setdefault(cue, set()).add(_CONJ)
        self._en = {k: frozenset(v) for k, v in en.items()}
        self._zh = {k: frozenset(v) for k, v in zh.items()}
        self._en_max = max(len(k.split()) for k in self._en)
        self._zh_max = max(len(k) for k in self._zh)
        # compact keys of every English term (and plural variants), to try the taxonomy's
        # forgiving lookup only where it can hit
        self._compact = {normalize(t).replace(" ", "") for f in PARSE_FIELDS for t, _ in taxonomy.terms(f)}
        self._segmenter = Segmenter([*self._zh, *lex.STOP_ZH])

    def warm(self) -> "QueryParser":
        """Load the segmenter and OpenCC now (~0.5 s) rather than in the first Chinese request."""
        self._segmenter.cut(to_simplified("連衣裙"))
        return self

    # ------------------------------------------------------------------------------ reading
    def parse(self, text: str | None) -> ParsedQuery:
        """Read one query. Raises InputError for non-strings and texts over MAX_QUERY_CHARS."""
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise InputError(f"query text must be a string, got {type(text).__name__} {text!r}")
        if len(text) > MAX_QUERY_CHARS:
            raise InputError(f"query text has {len(text)} characters; at most {MAX_QUERY_CHARS} "
                             "are read (shorten it to the words that matter)")
        prepared = _DROP.sub("", to_simplified(unicodedata.normalize("NFKC", text)).casefold())
        spans = self._spans(prepared)
        return self._resolve(text, spans)

    def _spans(self, text: str) -> list[_Span]:
        spans: list[_Span] = []
        pos = 0
        for start, end, value in price_spans(text):
            spans += self._word_spans(text[pos:start])
            spans.append(_Span(text[start:end].strip(), "price", price=value))
            pos = end
        return spans + self._word_spans(text[pos:])

    def _word_spans(self, text: str) -> list[_Span]:
        # tokens: ("en", word) | ("zh", word) | ("sep", text) | ("conj", text)
        tokens: list[tuple[str, str]] = []
        for m in _TOKEN.finditer(text):
            kind = m.lastgroup
            if kind == "run":
                run = m.group()
                words = self._segmenter.cut(run) if has_cjk(run) else [run]
                for w in words:
                    tokens += [("en", x) for x in _ASCII_WORD.findall(w)] if not has_cjk(w) else [("zh", w)]
            elif kind in ("sep", "conj"):
                tokens.append((kind, m.group()))
            # "other" (-, &, +, quotes...): joins words, as normalize() treats it
        out: list[_Span] = []
        i = 0
        while i < len(tokens):
            kind, tok = tokens[i]
            if kind == "sep":
                out.append(_Span(tok, "sep"))
                i += 1
            elif kind == "conj":
                out.append(_Span(tok, "read", frozenset({_CONJ})))
                i += 1
            else:
                n, spans = (self._en_at if kind == "en" else self._zh_at)(tokens, i)
                out += spans
                i += n
        return out

    def _en_at(self, tokens: list[tuple[str, str]], i: int) -> tuple[int, list[_Span]]:
        run = [t for _, t in _run(tokens, i, "en", self._en_max)]
        for n in range(len(run), 0, -1):
            phrase = " ".join(run[:n])
            # exact entries and the forgiving lookup together: "top" is exactly a slot and,
            # with the plural rule, the category tops, which wins
            readings = self._en.get(phrase, frozenset()) | self._forgiving(phrase)
            if readings:
                return n, [_Span(phrase, "read", readings)]
        word = run[0]
        return 1, [_Span(word, "stop" if word in lex.STOP_EN else "unknown")]

    def _forgiving(self, phrase: str) -> frozenset:
        """The taxonomy's own lookup (spacing, plural s/es) where the exact table has no entry."""
        c = phrase.replace(" ", "")
        if len(c) < 3 or not any(v in self._compact for v in (c, c + "s", c + "es", c[:-1], c[:-2])):
            return frozenset()
        hits = set()
        for fld in PARSE_FIELDS:
            value = self.tax.canonical(fld, phrase)
            if value is not None and (fld, value) != ("slot", "other"):
                hits.add((fld, value))
        return frozenset(hits)

    def _zh_at(self, tokens: list[tuple[str, str]], i: int) -> tuple[int, list[_Span]]:
        run = [t for _, t in _run(tokens, i, "zh", 4)]
        for n in range(len(run), 0, -1):
            word = "".join(run[:n])
            if word in self._zh:
                return n, [_Span(word, "read", self._zh[word])]
        word = run[0]
        if word in lex.STOP_ZH:
            return 1, [_Span(word, "stop")]
        return 1, self._cover(word)

    def _cover(self, word: str) -> list[_Span]:
        """A segmenter word no term names, read as terms and stop words covering it entirely
        (longest first: 白衬衫 -> 白 + 衬衫); otherwise the whole word is unknown."""
        out: list[_Span] = []
        j = 0
        while j < len(word):
            for n in range(min(self._zh_max, len(word) - j), 0, -1):
                piece = word[j:j + n]
                if piece in self._zh or piece in lex.STOP_ZH:
                    out.append(_Span(piece, "read", self._zh[piece]) if piece in self._zh
                               else _Span(piece, "stop"))
                    j += n
                    break
            else:
                return [_Span(word, "unknown")]
        return out

    # ------------------------------------------------------------------------------ resolving
    def _resolve(self, text: str, spans: list[_Span]) -> ParsedQuery:
        terms: list[QueryTerm] = []
        unknown: list[str] = []
        neg = False  # inside a negation
        neg_head = False  # the negation has already excluded a category (the phrase's noun)
        conj = False  # a conjunction since the last negated term
        ctx = False  # inside what the wanted item goes with ("for formal trousers", 配西裤的)
        for k, sp in enumerate(spans):
            if sp.kind == "sep":
                neg = ctx = False
                continue
            if sp.kind == "price":
                terms.append(QueryTerm(sp.text, "price_max", sp.price))
                neg = ctx = False
                continue
            if sp.kind == "stop":
                continue  # filler keeps a negation open: "not in black", "不要太花"
            if sp.kind == "unknown":
                unknown.append(sp.text)
                neg = False
                continue
            readings = sp.readings
            if _CTX in readings and not neg and (has_cjk(sp.text) or any(
                    t.field == "category" and not (t.negated or t.context) for t in terms)):
                ctx = True
                continue
            if _NEG in readings:
                neg, neg_head, conj, ctx = True, False, False, False
                continue
            if _POS in readings:
                neg = ctx = False
                continue
            if _CONJ in readings:
                conj = True
                continue
            nxt = spans[k + 1] if k + 1 < len(spans) else None
            next_is_category = nxt is not None and nxt.kind == "read" and any(
                f == "category" for f, _ in nxt.readings)
            if sp.text in _LENGTH_WORDS and next_is_category:
                unknown.append(sp.text)  # a length we cannot filter on yet, not a category
                continue
            attrs = _choose(readings, next_is_category)
            if neg and neg_head and not conj:
                neg = False  # "不要高跟鞋 红色连衣裙": a new phrase after the excluded noun
            genders = [v for f, v in readings if f == "gender"]
            if genders and not attrs:
                attrs = [("gender", v) for v in sorted(set(genders))]
            for f, v in [*attrs, *lex.IMPLIED_ZH.get(sp.text, ())]:
                negated = neg and f != "gender"
                terms.append(QueryTerm(sp.text, f, v, negated, context=ctx and f in _GARMENT_FIELDS))
            for name in sorted({v for f, v in readings if f == "scene"}):
                terms.append(QueryTerm(sp.text, "scene", name, neg))
            if any(f == "gender" for f, _ in attrs):
                neg = False
            elif neg:
                neg_head = neg_head or any(f == "category" for f, _ in attrs)
                conj = False
        return _collect(text, terms, unknown)


def _choose(readings: frozenset, next_is_category: bool) -> list[tuple[str, str]]:
    """Taxonomy readings of a span in the one field it is read as ([] when it names none but
    gender). A word that names a category and another field reads as the other field before a
    category ("knit dress", "denim jacket"); two plain categories are both wanted ("kurta
    pyjama")."""
    fields = [f for f in PARSE_FIELDS if f != "gender" and any(r[0] == f for r in readings)]
    if not fields:
        return []
    if fields[0] == "category" and next_is_category and len(fields) > 1:
        fields = fields[1:]
    return [(fields[0], v) for v in sorted(v for f, v in readings if f == fields[0])]


def _run(tokens: list[tuple[str, str]], i: int, kind: str, limit: int) -> list[tuple[str, str]]:
    out = []
    while i < len(tokens) and tokens[i][0] == kind and len(out) < limit:
        out.append(tokens[i])
        i += 1
    return out


def _collect(text: str, terms: list[QueryTerm], unknown: list[str]) -> ParsedQuery:
    wanted: dict[str, list[str]] = {}
    excluded: dict[str, list[str]] = {}
    context: dict[str, list[str]] = {}
    genders: list[str] = []
    scenes: list[str] = []
    prices: list[float] = []
    for t in terms:
        if t.field == "price_max":
            prices.append(float(t.value))
        elif t.field == "scene":
            if not t.negated and t.value not in scenes:
                scenes.append(str(t.value))
        elif t.field == "gender":
            if t.value not in genders:
                genders.append(str(t.value))
        else:
            bucket = context if t.context else excluded if t.negated else wanted
            values = bucket.setdefault(t.field, [])
            if t.value not in values:
                values.append(str(t.value))
    understood = {t.text for t in terms}
    unknown_out = tuple(dict.fromkeys(u for u in unknown if u not in understood))
    has_zh = has_cjk(text)
    has_en = re.search(r"[A-Za-z]{2,}", unicodedata.normalize("NFKC", text)) is not None
    lang = "mixed" if has_zh and has_en else "zh" if has_zh else "en" if has_en else None
    return ParsedQuery(
        text=text, lang=lang, gender=genders[0] if len(genders) == 1 else None,
        wanted={k: tuple(v) for k, v in wanted.items()},
        excluded={k: tuple(v) for k, v in excluded.items()},
        context={k: tuple(v) for k, v in context.items()},
        price_max=min(prices) if prices else None, scenes=tuple(scenes), terms=tuple(terms),
        unknown_terms=unknown_out,
    )  # fmt: skip


@functools.lru_cache(maxsize=8)
def _parser(taxonomy: Taxonomy, scenes: SceneBook | None) -> QueryParser:
    return QueryParser(taxonomy, scenes)


def warm_parser(taxonomy: Taxonomy, scenes: SceneBook | None = None) -> None:
    """Build the parser `parse_query` uses for this pair and load its segmenter now (a server
    does this at start-up, so that no shopper's first Chinese query pays ~0.5 s)."""
    _parser(taxonomy, scenes).warm()


def parse_query(text: str | None, taxonomy: Taxonomy, scenes: SceneBook | None = None) -> ParsedQuery:
    """Read a shopper's query (English, Chinese or mixed) with ``taxonomy`` and ``scenes``.

    The parser for a (taxonomy, scene book) pair is built once and kept (the segmenter loads
    on the first Chinese query).

    Returns:
        ParsedQuery: gender, wanted/excluded values per field, price ceiling, implied scenes,
        the understood terms and the words left unknown.
    """
    return _parser(taxonomy, scenes).parse(text)
