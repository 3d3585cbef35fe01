"""The `Recommender` facade: recall -> rank -> compose outfits -> explain, without Ray.

Built from injected components (any of recall, ranker, tagger, encoder and user store may be
absent); `Recommender.from_store` loads whatever artifacts exist. A missing component is never
imitated: the request path that needs it degrades in a stated way, and every response says so
in ``versions`` and ``notes``:

- no recall index: candidates come from a catalog filter (scene rules, slot, gender, stock),
  ordered by scene fit -- a real, if plain, retrieval;
- no ranker: propensity is the recall order (fused score, normalised per slot);
- no tagger: a photo's slot is the majority slot of its nearest catalog neighbours (encoder);
- no encoder: a photo is described by the tagger's attributes only;
- neither: the photo routes answer 503 (`ComponentMissing`).
"""

from __future__ import annotations

import atexit
import itertools
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from mmrec.api_models import (ExplanationOut, FactOut, OutfitItemOut, OutfitOut, PhotoOut,
                              RecommendRequest, RecommendResponse)
from mmrec.artifacts import ArtifactStore
from mmrec.config import StrictModel
from mmrec.errors import ArtifactNotFound, MmrecError
from mmrec.lru import LRU
from mmrec.outfit.compat import CompatConfig, CompatScorer, Features
from mmrec.outfit.compose import Anchor, ComposeConfig, Composer, SlotPool
from mmrec.outfit.explain import ExplainConfig, ExplainContext, Explainer, harmony_of, taste_from_history
from mmrec.outfit.items import ItemTable
from mmrec.outfit.loading import PREDICTIONS_KIND, attach_vectors, merge_predictions
from mmrec.outfit.photo import ComponentMissing, PhotoAnalysis, PhotoModels  # noqa: F401 (re-exported)
from mmrec.outfit.priors import CooccurrencePriors
from mmrec.outfit.scenes import Scene, SceneBook, genders_compatible
from mmrec.taxonomy import Taxonomy, default_taxonomy

SIMULATED_USERS_NOTE = "shopper profiles and histories are simulated for this catalog"
# Fields a typed query may constrain, in the order a mention is read (a category wins).
QUERY_FIELDS = ("category", "colour", "pattern", "material", "fit", "sleeve", "neckline", "usage")


# Background pre-warming stops at interpreter exit: a daemon thread killed inside a torch
# call aborts the process ("terminate called without an active exception").
_STOP_PREWARM = threading.Event()
_GENERATIONS = itertools.count(1)  # a process-unique number per Recommender (cache keys)
_PREWARM_THREADS: list[threading.Thread] = []


@atexit.register
def _stop_prewarm() -> None:
    _STOP_PREWARM.set()
    for t in _PREWARM_THREADS:
        t.join(timeout=10)


@dataclass
class TypedQuery:
    """What the shopper typed, read with the taxonomy: the slot it is about and its values."""

    text: str | None = None
    slot: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)


class RecommenderConfig(StrictModel):
    """Stage ``recommend``: candidate sizes, search, compatibility and explanations."""

    scenes_path: str | None = None  # default: configs/scenes.yaml
    candidates_per_slot: int = Field(60, ge=1, le=2000)
    photo_similar_k: int = Field(12, ge=1, le=200)
    photo_min_confidence: float = Field(0.5, ge=0, le=1)  # tagged values used below this are ignored
    history_limit: int = Field(50, ge=0, le=1000)
    recall_cache_size: int = Field(8192, ge=0, le=1_000_000)
    prewarm_recall: bool = True  # at load: anonymous candidates of every scene/slot/gender
    compose: ComposeConfig = ComposeConfig()
    compat: CompatConfig = CompatConfig()
    explain: ExplainConfig = ExplainConfig()


class Recommender:
    """Outfit recommendations over one catalog version.

    Args:
        items: the catalog in memory.
        scenes: the scene book.
        recall: a `mmrec.recall.service.Recall` (or None: catalog filter).
        ranker: a `mmrec.rank.ranker.Ranker` (or None: recall order).
        users: a `mmrec.rank.users.UserStore` (or None: every request is anonymous).
        photo: tagger/encoder for photos (or None: photo routes answer 503).
        priors: Polyvore co-occurrence priors (or None: that compatibility term is left out).
        config: sizes and weights.
        versions: artifact versions to report (kind -> version); components add their own.
        users_simulated: the user store holds simulated shoppers (said in every personalised
            response; a profile with ``simulated=True`` is flagged either way).
    """

    def __init__(self, items: ItemTable, scenes: SceneBook, *, recall: Any | None = None,
                 ranker: Any | None = None, users: Any | None = None,
                 photo: PhotoModels | None = None, priors: CooccurrencePriors | None = None,
                 config: RecommenderConfig | None = None, taxonomy: Taxonomy | None = None,
                 versions: dict[str, str] | None = None, notes: list[str] | None = None,
                 users_simulated: bool = False):
        self.cfg = config or RecommenderConfig()
        self.generation = next(_GENERATIONS)
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
        self.load_notes = list(notes or [])
        self._cache = LRU(self.cfg.recall_cache_size)
        self._allowed: dict[tuple[str, str], np.ndarray] = {}
        self._genders_ok: dict[tuple[str, ...], np.ndarray] = {}
        v = {"items": items.version, "scenes": scenes.version,
             "outfit_priors": priors.version if priors else "absent",
             "ranker": getattr(ranker, "version", "?") if ranker else "absent (recall order)",
             "users": "absent" if users is None else ("simulated" if users_simulated else "loaded")}
        if recall is not None:
            v.update({k: str(x) for k, x in getattr(recall, "versions", {}).items()})
            v.setdefault("recall", "loaded")
        else:
            v["recall"] = "absent (catalog filter)"
        v.update(self.photo.versions)
        v.update(versions or {})
        self.versions: dict[str, str] = v

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_store(cls, store: ArtifactStore, *, config: RecommenderConfig | None = None,
                   with_photo_models: bool = True, device: str = "cpu",
                   profile: str = "mini", background_prewarm: bool = False,
                   photo_tagger: bool = True, photo_mirror: bool = False,
                   items_table: Any | None = None) -> "Recommender":
        """Build from the CURRENT artifacts under ``store``; only ``items`` is required.

        Args:
            with_photo_models: load tagger/encoder here (False when a separate Ray
                deployment serves photos).
            profile: config profile of the recall stage (tiny | mini | standard).
            background_prewarm: return before the shopper segments' candidates are cached
                (faster start; the first minute's requests then compete with the pre-warm).
            photo_tagger: read photos with the tagger too (False: encoder only).
            photo_mirror: the tagger reads each photo with its mirror image too (`PhotoModels`).
            items_table: serve this items table (a pyarrow table of the index's items version with
                amended rows, e.g. new arrivals read by the models) instead of the stored one.
        """
        from mmrec.catalog.ingest import load_items

        cfg = config or RecommenderConfig()
        tax = default_taxonomy()
        scenes = SceneBook.load(cfg.scenes_path, tax)
        notes: list[str] = []
        recall = None
        if store.current_version("index"):
            from mmrec.recall.service import Recall

            recall = Recall.load(store, profile=profile, items=items_table)  # with the encoder that made the vectors
        else:
            notes.append("no recall index: candidates from the catalog filter (mmrec index build)")
        # the catalog version the index was built from, so that rules, facts and candidates agree
        items_version = (recall.versions.get("items") if recall is not None else None) or None
        items_art = store.load("items", items_version)
        table = items_table if items_table is not None else load_items(store, items_art.version)
        items = ItemTable(table, items_art.version, tax)
        if recall is not None and attach_vectors(items, store, recall.versions.get("vectors") or None) is None:
            notes.append("no vectors artifact: compatibility without embeddings")
        n_pred = merge_predictions(items, store)
        if n_pred:
            notes.append(f"{n_pred} model-tagged attributes fill gaps in the catalog (cited with "
                         "their confidence; scene rules still judge catalog values only)")
        latest = store.current_version("items")
        if latest != items_art.version:
            notes.append(f"items/{latest} is newer than the index's items/{items_art.version}: "
                         "rebuild the index to serve it")
        priors = None
        try:
            priors = CooccurrencePriors.load(store)
        except ArtifactNotFound:
            notes.append("no outfit_priors artifact: compatibility without co-occurrence priors "
                         "(mmrec outfit priors --source ../shared/data/polyvore_outfits)")
        photo = PhotoModels()
        extra_versions: dict[str, str] = {}
        if with_photo_models:
            photo, photo_notes = PhotoModels.from_store(
                store, device=device, encoder=getattr(recall, "encoder", None), with_tagger=photo_tagger,
                tagger_mirror=photo_mirror)
            notes += photo_notes
        else:  # photo responses carry the versions the photo deployment used
            extra_versions = {"tagger": "photo deployment", "encoder": "photo deployment"}
        ranker = None
        if store.current_version("ranker"):
            from mmrec.rank.ranker import Ranker

            ranker = Ranker.load(store, items=items_table)
        else:
            notes.append("no ranker artifact: candidates keep their recall order")
        users = None
        try:
            from mmrec.rank.users import UserStore

            users = UserStore.load(store)  # the simulated shoppers of the Myntra logs
        except (ImportError, ArtifactNotFound):
            notes.append("no user store: every request is anonymous")
        versions = dict(extra_versions)
        if n_pred:
            versions[PREDICTIONS_KIND] = store.current_version(PREDICTIONS_KIND)
        if users is not None and getattr(users, "version", None):
            versions["users"] = f"{users.version} (simulated)"
        return cls(items, scenes, recall=recall, ranker=ranker, users=users, photo=photo,
                   priors=priors, config=cfg, taxonomy=tax, notes=notes, versions=versions,
                   users_simulated=users is not None).warm(background=background_prewarm)

    # ------------------------------------------------------------------ public API
    def scene(self, name: str) -> Scene:
        return self.scenes.get(name)

    def analyze_photo(self, image: Any) -> PhotoAnalysis:
        return self.photo.analyze(image)

    def recommend(self, request: RecommendRequest, *, photo: PhotoAnalysis | None = None,
                  image: Any | None = None) -> RecommendResponse:
        """Outfits for ``request``; with ``photo`` (already analysed) or ``image`` (PIL, analysed
        here) the look is built around the photo."""
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        notes = list(self.load_notes)
        scene = self.scenes.get(request.scene)
        if image is not None and photo is None:
            t = time.perf_counter()
            photo = self.analyze_photo(image)
            timings["photo_ms"] = _ms(t)
        if photo is not None:
            timings.update(photo.timings)
        user, taste, occasions = self._user(request.user_id, notes)
        genders = self._genders(request, user)
        if user is not None and (self.users_simulated or getattr(user, "simulated", False)):
            notes.append(SIMULATED_USERS_NOTE)

        query = self.parse_query(request.query_text, scene, notes)
        anchor_notes: list[str] = []
        built = self._build(scene, request, genders, user, query, photo, None, anchor_notes, timings)
        outfits, pools, routes, info, photo_out, anchor_pool = built
        if not outfits and photo_out is not None and photo_out.slot is not None:
            # A kiosk photo read into a slot that leaves nothing to wear with it (a bag the tagger
            # read as a formal shirt, on a casual weekend): its nearest catalog look-alikes are
            # the second opinion on the slot (the rule used without a tagger); failing that, the
            # outfits are the scene's, matched to the photo's colours.
            tries = ("neighbours", "colours") if photo_out.slot_source == "tagger" else ("colours",)
            for slot_from in tries:
                retry_notes: list[str] = []
                retry = self._build(scene, request, genders, user, query, photo, slot_from, retry_notes, timings)
                if not retry[0] or (slot_from == "neighbours" and retry[4].slot == photo_out.slot):
                    continue
                how = (f"it is matched as a {retry[4].slot} item, like its nearest catalog look-alikes"
                       if slot_from == "neighbours" else "outfits are matched to its colours only")
                anchor_notes = retry_notes + [f"the photo reads as a {photo_out.slot} item, which left "
                                              f"no {scene.label} outfit; {how}"]
                outfits, pools, routes, info, photo_out, anchor_pool = retry
                break
        notes.extend(anchor_notes)
        if len(outfits) < request.k:
            empty = [s for s in scene.template_slots() if not len(pools.get(s, ()))]
            notes.append(f"{len(outfits)} of {request.k} outfits: the catalog has too few items "
                         f"passing {scene.name}'s rules and the filters"
                         + (f" (no candidates for {', '.join(empty)})" if empty else ""))

        t = time.perf_counter()
        out: list[OutfitOut] = []
        for o in outfits:
            ids = [self.items.ids[p] for p in o.positions]
            expl = None
            if request.explain:
                ctx = ExplainContext(
                    scene=scene, taste=taste, profile_occasions=occasions,
                    routes={i: routes.get(i, {}) for i in ids}, query_text=request.query_text,
                    photo_similar=(set(photo_out.similar) | set(anchor_pool)) if photo_out else set(),
                    harmony=harmony_of((self.items.row(i).get("colour") for i in ids), self.tax))
                e = self.explainer.explain(self.items, ids, ctx)
                expl = ExplanationOut(text=e.text, facts=[FactOut(**f.__dict__) for f in e.facts],
                                      statements=e.statements, supported=e.supported, fallback=e.fallback)
            out.append(OutfitOut(
                items=[self._item_out(i, s, p) for i, s, p in zip(ids, o.slots, o.propensity)],
                score=round(o.score, 6), compatibility=round(o.compat, 6), template=o.template,
                explanation=expl))
        timings["explain_ms"] = _ms(t)
        timings["total_ms"] = _ms(t_start)
        versions = dict(self.versions)
        if photo is not None:
            versions.update(photo.versions)
        return RecommendResponse(request_id=uuid.uuid4().hex, scene=scene.name, versions=versions,
                                 outfits=out, photo=photo_out, notes=notes, timings=timings)

    def similar_to_photo(self, photo: PhotoAnalysis, k: int = 12,
                         genders: list[str] | None = None) -> tuple[str | None, str, list[str]]:
        """(slot, how the slot was found, similar catalog item ids) for a photo, any scene."""
        slot, how = self._photo_slot(photo)
        ids = self._similar(photo, slot, genders, k, exclude=[])
        if slot is None and ids:
            slot, how = self._majority_slot(ids), "neighbours"
            ids = self._similar(photo, slot, genders, k, exclude=[]) if slot else ids
        return slot, how, ids

    def item(self, item_id: str) -> dict[str, Any]:
        return self.items.row(item_id)

    # ------------------------------------------------------------------ steps
    def _build(self, scene: Scene, request: RecommendRequest, genders: list[str] | None, user: Any | None,
               query: Any, photo: PhotoAnalysis | None, slot_from: str | None, notes: list[str],
               timings: dict[str, float]):
        """Recall, rank and compose once (around the photo, if any; ``slot_from`` as in
        `_anchor`). Returns (outfits, pools, routes, info, photo out, anchor pool); stage
        timings add up over calls."""
        t = time.perf_counter()
        anchor, photo_out, anchor_pool = None, None, []
        if photo is not None:
            anchor, photo_out, anchor_pool = self._anchor(photo, scene, genders, request, notes, slot_from)
        pools, routes, info = self._pools(scene, request, genders, user, anchor, anchor_pool, query, notes)
        _add_ms(timings, "recall_ms", t)

        t = time.perf_counter()
        self._rank(pools, routes, info, scene, request, user)
        _add_ms(timings, "rank_ms", t)

        t = time.perf_counter()
        outfits = self.composer.compose(scene, pools, request.k, anchor=anchor, require_slot=query.slot,
                                        allow_repeats=request.allow_repeats,
                                        max_total_price=request.filters.budget)
        _add_ms(timings, "compose_ms", t)
        return outfits, pools, routes, info, photo_out, anchor_pool

    def _user(self, user_id: str | None, notes: list[str]):
        if user_id is None:
            return None, {}, []
        if self.users is None:
            notes.append("no user store loaded: the request is answered as anonymous")
            return None, {}, []
        user = self.users.get(user_id)
        if user is None:
            notes.append(f"unknown user {user_id!r}: answered as a new (cold-start) shopper")
            return None, {}, []
        history = self.users.history(user_id, limit=self.cfg.history_limit) if self.cfg.history_limit else []
        taste = taste_from_history(self.items, history)
        occasions = list(getattr(user, "preferred_occasions", None) or [])
        return user, taste, occasions

    @staticmethod
    def _genders(request: RecommendRequest, user: Any | None) -> list[str] | None:
        if request.filters.genders:
            return sorted(set(request.filters.genders) | {"unisex"})
        g = getattr(user, "gender", None) if user is not None else None
        if g in ("men", "women", "boys", "girls"):
            return [g, "unisex"]
        return None

    def _allowed_mask(self, scene: Scene, slot: str) -> np.ndarray:
        """Items that may fill ``slot`` in ``scene`` on catalog truth (cached per scene/slot)."""
        key = (scene.name, slot)
        m = self._allowed.get(key)
        if m is None:
            m = np.zeros(len(self.items), dtype=bool)
            rows = self.items.rows
            for p in np.flatnonzero(self.items.slot == slot):
                m[p] = not scene.item_violations(rows[p], slot)
            self._allowed[key] = m
        return m

    def _gender_mask(self, genders: tuple[str, ...]) -> np.ndarray:
        m = self._genders_ok.get(genders)
        if m is None:
            codes = {"men": 1, "women": 2, "boys": 3, "girls": 4}
            allowed = [0] + [codes[g] for g in genders if g in codes]  # 0: unisex or unknown
            m = self._genders_ok[genders] = np.isin(self.items.gender, allowed)
        return m

    def warm(self, *, background: bool = False) -> "Recommender":
        """Precompute per-scene masks and scene fit, and (with a recall index and
        ``prewarm_recall``) the scene-only candidates of every scene, slot and gender now, and
        of every shopper segment in a background thread, so that no scene-only request pays
        for recall."""
        for scene in self.scenes.scenes.values():
            self.composer.scene_fit(scene)
            for slot in scene.template_slots():
                self._allowed_mask(scene, slot)
        if self.recall is None or not self.cfg.prewarm_recall:
            return self
        self._prewarm([(None, g) for g in (None, ["men", "unisex"], ["women", "unisex"])])
        if self.users is not None and hasattr(self.users, "ids"):
            combos = sorted({(p.segment, p.gender) for p in map(self.users.get, self.users.ids())
                             if p is not None and getattr(p, "segment", None)}, key=str)
            todo = [(seg, [g, "unisex"] if g in ("men", "women", "boys", "girls") else None)
                    for seg, g in combos]
            if background:
                t = threading.Thread(target=self._prewarm, args=(todo,), name="mmrec-prewarm",
                                     daemon=True)
                _PREWARM_THREADS.append(t)
                t.start()
            else:
                self._prewarm(todo)
        return self

    def _prewarm(self, combos: list[tuple[str | None, list[str] | None]]) -> None:
        k = self.cfg.candidates_per_slot
        for segment, genders in combos:
            for scene in self.scenes.scenes.values():
                for slot in scene.template_slots():
                    if _STOP_PREWARM.is_set():
                        return
                    self._recall(scene, slot, scene.query, genders, segment, True, k)

    def _hard_mask(self, scene: Scene, slot: str, request: RecommendRequest,
                   genders: list[str] | None) -> np.ndarray:
        m = self._allowed_mask(scene, slot).copy()
        f = request.filters
        if f.in_stock_only:
            m &= self.items.in_stock
        if genders is not None:
            m &= self._gender_mask(tuple(genders))
        if f.price_max is not None or f.budget is not None:
            cap = min(x for x in (f.price_max, f.budget) if x is not None)
            m &= ~np.isnan(self.items.price) & (np.nan_to_num(self.items.price, nan=np.inf) <= cap)
        if f.exclude_item_ids:
            m[self.items.positions([i for i in f.exclude_item_ids if i in self.items.index])] = False
        return m

    def parse_query(self, text: str | None, scene: Scene, notes: list[str]) -> TypedQuery:
        """Read typed text with the taxonomy ("navy blue shirt" -> top: shirts, navy blue).

        When it names a category the scene allows, that slot's candidates come from the text
        (and match its values when any can) while the other slots keep the scene's candidates.
        """
        if not text:
            return TypedQuery()
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
            notes.append(f"{text!r} asks for {cat}, which {scene.label} outfits do not use; "
                         "the outfits follow the scene instead")
            return TypedQuery()  # the scene's own (cached) candidates, no text claims
        return TypedQuery(text, slot, attrs)

    def _pools(self, scene: Scene, request: RecommendRequest, genders: list[str] | None,
               user: Any | None, anchor: Anchor | None, anchor_pool: list[str],
               query: TypedQuery, notes: list[str]) -> tuple[dict[str, SlotPool], dict[str, dict[str, int]],
                                                             dict[str, dict[str, Any]]]:
        routes: dict[str, dict[str, int]] = {}
        info: dict[str, dict[str, Any]] = {}  # recall's view of each candidate, for the ranker
        pools: dict[str, SlotPool] = {}
        k = self.cfg.candidates_per_slot
        if request.filters.price_max is not None or request.filters.budget is not None:
            if np.isnan(self.items.price).all():
                notes.append("the catalog has no prices: no item can be shown to fit the budget")
        for slot in scene.template_slots():
            mask = self._hard_mask(scene, slot, request, genders)
            if anchor is not None and slot == anchor.slot and anchor_pool:
                # the anchor slot offers the catalog items most like the photo
                ids = [i for i in anchor_pool if mask[self.items.index[i]]]
                for rank, i in enumerate(ids, 1):
                    routes[i] = {**routes.get(i, {}), "image": rank}  # copy: may be a cached dict
                pos = self.items.positions(ids)
                pools[slot] = SlotPool(slot, pos, 1.0 / (1.0 + np.arange(len(pos), dtype=np.float32) / 10))
                continue
            if self.recall is None:
                if query.slot == slot:  # typed text: the items matching what it names, if any
                    exact = mask & np.array([all(r.get(f) == v for f, v in query.attrs.items())
                                             for r in self.items.rows], dtype=bool)
                    mask = exact if exact.any() else mask
                pos = np.flatnonzero(mask)
                fit = self.composer.scene_fit(scene)[pos]
                order = np.argsort(-fit, kind="stable")[:k]
                pos = pos[order]
                for rank, p in enumerate(pos, 1):
                    routes.setdefault(self.items.ids[p], {})["catalog"] = rank
                pools[slot] = SlotPool(slot, pos, fit[order].astype(np.float32))
                continue
            segment = getattr(user, "segment", None) if user is not None else None
            got = self._slot_candidates(scene, slot, query, genders, segment, request, k, mask)
            if query.slot == slot and len(query.attrs) > 1:
                exact = [j for j, i in enumerate(got.ids)
                         if all(self.items.row(i).get(f) == v for f, v in query.attrs.items())]
                if exact:
                    got = got.subset(exact)
                else:
                    notes.append(f"no {' '.join(query.attrs.values())} fits {scene.label} and the "
                                 "filters; showing the closest")
            # shared, read-only per-item dicts (the cached entry's); never mutated downstream
            routes.update(got.routes)
            info.update(got.info)
            pools[slot] = SlotPool(slot, got.positions, got.propensity)
        return pools, routes, info

    def _slot_candidates(self, scene: Scene, slot: str, query: TypedQuery, genders: list[str] | None,
                         segment: str | None, request: RecommendRequest, k: int,
                         mask: np.ndarray) -> "_SlotCandidates":
        """Recall's candidates of one slot that pass ``mask``, with their routes and scores.

        A request without price or exclusion filters has a mask fixed by (scene, slot, genders,
        stock), so the filtered candidates and their per-item dicts are cached with the recall
        result: a personalised or typed request then skips ~2 ms of per-candidate Python.
        """
        f = request.filters
        if query.slot == slot:  # the slot the shopper typed about: the text's candidates
            text, categories, attributes = query.text, [query.attrs["category"]], query.attrs
        else:  # other slots (or text about no slot in particular): the scene's defaults
            text = query.text if query.text and query.slot is None else scene.query
            categories, attributes = None, None
        fixed_mask = f.price_max is None and f.budget is None and not f.exclude_item_ids
        key = ("slot", scene.name, slot, tuple(genders or ()), segment, f.in_stock_only, k,
               text, tuple(categories or ()), tuple(sorted((attributes or {}).items())))
        hit = self._cache.get(key) if fixed_mask else None
        if hit is not None:
            return hit
        cands = self._recall(scene, slot, text, genders, segment, f.in_stock_only, k,
                             categories=categories, attributes=attributes)
        index = self.items.index
        keep = [c for c in cands if c.item_id in index and mask[index[c.item_id]]]
        out = _SlotCandidates.of(keep, self.items)
        if fixed_mask:
            self._cache.put(key, out)
        return out

    def _recall(self, scene: Scene, slot: str, text: str, genders: list[str] | None,
                segment: str | None, in_stock_only: bool, k: int, *,
                categories: list[str] | None = None, attributes: dict[str, str] | None = None
                ) -> list[Any]:
        """Candidates of one slot (cached: the catalog is fixed for this recommender's life)."""
        from mmrec.recall.types import Filters, RecallQuery

        categories = categories or scene.slot_categories(slot)
        attributes = attributes or {"usage": scene.usages[0]}
        key = (scene.name, slot, tuple(sorted(genders or ())), text, segment, in_stock_only, k,
               tuple(categories), tuple(sorted(attributes.items())))
        hit = self._cache.get(key)
        if hit is None:
            q = RecallQuery(text=text, attributes=attributes,
                            filters=Filters(slots=[slot], genders=genders, categories=categories,
                                            in_stock_only=in_stock_only),
                            segment=segment, k=k)
            hit = self.recall.search(q)
            self._cache.put(key, hit)
        return hit

    def _rank(self, pools: dict[str, SlotPool], routes: dict[str, dict[str, int]],
              info: dict[str, dict[str, Any]], scene: Scene, request: RecommendRequest,
              user: Any | None) -> None:
        if self.ranker is None:
            return
        from mmrec.rank.ranker import RankContext

        ids = [self.items.ids[p] for pool in pools.values() for p in pool.positions]
        if not ids:
            return
        ctx = RankContext(scene=scene.name, occasion=scene.usages[0], season=request.filters.season,
                          channel=request.channel)
        recall_info = {i: info.get(i) or {"score": 0.0, "routes": routes.get(i, {}), "route_scores": {}}
                       for i in ids}
        scores = np.asarray(self.ranker.score(user, ctx, ids, recall=recall_info), dtype=np.float32)
        if scores.shape != (len(ids),):
            raise MmrecError(f"ranker returned {scores.shape} scores for {len(ids)} items")
        at = 0
        for pool in pools.values():
            n = len(pool)
            pool.propensity = np.clip(scores[at:at + n], 0.0, 1.0)
            at += n

    # ------------------------------------------------------------------ photo
    def _photo_slot(self, photo: PhotoAnalysis) -> tuple[str | None, str]:
        cat = photo.attributes.get("category", {})
        if cat.get("value") and (cat.get("confidence") or 0) >= self.cfg.photo_min_confidence:
            slot = self.tax.slot_of(cat["value"])
            if slot != "other":
                return slot, "tagger"
        return None, "none"

    def _majority_slot(self, ids: list[str]) -> str | None:
        slots = Counter(self.items.row(i)["slot"] for i in ids[:10])
        slots.pop("other", None)
        return slots.most_common(1)[0][0] if slots else None

    def _similar(self, photo: PhotoAnalysis, slot: str | None, genders: list[str] | None, k: int,
                 exclude: list[str], categories: list[str] | None = None) -> list[str]:
        """Catalog items most like the photo (image route; attribute route without an encoder),
        optionally within ``slot`` and ``categories``."""
        attrs = {f: v["value"] for f, v in photo.attributes.items()
                 if f in ("category", "colour", "pattern", "usage")
                 and (v.get("confidence") or 0) >= self.cfg.photo_min_confidence}
        if self.recall is not None:
            from mmrec.recall.types import Filters, RecallQuery

            vec = photo.vector
            index_encoder = getattr(getattr(self.recall, "index", None), "encoder_id", None)
            if vec is not None and photo.encoder_id and index_encoder and photo.encoder_id != index_encoder:
                vec = None  # a vector from another encoder would search the wrong space
            q = RecallQuery(image_vector=vec, attributes=attrs,
                            filters=Filters(slots=[slot] if slot else None, genders=genders,
                                            categories=categories, exclude_ids=exclude), k=k)
            if vec is None and not attrs:
                return []
            return [c.item_id for c in self.recall.search(q)][:k]
        if self.items.vectors is not None and photo.vector is not None:
            v = np.asarray(photo.vector, dtype=np.float32)
            if len(v) == self.items.vectors.shape[1]:
                sims = self.items.vectors @ v
                if slot:
                    sims = np.where(self.items.slot == slot, sims, -np.inf)
                if categories is not None:
                    allowed = np.isin(self.items.category, [self.items.categories.index(c) for c in categories])
                    sims = np.where(allowed, sims, -np.inf)
                top = np.argsort(-sims)[:k]
                return [self.items.ids[p] for p in top if np.isfinite(sims[p])]
        if attrs.get("category") and (categories is None or attrs["category"] in categories):
            pos = [p for p, r in enumerate(self.items.rows) if r["category"] == attrs["category"]
                   and (attrs.get("colour") is None or r.get("colour") == attrs["colour"])]
            return [self.items.ids[p] for p in pos[:k]]
        return []

    def _anchor(self, photo: PhotoAnalysis, scene: Scene, genders: list[str] | None,
                request: RecommendRequest, notes: list[str],
                slot_from: str | None = None) -> tuple[Anchor, PhotoOut, list[str]]:
        """The photo as an outfit anchor: its slot, its look-alikes (any category), and the
        look-alikes the scene allows in that slot (the slot's candidates).

        The slot is the tagged category's, else the majority of the look-alikes'.
        ``slot_from``: None (that rule), ``"neighbours"`` (skip the tagger's reading) or
        ``"colours"`` (no slot: the outfits are matched to the photo's colours)."""
        k, exclude = self.cfg.photo_similar_k, list(request.filters.exclude_item_ids)
        slot, how = self._photo_slot(photo) if slot_from is None else (None, "none")
        # one wide search serves the slot vote, the look-alikes and (usually) the slot's pool
        wide = self._similar(photo, slot, genders, 4 * k, exclude)
        if slot is None and wide and slot_from != "colours":
            slot, how = self._majority_slot(wide), "neighbours"
        ids = [i for i in wide if slot is None or self.items.row(i)["slot"] == slot][:k]
        pool: list[str] = []
        if slot is None:
            if slot_from != "colours":  # (for "colours" the caller says why)
                notes.append("the photo could not be placed in an outfit slot; outfits are matched "
                             "to its colours only")
        elif slot not in scene.template_slots():
            notes.append(f"the photo shows a {slot} item, which {scene.label} outfits do not use")
        else:
            allowed = set(scene.slot_categories(slot))
            pool = [i for i in wide if self.items.row(i)["category"] in allowed
                    and self.items.row(i)["slot"] == slot][:k]
            if len(pool) < k // 2:  # few allowed look-alikes among the wide ones: ask for them
                pool = self._similar(photo, slot, genders, k, exclude, categories=sorted(allowed))
            if not pool:
                notes.append(f"nothing like the photo is allowed as a {slot} for {scene.label}")
        attrs = {f: v["value"] for f, v in photo.attributes.items()
                 if (v.get("confidence") or 0) >= self.cfg.photo_min_confidence}
        read_as = attrs.get("gender")
        asked = [g for g in genders or () if g != "unisex"]  # unisex items go with anyone
        if read_as and asked and not any(genders_compatible([read_as, g]) for g in asked):
            # the shopper (or their profile) says who the outfit is for; the tagger's reading of
            # a kiosk photo is a guess that would otherwise veto every item of that gender
            del attrs["gender"]
            notes.append(f"the photo reads as {read_as}'s; outfits follow the requested "
                         f"{', '.join(asked)}")
        vec = np.asarray(photo.vector, dtype=np.float32) if photo.vector is not None else None
        feats = Features.of_attributes(attrs, self.items, self.tax, vec)
        out = PhotoOut(attributes={f: dict(v) for f, v in photo.attributes.items()}, slot=slot,
                       slot_source=how if slot else "none", similar=ids)
        return Anchor(feats, slot, attrs), out, pool

    def _item_out(self, item_id: str, slot: str, score: float) -> OutfitItemOut:
        r = self.items.row(item_id)
        return OutfitItemOut(item_id=item_id, slot=slot, score=round(float(score), 6),
                             title=r.get("title"), category=r.get("category"),
                             colour=r.get("colour"), gender=r.get("gender"),
                             image_url=f"/v1/items/{item_id}/image" if r.get("image_uri") else None)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


def _add_ms(timings: dict[str, float], key: str, t0: float) -> None:
    timings[key] = round(timings.get(key, 0.0) + _ms(t0), 3)


@dataclass(frozen=True)
class _SlotCandidates:
    """One slot's recall candidates after the hard rules, ready for the ranker and composer."""

    ids: list[str]
    positions: np.ndarray
    propensity: np.ndarray  # fused recall score, normalised per slot (the ranker replaces it)
    routes: dict[str, dict[str, int]]
    info: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, cands: list[Any], items: ItemTable) -> "_SlotCandidates":
        ids = [c.item_id for c in cands]
        routes = {c.item_id: dict(c.routes) for c in cands}
        info = {c.item_id: {"score": float(c.score), "routes": routes[c.item_id],
                            "route_scores": dict(c.route_scores)} for c in cands}
        return cls(ids, items.positions(ids), _per_slot([c.score for c in cands]), routes, info)

    def subset(self, rows: list[int]) -> "_SlotCandidates":
        ids = [self.ids[j] for j in rows]
        return _SlotCandidates(ids, self.positions[rows], _per_slot([self.info[i]["score"] for i in ids]),
                               {i: self.routes[i] for i in ids}, {i: self.info[i] for i in ids})


def _per_slot(scores: list[float]) -> np.ndarray:
    """Fused recall scores as a propensity in [0, 1]: divided by the slot's best (all 1 if none > 0)."""
    score = np.array(scores, dtype=np.float32)
    return score / score.max() if len(score) and score.max() > 0 else np.ones(len(score), np.float32)
