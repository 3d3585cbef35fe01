"""What an explanation may say: facts with their source, the request context they may cite,
and the finished explanation with its verification counts.

Shared by the generator (`mmrec.outfit.explain`) and the verifier (`mmrec.outfit.verify`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmrec.config import StrictModel
from mmrec.outfit.scenes import Scene

# Item fields a fact may state; the verifier checks each against the item row.
ATTRIBUTE_FIELDS = ("category", "colour", "pattern", "material", "fit", "sleeve", "neckline",
                    "usage", "season", "gender")


class Fact(StrictModel):
    item_id: str | None = None  # None: about the whole outfit or the shopper
    field: str
    value: str
    source: str
    confidence: float | None = None


@dataclass
class Explanation:
    text: str
    facts: list[Fact]
    statements: int
    supported: int
    fallback: bool = False
    problems: list[str] = field(default_factory=list)
    lang: str = "en"

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
    query_matches: set[str] = field(default_factory=set)  # items of the kind the query names
    photo_similar: set[str] = field(default_factory=set)  # items found by the photo
    # the photo's colour family as the tagger read it with confidence (None: not read): a
    # look-alike is named with its colour only when it shares it
    photo_colour_family: str | None = None
    harmony: str | None = None  # key of HARMONY_PHRASES computed by the caller
