"""Typed text as constraints on the outfits: what must appear, for whom, what not, how much.

The shopper's words are read by `mmrec.recommend.query_parser` (English, Chinese, mixed) and
turned here into what the recommender binds:

- the first requested category the scene can use becomes the required slot (every outfit has it,
  in the requested colour family when one is named); further requested categories narrow their
  own slots;
- a stated gender overrides the profile's (an explicit gender filter of the app still wins);
- negated categories and colour families are excluded from every slot; a price ceiling filters.

A colour word names a family of shades ("red" also admits maroon), as shoppers use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from mmrec.outfit.scenes import Scene, SceneBook
from mmrec.recommend.query_parser import ParsedQuery, parse_query, warm_parser
from mmrec.taxonomy import Taxonomy

# Fields a typed query narrows the requested item by (recall's attribute route reads them too).
QUERY_FIELDS = ("category", "colour", "pattern", "material", "fit", "sleeve", "neckline", "usage")
_OUTING_FIELDS = ("usage", "season")


@dataclass
class TypedQuery:
    """What the shopper typed, as constraints (empty: the scene's own outfits)."""

    text: str | None = None
    slot: str | None = None  # the slot the requested item fills (required in every outfit)
    attrs: dict[str, str] = field(default_factory=dict)  # the requested item's values
    slot_categories: dict[str, str] = field(default_factory=dict)  # slot -> requested category
    gender: str | None = None
    excluded: dict[str, tuple[str, ...]] = field(default_factory=dict)  # negated values per field
    price_max: float | None = None
    parsed: ParsedQuery | None = None
    taxonomy: Taxonomy | None = field(default=None, repr=False)

    @property
    def binds(self) -> bool:
        """Whether the query changes which items may appear (exclusions or a price ceiling)."""
        return bool(self.excluded) or self.price_max is not None

    @property
    def names_colour(self) -> bool:
        return bool(self.parsed is not None and self.parsed.wanted.get("colour"))

    @property
    def binding_attrs(self) -> dict[str, str]:
        """The requested item's values that bind (usage and season name the outing, which the
        scene already binds: "silver heels for a party" wants silver heels, not heels the
        catalog files under party wear)."""
        return {f: v for f, v in self.attrs.items() if f not in _OUTING_FIELDS}

    @property
    def search_text(self) -> str | None:
        """Text for recall's text routes: the shopper's own words in English, else the canonical
        (English) names of what was wanted, since the encoder and BM25 read English and a
        negated word would draw what it negates ("no heels")."""
        if self.parsed is None or (self.parsed.lang in (None, "en") and not self.parsed.excluded):
            return self.text
        words = [v for f in QUERY_FIELDS for v in self.parsed.wanted.get(f, ())]
        return " ".join(words) or None

    def excludes(self, row: Mapping[str, Any]) -> bool:
        """Whether a catalog row has a value the shopper negated (colours by family)."""
        for f, values in self.excluded.items():
            if f == "colour" and self.taxonomy is not None:
                fam = self.taxonomy.colour_family(row.get("colour"))
                if fam is not None and fam in {self.taxonomy.colour_family(v) for v in values}:
                    return True
            elif row.get(f) in values:
                return True
        return False

    def named_item(self, row: Mapping[str, Any]) -> bool:
        """Whether an item is one the shopper named: of a requested category (the first one in
        the requested colour family), for the stated gender, nothing negated. Only such items
        may be said to match the search."""
        cats = self.parsed.wanted.get("category", ()) if self.parsed else ()
        colours = self.parsed.wanted.get("colour", ()) if self.parsed else ()
        if not cats and not colours:
            return False  # nothing item-specific was asked for
        if cats and row.get("category") not in cats:
            return False
        if colours and self.taxonomy is not None and (not cats or row.get("category") == cats[0]):
            if self.taxonomy.colour_family(row.get("colour")) != self.taxonomy.colour_family(colours[0]):
                return False
        if self.gender and row.get("gender") not in (self.gender, "unisex"):
            return False
        return not self.excludes(row)

    def as_response(self) -> dict[str, Any] | None:
        return self.parsed.to_dict() if self.parsed is not None and self.text else None


class QueryReader:
    """Reads typed text into a `TypedQuery` for one scene.

    Args:
        taxonomy: the vocabulary (with its Chinese names) and category -> slot.
        scenes: the scene book (occasion words; which scenes allow a category).
    """

    def __init__(self, taxonomy: Taxonomy, scenes: SceneBook):
        self.tax = taxonomy
        self.scenes = scenes

    def warm(self) -> None:
        warm_parser(self.tax, self.scenes)

    def read(self, text: str | None, scene: Scene) -> tuple[TypedQuery, list[str]]:
        """(constraints, notes for the shopper). A category the scene cannot use is said so in a
        note, with the scenes that do use it, and binds nothing."""
        if not text or not text.strip():
            return TypedQuery(), []
        parsed = parse_query(text, self.tax, self.scenes)
        notes: list[str] = []
        q = TypedQuery(text=text, parsed=parsed, gender=parsed.gender, price_max=parsed.price_max,
                       taxonomy=self.tax,
                       excluded={f: v for f, v in parsed.excluded.items() if f in ("category", "colour",
                                                                                    "pattern", "material")})
        for cat in parsed.wanted.get("category", ()):
            slot = self.tax.slot_of(cat)
            if cat not in scene.slot_categories(slot):
                elsewhere = [s.label for s in self.scenes.scenes.values()
                             if cat in s.slot_categories(self.tax.slot_of(cat))]
                notes.append(f"{text!r} asks for {cat}, which {scene.label} outfits do not use"
                             + (f"; try {', '.join(elsewhere[:3])}" if elsewhere else ""))
                continue
            if q.slot is None:
                q.slot = slot
                q.attrs["category"] = cat
            q.slot_categories.setdefault(slot, cat)
        if q.slot is not None:  # the requested item's other values
            for f in QUERY_FIELDS[1:]:
                vals = parsed.wanted.get(f, ())
                if vals:
                    q.attrs[f] = vals[0]
        if parsed.scene and parsed.scene != scene.name:
            label = self.scenes.get(parsed.scene).label
            notes.append(f"{text!r} mentions {label}; the outfits are for {scene.label} as requested")
        return q, notes
