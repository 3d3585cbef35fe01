"""Grounded explanations: text built from facts only, checked by a verifier that re-reads it.

Facts come from four places and carry their source: item attributes (``catalog``, ``title``
or ``model`` with a confidence, exactly as the items table records them), the scene's rules
that the items satisfy on catalog truth (``scene:<name>``), the shopper (``profile`` and
``history`` matches) and the request (``recall`` routes, the typed ``query``), plus the colour
harmony that the compatibility rules computed (``compat``).

The verifier (`mmrec.outfit.verify`) does not trust this generator: text that fails it falls
back to the plain template, which is verified the same way. The facts and context live in
`mmrec.outfit.facts`, the wording in `mmrec.outfit.wording`, harmony and taste in
`mmrec.outfit.taste`.
"""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import Field

from mmrec.config import StrictModel
from mmrec.lru import bounded_memo
from mmrec.outfit.facts import ExplainContext, Explanation, Fact
from mmrec.outfit.items import ItemTable
from mmrec.outfit.scenes import SceneBook
# harmony_of and taste_from_history are imported from here by the recommender (their callers
# pass the results back in an ExplainContext), so this module names them too.
from mmrec.outfit.taste import HARMONY_PHRASES, harmony_of, taste_from_history  # noqa: F401
from mmrec.outfit.verify import Verifier
from mmrec.outfit.claims_text import (HARMONY_ZH, Claim, select_claims, zh_item, zh_join, zh_scene,
                                      zh_value)
from mmrec.outfit.wording import (attr_phrase, capitalise, display_category, is_plural_noun,
                                  join_phrases, quote_safe)
from mmrec.taxonomy import Taxonomy

# What the recommender imports from here.
__all__ = ["ExplainConfig", "ExplainContext", "Explainer", "harmony_of", "taste_from_history"]


class ExplainConfig(StrictModel):
    # A shopper reads a short reason, not a catalog card: the outfit, then the most telling
    # claims (request, personal reason, rules, harmony, ...) within these budgets.
    max_sentences: int = Field(3, ge=1, le=12, description="sentences per explanation, the outfit's included")
    max_words: int = Field(60, ge=10, le=300, description="English words per explanation (the outfit "
                                                            "sentence is always said)")
    # The tagger's readings of a new arrival are cited (and rules or colour harmony claimed on
    # them) only from these confidences; a field not listed is never cited from the tagger.
    # Chosen on the val split: per field, the lowest threshold whose cited readings are >= 95%
    # right (lab/explain/fact_confidence.py; docs/tagger.md "Citing the tagger").
    model_confidence: dict[str, float] = Field(
        default_factory=lambda: {"category": 0.8, "colour": 0.9, "season": 0.85},
        description="per field, the tagger confidence from which its readings are cited")

    def cites(self, fld: str, fact: Mapping[str, Any] | None) -> bool:
        """Whether an attribute fact (``ItemTable.attribute_fact``) may be stated: from the
        catalog or the title, or a tagger reading at least as sure as its field's threshold.
        The recommender binds constraints by the same rule (`CandidateSource.known_mask`)."""
        if fact is None:
            return False
        if fact["source"] != "model":
            return True
        floor, conf = self.model_confidence.get(fld), fact.get("confidence")
        return floor is not None and conf is not None and conf >= floor


def _in(lang: str, claims: list[Claim], english: str) -> str:
    return "".join(c.zh for c in claims) if lang == "zh" else english


class Explainer:
    """Template explanations and their verifier, for one taxonomy and scene book."""

    def __init__(self, taxonomy: Taxonomy, scenes: SceneBook, cfg: ExplainConfig | None = None):
        self.tax = taxonomy
        self.scenes = scenes
        self.cfg = cfg or ExplainConfig()
        self.verifier = Verifier(taxonomy, scenes)
        # Item facts recur across requests (same items, same catalog version): memoised.
        self._fact_cache: dict[tuple, Fact | None] = {}

    # ------------------------------------------------------------------ generation
    def explain(self, items: ItemTable, item_ids: list[str], ctx: ExplainContext,
                lang: str = "en") -> Explanation:
        """Explanation of one outfit in ``lang`` ("en" or "zh"); verified, with the template
        fallback if needed. The English text is what the verifier reads; the Chinese text says
        the same verified claims (one sentence per claim, in the same order)."""
        facts, claims = self._compose(items, item_ids, ctx, rich=True)
        text = " ".join(c.en for c in claims)
        problems, n, bad = self.verifier.verify_counts(text, facts, items, ctx, item_ids)
        if not problems:
            return Explanation(_in(lang, claims, text), facts, n, n - bad, lang=lang)
        facts, claims = self._compose(items, item_ids, ctx, rich=False)
        text = " ".join(c.en for c in claims)
        again, n, bad = self.verifier.verify_counts(text, facts, items, ctx, item_ids)
        if again:  # nothing verifiable to say: say nothing rather than something unbacked
            return Explanation("", [], 0, 0, fallback=True, problems=problems + again, lang=lang)
        return Explanation(_in(lang, claims, text), facts, n, n - bad, fallback=True, problems=problems,
                           lang=lang)

    def _item_fact(self, items: ItemTable, item_id: str, fld: str) -> Fact | None:
        # per catalog version and item, like the rule cache (Facts are never mutated)
        return bounded_memo(self._fact_cache, (id(items), items.version, item_id, fld),
                            lambda: self._new_item_fact(items, item_id, fld))

    def citable(self, items: ItemTable, item_id: str, fld: str) -> bool:
        """Whether ``fld`` of an item is known well enough to state: from the catalog or the
        title, or read by the tagger at least as surely as `ExplainConfig.model_confidence`."""
        return self._item_fact(items, item_id, fld) is not None

    def _new_item_fact(self, items: ItemTable, item_id: str, fld: str) -> Fact | None:
        a = items.attribute_fact(item_id, fld)
        if not self.cfg.cites(fld, a):
            return None
        conf = a.get("confidence")
        return Fact(item_id=item_id, field=fld, value=a["value"], source=a["source"],
                    confidence=None if conf is None else round(float(conf), 2))

    def _compose(self, items: ItemTable, item_ids: list[str], ctx: ExplainContext,
                 rich: bool) -> tuple[list[Fact], list[Claim]]:
        """The outfit claim, then (rich) the most telling others within the sentence and word
        budget: why it answers the request, why it suits this shopper, the scene's rules, colour
        harmony, occasion per the catalog, details. Every fact gathered is returned (the
        explanation's evidence); only the chosen claims are said."""
        facts: list[Fact] = []
        sc = ctx.scene
        names: dict[str, tuple[str, str]] = {}  # item -> (English phrase, Chinese phrase)
        for iid in item_ids:
            cat = self._item_fact(items, iid, "category")
            col = self._item_fact(items, iid, "colour")
            facts += [f for f in (cat, col) if f is not None]
            noun = display_category(cat.value) if cat else "item"
            said_colour = col is not None and col.source != "model"
            names[iid] = (f"{col.value} {noun}" if said_colour else noun,
                          zh_item(self.tax, col.value if said_colour else None, cat.value if cat else None))
        facts.append(Fact(field="scene", value=sc.name, source=f"scene:{sc.name}"))
        en_list = join_phrases([names[i][0] for i in item_ids])
        outfit = Claim("outfit", [], f"{sc.label} look: {en_list}.",
                       f"{zh_scene(sc)}造型：{zh_join([names[i][1] for i in item_ids])}。")
        if not rich:
            return facts, [outfit]
        said, evidence = select_claims(self._claims(items, item_ids, ctx, names), self.cfg.max_sentences - 1,
                                       self.cfg.max_words - len(outfit.en.split()))
        return facts + evidence, [outfit, *said]

    def _same_colour_family(self, items: ItemTable, item_id: str, family: str | None) -> bool:
        colour = items.row(item_id).get("colour")
        return family is not None and colour is not None and self.tax.colour_family(colour) == family

    def _bare_name(self, items: ItemTable, item_id: str) -> tuple[str, str]:
        """(English, Chinese) name of an item without its colour."""
        cat = items.row(item_id).get("category")
        return (display_category(cat) if cat else "item"), zh_item(self.tax, None, cat)

    def _claims(self, items: ItemTable, item_ids: list[str], ctx: ExplainContext,
                names: dict[str, tuple[str, str]]) -> list[Claim]:
        """Every claim the facts back, most telling first (`select_claims` keeps the head)."""
        sc = ctx.scene
        out: list[Claim] = []
        # the request: typed query, then photo
        if ctx.query_text:
            # only the items of the kind the shopper named (category, colour family, gender,
            # nothing negated, on catalog truth) match the search; being found by a text
            # route is not enough (a red-dress search also recalls red patialas)
            named = [i for i in item_ids if i in ctx.query_matches]
            if named:
                q = quote_safe(ctx.query_text)
                out.append(Claim(
                    "query", [Fact(field="query", value=ctx.query_text, source="request")]
                    + [Fact(item_id=i, field="query_match", value="named", source="request") for i in named],
                    f'{capitalise(join_phrases([names[i][0] for i in named]))} matches your search "{q}".',
                    f"{zh_join([names[i][1] for i in named])}符合您的搜索“{q}”。"))
        similar = [i for i in item_ids if i in ctx.photo_similar]
        if similar:
            be = "are" if len(similar) > 1 or is_plural_noun(items.row(similar[0])["category"]) else "is"
            # the image route vouches for the look, not the colour: a look-alike is named with its
            # colour only where the photo was read in the same colour family (re-shot catalog
            # photos: "the white shirt is similar" to a green kurta was the commonest false claim)
            like = {i: names[i] if self._same_colour_family(items, i, ctx.photo_colour_family)
                    else self._bare_name(items, i) for i in similar}
            out.append(Claim(
                "photo", [Fact(item_id=i, field="recall_route", value="image", source="recall") for i in similar],
                f"The {join_phrases([like[i][0] for i in similar])} {be} similar to your photo.",
                f"{zh_join([like[i][1] for i in similar])}与您的照片相似。"))
        # the shopper: history first (what they pick), then the profile's occasions
        for fld in ("colour", "category"):
            top = set(ctx.taste.get(fld, []))
            hits: list[Fact] = []
            for iid in item_ids:
                v = items.row(iid).get(fld)
                if v in top and v not in [h.value for h in hits]:
                    hits.append(Fact(item_id=iid, field=f"history.{fld}", value=v, source="history"))
            if hits:
                shown = [display_category(h.value) if fld == "category" else h.value for h in hits]
                out.append(Claim("history", hits, f"From your history, you often choose {join_phrases(shown)}.",
                                 f"根据您的历史，您常选{zh_join([zh_value(self.tax, fld, h.value) for h in hits])}。"))
        occ = [u for u in sc.usages if u in ctx.profile_occasions]
        if occ:
            out.append(Claim("profile", [Fact(field="profile.occasion", value=occ[0], source="profile")],
                             f"Your profile lists {occ[0]} occasions.",
                             f"您的资料中有{zh_value(self.tax, 'usage', occ[0])}场合。"))
        # the scene's rules every item satisfies on catalog truth, then colour harmony
        rules = self.verifier.rules_held(items, item_ids, sc,
                                         known=lambda iid, fld: self.citable(items, iid, fld))
        if rules:
            out.append(Claim("rules", [Fact(field="scene_rule", value=r, source=f"scene:{sc.name}") for r in rules],
                             f"Meets the {sc.label} rules: " + ", ".join(f'"{r}"' for r in rules) + ".",
                             f"符合{zh_scene(sc)}场景的{len(rules)}条规则。"))
        if ctx.harmony in HARMONY_PHRASES:
            out.append(Claim("harmony", [Fact(field="colour_harmony", value=ctx.harmony, source="compat")],
                             f"Colours: {HARMONY_PHRASES[ctx.harmony]}.", f"配色：{HARMONY_ZH[ctx.harmony]}。"))
        # occasion stated by the catalog, when it suits the scene
        by_usage: dict[str, list[Fact]] = {}
        for iid in item_ids:
            u = self._item_fact(items, iid, "usage")
            if u is not None and u.source == "catalog" and u.value in sc.usages:
                by_usage.setdefault(u.value, []).append(u)
        for usage, us in by_usage.items():
            out.append(Claim("usage", us, f"{usage.capitalize()} wear per the catalog: "
                             f"{join_phrases([names[u.item_id][0] for u in us])}.",
                             f"目录标注为{zh_value(self.tax, 'usage', usage)}穿着："
                             f"{zh_join([names[u.item_id][1] for u in us])}。"))
        # details from the title or the tagger
        for iid in item_ids:
            for fld in ("pattern", "material", "fit"):
                f = self._item_fact(items, iid, fld)
                if f is None or f.source == "catalog":
                    continue
                cat = items.row(iid)["category"]
                noun = display_category(cat)
                be, look = ("are", "look") if is_plural_noun(cat) else ("is", "looks")
                zh_noun, zh_v = zh_value(self.tax, "category", cat), zh_value(self.tax, fld, f.value)
                if f.source == "title":
                    out.append(Claim("detail", [f], f"The {noun} {be} {attr_phrase(fld, f.value)} (from the title).",
                                     f"{zh_noun}为{zh_v}（据商品标题）。"))
                else:
                    pct = round(100 * f.confidence)
                    out.append(Claim("detail", [f], f"The {noun} {look} {attr_phrase(fld, f.value)} to our tagger "
                                     f"({pct}%).", f"{zh_noun}经模型识别为{zh_v}（{pct}%）。"))
        return out

    def mentions(self, text: str) -> tuple[tuple[str, set[tuple[str, str]]], ...]:
        """Vocabulary mentions in ``text`` (see `Verifier.mentions`): the recommender reads typed
        queries with the same vocabulary the explanations are checked against."""
        return self.verifier.mentions(text)
