"""Typed text read with the taxonomy: which slot it is about and which values it names."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmrec.outfit.explain import Explainer
from mmrec.outfit.scenes import Scene
from mmrec.taxonomy import Taxonomy

# Fields a typed query may constrain, in the order a mention is read (a category wins).
QUERY_FIELDS = ("category", "colour", "pattern", "material", "fit", "sleeve", "neckline", "usage")


@dataclass
class TypedQuery:
    """What the shopper typed, read with the taxonomy: the slot it is about and its values."""

    text: str | None = None
    slot: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)

    def matches(self, row: dict) -> bool:
        """Whether a catalog row has every value the query names."""
        return all(row.get(f) == v for f, v in self.attrs.items())


class QueryReader:
    """Reads typed text with the explainer's term matcher (the same words the explanations cite).

    Args:
        explainer: its ``mentions`` finds taxonomy values in text.
        taxonomy: maps a category to its outfit slot.
    """

    def __init__(self, explainer: Explainer, taxonomy: Taxonomy):
        self.explainer = explainer
        self.tax = taxonomy

    def read(self, text: str | None, scene: Scene) -> tuple[TypedQuery, str | None]:
        """("navy blue shirt", office) -> (top: shirts, navy blue; no note).

        When the text names a category the scene allows, that slot's candidates come from the
        text (and match its values when any can) while the other slots keep the scene's
        candidates. A category the scene does not use is reported in the note and the query is
        dropped, so that no explanation claims it.
        """
        if not text:
            return TypedQuery(), None
        attrs: dict[str, str] = {}
        for _, options in self.explainer.mentions(text):
            for fld in QUERY_FIELDS:
                vals = sorted(v for f, v in options if f == fld)
                if vals and fld not in attrs:
                    attrs[fld] = vals[0]
                    break
        cat = attrs.get("category")
        slot = self.tax.slot_of(cat) if cat else None
        if cat and cat not in scene.slot_categories(slot):
            note = (f"{text!r} asks for {cat}, which {scene.label} outfits do not use; "
                    "the outfits follow the scene instead")
            return TypedQuery(), note  # the scene's own (cached) candidates, no text claims
        return TypedQuery(text, slot, attrs), None
