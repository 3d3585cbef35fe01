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

from mmrec.config import StrictModel
from mmrec.lru import bounded_memo
from mmrec.outfit.facts import ExplainContext, Explanation, Fact
from mmrec.outfit.items import ItemTable
from mmrec.outfit.scenes import SceneBook
# harmony_of and taste_from_history are imported from here by the recommender (their callers
# pass the results back in an ExplainContext), so this module names them too.
from mmrec.outfit.taste import HARMONY_PHRASES, harmony_of, taste_from_history  # noqa: F401
from mmrec.outfit.verify import Verifier
from mmrec.outfit.wording import (attr_phrase, capitalise, display_category, is_plural_noun,
                                  join_phrases, quote_safe)
from mmrec.taxonomy import Taxonomy

# What the recommender imports from here.
__all__ = ["ExplainConfig", "ExplainContext", "Explainer", "harmony_of", "taste_from_history"]


class ExplainConfig(StrictModel):
    max_details: int = 3  # title/model detail statements per outfit
    min_model_confidence: float = 0.6  # model facts below this are not cited


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
    def explain(self, items: ItemTable, item_ids: list[str], ctx: ExplainContext) -> Explanation:
        """Explanation of one outfit; verified, with the template fallback if needed."""
        facts, sentences = self._compose(items, item_ids, ctx, rich=True)
        text = " ".join(sentences)
        problems, n, bad = self.verifier.verify_counts(text, facts, items, ctx, item_ids)
        if not problems:
            return Explanation(text, facts, n, n - bad)
        facts, sentences = self._compose(items, item_ids, ctx, rich=False)
        text = " ".join(sentences)
        again, n, bad = self.verifier.verify_counts(text, facts, items, ctx, item_ids)
        if again:  # nothing verifiable to say: say nothing rather than something unbacked
            return Explanation("", [], 0, 0, fallback=True, problems=problems + again)
        return Explanation(text, facts, n, n - bad, fallback=True, problems=problems)

    def _item_fact(self, items: ItemTable, item_id: str, fld: str) -> Fact | None:
        # per catalog version and item, like the rule cache (Facts are never mutated)
        return bounded_memo(self._fact_cache, (id(items), items.version, item_id, fld),
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
        sentences.append(f"{sc.label} look: {join_phrases([phrases[i] for i in item_ids])}.")
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
                             f"{join_phrases([phrases[i] for i in iids])}.")
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
                    sentences.append(f"The {noun} {be} {attr_phrase(fld, f.value)} (from the title).")
                else:
                    sentences.append(f"The {noun} {look} {attr_phrase(fld, f.value)} to our tagger "
                                     f"({round(100 * f.confidence)}%).")
        if ctx.harmony in HARMONY_PHRASES:
            facts.append(Fact(field="colour_harmony", value=ctx.harmony, source="compat"))
            sentences.append(f"Colours: {HARMONY_PHRASES[ctx.harmony]}.")
        # scene rules every item satisfies on catalog truth
        rules = self.verifier.rules_held(items, item_ids, sc)
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
                sentences.append(f"From your history, you often choose {join_phrases(shown)}.")
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
            # only the items of the kind the shopper named (category, colour family, gender,
            # nothing negated, on catalog truth) match the search; being found by a text
            # route is not enough (a red-dress search also recalls red patialas)
            named = [i for i in item_ids if i in ctx.query_matches]
            if named:
                facts.append(Fact(field="query", value=ctx.query_text, source="request"))
                for iid in named:
                    facts.append(Fact(item_id=iid, field="query_match", value="named", source="request"))
                sentences.append(f'{capitalise(join_phrases([phrases[i] for i in named]))} matches your search '
                                 f'"{quote_safe(ctx.query_text)}".')
        return facts, sentences

    def mentions(self, text: str) -> tuple[tuple[str, set[tuple[str, str]]], ...]:
        """Vocabulary mentions in ``text`` (see `Verifier.mentions`): the recommender reads typed
        queries with the same vocabulary the explanations are checked against."""
        return self.verifier.mentions(text)
