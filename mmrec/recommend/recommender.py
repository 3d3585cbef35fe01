"""The `Recommender` facade: recall -> rank -> compose outfits -> explain, without Ray.

Built from injected components (any of recall, ranker, tagger, encoder and user store may be
absent); `Recommender.from_store` loads whatever artifacts exist (`mmrec.recommend.loading`).
A missing component is never imitated: the request path that needs it degrades in a stated
way, and every response says so in ``versions`` and ``notes``:

- no recall index: candidates come from a catalog filter (scene rules, slot, gender, stock),
  ordered by scene fit -- a real, if plain, retrieval;
- no ranker: propensity is the recall order (fused score, normalised per slot);
- no tagger: a photo's slot is the majority slot of its nearest catalog neighbours (encoder);
- no encoder: a photo is described by the tagger's attributes only;
- neither: the photo routes answer 503 (`ComponentMissing`).

Each step lives in its own module: `candidates` (masks, recall cache), `query` (typed text),
`photo_anchor` (a photo's slot and look-alikes), `response` (shaping and explanations).
"""

from __future__ import annotations

import itertools
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrec.api_models import RecommendRequest, RecommendResponse
from mmrec.errors import MmrecError
from mmrec.outfit.compat import CompatScorer
from mmrec.outfit.compose import Composer
from mmrec.outfit.explain import Explainer, taste_from_history
from mmrec.outfit.items import ItemTable
from mmrec.outfit.photo import PhotoAnalysis, PhotoModels
from mmrec.outfit.priors import CooccurrencePriors
from mmrec.outfit.scenes import Scene, SceneBook
from mmrec.recommend.candidates import CandidateSource
from mmrec.recommend.components import CandidateRecall, PropensityRanker, UserDirectory
from mmrec.recommend.config import RecommenderConfig
from mmrec.recommend.context import Attempt, Candidates, RequestContext, elapsed_ms
from mmrec.recommend.loading import load_parts
from mmrec.recommend.photo_anchor import PhotoAnchoring, SlotFrom
from mmrec.recommend.query import QueryReader
from mmrec.recommend.response import ResponseShaper
from mmrec.embed.photo_refs import PhotoRefs
from mmrec.recommend.slot_confidence import SlotCalibrator, SlotHint
from mmrec.taxonomy import Taxonomy, default_taxonomy

if TYPE_CHECKING:
    from mmrec.artifacts import ArtifactStore

SIMULATED_USERS_NOTE = "shopper profiles and histories are simulated for this catalog"
_GENERATIONS = itertools.count(1)  # a process-unique number per Recommender state (cache keys)


def next_generation() -> int:
    """A new cache generation: a new recommender, or new stock/prices in a running one."""
    return next(_GENERATIONS)
_GENDERS = ("men", "women", "boys", "girls")


class Recommender:
    """Outfit recommendations over one catalog version.

    Args:
        items: the catalog in memory.
        scenes: the scene book.
        recall: multi-route recall (`mmrec.recall.service.Recall`; None: catalog filter).
        ranker: propensity ranker (`mmrec.rank.ranker.Ranker`; None: recall order).
        users: shopper profiles and histories (`mmrec.rank.users.UserStore`; None: every request
            is anonymous).
        photo: tagger/encoder for photos (None: photo routes answer 503).
        priors: Polyvore co-occurrence priors (None: that compatibility term is left out).
        config: sizes and weights.
        versions: artifact versions to report (kind -> version); components add their own.
        notes: what loading found missing, said in every response.
        users_simulated: the user store holds simulated shoppers (said in every personalised
            response; a profile with ``simulated=True`` is flagged either way).
        slot_calibrator: a photo reading's slot confidence; below its threshold the photo
            answer abstains (None: uncalibrated readings, never declined).
        photo_refs: labelled reference photos whose slots vote on a photo the tagger cannot
            place (None: its catalog look-alikes vote).
    """

    def __init__(self, items: ItemTable, scenes: SceneBook, *, recall: CandidateRecall | None = None,
                 ranker: PropensityRanker | None = None, users: UserDirectory | None = None,
                 photo: PhotoModels | None = None, priors: CooccurrencePriors | None = None,
                 config: RecommenderConfig | None = None, taxonomy: Taxonomy | None = None,
                 versions: dict[str, str] | None = None, notes: list[str] | None = None,
                 users_simulated: bool = False, slot_calibrator: SlotCalibrator | None = None,
                 photo_refs: PhotoRefs | None = None):
        self.cfg = config or RecommenderConfig()
        self.generation = next_generation()
        self.tax = taxonomy or items.taxonomy or default_taxonomy()
        self.items = items
        self.scenes = scenes
        self.recall = recall
        self.ranker = ranker
        self.users = users
        self.photo = photo or PhotoModels()
        self.priors = priors
        self.users_simulated = users_simulated
        self.compat = CompatScorer(items, self.tax, priors, self.cfg.compat)
        self.composer = Composer(items, self.compat, self.cfg.compose)
        self.explainer = Explainer(self.tax, scenes, self.cfg.explain)
        self.candidates = CandidateSource(items, scenes, self.composer, recall, self.cfg)
        self.photos = PhotoAnchoring(items, self.tax, recall, self.cfg.photo_similar_k,
                                     self.cfg.photo_min_confidence, slot_calibrator,
                                     self.cfg.photo_abstain_below, photo_refs)
        self.queries = QueryReader(self.tax, scenes)
        self.shaper = ResponseShaper(items, self.explainer, self.tax)
        self.load_notes = list(notes or [])
        self.versions = self._versions(versions or {})

    def _versions(self, extra: dict[str, str]) -> dict[str, str]:
        v = {"items": self.items.version, "scenes": self.scenes.version,
             "outfit_priors": self.priors.version if self.priors else "absent",
             "ranker": getattr(self.ranker, "version", "?") if self.ranker else "absent (recall order)",
             "users": "absent" if self.users is None else ("simulated" if self.users_simulated else "loaded")}
        if self.recall is not None:
            v.update({k: str(x) for k, x in getattr(self.recall, "versions", {}).items()})
            v.setdefault("recall", "loaded")
        else:
            v["recall"] = "absent (catalog filter)"
        v.update(self.photo.versions)
        v.update(extra)
        return v

    @classmethod
    def from_store(cls, store: "ArtifactStore", *, background_prewarm: bool = False,
                   **load_options: Any) -> "Recommender":
        """Build from the CURRENT artifacts under ``store`` (only ``items`` is required) and warm up.

        Args:
            background_prewarm: return before the shopper segments' candidates are cached
                (faster start; the first minute's requests then compete with the pre-warm).
            load_options: what to load and how (`mmrec.recommend.loading.load_parts`: config,
                with_photo_models, device, profile, photo_tagger, photo_mirror, items_table).
        """
        parts = load_parts(store, **load_options)
        return cls(parts.items, parts.scenes, **parts.kwargs()).warm(background=background_prewarm)

    def warm(self, *, background: bool = False) -> "Recommender":
        """Precompute masks and scene fit, and cache the scene-only candidates of every scene,
        slot and gender now and of every shopper segment (in a background thread when
        ``background``), so that no scene-only request pays for recall."""
        segments: list[tuple[str | None, str | None]] = []
        if self.users is not None and hasattr(self.users, "ids"):
            segments = sorted({(p.segment, p.gender) for p in map(self.users.get, self.users.ids())
                               if p is not None and getattr(p, "segment", None)}, key=str)
        self.queries.warm()
        self.candidates.warm(segments, background=background)
        return self

    # ------------------------------------------------------------------ public API
    def scene(self, name: str) -> Scene:
        return self.scenes.get(name)

    def item(self, item_id: str) -> dict[str, Any]:
        return self.items.row(item_id)

    def analyze_photo(self, image: Any) -> PhotoAnalysis:
        return self.photo.analyze(image)

    def similar_to_photo(self, photo: PhotoAnalysis, k: int = 12,
                         genders: list[str] | None = None) -> tuple[str | None, str, list[str]]:
        """(slot, how the slot was found, similar catalog item ids) for a photo, any scene."""
        return self.photos.similar_to_photo(photo, k, genders)

    def recommend(self, request: RecommendRequest, *, photo: PhotoAnalysis | None = None,
                  image: Any | None = None, slot_hint: SlotHint | None = None) -> RecommendResponse:
        """Outfits for ``request``; with ``photo`` (already analysed) or ``image`` (PIL, analysed
        here) the look is built around the photo -- in the shopper's ``slot_hint`` if given, else
        in the slot read from it, or none at all when that reading is too unsure (abstained)."""
        t_start = time.perf_counter()
        ctx = RequestContext(request=request, scene=self.scenes.get(request.scene),
                             notes=list(self.load_notes), photo_hint=slot_hint)
        if image is not None and photo is None:
            t = time.perf_counter()
            photo = self.analyze_photo(image)
            ctx.timings["photo_ms"] = elapsed_ms(t)
        if photo is not None:
            ctx.timings.update(photo.timings)
        ctx.query, query_notes = self.queries.read(request.query_text, ctx.scene)
        ctx.scene = ctx.scene.with_request(ctx.query.slot)  # e.g. an outerwear template for a blazer
        self._read_shopper(ctx, request.user_id)
        self.candidates.place_request(ctx)  # "something pink": on which garment
        ctx.notes += query_notes

        attempt = self._attempt(ctx, photo, "rule")
        if not attempt.outfits and attempt.photo is not None and attempt.photo.slot is not None:
            attempt = self._second_opinion(ctx, photo, attempt)
        ctx.notes.extend(attempt.notes)
        abstained = attempt.photo is not None and attempt.photo.abstained
        if len(attempt.outfits) < request.k and not abstained:
            pools = attempt.candidates.pools
            empty = [s for s in ctx.scene.template_slots() if not len(pools.get(s, ()))]
            ctx.notes.append(f"{len(attempt.outfits)} of {request.k} outfits: the catalog has too few "
                             f"items passing {ctx.scene.name}'s rules and the filters"
                             + (f" (no candidates for {', '.join(empty)})" if empty else ""))
            if ctx.query.excluded:
                said = ", ".join(v for vals in ctx.query.excluded.values() for v in vals)
                ctx.notes.append(f"your search excludes {said}; fewer items are left to combine")

        t = time.perf_counter()
        outfits = self.shaper.outfits(ctx, attempt)
        ctx.timings["explain_ms"] = elapsed_ms(t)
        ctx.timings["total_ms"] = elapsed_ms(t_start)
        versions = dict(self.versions)
        if photo is not None:
            versions.update(photo.versions)
        return RecommendResponse(request_id=uuid.uuid4().hex, scene=ctx.scene.name, versions=versions,
                                 outfits=outfits, photo=attempt.photo, query=ctx.query.as_response(),
                                 notes=ctx.notes, timings=ctx.timings)

    # ------------------------------------------------------------------ steps
    def _second_opinion(self, ctx: RequestContext, photo: PhotoAnalysis, first: Attempt) -> Attempt:
        """A kiosk photo read into a slot that leaves nothing to wear with it (a bag the tagger
        read as a formal shirt, on a casual weekend): its nearest catalog look-alikes are the
        second opinion on the slot (the rule used without a tagger); failing that, the outfits
        are the scene's, matched to the photo's colours. Returns ``first`` when neither helps."""
        read = first.photo
        assert read is not None and read.slot is not None
        tries: tuple[SlotFrom, ...] = (("neighbours", "colours") if read.slot_source in ("tagger", "encoder")
                                        else ("colours",))
        for slot_from in tries:
            retry = self._attempt(ctx, photo, slot_from)
            if not retry.outfits or (slot_from == "neighbours" and retry.photo.slot == read.slot):
                continue
            how = (f"it is matched as a {retry.photo.slot} item, like its nearest catalog look-alikes"
                   if slot_from == "neighbours" else "outfits are matched to its colours only")
            retry.notes.append(f"the photo reads as a {read.slot} item, which left no "
                               f"{ctx.scene.label} outfit; {how}")
            return retry
        return first

    def _attempt(self, ctx: RequestContext, photo: PhotoAnalysis | None, slot_from: SlotFrom) -> Attempt:
        """Recall, rank and compose once (around the photo, if any); stage timings add up over
        attempts."""
        t = time.perf_counter()
        notes: list[str] = []
        anchor, photo_out, anchor_pool = None, None, []
        if photo is not None:
            placed = self.photos.anchor(photo, ctx.scene, ctx.genders,
                                        list(ctx.request.filters.exclude_item_ids), slot_from, ctx.photo_hint)
            anchor, photo_out, anchor_pool = placed.anchor, placed.out, placed.pool
            notes += placed.notes
            if photo_out.abstained:  # nothing is composed around a guess: the shopper is asked
                ctx.add_ms("recall_ms", t)
                return Attempt([], Candidates(), photo_out, [], notes)
        cands = self.candidates.pools(ctx, anchor, anchor_pool)
        notes += cands.notes
        ctx.add_ms("recall_ms", t)

        t = time.perf_counter()
        self._rank(ctx, cands)
        ctx.add_ms("rank_ms", t)

        t = time.perf_counter()
        request = ctx.request
        outfits = self.composer.compose(ctx.scene, cands.pools, request.k, anchor=anchor,
                                        require_slot=ctx.query.slot, allow_repeats=request.allow_repeats,
                                        max_total_price=request.filters.budget)
        ctx.add_ms("compose_ms", t)
        return Attempt(outfits, cands, photo_out, anchor_pool, notes,
                       photo_colour=anchor.attributes.get("colour") if anchor is not None else None)

    def _read_shopper(self, ctx: RequestContext, user_id: str | None) -> None:
        """Profile, history taste and whom the outfit is for (a stated gender wins)."""
        if user_id is not None:
            if self.users is None:
                ctx.notes.append("no user store loaded: the request is answered as anonymous")
            elif (user := self.users.get(user_id)) is None:
                ctx.notes.append(f"unknown user {user_id!r}: answered as a new (cold-start) shopper")
            else:
                history = self.users.history(user_id, limit=self.cfg.history_limit) if self.cfg.history_limit else []
                ctx.user = user
                ctx.taste = taste_from_history(self.items, history)
                ctx.occasions = list(getattr(user, "preferred_occasions", None) or [])
        ctx.genders = self._genders(ctx.request, ctx.user, ctx.query.gender)
        if ctx.user is not None and (self.users_simulated or getattr(ctx.user, "simulated", False)):
            ctx.notes.append(SIMULATED_USERS_NOTE)

    @staticmethod
    def _genders(request: RecommendRequest, user: Any | None, stated: str | None = None) -> list[str] | None:
        """Whom the outfit is for: the app's filter, else the gender the shopper typed ("for
        women", "男士"), else the profile's."""
        if request.filters.genders:
            return sorted(set(request.filters.genders) | {"unisex"})
        g = stated or (getattr(user, "gender", None) if user is not None else None)
        return [g, "unisex"] if g in _GENDERS else None

    def _rank(self, ctx: RequestContext, cands: Candidates) -> None:
        """Replace each pool's recall propensity with the ranker's, in place."""
        if self.ranker is None:
            return
        from mmrec.rank.ranker import RankContext

        ids = [self.items.ids[p] for pool in cands.pools.values() for p in pool.positions]
        if not ids:
            return
        rctx = RankContext(scene=ctx.scene.name, occasion=ctx.scene.usages[0],
                           season=ctx.request.filters.season, channel=ctx.request.channel)
        recall_info = {i: cands.info.get(i) or {"score": 0.0, "routes": cands.routes.get(i, {}),
                                                 "route_scores": {}} for i in ids}
        scores = np.asarray(self.ranker.score(ctx.user, rctx, ids, recall=recall_info), dtype=np.float32)
        if scores.shape != (len(ids),):
            raise MmrecError(f"ranker returned {scores.shape} scores for {len(ids)} items")
        at = 0
        for pool in cands.pools.values():
            n = len(pool)
            pool.propensity = np.clip(scores[at:at + n], 0.0, 1.0)
            at += n
