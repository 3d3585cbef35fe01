"""Outfit search: per-slot candidate pools -> beam search over a scene's slot templates.

An outfit's score is  geomean(item score) x mean pairwise compatibility ^ w_compat x accent
factor, where an item's score is  propensity ^ w_propensity x scene fit ^ w_scene. Hard
constraints never enter the score: items that break a scene rule, are out of stock or over
budget are not in the pools (the caller filters them on catalog truth), and pairs of
incompatible genders or an outfit over the total budget are masked during the search.
Outfits returned for one request share no item unless the caller allows repeats: after each
outfit is chosen its items leave the pools and the search runs again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from mmrec.config import StrictModel
from mmrec.lru import LRU
from mmrec.outfit.compat import CompatScorer, Features
from mmrec.outfit.items import ItemTable
from mmrec.outfit.scenes import Scene

_NEG = -1e30


class ComposeConfig(StrictModel):
    """Search sizes and how item and pair scores combine."""

    pool_per_slot: int = Field(24, ge=1, le=500)  # best candidates per slot entering the search
    beam_width: int = Field(16, ge=1, le=512)
    # candidate-set pair matrices kept (float32, ~15 KB each at 60 candidates per slot): the
    # mixed bench load touches ~1,800 distinct pairs in 3,000 requests; 512 missed 47% of them
    pair_cache_size: int = Field(4096, ge=0, le=100_000)
    w_propensity: float = Field(1.0, ge=0)
    w_scene: float = Field(0.5, ge=0)
    w_compat: float = Field(1.0, ge=0)
    usage_weights: list[float] = [1.0, 0.85, 0.7]  # scene usages, best first; others get 0.5
    other_usage: float = Field(0.5, ge=0, le=1)
    unknown_usage: float = Field(0.6, ge=0, le=1)
    off_season: float = Field(0.8, ge=0, le=1)
    preferred_colour: float = Field(1.0, ge=0, le=1)
    plain_colour: float = Field(0.85, ge=0, le=1)
    avoided_colour: float = Field(0.6, ge=0, le=1)


@dataclass
class SlotPool:
    """Candidates of one slot, already filtered by the hard rules."""

    slot: str
    positions: np.ndarray  # rows of the ItemTable
    propensity: np.ndarray  # in [0, 1], from the ranker (or the recall order when absent)

    def __len__(self) -> int:
        return len(self.positions)


@dataclass
class Anchor:
    """A kiosk photo the outfit is built around: its features and the slot it fills."""

    features: Features
    slot: str | None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outfit:
    template: list[str]
    slots: list[str]
    positions: list[int]
    item_scores: list[float]
    propensity: list[float]
    scene_fit: list[float]
    compat: float
    accent: float
    score: float


def scene_fit(scene: Scene, items: ItemTable, positions: np.ndarray | range,
              cfg: ComposeConfig) -> np.ndarray:
    """Soft match of items to a scene in (0, 1]: occasion, season and colour guidance."""
    usage_w = {u: cfg.usage_weights[min(i, len(cfg.usage_weights) - 1)]
               for i, u in enumerate(scene.usages)}
    prefer = set(scene.colours.prefer_families)
    avoid = set(scene.colours.avoid_families)
    tax = items.taxonomy
    out = np.empty(len(positions), dtype=np.float32)
    for k, p in enumerate(positions):
        r = items.rows[p]
        u = r.get("usage")
        f = cfg.unknown_usage if u is None else usage_w.get(u, cfg.other_usage)
        s = r.get("season")
        if s is not None and s not in scene.seasons:
            f *= cfg.off_season
        fam = tax.colour_family(r.get("colour"))
        if fam in avoid:
            f *= cfg.avoided_colour
        elif prefer and fam is not None:
            f *= cfg.preferred_colour if fam in prefer else cfg.plain_colour
        out[k] = f
    return out


class Composer:
    """Beam search over slot templates for one catalog version."""

    def __init__(self, items: ItemTable, compat: CompatScorer, cfg: ComposeConfig | None = None):
        self.items = items
        self.compat = compat
        self.cfg = cfg or ComposeConfig()
        self._fit: dict[str, np.ndarray] = {}
        self._pairs = LRU(self.cfg.pair_cache_size)

    def scene_fit(self, scene: Scene) -> np.ndarray:
        """Scene fit of every catalog item (computed once per scene)."""
        fit = self._fit.get(scene.name)
        if fit is None:
            fit = self._fit[scene.name] = scene_fit(scene, self.items, range(len(self.items)), self.cfg)
        return fit

    def compose(self, scene: Scene, pools: dict[str, SlotPool], k: int, *,
                anchor: Anchor | None = None, require_slot: str | None = None,
                allow_repeats: bool = False, max_total_price: float | None = None) -> list[Outfit]:
        """Up to ``k`` outfits for ``scene``, best first.

        Args:
            pools: candidates per slot (hard rules already applied).
            anchor: a photo to build around; templates must then contain its slot when the
                scene uses that slot, and every item is scored for compatibility with it.
            require_slot: a slot every outfit must fill when some template has it (the slot
                of what the shopper typed, e.g. "black dress" -> one-piece).
            allow_repeats: let an item appear in several outfits (outfits still differ).
            max_total_price: budget for a whole outfit; items without a price must have been
                removed by the caller (a budget cannot be shown to hold for them).
        """
        cfg = self.cfg
        templates = [t for t in scene.templates if all(len(pools.get(s, ())) for s in t)]
        for must in (anchor.slot if anchor is not None else None, require_slot):
            if must is not None:
                templates = [t for t in templates if must in t] or templates
        if not templates:
            return []
        fit_all = self.scene_fit(scene)
        # Per slot: the best pool_per_slot candidates by item score enter the search.
        prepared: dict[str, dict[str, Any]] = {}
        for slot in {s for t in templates for s in t}:
            pool = pools[slot]
            fit = fit_all[pool.positions]
            prop = np.clip(pool.propensity.astype(np.float32), 1e-6, 1.0)
            score = prop ** cfg.w_propensity * fit ** cfg.w_scene
            keep = np.argsort(-score, kind="stable")[: max(cfg.pool_per_slot, k if not allow_repeats else 1)]
            pos = pool.positions[keep]
            prepared[slot] = {
                "pool": pool.positions, "keep": keep, "positions": pos, "score": score[keep],
                "log": np.log(score[keep]).astype(np.float64), "prop": prop[keep], "fit": fit[keep],
                "family": self.items.colour_family[pos], "neutral": self.items.neutral[pos],
                "price": self.items.price[pos], "free": np.ones(len(pos), dtype=bool),
            }
        pair_cache: dict[tuple[str, str], np.ndarray] = {}

        def pair(sa: str, sb: str) -> np.ndarray:
            """Compatibility of the kept candidates of two slots; -inf where genders clash."""
            m = pair_cache.get((sa, sb))
            if m is None:
                a, b = prepared[sa], prepared[sb]
                full = self._pair_matrix(a["pool"], b["pool"])
                m = pair_cache[(sa, sb)] = full[np.ix_(a["keep"], b["keep"])].astype(np.float64)
            return m

        anchor_terms: dict[str, np.ndarray] = {}
        if anchor is not None:
            for slot, p in prepared.items():
                if slot == anchor.slot:
                    continue  # a look-alike of the photo is worn instead of it, not with it
                f = Features.of_items(self.items, p["positions"])
                m = self.compat.pair(anchor.features, f)[0].astype(np.float64)
                anchor_terms[slot] = np.where(CompatScorer.gender_ok(anchor.features, f)[0], m, -np.inf)

        outfits: list[Outfit] = []
        seen: set[frozenset[int]] = set()
        # Each template's last beam holds many complete outfits, best first. After an outfit is
        # chosen, a template answers from its beam while one there still has only free items;
        # it is searched again (with the items now taken left out) only when its beam runs dry.
        beams: dict[int, _Beam | None] = {}
        exhausted: set[int] = set()
        for _ in range(k):
            best: Outfit | None = None
            fresh: set[int] = set()
            for ti, t in enumerate(templates):
                if ti in exhausted:
                    continue
                o = self._take(beams[ti], prepared, seen) if beams.get(ti) is not None else None
                if o is None:
                    beams[ti] = self._search(scene, t, prepared, pair, anchor_terms, max_total_price)
                    fresh.add(ti)
                    o = self._take(beams[ti], prepared, seen) if beams[ti] is not None else None
                if o is None:
                    exhausted.add(ti)  # a fresh search found nothing: no outfit left here
                elif best is None or o.score > best.score:
                    best = o
            if best is None:
                break
            outfits.append(best)
            seen.add(frozenset(best.positions))
            if not allow_repeats:
                for slot, pos in zip(best.slots, best.positions):
                    p = prepared[slot]
                    p["free"][p["positions"] == pos] = False
        return outfits

    def _take(self, beam: "_Beam", prepared: dict[str, dict[str, Any]],
              seen: set[frozenset[int]]) -> Outfit | None:
        """The best outfit of ``beam`` whose items are all still free and not returned yet."""
        t = beam.template
        free = np.ones(len(beam.idx), dtype=bool)
        for c, s in enumerate(t):
            free &= prepared[s]["free"][beam.idx[:, c]]
        for row in np.flatnonzero(free):
            positions = [int(prepared[s]["positions"][beam.idx[row, c]]) for c, s in enumerate(t)]
            if seen and frozenset(positions) in seen:
                continue
            col = lambda key: [float(prepared[s][key][beam.idx[row, c]]) for c, s in enumerate(t)]
            return Outfit(template=list(t), slots=list(t), positions=positions,
                          item_scores=col("score"), propensity=col("prop"), scene_fit=col("fit"),
                          compat=float(beam.compat[row]), accent=float(beam.accent[row]),
                          score=float(beam.score[row]))
        return None

    def _pair_matrix(self, pos_a: np.ndarray, pos_b: np.ndarray) -> np.ndarray:
        """Pair compatibility of two candidate sets (float32, -inf where genders clash).

        Candidate sets repeat across requests (recall results are cached per scene and slot;
        only the ranking differs per shopper), so whole-set matrices are memoised.
        """
        key = (len(pos_a), hash(pos_a.tobytes()), len(pos_b), hash(pos_b.tobytes()))
        m = self._pairs.get(key)
        if m is None:
            fa, fb = Features.of_items(self.items, pos_a), Features.of_items(self.items, pos_b)
            # float32 halves the memory of the cache; the search adds the kept subset in float64
            m = np.where(CompatScorer.gender_ok(fa, fb), self.compat.pair(fa, fb), -np.inf).astype(np.float32)
            self._pairs.put(key, m)
        return m

    def _search(self, scene: Scene, template: list[str], prepared: dict[str, dict[str, Any]],
                pair, anchor_terms: dict[str, np.ndarray], max_total_price: float | None
                ) -> "_Beam | None":
        """Beam search over ``template``; the final beam's complete outfits, best first."""
        cfg = self.cfg
        n_slots = len(template)
        n_anchor = 0  # pairs formed with the photo so far
        idx = np.zeros((1, 0), dtype=np.int64)  # beam: chosen kept-candidate index per slot
        log_items = np.zeros(1, dtype=np.float64)  # sum of log item scores
        pair_sum = np.zeros(1, dtype=np.float64)  # sum of pair compatibilities (-inf: clash)
        price = np.zeros(1, dtype=np.float64)
        width = cfg.beam_width
        final_pool = 4 * width  # complete outfits kept: later picks come from here
        for t, slot in enumerate(template):
            p = prepared[slot]
            n = len(p["positions"])
            new_pairs = pair_sum[:, None]
            for s in range(t):
                new_pairs = new_pairs + pair(template[s], slot)[idx[:, s]]
            if slot in anchor_terms:
                new_pairs = new_pairs + anchor_terms[slot][None, :]
                n_anchor += 1
            new_pairs = np.broadcast_to(new_pairs, (len(idx), n))
            new_log = log_items[:, None] + p["log"][None, :]
            n_pairs = t * (t + 1) // 2 + n_anchor
            if n_pairs:
                obj = new_log / (t + 1) + cfg.w_compat * np.log(np.maximum(new_pairs / n_pairs, 1e-6))
            else:
                obj = new_log / (t + 1)
            ok = np.isfinite(new_pairs) & p["free"][None, :]
            if max_total_price is not None:
                new_price = price[:, None] + p["price"][None, :]
                ok &= ~(new_price > max_total_price)  # NaN prices were removed by the caller
            flat = np.where(ok, obj, _NEG).ravel()
            keep_n = width if t < n_slots - 1 else final_pool
            cand = np.argsort(-flat, kind="stable")[:keep_n]
            cand = cand[flat[cand] > _NEG / 2]
            if len(cand) == 0:
                return None
            b, j = np.divmod(cand, n)
            idx = np.concatenate([idx[b], j[:, None]], axis=1)
            log_items, pair_sum = new_log[b, j], new_pairs[b, j]
            if max_total_price is not None:
                price = new_price[b, j]
        n_pairs = n_slots * (n_slots - 1) // 2 + n_anchor
        compat = pair_sum / max(n_pairs, 1)
        fams = np.stack([prepared[s]["family"][idx[:, c]] for c, s in enumerate(template)], 1)
        neus = np.stack([prepared[s]["neutral"][idx[:, c]] for c, s in enumerate(template)], 1)
        accent = self.compat.accent_factors(fams, neus, scene.colours.max_accents)
        score = np.exp(log_items / n_slots) * np.maximum(compat, 1e-6) ** cfg.w_compat * accent
        order = np.argsort(-score, kind="stable")
        return _Beam(list(template), idx[order], score[order], compat[order], accent[order])


@dataclass
class _Beam:
    """Complete outfits of one template from one search, best first (indices into the kept
    candidates of each slot)."""

    template: list[str]
    idx: np.ndarray
    score: np.ndarray
    compat: np.ndarray
    accent: np.ndarray
