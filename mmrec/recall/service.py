"""`Recall`: multi-route candidate recall over one index version, fused with RRF.

The serving layer calls ``Recall.load(store)`` once and ``recall.search(query)`` per request.
Everything a search reads (index, catalog, routes, versions) lives in one immutable snapshot;
`reload` builds the next snapshot completely and then replaces the reference in one
assignment, so a request in flight finishes on the version it started with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec import kinds
from mmrec.errors import ArtifactNotFound, InputError
from mmrec.lru import LRU
from mmrec.recall.config import IndexConfig, RecallConfig
from mmrec.recall.fusion import rrf
from mmrec.recall.index import VectorIndex
from mmrec.recall.meta import META_COLUMNS
from mmrec.recall.routes import (AttributeRoute, BM25Route, PopularityRoute, RecallCatalog,
                                 VectorRoute, bm25_texts, normalise)
from mmrec.recall.types import Candidate, RecallQuery, RouteResult

if TYPE_CHECKING:
    from mmrec.artifacts import ArtifactStore
    from mmrec.embed.encoder import Encoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Snapshot:
    index: VectorIndex
    catalog: RecallCatalog
    attribute: AttributeRoute
    bm25: BM25Route
    popularity: PopularityRoute | None
    versions: dict[str, str]
    # vectors of items added or re-embedded live (`with_catalog`), searched beside ``index``
    fresh: VectorIndex | None = None


class Recall:
    """Candidate recall: text/photo vectors, attribute match, BM25 and popularity, fused by RRF."""

    def __init__(self, snapshot: _Snapshot, encoder: "Encoder | None", cfg: RecallConfig,
                 index_cfg: IndexConfig | None = None) -> None:
        self._snap = snapshot
        self.encoder = encoder
        self.cfg = cfg
        self.index_cfg = index_cfg or IndexConfig()
        self._text_vectors = LRU(cfg.text_vector_cache)  # (encoder id, text) -> vector
        if encoder is not None and snapshot.index.encoder_id not in (None, encoder.encoder_id):
            raise InputError(f"encoder {encoder.encoder_id!r} does not match the index's vectors "
                             f"({snapshot.index.encoder_id!r}); load the encoder that made them")

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_parts(cls, index: VectorIndex, items: pa.Table, *, encoder: "Encoder | None",
                   cfg: RecallConfig, popularity: tuple[pa.Table, pa.Table | None, str] | None = None,
                   versions: dict[str, str] | None = None, taxonomy=None) -> "Recall":
        """Assemble from in-memory parts (tests, evaluation); `load` is the artifact path.

        ``popularity``: (interactions, profiles or None, source label) to build that route from.
        """
        return cls(_snapshot(index, items, cfg, popularity, versions or {}, taxonomy), encoder, cfg,
                   index.cfg)

    @classmethod
    def load(cls, store: "ArtifactStore", *, encoder: "Encoder | None" = None,
             config: RecallConfig | None = None, index_config: IndexConfig | None = None,
             index_version: str | None = None, profile: str = "mini",
             items: pa.Table | None = None) -> "Recall":
        """Load the index artifact (default CURRENT), the items it was built from, the encoder
        that made its vectors, and interaction logs for popularity when they exist.

        Args:
            items: serve this items table instead of the index's items version (same ids,
                amended attributes, e.g. new arrivals read by the models); the index's filter
                metadata is refreshed from it.
        """
        from mmrec.config import load_config

        cfg = config or load_config("recall", profile=profile)
        icfg = index_config or load_config("index", profile=profile)
        snap = _load_snapshot(store, cfg, icfg, index_version, items)
        if encoder is None and (cfg.text_image.enabled or cfg.photo_image.enabled):
            encoder = _load_encoder(store, snap.index.encoder_id, cfg.device)
        if encoder is not None:
            snap.versions["encoder"] = encoder.version or encoder.encoder_id
        out = cls(snap, encoder, cfg, icfg)
        out._store = store
        return out

    def reload(self, store: "ArtifactStore | None" = None, index_version: str | None = None) -> bool:
        """Switch to the CURRENT (or given) index version; returns False when already on it."""
        store = store or getattr(self, "_store", None)
        if store is None:
            raise InputError("reload needs the artifact store this Recall was loaded from")
        target = index_version or store.current_version(kinds.INDEX)
        if target == self._snap.versions.get("index"):
            return False
        snap = _load_snapshot(store, self.cfg, self.index_cfg, target)
        if self.encoder is not None:
            if snap.index.encoder_id != self.encoder.encoder_id:
                raise InputError(f"index/{target} holds {snap.index.encoder_id!r} vectors, the loaded "
                                 f"encoder is {self.encoder.encoder_id!r}; load a new Recall")
            snap.versions["encoder"] = self._snap.versions.get("encoder", self.encoder.encoder_id)
        self._snap = snap  # one reference assignment: searches see the old or the new snapshot
        return True

    # -- queries --------------------------------------------------------------------------
    @property
    def versions(self) -> dict[str, str]:
        return dict(self._snap.versions)

    @property
    def index(self) -> VectorIndex:
        return self._snap.index

    @property
    def fresh(self) -> VectorIndex | None:
        """The vectors of items added or re-embedded live (`with_catalog`), if any."""
        return self._snap.fresh

    def route_results(self, query: RecallQuery, *, routes: set[str] | None = None,
                      snapshot: _Snapshot | None = None) -> list[RouteResult]:
        """Every applicable route's ranked list for ``query`` (``routes`` limits which run)."""
        snap = snapshot or self._snap
        cfg = self.cfg
        want = (lambda name: getattr(cfg, name).enabled and (routes is None or name in routes))
        out: list[RouteResult] = []
        allowed = None
        text = (query.text or "").strip()

        def rows_allowed() -> np.ndarray:
            nonlocal allowed
            if allowed is None:
                allowed = snap.catalog.allowed(query.filters)
            return allowed

        if text and want("text_image") and self.encoder is not None:
            vec = self._text_vector(text)
            out.append(_vector_search(snap, "text_image", vec, query.filters, cfg.text_image.depth))
        if (query.image is not None or query.image_vector is not None) and want("photo_image"):
            if query.image_vector is not None:
                vec = normalise(query.image_vector, snap.index.dim)
            elif self.encoder is None:
                raise InputError("a photo query needs an encoder; load Recall with one")
            else:
                vec = self.encoder.encode_images([query.image])[0]
            out.append(_vector_search(snap, "photo_image", vec, query.filters, cfg.photo_image.depth))
        if (text or query.attributes) and want("attribute"):
            values, info = snap.attribute.query_values(text or None, query.attributes)
            if values:
                res = snap.attribute.search(values, rows_allowed(), cfg.attribute.depth)
                res.info.update(info)
                out.append(res)
        if text and want("bm25"):
            out.append(snap.bm25.search(text, rows_allowed(), cfg.bm25.depth))
        if snap.popularity is not None and want("popularity"):
            out.append(snap.popularity.search(query.segment, rows_allowed(), cfg.popularity.depth))
        return out

    def with_catalog(self, items: pa.Table, fresh: VectorIndex | None) -> "Recall":
        """A Recall over the same index and encoder whose lexical, attribute and popularity routes
        search ``items`` (live catalog changes: new rows in, deleted rows out), and whose vector
        routes also search ``fresh`` (the vectors of items added or re-embedded live).

        The main index is shared, not copied: deleted and re-embedded items must already be
        tombstoned in it (`VectorIndex.tombstone`). Popularity keeps each item's score; a new
        item has none."""
        old = self._snap
        extra = list(fresh.label_of) if fresh is not None else []
        snap = _snapshot(old.index, items, self.cfg, None, old.versions, old.attribute.taxonomy, extra)
        if old.popularity is not None:
            pos = np.array([old.popularity.catalog.pos_of.get(i, -1) for i in snap.catalog.item_ids])

            def take(scores: np.ndarray) -> np.ndarray:
                return np.where(pos >= 0, scores[np.maximum(pos, 0)], 0.0)

            pop = PopularityRoute(snap.catalog, take(old.popularity.global_scores),
                                  {k: take(v) for k, v in old.popularity.segment_scores.items()},
                                  old.popularity.source)
            attribute = AttributeRoute(snap.catalog, snap.attribute.taxonomy, self.cfg.attribute,
                                       tie_break=pop.prior())
            snap = replace(snap, attribute=attribute, popularity=pop)
        out = Recall(replace(snap, fresh=fresh), self.encoder, self.cfg, self.index_cfg)
        out._text_vectors = self._text_vectors  # same encoder: same text vectors
        if hasattr(self, "_store"):
            out._store = self._store
        return out

    def _text_vector(self, text: str) -> np.ndarray:
        key = (self.encoder.encoder_id, text)
        vec = self._text_vectors.get(key)
        if vec is None:
            vec = self.encoder.encode_texts([text])[0]
            vec.flags.writeable = False  # shared by every query with this text
            self._text_vectors.put(key, vec)
        return vec

    def search(self, query: RecallQuery) -> list[Candidate]:
        """Up to ``query.k`` candidates, fused over the routes that apply to the query."""
        snap = self._snap
        results = self.route_results(query, snapshot=snap)
        weights = {r.name: self.cfg.route(r.name).weight for r in results}
        return rrf(results, weights, k=self.cfg.rrf_k, limit=query.k)


# -- loading helpers ------------------------------------------------------------------------

def _vector_search(snap: _Snapshot, name: str, vec: np.ndarray, filters, depth: int) -> RouteResult:
    """The main index's hits, merged by score with the live-added vectors' (if any)."""
    main = VectorRoute(name, snap.index).search(vec, filters, depth)
    if snap.fresh is None or not len(snap.fresh):
        return main
    extra = VectorRoute(name, snap.fresh).search(vec, filters, depth)
    pairs = sorted([*zip(main.scores, main.item_ids), *zip(extra.scores, extra.item_ids)], reverse=True)[:depth]
    return RouteResult(name, [i for _, i in pairs], [sc for sc, _ in pairs])


def _snapshot(index: VectorIndex, items: pa.Table, cfg: RecallConfig,
              popularity: tuple[pa.Table, pa.Table | None, str] | None, versions: dict[str, str],
              taxonomy=None, extra_ids: list[str] = ()) -> _Snapshot:
    """Assemble the routes over the items the index holds (and ``extra_ids``: live-added)."""
    import pyarrow.compute as pc

    from mmrec.taxonomy import default_taxonomy

    # The index defines what is recallable: an item removed from it (or without a vector) is
    # not brought back by the lexical, attribute or popularity routes either.
    items = items.filter(pc.is_in(items.column("item_id"),
                                  pa.array([*index.label_of, *extra_ids], pa.string())))
    catalog = RecallCatalog(items, index.cfg.filter_cache)
    pop = None
    if popularity is not None:
        inter, profiles, source = popularity
        pop = PopularityRoute.from_interactions(catalog, inter, profiles, cfg.popularity, source)
    prior = pop.prior() if pop is not None else None
    attribute = AttributeRoute(catalog, taxonomy or default_taxonomy(), cfg.attribute, tie_break=prior)
    bm25 = BM25Route(bm25_texts(catalog.rows, cfg.bm25.fields), catalog.item_ids, cfg.bm25)
    return _Snapshot(index, catalog, attribute, bm25, pop, dict(versions))


def _load_snapshot(store: "ArtifactStore", cfg: RecallConfig, icfg: IndexConfig,
                   index_version: str | None, items: pa.Table | None = None) -> _Snapshot:
    from mmrec.catalog.ingest import load_items
    from mmrec.recall.build import load_index

    art, index = load_index(store, icfg, index_version)
    items_version = art.manifest["items_version"]
    if items is None:
        items = load_items(store, items_version)
    else:  # amended rows: the vector route filters on the index's own metadata
        rows = items.select(["item_id", *META_COLUMNS]).to_pylist()
        index.set_metadata([r["item_id"] for r in rows], rows)
    versions = {"index": art.version, "items": items_version,
                "vectors": art.manifest.get("vectors_version", "")}
    popularity = None
    if cfg.popularity.enabled:
        try:
            pop_art = store.load(cfg.popularity.interactions_kind)
        except ArtifactNotFound:
            log.info("no %s artifact: the popularity route is off", cfg.popularity.interactions_kind)
        else:
            inter = pq.read_table(pop_art.file("interactions.parquet"),
                                  columns=["user_id", "item_id", "event", "ts"])
            profiles = None
            if "profiles.parquet" in pop_art.manifest["files"]:
                profiles = pq.read_table(pop_art.file("profiles.parquet"), columns=["user_id", "segment"])
            popularity = (inter, profiles, f"{pop_art.kind}/{pop_art.version}")
            versions[pop_art.kind] = pop_art.version
    return _snapshot(index, items, cfg, popularity, versions)


def _load_encoder(store: "ArtifactStore", encoder_id: str | None, device: str) -> "Encoder":
    from mmrec.embed.encoder import Encoder

    version = encoder_id.rsplit("@", 1)[-1] if encoder_id and "@" in encoder_id else None
    if version is not None and version not in store.versions(kinds.ENCODER):
        raise ArtifactNotFound(f"the index's vectors were made by {encoder_id!r}, but "
                               f"encoder/{version} is not in {store.root}")
    return Encoder.load(store, version, device=device)

