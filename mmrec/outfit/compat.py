"""Pairwise compatibility of outfit items: colour harmony, formality, co-occurrence, embeddings.

Each component maps an item pair to [0, 1]; the pair score is their weighted mean over the
components that have evidence (embeddings only when both items have vectors, priors only when
the artifact exists). Everything is vectorised over candidate sets: the composer asks for a
[n_a, n_b] matrix per slot pair, so a request scores a few thousand pairs in microseconds.
Gender is a hard constraint (``gender_ok``), not a score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field, model_validator

from mmrec.config import StrictModel
from mmrec.outfit.items import FORMALITY, GENDER_CODES, ItemTable
from mmrec.outfit.priors import CooccurrencePriors
from mmrec.taxonomy import COLOUR_FAMILIES, Taxonomy

FAMILY_CODE = {f: n + 1 for n, f in enumerate(COLOUR_FAMILIES)}  # 0: unknown


class CompatConfig(StrictModel):
    """Weights of the compatibility components and the colour rules."""

    w_colour: float = Field(0.35, ge=0)
    w_formality: float = Field(0.25, ge=0)
    w_cooccurrence: float = Field(0.25, ge=0)
    w_embedding: float = Field(0.15, ge=0)
    # Colour-family pairs that clash when both are worn as accents (not neutrals).
    clashes: list[tuple[str, str]] = [
        ("red", "pink"), ("red", "orange"), ("red", "green"), ("pink", "orange"),
        ("orange", "purple"), ("purple", "yellow"), ("green", "pink"), ("multi", "multi"),
    ]
    both_neutral: float = Field(1.0, ge=0, le=1)
    one_neutral: float = Field(0.9, ge=0, le=1)
    same_family: float = Field(0.8, ge=0, le=1)  # tonal dressing
    other_accents: float = Field(0.5, ge=0, le=1)
    clash: float = Field(0.15, ge=0, le=1)
    unknown_colour: float = Field(0.6, ge=0, le=1)
    unknown_formality: float = Field(0.7, ge=0, le=1)
    accent_penalty: float = Field(0.15, ge=0, le=1)  # per accent colour beyond the scene's max

    @model_validator(mode="after")
    def _check(self) -> "CompatConfig":
        if self.w_colour + self.w_formality + self.w_cooccurrence + self.w_embedding <= 0:
            raise ValueError("at least one compatibility weight must be positive")
        bad = [f for pair in self.clashes for f in pair if f not in FAMILY_CODE]
        if bad:
            raise ValueError(f"clashes name unknown colour families {bad}; valid: {list(COLOUR_FAMILIES)}")
        return self


@dataclass
class Features:
    """Integer-coded features of a set of items (catalog rows or a tagged photo)."""

    category: np.ndarray  # int, index into ItemTable.categories (-1 unknown)
    family: np.ndarray  # int, FAMILY_CODE (0 unknown)
    neutral: np.ndarray  # bool
    formality: np.ndarray  # int, FORMALITY level (-1 unknown)
    gender: np.ndarray  # int, GENDER_CODES (0 unisex/unknown)
    vectors: np.ndarray | None  # float32 [n, d], L2-normalised or zero

    def __len__(self) -> int:
        return len(self.category)

    @classmethod
    def of_items(cls, items: ItemTable, positions: np.ndarray) -> "Features":
        return cls(items.category[positions], items.colour_family[positions],
                   items.neutral[positions], items.formality[positions],
                   items.gender[positions],
                   None if items.vectors is None else items.vectors[positions])

    @classmethod
    def of_attributes(cls, attrs: dict[str, str | None], items: ItemTable, tax: Taxonomy,
                      vector: np.ndarray | None = None) -> "Features":
        """Features of one un-catalogued item (a kiosk photo) from its tagged attributes."""
        cat = attrs.get("category")
        cat_idx = items.categories.index(cat) if cat in items.categories else -1
        colour = attrs.get("colour")
        fam = tax.colour_family(colour)
        vec = None
        if items.vectors is not None:
            vec = np.zeros((1, items.vectors.shape[1]), dtype=np.float32)
            if vector is not None and len(vector) == items.vectors.shape[1]:
                vec[0] = vector
        return cls(np.array([cat_idx]), np.array([FAMILY_CODE.get(fam, 0) if fam else 0]),
                   np.array([tax.is_neutral(colour)]),
                   np.array([FORMALITY.get(attrs.get("usage") or "", -1)]),
                   np.array([GENDER_CODES.get(attrs.get("gender") or "", 0)]), vec)


class CompatScorer:
    """Pair compatibility for one catalog version.

    Args:
        items: the catalog (categories, codes, optional vectors).
        taxonomy: for category slots (priors back-off).
        priors: co-occurrence priors, or None (the component is then left out).
        cfg: weights and colour rules.
    """

    def __init__(self, items: ItemTable, taxonomy: Taxonomy, priors: CooccurrencePriors | None,
                 cfg: CompatConfig | None = None):
        self.cfg = cfg = cfg or CompatConfig()
        self.items = items
        self.priors = priors
        n = len(COLOUR_FAMILIES) + 1
        table = np.full((n, n), cfg.other_accents, dtype=np.float32)
        for f in range(1, n):
            table[f, f] = cfg.same_family
        for a, b in cfg.clashes:
            table[FAMILY_CODE[a], FAMILY_CODE[b]] = table[FAMILY_CODE[b], FAMILY_CODE[a]] = cfg.clash
        table[0, :] = table[:, 0] = cfg.unknown_colour
        self._colour_table = table
        self._prior_matrix = (priors.category_matrix(items.categories, taxonomy)
                              if priors is not None else None)

    @property
    def components(self) -> list[str]:
        out = ["colour", "formality"]
        if self._prior_matrix is not None and self.cfg.w_cooccurrence > 0:
            out.append("cooccurrence")
        if self.items.vectors is not None and self.cfg.w_embedding > 0:
            out.append("embedding")
        return out

    def colour(self, a: Features, b: Features) -> np.ndarray:
        fa, fb = a.family[:, None], b.family[None, :]
        out = self._colour_table[fa, fb].copy()
        na, nb = a.neutral[:, None], b.neutral[None, :]
        known = (fa > 0) & (fb > 0)
        out = np.where(known & na & nb, self.cfg.both_neutral, out)
        out = np.where(known & (na ^ nb), self.cfg.one_neutral, out)
        return out.astype(np.float32)

    def formality(self, a: Features, b: Features) -> np.ndarray:
        la, lb = a.formality[:, None].astype(np.float32), b.formality[None, :].astype(np.float32)
        out = 1.0 - np.abs(la - lb) / 3.0
        unknown = (la < 0) | (lb < 0)
        return np.where(unknown, self.cfg.unknown_formality, out).astype(np.float32)

    def pair(self, a: Features, b: Features) -> np.ndarray:
        """[len(a), len(b)] compatibility in [0, 1]."""
        c = self.cfg
        total = c.w_colour * self.colour(a, b) + c.w_formality * self.formality(a, b)
        weight = np.full(total.shape, c.w_colour + c.w_formality, dtype=np.float32)
        if self._prior_matrix is not None and c.w_cooccurrence > 0:
            ca, cb = a.category[:, None], b.category[None, :]
            known = (ca >= 0) & (cb >= 0)
            prior = self._prior_matrix[np.maximum(ca, 0), np.maximum(cb, 0)]
            total = total + np.where(known, c.w_cooccurrence * prior, 0.0)
            weight = weight + np.where(known, c.w_cooccurrence, 0.0)
        if a.vectors is not None and b.vectors is not None and c.w_embedding > 0:
            cos = a.vectors @ b.vectors.T
            # zero vectors (item not embedded) contribute no evidence
            has = (np.abs(a.vectors).sum(1)[:, None] > 0) & (np.abs(b.vectors).sum(1)[None, :] > 0)
            total = total + np.where(has, c.w_embedding * (1.0 + np.clip(cos, -1, 1)) / 2, 0.0)
            weight = weight + np.where(has, c.w_embedding, 0.0)
        return (total / weight).astype(np.float32)

    @staticmethod
    def gender_ok(a: Features, b: Features) -> np.ndarray:
        """[len(a), len(b)] True where the pair may share an outfit."""
        ga, gb = a.gender[:, None], b.gender[None, :]
        return (ga == 0) | (gb == 0) | (ga == gb)

    def accent_factors(self, families: np.ndarray, neutrals: np.ndarray, max_accents: int) -> np.ndarray:
        """Per outfit (rows of [n, slots] codes), the penalty for more accent colour families
        than the scene suits (1.0: none)."""
        acc = np.where(neutrals | (families <= 0), 0, families)
        acc = np.sort(acc, axis=1)
        distinct = (acc[:, :1] > 0).sum(1) + ((acc[:, 1:] != acc[:, :-1]) & (acc[:, 1:] > 0)).sum(1)
        excess = np.maximum(0, distinct - max_accents)
        return np.maximum(0.0, 1.0 - self.cfg.accent_penalty * excess)
