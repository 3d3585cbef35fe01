"""Recall routes: each turns one aspect of a query into a ranked candidate list.

- ``text_image`` / ``photo_image``: the query text (CLIP text tower) or photo (image tower) against
  the items' image vectors in the FAISS index.
- ``attribute``: taxonomy values parsed from the query text (word n-grams through
  `Taxonomy.canonical`) plus explicit attributes, matched against the items' structured fields.
  Structured matching, not learned: its numbers are reported separately for that reason.
- ``bm25``: lexical match over titles and attribute values. Written here on scipy.sparse rather
  than taken from PyPI: rank_bm25 scores every document in a Python loop per query, while a
  precomputed term-weight matrix makes a query one sparse column sum (~1 ms for 12k items).
- ``popularity``: weighted, time-decayed interaction counts per user segment (global fallback).

Every route takes the same `Filters`, applied before ranking (see `mmrec.recall.meta`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from mmrec.errors import InputError
from mmrec.recall.config import AttributeRouteConfig, BM25RouteConfig, PopularityRouteConfig
from mmrec.recall.meta import ItemMeta
from mmrec.recall.types import Filters, RouteResult

# Fields the attribute route can match; slot only when the words name a slot exactly ("shoes").
ATTRIBUTE_FIELDS = ("category", "colour", "gender", "usage", "pattern", "material", "fit", "sleeve",
                    "neckline", "season", "slot")


def top_k(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` best positive scores (ties: lower index first), best first."""
    s = scores if allowed is None else np.where(allowed, scores, -np.inf)
    cand = np.flatnonzero(s > 0)
    if len(cand) > k:
        cand = cand[np.argpartition(-s[cand], k - 1)[:k]]
    return cand[np.lexsort((cand, -s[cand]))]


class RecallCatalog:
    """The items the lexical, attribute and popularity routes search, with filter metadata."""

    def __init__(self, items: pa.Table, cache_size: int = 256) -> None:
        cols = [c for c in items.column_names if c != "attributes"]
        self.rows: list[dict[str, Any]] = items.select(cols).to_pylist()
        self.item_ids = [r["item_id"] for r in self.rows]
        self.pos_of = {iid: i for i, iid in enumerate(self.item_ids)}
        self.meta = ItemMeta.from_rows(self.rows, cache_size)
        # field -> (value -> code, codes per row); -1 = no value
        self.codes: dict[str, tuple[dict[str, int], np.ndarray]] = {}
        for f in ATTRIBUTE_FIELDS:
            voc: dict[str, int] = {}
            arr = np.fromiter((-1 if r.get(f) is None else voc.setdefault(str(r[f]).lower(), len(voc))
                               for r in self.rows), np.int32, len(self.rows))
            self.codes[f] = (voc, arr)

    def __len__(self) -> int:
        return len(self.rows)

    def allowed(self, filters: Filters | None) -> np.ndarray:
        mask = self.meta.mask(filters)
        if filters is not None and filters.exclude_ids:
            mask[[self.pos_of[i] for i in filters.exclude_ids if i in self.pos_of]] = False
        return mask


# -- attribute match ------------------------------------------------------------------------

@dataclass
class ParsedAttributes:
    values: dict[str, str]       # field -> canonical value
    spans: dict[str, str]        # field -> the words that produced it
    rest: list[str]              # words that matched no field


def parse_attributes(text: str, taxonomy, max_ngram: int = 3) -> ParsedAttributes:
    """Find taxonomy values in free text, longest word n-grams first, left to right.

    A span that names an outfit slot exactly ("shoes", "top") sets the slot, not a category, unless it
    spells a category verbatim ("tops" is Myntra's category, not the plural of the slot); the
    first mention of a field wins and later ones are consumed without overriding it.
    """
    from mmrec.taxonomy import normalize

    words = normalize(text).split()
    used = [False] * len(words)
    values: dict[str, str] = {}
    spans: dict[str, str] = {}
    slot_names = set(taxonomy.values("slot"))
    for n in range(min(max_ngram, len(words)), 0, -1):
        for i in range(len(words) - n + 1):
            if any(used[i:i + n]):
                continue
            span = " ".join(words[i:i + n])
            hit = None
            slot = taxonomy.canonical("slot", span)
            # "tops" is a catalog category (Myntra's blouses) as well as the plural of the slot
            # "top": a span that spells a category verbatim stays a category; "top"/"shoes" are slots
            if slot is not None and (span in slot_names or (span.rstrip("s") in slot_names
                                                            and taxonomy.canonical("category", span) != span)):
                hit = ("slot", slot)
            else:
                for f in ATTRIBUTE_FIELDS[:-1]:
                    v = taxonomy.canonical(f, span)
                    if v is not None:
                        hit = (f, v)
                        break
            if hit is None:
                continue
            used[i:i + n] = [True] * n
            if hit[0] not in values:
                values[hit[0]] = hit[1]
                spans[hit[0]] = span
    return ParsedAttributes(values, spans, [w for w, u in zip(words, used) if not u])


class AttributeRoute:
    """Scores items by the summed weights of the query's taxonomy values they carry."""

    name = "attribute"

    def __init__(self, catalog: RecallCatalog, taxonomy, cfg: AttributeRouteConfig,
                 tie_break: np.ndarray | None = None) -> None:
        self.catalog, self.taxonomy, self.cfg = catalog, taxonomy, cfg
        # ties (same matched fields) are ordered by this prior, e.g. global popularity
        self.tie_break = tie_break

    def query_values(self, text: str | None, attributes: dict[str, str]) -> tuple[dict[str, str], dict]:
        values: dict[str, str] = {}
        info: dict[str, Any] = {}
        for f, raw in attributes.items():
            if f not in self.taxonomy.fields:
                raise InputError(f"unknown attribute field {f!r}; valid: {list(self.taxonomy.fields)}")
            v = self.taxonomy.canonical(f, raw)
            if v is None:
                raise InputError(f"{f}={raw!r} is not a known value; e.g. {self.taxonomy.values(f)[:8]}")
            values[f] = v
        if text:
            parsed = parse_attributes(text, self.taxonomy, self.cfg.max_ngram)
            for f, v in parsed.values.items():
                values.setdefault(f, v)  # explicit attributes win over parsed words
            info["parsed"] = parsed.values
        info["matched_fields"] = values
        return values, info

    def search(self, values: dict[str, str], allowed: np.ndarray, depth: int) -> RouteResult:
        scores = np.zeros(len(self.catalog), np.float64)
        for f, v in values.items():
            w = self.cfg.field_weights.get(f, 0.0)
            if w <= 0 or f not in self.catalog.codes:
                continue
            voc, codes = self.catalog.codes[f]
            code = voc.get(v)
            if code is not None:
                scores += w * (codes == code)
        ranked_scores = scores
        if self.tie_break is not None:
            # a prior in [0, 1) never lifts an item over one that matches more weight
            ranked_scores = scores + 0.999 * self.tie_break * (scores > 0)
        idx = top_k(ranked_scores, depth, allowed)
        return RouteResult(self.name, [self.catalog.item_ids[i] for i in idx],
                           [float(scores[i]) for i in idx])


# -- BM25 -------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lowercase alphanumeric words with a light plural fold ("shirts" -> "shirt")."""
    out = []
    for w in _TOKEN.findall(text.lower()):
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return out


class BM25Route:
    """Okapi BM25 over one text per item, as a precomputed sparse term-weight matrix."""

    name = "bm25"

    def __init__(self, texts: Sequence[str], item_ids: Sequence[str], cfg: BM25RouteConfig) -> None:
        from scipy import sparse

        self.item_ids = list(item_ids)
        self.vocab: dict[str, int] = {}
        rows, cols, vals = [], [], []
        for d, text in enumerate(texts):
            counts: dict[int, int] = {}
            for tok in tokenize(text):
                t = self.vocab.setdefault(tok, len(self.vocab))
                counts[t] = counts.get(t, 0) + 1
            rows += [d] * len(counts)
            cols += list(counts)
            vals += list(counts.values())
        n = len(texts)
        tf = sparse.csr_matrix((np.asarray(vals, np.float64), (rows, cols)),
                               shape=(n, max(1, len(self.vocab))))
        dl = np.asarray(tf.sum(axis=1)).ravel()
        avgdl = max(dl.mean(), 1e-9) if n else 1.0
        df = np.bincount(tf.indices, minlength=tf.shape[1])
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        k1, b = cfg.k1, cfg.b
        norm = k1 * (1 - b + b * dl / avgdl)  # per document
        w = tf.copy()
        row_of = np.repeat(np.arange(n), np.diff(tf.indptr))
        w.data = idf[tf.indices] * tf.data * (k1 + 1) / (tf.data + norm[row_of])
        self.weights = w.tocsc()  # column slices (query terms) are what a query reads

    def scores(self, query: str) -> np.ndarray:
        terms = sorted({self.vocab[t] for t in tokenize(query) if t in self.vocab})
        if not terms:
            return np.zeros(len(self.item_ids))
        return np.asarray(self.weights[:, terms].sum(axis=1)).ravel()

    def search(self, query: str, allowed: np.ndarray, depth: int) -> RouteResult:
        s = self.scores(query)
        idx = top_k(s, depth, allowed)
        return RouteResult(self.name, [self.item_ids[i] for i in idx], [float(s[i]) for i in idx])


def bm25_texts(rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> list[str]:
    return [" ".join(str(r[f]) for f in fields if r.get(f) is not None) for r in rows]


# -- popularity ---------------------------------------------------------------------------------

class PopularityRoute:
    """Items ranked by weighted, time-decayed engagement within the shopper's segment."""

    name = "popularity"

    def __init__(self, catalog: RecallCatalog, global_scores: np.ndarray,
                 segment_scores: dict[str, np.ndarray], source: str) -> None:
        self.catalog = catalog
        self.global_scores = global_scores
        self.segment_scores = segment_scores
        self.source = source  # e.g. "interactions_sim/<version>": explanations must say simulated

    @classmethod
    def from_interactions(cls, catalog: RecallCatalog, interactions: pa.Table,
                          profiles: pa.Table | None, cfg: PopularityRouteConfig,
                          source: str) -> "PopularityRoute":
        """Sum event weights per item (and per segment of the acting user), decayed by age."""
        item = np.array([catalog.pos_of.get(i, -1) for i in interactions.column("item_id").to_pylist()])
        weights = np.array([cfg.event_weights.get(e, 0.0) for e in interactions.column("event").to_pylist()])
        if cfg.half_life_days and interactions.num_rows:
            ts = interactions.column("ts").cast(pa.int64()).to_numpy() / 1e6  # us -> s
            age_days = (ts.max() - ts) / 86400.0
            weights = weights * np.power(0.5, age_days / cfg.half_life_days)
        keep = (item >= 0) & (weights > 0)
        n = len(catalog)
        glob = np.bincount(item[keep], weights=weights[keep], minlength=n)
        seg_scores: dict[str, np.ndarray] = {}
        if profiles is not None and "segment" in profiles.column_names:
            seg_of = dict(zip(profiles.column("user_id").to_pylist(), profiles.column("segment").to_pylist()))
            segs = np.array([seg_of.get(u) or "" for u in interactions.column("user_id").to_pylist()])
            for s in sorted(set(segs[keep]) - {""}):
                m = keep & (segs == s)
                if weights[m].sum() >= cfg.min_segment_events:
                    seg_scores[s] = np.bincount(item[m], weights=weights[m], minlength=n)
        return cls(catalog, glob, seg_scores, source)

    def prior(self) -> np.ndarray:
        """Global popularity scaled to [0, 1) (a tie-break for other routes)."""
        g = self.global_scores
        return g / (g.max() * 1.0001) if g.max() > 0 else np.zeros_like(g)

    def search(self, segment: str | None, allowed: np.ndarray, depth: int) -> RouteResult:
        scores = self.segment_scores.get(segment or "", self.global_scores)
        used = segment if segment in self.segment_scores else "global"
        idx = top_k(scores, depth, allowed)
        return RouteResult(self.name, [self.catalog.item_ids[i] for i in idx],
                           [float(scores[i]) for i in idx], {"segment": used, "source": self.source})


# -- vector routes ----------------------------------------------------------------------------

class VectorRoute:
    """A query vector against the item image vectors in the FAISS index."""

    def __init__(self, name: str, index) -> None:
        self.name = name
        self.index = index

    def search(self, vector: np.ndarray, filters: Filters, depth: int) -> RouteResult:
        hits = self.index.search(np.asarray(vector, np.float32)[None, :], depth, filters)[0]
        return RouteResult(self.name, [i for i, _ in hits], [s for _, s in hits])


def normalise(vector: Sequence[float], dim: int) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32).ravel()
    if v.shape[0] != dim:
        raise InputError(f"image_vector has {v.shape[0]} values; the index holds {dim}-d vectors")
    norm = float(np.linalg.norm(v))
    if not math.isfinite(norm) or norm == 0:
        raise InputError("image_vector must be finite and non-zero")
    return v / norm
