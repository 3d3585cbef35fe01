"""Composed outfits as the API's response: items with their catalog facts, explanations."""

from __future__ import annotations

from mmrec.api_models import ExplanationOut, FactOut, OutfitItemOut, OutfitOut
from mmrec.outfit.compose import Outfit
from mmrec.outfit.explain import ExplainContext, Explainer, harmony_of
from mmrec.outfit.items import ItemTable
from mmrec.recommend.context import Attempt, RequestContext
from mmrec.taxonomy import Taxonomy


class ResponseShaper:
    """Turns an attempt's outfits into `OutfitOut`s, explained when the request asks for it.

    Args:
        items: the catalog (titles, colours, images of the answered items).
        explainer: builds each outfit's checked statements.
        taxonomy: colour harmony of an outfit, colour families.
    """

    def __init__(self, items: ItemTable, explainer: Explainer, taxonomy: Taxonomy):
        self.items = items
        self.explainer = explainer
        self.tax = taxonomy

    def outfits(self, ctx: RequestContext, attempt: Attempt) -> list[OutfitOut]:
        return [self.outfit(ctx, attempt, o) for o in attempt.outfits]

    def outfit(self, ctx: RequestContext, attempt: Attempt, o: Outfit) -> OutfitOut:
        ids = [self.items.ids[p] for p in o.positions]
        expl = None
        if ctx.request.explain:
            photo = attempt.photo
            routes = attempt.candidates.routes
            known = self._known
            ectx = ExplainContext(
                scene=ctx.scene, taste=ctx.taste, profile_occasions=ctx.occasions,
                routes={i: routes.get(i, {}) for i in ids}, query_text=ctx.request.query_text,
                # named = of the kind the search names, on values known well enough to say so
                query_matches={i for i in ids if ctx.query.named_item(self.items.row(i))
                               and known(i, "category") and (not ctx.query.names_colour or known(i, "colour"))},
                # look-alikes in the slot the photo was read as only (PhotoAnchors.anchor keeps
                # `similar` and the pool to that slot): no other slot's item is "similar"
                photo_similar=(set(photo.similar) | set(attempt.anchor_pool)) if photo else set(),
                photo_colour_family=self.tax.colour_family(attempt.photo_colour) if attempt.photo_colour else None,
                harmony=harmony_of((self.items.row(i).get("colour") for i in ids), self.tax)
                if all(known(i, "colour") for i in ids) else None)
            e = self.explainer.explain(self.items, ids, ectx, lang=ctx.request.lang or "en")
            expl = ExplanationOut(text=e.text, facts=[FactOut(**f.__dict__) for f in e.facts],
                                  statements=e.statements, supported=e.supported, fallback=e.fallback,
                                  lang=e.lang)
        return OutfitOut(
            items=[self.item(i, s, p) for i, s, p in zip(ids, o.slots, o.propensity)],
            score=round(o.score, 6), compatibility=round(o.compat, 6), template=o.template,
            explanation=expl)

    def _known(self, item_id: str, fld: str) -> bool:
        return self.explainer.citable(self.items, item_id, fld)

    def item(self, item_id: str, slot: str, score: float) -> OutfitItemOut:
        r = self.items.row(item_id)
        return OutfitItemOut(item_id=item_id, slot=slot, score=round(float(score), 6),
                             title=r.get("title"), category=r.get("category"),
                             colour=r.get("colour"), gender=r.get("gender"),
                             image_url=f"/v1/items/{item_id}/image" if r.get("image_uri") else None)
