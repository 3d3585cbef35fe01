"""Serve an A/B experiment: one recommender per variant, each request routed by its user.

Only what a variant changes is built per variant: its ranker (loaded once per distinct
version) and, with compose overrides, its outfit composer. Everything else -- the catalog,
recall (index, encoder, candidate cache), photo models, query reader, explanations -- is the
control recommender's, shared by reference, so an experiment costs one extra ranker in memory,
not one extra recommender.

`VariantRecommender` stands where a `Recommender` stands (the holder, the API): catalog-level
attributes (``items``, ``scenes``, ``recall``, ``candidates``, ``photo``...) are the shared
ones, so live stock changes and reloads apply to every variant at once.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from mmrec.ab.config import NO_RANKER, ABConfig, VariantConfig
from mmrec.outfit.compose import Composer
from mmrec.recommend.components import PropensityRanker
from mmrec.recommend.recommender import Recommender, next_generation

if TYPE_CHECKING:
    from mmrec.api_models import RecommendRequest, RecommendResponse
    from mmrec.artifacts import ArtifactStore

_ABSENT = "absent (recall order)"
# compose settings that scene_fit reads: a variant overriding none of them shares the
# control's per-scene fit arrays instead of computing its own
_SCENE_FIT_FIELDS = {"usage_weights", "other_usage", "unknown_usage", "off_season",
                     "preferred_colour", "plain_colour", "avoided_colour"}


def _variant_of(base: Recommender, ab: ABConfig, v: VariantConfig,
                ranker: PropensityRanker | None) -> Recommender:
    """A shallow copy of ``base`` with the variant's ranker and compose settings."""
    rec = copy.copy(base)
    rec.ranker = ranker
    if v.compose:
        compose = base.cfg.compose.model_copy(update=v.compose)
        rec.cfg = base.cfg.model_copy(update={"compose": compose})
        rec.composer = Composer(base.items, base.compat, compose)
        # pair compatibility depends on the catalog and compat model only, never on compose
        # weights: the variant reuses the control's matrices (the largest cache of the path)
        rec.composer._pairs = base.composer._pairs
        if not (_SCENE_FIT_FIELDS & set(v.compose)):
            rec.composer._fit = base.composer._fit
        else:
            for scene in base.scenes.scenes.values():
                rec.composer.scene_fit(scene)  # now, not on a request
    rec.versions = {**base.versions,
                    "ranker": getattr(ranker, "version", "?") if ranker is not None else _ABSENT,
                    "experiment": ab.experiment, "variant": v.name}
    if v.compose:
        rec.versions["compose"] = ",".join(f"{k}={v.compose[k]}" for k in sorted(v.compose))
    return rec


class VariantRecommender:
    """Routes each request to its user's variant (`ABConfig.assign`).

    Args:
        base: the control recommender, built as without an experiment.
        ab: the experiment.
        rankers: each variant's ranker (None: recall order); a variant not listed uses
            ``base.ranker``.
    """

    def __init__(self, base: Recommender, ab: ABConfig,
                 rankers: dict[str, PropensityRanker | None] | None = None):
        rankers = rankers or {}
        self.ab = ab
        self.control = base
        self.generation = next_generation()
        self.variants: dict[str, Recommender] = {
            v.name: _variant_of(base, ab, v, rankers.get(v.name, base.ranker)) for v in ab.variants}
        self.versions = {**base.versions, "experiment": ab.experiment, "variants": ",".join(ab.names)}

    def __getattr__(self, name: str) -> Any:
        # called only for attributes not set above: the shared, catalog-level parts
        if name == "control":  # during copy/pickle before __init__ ran
            raise AttributeError(name)
        return getattr(self.control, name)

    def with_base(self, base: Recommender) -> "VariantRecommender":
        """The same experiment over another control (live catalog changes,
        `mmrec.recommend.catalog_live`): every variant keeps its ranker."""
        return VariantRecommender(base, self.ab, {n: v.ranker for n, v in self.variants.items()})

    def route(self, user_id: str | None) -> Recommender:
        return self.variants[self.ab.assign(user_id)]

    def recommend(self, request: "RecommendRequest", **kw: Any) -> "RecommendResponse":
        """The user's variant answers; its name is in the response's ``versions["variant"]``."""
        return self.route(request.user_id).recommend(request, **kw)


def load_recommender(store: "ArtifactStore", ab: ABConfig | None = None, *,
                     background_prewarm: bool = False, **load_options: Any
                     ) -> "Recommender | VariantRecommender":
    """`Recommender.from_store`, split over the variants of ``ab`` when given.

    Args:
        ab: the experiment (serve.yaml ``ab``); None: the plain recommender, unchanged.
        load_options: as `Recommender.from_store` (config, profile, with_photo_models...).
    """
    base = Recommender.from_store(store, background_prewarm=background_prewarm, **load_options)
    if ab is None:
        return base
    loaded: dict[str, PropensityRanker] = {}
    rankers: dict[str, PropensityRanker | None] = {}
    for v in ab.variants:
        if v.ranker is None:
            continue
        if v.ranker == NO_RANKER:
            rankers[v.name] = None
            continue
        if v.ranker not in loaded:
            from mmrec.rank.ranker import Ranker

            if getattr(base.ranker, "version", None) == v.ranker:
                loaded[v.ranker] = base.ranker
            else:
                loaded[v.ranker] = Ranker.load(store, v.ranker, items=load_options.get("items_table"))
        rankers[v.name] = loaded[v.ranker]
    return VariantRecommender(base, ab, rankers)
