"""Hand-written shopper queries (English, Chinese, mixed) and the constraints they state.

A query file (``benchmark/suites/queries/*.yaml``) is written by people, not generated from
catalog rows: each query holds the text a shopper types and, under ``expect``, only what that
text states (gender, categories that must appear, colour family, negations, a price ceiling).
The English and Chinese phrasings of one request share a ``pair`` id, so zh/en parity can be
judged. The constraint judge reads catalog truth only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from pydantic import Field, model_validator

from mmrec.bench.claims import item_misses_query
from mmrec.bench.judges import Row, known_price, truth_value
from mmrec.config import StrictModel, read_yaml_model
from mmrec.errors import ConfigError
from mmrec.taxonomy import COLOUR_FAMILIES, Taxonomy


class QueryExpect(StrictModel):
    gender: Literal["men", "women"] | None = None
    categories: list[str] = Field(default_factory=list, max_length=3)
    colour_family: str | None = None
    not_categories: list[str] = Field(default_factory=list)
    not_colour_families: list[str] = Field(default_factory=list)
    price_max: float | None = Field(None, gt=0)


class ShopperQuery(StrictModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    pair: str | None = None
    lang: Literal["en", "zh", "mixed"]
    scene: str
    text: str = Field(min_length=1, max_length=200)
    expect: QueryExpect = Field(default_factory=QueryExpect)


class QueryFile(StrictModel):
    schema_version: Literal[1] = 1
    name: str
    queries: list[ShopperQuery] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> "QueryFile":
        ids = [q.id for q in self.queries]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"query ids repeat: {dup}")
        pairs: dict[str, list[str]] = {}
        for q in self.queries:
            if q.pair:
                pairs.setdefault(q.pair, []).append(q.lang)
        bad = {p: langs for p, langs in pairs.items() if sorted(langs) != ["en", "zh"]}
        if bad:
            raise ValueError(f"a pair holds one en and one zh query; these do not: {bad}")
        return self


def load_queries(path: str | Path, taxonomy: Taxonomy, scene_names: Sequence[str]) -> QueryFile:
    """Read a query file; every scene, category and colour family must be known."""
    path = Path(path)
    qf = read_yaml_model(path, QueryFile, "query file")
    for q in qf.queries:
        where = f"{path}: query {q.id}"
        if q.scene not in scene_names:
            raise ConfigError(f"{where}: unknown scene {q.scene!r}; known: {list(scene_names)}")
        for c in (*q.expect.categories, *q.expect.not_categories):
            if not taxonomy.is_valid("category", c):
                raise ConfigError(f"{where}: {c!r} is not a taxonomy category")
        for fam in filter(None, (q.expect.colour_family, *q.expect.not_colour_families)):
            if fam not in COLOUR_FAMILIES:
                raise ConfigError(f"{where}: colour family {fam!r} is not one of {COLOUR_FAMILIES}")
    return qf


def constraint_failures(rows: Sequence[Row], expect: Mapping[str, Any], taxonomy: Taxonomy,
                        *, prices_known: bool = True) -> list[str]:
    """Why an outfit (catalog truth rows) breaks what the query states; empty: it holds.

    - every stated category appears (the first with the stated colour family, if any; with no
      category, some item has that family);
    - with a stated gender, no item of the other gender (unisex is fine);
    - no item of a negated category or colour family;
    - with a price ceiling, every item is priced at or below it (an unknown price cannot be
      shown to fit). With ``prices_known`` False (the catalog states no price at all) the
      ceiling is not judged here; the caller reports it apart.
    """
    out: list[str] = []
    cats = list(expect.get("categories") or [])
    fam = expect.get("colour_family")
    for n, cat in enumerate(cats):
        want = {"categories": [cat], "colour_family": fam if n == 0 else None}
        if not any(item_misses_query(r, want, taxonomy) is None for r in rows):
            out.append(f"no {(fam + ' ') if n == 0 and fam else ''}{cat} in the outfit")
    if fam and not cats and not any(taxonomy.colour_family(truth_value(r, "colour")) == fam
                                    for r in rows):
        out.append(f"no {fam} item in the outfit")
    neg = {"gender": expect.get("gender"), "not_categories": expect.get("not_categories"),
           "not_colour_families": expect.get("not_colour_families")}
    for r in rows:
        why = item_misses_query(r, neg, taxonomy)
        if why:
            out.append(f"{r.get('item_id')} {why}")
    cap = expect.get("price_max")
    if cap is not None and prices_known:
        for r in rows:
            p = r.get("price")
            if not known_price(p):
                out.append(f"{r.get('item_id')} has no price: it cannot be shown to be under {cap:g}")
            elif float(p) > cap:
                out.append(f"{r.get('item_id')} costs {float(p):g} > {cap:g}")
    return out
