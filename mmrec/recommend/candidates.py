"""Each slot's candidates for a request: hard masks, recall (cached), the typed query's narrowing.

The hard rules (scene rules on catalog truth, gender, stock, price, exclusions) are boolean
masks over the catalog, computed once per scene/slot/gender and combined per request. Recall
results depend only on the request's fixed parts, so they are cached for the recommender's life
(the catalog is fixed for it); `prewarm` fills that cache for the scene-only requests at load.
"""

from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrec.api_models import RecommendRequest
from mmrec.lru import LRU
from mmrec.outfit.compose import Anchor, Composer, SlotPool
from mmrec.outfit.items import ItemTable
from mmrec.outfit.scenes import Scene, SceneBook
from mmrec.recommend.components import CandidateRecall
from mmrec.recommend.config import RecommenderConfig
from mmrec.recommend.context import Candidates, RequestContext
from mmrec.recommend.query import TypedQuery
from mmrec.taxonomy import COLOUR_FAMILIES

if TYPE_CHECKING:
    from mmrec.recall.types import Candidate

# Background pre-warming stops at interpreter exit: a daemon thread killed inside a torch
# call aborts the process ("terminate called without an active exception").
_STOP_PREWARM = threading.Event()
_PREWARM_THREADS: list[threading.Thread] = []
_GENDER_CODES = {"men": 1, "women": 2, "boys": 3, "girls": 4}  # ItemTable.gender; 0: unisex/unknown
# A query naming only a colour (or pattern, material) asks for it on the outfit's most visible
# garment: the first of these slots the scene has, with such an item available.
_COLOUR_SLOTS = ("top", "one-piece", "bottom", "outerwear", "shoes", "bag", "accessory")
_ITEM_FIELDS = ("colour", "pattern", "material")
# Fields every catalog row states: a new arrival's unsure reading of them does not satisfy a
# constraint (finer fields are often unstated even in the catalog; those bind on the value).
_KNOWN_FIELDS = ("category", "colour")


@atexit.register
def _stop_prewarm() -> None:
    _STOP_PREWARM.set()
    for t in _PREWARM_THREADS:
        t.join(timeout=10)


@dataclass(frozen=True)
class SlotCandidates:
    """One slot's recall candidates after the hard rules, ready for the ranker and composer."""

    ids: list[str]
    positions: np.ndarray
    propensity: np.ndarray  # fused recall score, normalised per slot (the ranker replaces it)
    routes: dict[str, dict[str, int]]
    info: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, cands: "list[Candidate]", items: ItemTable) -> "SlotCandidates":
        ids = [c.item_id for c in cands]
        routes = {c.item_id: dict(c.routes) for c in cands}
        info = {c.item_id: {"score": float(c.score), "routes": routes[c.item_id],
                            "route_scores": dict(c.route_scores)} for c in cands}
        return cls(ids, items.positions(ids), per_slot([c.score for c in cands]), routes, info)

    def subset(self, rows: list[int]) -> "SlotCandidates":
        ids = [self.ids[j] for j in rows]
        return SlotCandidates(ids, self.positions[rows], per_slot([self.info[i]["score"] for i in ids]),
                              {i: self.routes[i] for i in ids}, {i: self.info[i] for i in ids})


def per_slot(scores: list[float]) -> np.ndarray:
    """Fused recall scores as a propensity in [0, 1]: divided by the slot's best (all 1 if none > 0)."""
    score = np.array(scores, dtype=np.float32)
    return score / score.max() if len(score) and score.max() > 0 else np.ones(len(score), np.float32)


class CandidateSource:
    """Candidate pools per slot, from recall when an index is loaded, else from a catalog filter.

    Args:
        items: the catalog in memory.
        scenes: the scene book (rules and templates).
        composer: its ``scene_fit`` orders the catalog-filter candidates.
        recall: multi-route recall (None: the catalog filter, ordered by scene fit).
        config: candidate counts and cache size.
    """

    def __init__(self, items: ItemTable, scenes: SceneBook, composer: Composer,
                 recall: CandidateRecall | None, config: RecommenderConfig):
        self.items = items
        self.scenes = scenes
        self.composer = composer
        self.recall = recall
        self.cfg = config
        self._cache = LRU(config.recall_cache_size)
        self._allowed: dict[tuple[str, str], np.ndarray] = {}
        self._genders_ok: dict[tuple[str, ...], np.ndarray] = {}
        self._value_masks = LRU(256)  # negated / wanted values -> items mask
        self._known: dict[str, np.ndarray] = {}
        self.has_prices = bool((~np.isnan(items.price)).any())

    def forget(self) -> None:
        """Drop every cached candidate list (after a stock or price change: they were chosen
        under the old values); the next requests recall afresh."""
        self._cache = LRU(self.cfg.recall_cache_size)
        self._value_masks = LRU(256)  # they read the rows' values: recomputed after a change
        self._known.clear()

    # ------------------------------------------------------------------ masks
    def known_mask(self, fld: str) -> np.ndarray:
        """Items whose ``fld`` is stated (catalog, title) or read by the tagger at least as
        surely as explanations cite it (`ExplainConfig.model_confidence`): a constraint is met,
        or a negation shown to hold, only on such values."""
        m = self._known.get(fld)
        if m is None:
            cites = self.cfg.explain.cites
            m = np.array([cites(fld, self.items.attribute_fact(i, fld)) for i in self.items.ids], dtype=bool)
            self._known[fld] = m
        return m

    def allowed_mask(self, scene: Scene, slot: str) -> np.ndarray:
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

    def gender_mask(self, genders: tuple[str, ...]) -> np.ndarray:
        m = self._genders_ok.get(genders)
        if m is None:
            allowed = [0] + [_GENDER_CODES[g] for g in genders if g in _GENDER_CODES]
            m = self._genders_ok[genders] = np.isin(self.items.gender, allowed)
        return m

    def negated_mask(self, query: TypedQuery) -> np.ndarray:
        """Items the shopper's negations leave (cached per set of negated values): the vectorised
        form of `TypedQuery.excludes`, less the items whose negated category or colour is only an
        unsure tagger reading (a Python pass over a 12k catalog costs ~27 ms; this ~0.1 ms);
        tests/test_recommend_query.py checks that the two agree."""
        key = ("negated", tuple(sorted(query.excluded.items())))
        m = self._value_masks.get(key)
        if m is None:
            tax = self.items.taxonomy
            cats = [self.items.categories.index(c) for c in query.excluded.get("category", ())
                    if c in self.items.categories]
            fams = [COLOUR_FAMILIES.index(f) + 1 for f in {tax.colour_family(c) for c in
                                                          query.excluded.get("colour", ())} if f]
            m = ~np.isin(self.items.category, cats) & ~np.isin(self.items.colour_family, fams)
            for f in ("category", "colour"):  # an unsure reading cannot be shown not to be it
                if query.excluded.get(f):
                    m &= self.known_mask(f)
            other = {f: set(v) for f, v in query.excluded.items() if f not in ("category", "colour")}
            if other:
                m &= np.array([not any(r.get(f) in v for f, v in other.items()) for r in self.items.rows])
            self._value_masks.put(key, m)
        return m

    def wanted_mask(self, attrs: dict[str, str]) -> np.ndarray:
        """Items with every value of ``attrs`` (colours by family; category and colour only when
        known, see `known_mask`), over the whole catalog (cached per set of values)."""
        key = ("wanted", tuple(sorted(attrs.items())))
        m = self._value_masks.get(key)
        if m is None:
            m = np.ones(len(self.items), dtype=bool)
            other = {}
            for f, v in attrs.items():
                if f in _KNOWN_FIELDS:
                    m &= self.known_mask(f)
                if f == "category":
                    m &= self.items.category == (self.items.categories.index(v) if v in self.items.categories else -1)
                elif f == "colour":
                    fam = self.items.taxonomy.colour_family(v)
                    m &= self.items.colour_family == (COLOUR_FAMILIES.index(fam) + 1 if fam else -1)
                else:
                    other[f] = v
            if other:
                rows = self.items.rows
                for p in np.flatnonzero(m):
                    m[p] = all(rows[p].get(f) == v for f, v in other.items())
            self._value_masks.put(key, m)
        return m

    def place_request(self, ctx: RequestContext) -> None:
        """A query that names values but no garment ("something pink", "粉色的"): the first
        slot of the scene (in `_COLOUR_SLOTS` order) with items of those values that pass the
        hard rules becomes the requested slot, so every outfit has one."""
        query = ctx.query
        if query.slot is not None or query.parsed is None or query.parsed.wanted.get("category"):
            return
        attrs = {f: vals[0] for f, vals in query.parsed.wanted.items() if f in _ITEM_FIELDS and vals}
        if not attrs:
            return
        wanted = self.wanted_mask(attrs)
        slots = ctx.scene.template_slots()
        for slot in sorted(slots, key=lambda s: _COLOUR_SLOTS.index(s) if s in _COLOUR_SLOTS else 99):
            if (wanted & self.hard_mask(ctx.scene, slot, ctx.request, ctx.genders, query)).any():
                query.slot, query.attrs = slot, dict(attrs)
                return

    def hard_mask(self, scene: Scene, slot: str, request: RecommendRequest,
                  genders: list[str] | None, query: TypedQuery | None = None) -> np.ndarray:
        """The request's hard rules for one slot: scene, stock, gender, price (the filters' and
        the typed ceiling), exclusions, and what the shopper negated."""
        m = self.allowed_mask(scene, slot).copy()
        f = request.filters
        if f.in_stock_only:
            m &= self.items.in_stock
        if genders is not None:
            m &= self.gender_mask(tuple(genders))
        typed_cap = query.price_max if query is not None and self.has_prices else None
        caps = [x for x in (f.price_max, f.budget, typed_cap) if x is not None]
        if caps:
            cap = min(caps)
            m &= ~np.isnan(self.items.price) & (np.nan_to_num(self.items.price, nan=np.inf) <= cap)
        if f.exclude_item_ids:
            m[self.items.positions([i for i in f.exclude_item_ids if i in self.items.index])] = False
        if query is not None and query.excluded:
            m &= self.negated_mask(query)
        return m

    # ------------------------------------------------------------------ pools
    def pools(self, ctx: RequestContext, anchor: Anchor | None, anchor_pool: list[str]) -> Candidates:
        """Every template slot's pool for ``ctx``; the anchor's slot offers ``anchor_pool``.
        What the shopper should know (no prices, no exact match) is in the result's notes."""
        scene, request, query = ctx.scene, ctx.request, ctx.query
        out = Candidates()
        notes = out.notes
        k = self.cfg.candidates_per_slot
        if request.filters.price_max is not None or request.filters.budget is not None:
            if not self.has_prices:
                notes.append("the catalog has no prices: no item can be shown to fit the budget")
        if query.price_max is not None and not self.has_prices:
            # a typed ceiling on a catalog without prices would empty every outfit; the shopper
            # is told it could not be applied (an app's price filter still binds)
            notes.append(f"the catalog has no prices: your ceiling of {query.price_max:g} could not be applied")
        slots = scene.template_slots()
        for slot in sorted(slots, key=lambda s: s != query.slot):  # the requested item first
            mask = self.hard_mask(scene, slot, request, ctx.genders, query)
            if anchor is not None and slot == anchor.slot and anchor_pool:
                out.pools[slot] = self._anchor_pool(slot, anchor_pool, mask, out.routes)
            elif self.recall is None:
                out.pools[slot] = self._catalog_pool(scene, slot, query, mask, k, out.routes)
            else:
                got = self._slot_candidates(ctx, slot, k, mask)
                wanted = self.wanted_mask(query.binding_attrs) if query.slot == slot and query.binding_attrs else None
                in_catalog = wanted is not None and bool((mask & wanted).any())
                if wanted is not None:
                    exact = [j for j, i in enumerate(got.ids) if wanted[self.items.index[i]]]
                    if exact:
                        got = got.subset(exact)
                    elif not in_catalog:
                        notes.append(f"no {' '.join(query.binding_attrs.values())} fits {scene.label} "
                                     "and the filters; showing the closest")
                if not got.ids or (in_catalog and not wanted[got.positions].any()):
                    # recall's candidates all fail the hard rules (a negated word drew them) or
                    # miss what was named while the catalog has it: the catalog filter answers
                    out.pools[slot] = self._catalog_pool(scene, slot, query, mask, k, out.routes)
                else:
                    # shared, read-only per-item dicts (the cached entry's); never mutated downstream
                    out.routes.update(got.routes)
                    out.info.update(got.info)
                    out.pools[slot] = SlotPool(slot, got.positions, got.propensity)
            if slot == query.slot and ctx.genders is None:
                self._gender_from_request(ctx, out.pools[slot])
        return out

    def _gender_from_request(self, ctx: RequestContext, pool: SlotPool) -> None:
        """A requested item that exists for one gender only (a skirt, here) makes the outfit
        that gender's: the other slots are filled for the same wearer."""
        codes = set(np.unique(self.items.gender[pool.positions]).tolist()) - {0}
        for gender, group in (("men", {1, 3}), ("women", {2, 4})):  # boys' and girls' sizes too
            if codes and codes <= group:
                ctx.genders = [gender, "unisex"]

    def _anchor_pool(self, slot: str, anchor_pool: list[str], mask: np.ndarray,
                     routes: dict[str, dict[str, int]]) -> SlotPool:
        """The photo's slot offers the catalog items most like the photo, in that order."""
        ids = [i for i in anchor_pool if mask[self.items.index[i]]]
        for rank, i in enumerate(ids, 1):
            routes[i] = {**routes.get(i, {}), "image": rank}  # copy: may be a cached dict
        pos = self.items.positions(ids)
        return SlotPool(slot, pos, 1.0 / (1.0 + np.arange(len(pos), dtype=np.float32) / 10))

    def _catalog_pool(self, scene: Scene, slot: str, query: TypedQuery, mask: np.ndarray, k: int,
                      routes: dict[str, dict[str, int]]) -> SlotPool:
        """Without a recall index: the items passing the rules, best scene fit first (and, for
        the slot the shopper typed about, the items matching what the text names, if any)."""
        if query.slot == slot and query.binding_attrs:
            exact = mask & self.wanted_mask(query.binding_attrs)
            mask = exact if exact.any() else mask
        elif slot in query.slot_categories:  # another requested item: its category, if any passes
            exact = mask & (self.items.category == self.items.categories.index(query.slot_categories[slot]))
            mask = exact if exact.any() else mask
        pos = np.flatnonzero(mask)
        fit = self.composer.scene_fit(scene)[pos]
        order = np.argsort(-fit, kind="stable")[:k]
        pos = pos[order]
        for rank, p in enumerate(pos, 1):
            routes.setdefault(self.items.ids[p], {})["catalog"] = rank
        return SlotPool(slot, pos, fit[order].astype(np.float32))

    def _slot_candidates(self, ctx: RequestContext, slot: str, k: int, mask: np.ndarray) -> SlotCandidates:
        """Recall's candidates of one slot that pass ``mask``, with their routes and scores.

        A request without price or exclusion filters has a mask fixed by (scene, slot, genders,
        stock), so the filtered candidates and their per-item dicts are cached with the recall
        result: a personalised or typed request then skips ~2 ms of per-candidate Python.
        """
        scene, query, f = ctx.scene, ctx.query, ctx.request.filters
        if query.slot == slot:  # the slot the shopper typed about: the text's candidates
            cat = query.attrs.get("category")  # None: a colour asked for on this slot
            text, categories, attributes = query.search_text, [cat] if cat else None, query.attrs
        elif slot in query.slot_categories:  # another requested item: its category
            cat = query.slot_categories[slot]
            text, categories, attributes = cat, [cat], {"category": cat}
        else:  # other slots (or text about no slot in particular): the scene's defaults
            text = query.search_text if query.text and query.slot is None else None
            text = text or scene.query
            categories, attributes = None, None
        fixed_mask = f.price_max is None and f.budget is None and not f.exclude_item_ids and not query.binds
        key = ("slot", scene.name, slot, tuple(ctx.genders or ()), ctx.segment, f.in_stock_only, k,
               text, tuple(categories or ()), tuple(sorted((attributes or {}).items())))
        hit = self._cache.get(key) if fixed_mask else None
        if hit is not None:
            return hit
        cands = self.recall_slot(scene, slot, text, ctx.genders, ctx.segment, f.in_stock_only, k,
                                 categories=categories, attributes=attributes)
        index = self.items.index
        keep = [c for c in cands if c.item_id in index and mask[index[c.item_id]]]
        out = SlotCandidates.of(keep, self.items)
        if fixed_mask:
            self._cache.put(key, out)
        return out

    def recall_slot(self, scene: Scene, slot: str, text: str, genders: list[str] | None,
                    segment: str | None, in_stock_only: bool, k: int, *,
                    categories: list[str] | None = None, attributes: dict[str, str] | None = None
                    ) -> "list[Candidate]":
        """Candidates of one slot (cached: the catalog is fixed for this recommender's life)."""
        from mmrec.recall.types import Filters, RecallQuery

        assert self.recall is not None, "recall_slot needs a recall index"
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

    # ------------------------------------------------------------------ warm-up
    def warm(self, segments: list[tuple[str | None, str | None]], *, background: bool = False) -> None:
        """Precompute per-scene masks and scene fit, and (with a recall index and
        ``prewarm_recall``) the scene-only candidates of every scene, slot and gender now, and
        of every shopper (segment, gender) in ``segments`` -- in a background thread when
        ``background`` -- so that no scene-only request pays for recall."""
        for scene in self.scenes.scenes.values():
            self.composer.scene_fit(scene)
            for slot in scene.all_slots():
                self.allowed_mask(scene, slot)
        for fld in _KNOWN_FIELDS:  # a Python pass over the catalog each: not in a request
            self.known_mask(fld)
        if self.recall is None or not self.cfg.prewarm_recall:
            return
        self._prewarm([(None, g) for g in (None, ["men", "unisex"], ["women", "unisex"])])
        todo = [(seg, [g, "unisex"] if g in _GENDER_CODES else None) for seg, g in segments]
        if not todo:
            return
        if background:
            t = threading.Thread(target=self._prewarm, args=(todo,), name="mmrec-prewarm", daemon=True)
            _PREWARM_THREADS.append(t)
            t.start()
        else:
            self._prewarm(todo)

    def _prewarm(self, combos: list[tuple[str | None, list[str] | None]]) -> None:
        k = self.cfg.candidates_per_slot
        for segment, genders in combos:
            for scene in self.scenes.scenes.values():
                for slot in scene.template_slots():
                    if _STOP_PREWARM.is_set():
                        return
                    self.recall_slot(scene, slot, scene.query, genders, segment, True, k)
