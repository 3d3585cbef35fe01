"""A tiny benchmark world built in-process: catalog artifact, scenes, personas, suite.

Numeric item ids so that ``mmrec.splits`` holds some products out (id % 10 == 0) for kiosk
photos. Every scene slot has both rule-abiding items and items that break a rule on catalog
truth (a category outside the dress code, sportswear, a loud print), listed first with the same
scene fit, so that a recommender that ignores the rules visibly picks them.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from mmrec.artifacts import ArtifactStore
from outfit_fixtures import write_items

SCENES = {
    "version": 1,
    "scenes": {
        "office": {
            "label": "Office", "usages": ["formal", "casual"], "seasons": ["summer", "fall", "winter"],
            "query": "office shirt trousers", "templates": [["top", "bottom", "shoes"]],
            "slots": {"top": {"categories": ["shirts", "tshirts"]},
                      "bottom": {"categories": ["trousers", "jeans"]},
                      "shoes": {"categories": ["formal shoes", "casual shoes", "heels"]}},
            "must_not": [{"field": "pattern", "values": ["graphic"], "reason": "no loud prints at work"},
                         {"field": "usage", "values": ["sports"], "reason": "no sportswear at the office"},
                         {"field": "category", "values": ["tshirts", "jeans", "casual shoes"],
                          "reason": "office dress code"}],
        },
        "weekend": {
            "label": "Weekend", "usages": ["casual"], "seasons": ["summer", "fall", "winter"],
            "query": "casual tshirt jeans", "templates": [["top", "bottom", "shoes"]],
            "slots": {"top": {"categories": ["tshirts", "shirts"]},
                      "bottom": {"categories": ["jeans", "trousers"]},
                      "shoes": {"categories": ["casual shoes", "formal shoes", "heels"]}},
            "must_not": [{"field": "usage", "values": ["formal"], "reason": "relaxed, not formal"}],
        },
    },
}

# (gender, category, colour, usage, pattern): rule breakers for the office first
_KINDS = [
    ("tshirts", "white", "formal", "graphic"), ("shirts", "white", "formal", "solid"),
    ("shirts", "blue", "casual", "striped"), ("tshirts", "black", "casual", None),
    ("jeans", "blue", "formal", None), ("trousers", "black", "formal", "solid"),
    ("trousers", "grey", "casual", None), ("jeans", "black", "casual", None),
    ("casual shoes", "white", "formal", None), ("formal shoes", "black", "formal", None),
    ("formal shoes", "brown", "casual", None), ("casual shoes", "grey", "casual", None),
]


def catalog_spec() -> list[tuple]:
    spec = []
    n = 1000
    for gender in ("men", "women"):
        for rep in range(4):
            for cat, colour, usage, pattern in _KINDS:
                if gender == "women" and cat == "formal shoes":
                    cat = "heels"
                spec.append((str(n), gender, cat, colour, usage, "summer", pattern, None))
                n += 1
    return spec


PERSONAS = {"version": 1, "personas": [
    {"id": "man_office", "label": "Man 25-34, formal", "source": "hm",
     "match": {"gender": "men", "age": [25, 34]},
     "fallback": {"gender": "men", "age": 30, "preferred_occasions": ["formal"]}},
    {"id": "woman_casual", "label": "Woman 35-44, casual", "source": "rtr",
     "match": {"gender": "women", "age": [35, 44]},
     "fallback": {"gender": "women", "age": 40, "preferred_occasions": ["casual"]}},
]}


def write_world(root: Path, *, modes=("scene", "text", "photo"), repeats: int = 2) -> tuple[ArtifactStore, Path]:
    """Items artifact + scenes/personas/suite files under ``root``; returns (store, suite path)."""
    store = ArtifactStore(root / "artifacts")
    write_items(store, catalog_spec(), images_dir=root / "images", prices=False)
    (root / "scenes.yaml").write_text(yaml.safe_dump(SCENES), encoding="utf-8")
    (root / "personas.yaml").write_text(yaml.safe_dump(PERSONAS), encoding="utf-8")
    suite = {
        "schema_version": 1, "name": "tiny", "scenes": "all", "personas": "personas.yaml",
        "scenes_file": "scenes.yaml", "modes": list(modes), "repeats": repeats, "k": 2, "seed": 3,
        "texts": {"office": [{"text": "white shirt", "expect": {"category": "shirts", "colour": "white"}}],
                  "weekend": [{"text": "blue jeans", "expect": {"category": "jeans", "colour": "blue"}},
                              {"text": "black tshirt", "expect": {"category": "tshirts", "colour": "black"}}]},
        "probes": {"recall_k": 10, "ranking_negatives": 5},
    }
    path = root / "suite.yaml"
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    return store, path


def recommender(store: ArtifactStore, scenes_path: Path, *, drop_rules: bool = False):
    """The real Recommender over the tiny catalog (catalog-filter recall, no models), built
    exactly as `mmrec bench run` builds it (mini profile, ``scenes_path`` override).

    ``drop_rules``: a degraded build whose candidate filter ignores the scene rules (only the
    slot is checked), the kind of regression the release gate must catch.
    """
    import numpy as np

    from mmrec.config import load_config
    from mmrec.recommend import Recommender

    cfg = load_config("recommend", profile="mini", overrides=[f"scenes_path={scenes_path}"])
    rec = Recommender.from_store(store, config=cfg)
    if drop_rules:  # the catalog-filter candidates: any item of the slot, rules or not
        source = rec.candidates
        source.allowed_mask = lambda scene, slot: np.asarray(source.items.slot == slot, dtype=bool)
    return rec
