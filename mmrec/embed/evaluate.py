"""Held-out retrieval evaluation (`mmrec embed eval`), after the Marqo-FashionCLIP protocol.

Gallery: every held-out product (`mmrec.splits.is_held_out`, never seen by the encoder) that
has an image vector. Query sets:

- ``title``: a product's title -> that product (R@1, R@10, MRR).
- ``category`` / ``colour`` / ``usage``: the bare taxonomy value ("tshirts", "navy blue",
  "formal") -> every gallery product carrying it (P@1, P@10, AP); only values with at least
  ``eval.min_relevant`` products are queried, so P@10 can reach 1.
- ``attribute_phrase``: "<colour> <category> <gender> <usage>" built from a gallery product ->
  the products matching all four (P@1, P@10, AP).

Each set is scored per route, exactly as served (`Recall.route_results`, depth
``eval.depth``), for the RRF fusion, and for baselines (random order; BM25 alone). Route
weights are chosen on the val split (``--split val --tune``, the encoder never trains on val)
and reported on the test split. Two routes
have an unfair advantage on some sets and are labelled so: BM25 on titles (the title is in its
index: an oracle) and the attribute route on value and phrase queries (it matches the very
fields that define relevance). The image route is also scored over the whole gallery
(``text_image@gallery``), the Marqo setting.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import numpy as np

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.embed.config import EmbedConfig
from mmrec.embed.metrics import known_item_metrics, set_metrics
from mmrec.recall.config import RecallConfig
from mmrec.splits import split_of

ROUTES = ("text_image", "bm25", "attribute")
PHRASE_FIELDS = ("colour", "category", "gender", "usage")

# Which numbers the "done when" names, as (query set, system, metric, minimum).
TARGETS = (
    ("title", "text_image@gallery", "R@10", 0.75),
    ("category", "text_image@gallery", "P@10", 0.65),
    ("category", "fusion", "P@10", 0.80),
    ("colour", "fusion", "P@10", 0.85),
    ("usage", "fusion", "AP", 0.50),
)


def build_queries(rows: list[dict[str, Any]], cfg: EmbedConfig) -> dict[str, list[tuple[str, Any]]]:
    """Query sets over gallery ``rows``: (text, target id) for titles, (text, relevant ids) else."""
    ec = cfg.eval
    out: dict[str, list[tuple[str, Any]]] = {"title": [(r["title"], r["item_id"]) for r in rows]}
    for field in ("category", "colour", "usage"):
        groups: dict[str, set[str]] = {}
        for r in rows:
            if r.get(field):
                groups.setdefault(r[field], set()).add(r["item_id"])
        out[field] = [(v, ids) for v, ids in sorted(groups.items()) if len(ids) >= ec.min_relevant]
    combos: dict[tuple, set[str]] = {}
    for r in rows:
        if all(r.get(f) for f in PHRASE_FIELDS):
            combos.setdefault(tuple(r[f] for f in PHRASE_FIELDS), set()).add(r["item_id"])
    phrases = [(" ".join(k), ids) for k, ids in sorted(combos.items())
               if len(ids) >= ec.attribute_phrase_min_relevant]
    rng = np.random.default_rng(ec.seed)
    if len(phrases) > ec.attribute_phrase_queries:
        keep = np.sort(rng.choice(len(phrases), ec.attribute_phrase_queries, replace=False))
        phrases = [phrases[i] for i in keep]
    out["attribute_phrase"] = phrases
    return out


def _score(name: str, rankings: list[list[str]], queries: list[tuple[str, Any]]) -> dict[str, float]:
    if name == "title":
        return known_item_metrics(rankings, [t for _, t in queries])
    return set_metrics(rankings, [rel for _, rel in queries])


def route_runs(recall, query_sets: dict[str, list[tuple[str, Any]]], *,
               progress: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Per query set and query: each route's result (as served) + the whole-gallery image ranking."""
    from mmrec.recall.types import Filters, RecallQuery

    no_filters = Filters(in_stock_only=False)
    alive = np.flatnonzero(recall.index.alive)
    gallery_vecs = recall.index.vectors(alive)
    gallery_order = [recall.index.item_ids[i] for i in alive]
    out: dict[str, list[dict[str, Any]]] = {}
    for set_name, queries in query_sets.items():
        if not queries:
            continue
        it = queries
        if progress:
            from tqdm import tqdm

            it = tqdm(queries, desc=f"eval {set_name}", unit="q")
        full = recall.encoder.encode_texts([q for q, _ in queries]) @ gallery_vecs.T
        rows = []
        for qi, (text, _) in enumerate(it):
            by_route = {r.name: r for r in recall.route_results(
                RecallQuery(text=text, filters=no_filters), routes=set(ROUTES))}
            order = np.argsort(-full[qi], kind="stable")
            rows.append({"routes": by_route, "gallery": [gallery_order[i] for i in order]})
        out[set_name] = rows
    return out


def score_runs(runs: dict[str, list[dict[str, Any]]], query_sets: dict[str, list[tuple[str, Any]]],
               weights: dict[str, float], rrf_k: float, gallery_ids: list[str], *,
               seed: int = 0, systems: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Metrics per query set and system: each route, RRF fusion (with and without the attribute
    route), the image route over the whole gallery, and a random ranking."""
    from mmrec.recall.fusion import rrf

    rng = np.random.default_rng(seed)
    results: dict[str, Any] = {}
    for set_name, rows in runs.items():
        queries = query_sets[set_name]
        ranked: dict[str, list[list[str]]] = {}

        def add(name: str, ids: list[str]) -> None:
            ranked.setdefault(name, []).append(ids)

        for row in rows:
            present = [row["routes"][n] for n in ROUTES if n in row["routes"]]
            add("fusion", [c.item_id for c in rrf(present, weights, k=rrf_k)])
            if systems is None:
                for name in ROUTES:
                    add(name, row["routes"][name].item_ids if name in row["routes"] else [])
                add("fusion_without_attribute", [c.item_id for c in rrf(
                    [r for r in present if r.name != "attribute"], weights, k=rrf_k)])
                add("text_image@gallery", row["gallery"])
                add("random", [gallery_ids[i] for i in rng.permutation(len(gallery_ids))])
        results[set_name] = {name: _score(set_name, r, queries) for name, r in ranked.items()}
    return results


# The fusion figure of merit that `--tune` maximises: one headline metric per query set. Title
# queries are left out: BM25 is an oracle on them (the title is in its index), so they would
# only teach the tuner to trust BM25.
TUNE_METRICS = {"category": "AP", "colour": "AP", "usage": "AP", "attribute_phrase": "AP"}


def tune_weights(runs, query_sets, gallery_ids, rrf_k: float,
                 grid: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Fusion quality for every combination of route weights in ``grid``, best first."""
    import itertools

    names = list(grid)
    out = []
    for combo in itertools.product(*(grid[n] for n in names)):
        w = dict(zip(names, combo))
        res = score_runs(runs, query_sets, w, rrf_k, gallery_ids, systems=("fusion",))
        per_set = {s: res[s]["fusion"][m] for s, m in TUNE_METRICS.items() if s in res}
        title = {"title_MRR": res["title"]["fusion"]["MRR"]} if "title" in res else {}
        out.append({"weights": w, "objective": float(np.mean(list(per_set.values()))), **per_set, **title})
    return sorted(out, key=lambda r: -r["objective"])


def evaluate(store: ArtifactStore, cfg: EmbedConfig, recall_cfg: RecallConfig, *,
             vectors_ref: str | None = None, encoder_ref: str | None = None, split: str = "test",
             tune: bool = False, progress: bool = True,
             log: Callable[[str], None] | None = None) -> Artifact:
    """Evaluate a vectors artifact's encoder on a gallery the encoder never trained on.

    Args:
        split: ``test`` (the held-out products: the numbers to report) or ``val`` (for choosing
            settings; refused when the encoder trained on val).
        tune: also score every combination of route weights in ``eval.tune_grid`` (use on val).
    """
    from mmrec.catalog.ingest import load_items
    from mmrec.embed.catalog import load_vectors
    from mmrec.embed.encoder import Encoder
    from mmrec.errors import InputError
    from mmrec.recall.config import IndexConfig
    from mmrec.recall.index import VectorIndex
    from mmrec.recall.service import Recall

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if split not in ("test", "val"):
        raise InputError(f"split must be 'test' or 'val', got {split!r}")
    vec_art, vtable, vectors = load_vectors(store, vectors_ref)
    encoder_id = vec_art.manifest.get("encoder_id")
    enc_version = encoder_ref or (encoder_id.rsplit("@", 1)[-1] if encoder_id and "@" in encoder_id else None)
    enc_art = store.resolve(enc_version, kinds.ENCODER)
    if split == "val" and enc_art.config.get("train", {}).get("include_val"):
        raise InputError(f"encoder/{enc_art.version} trained on the val split; evaluate on test")
    encoder = Encoder.from_dir(enc_art.path, device=cfg.model.device)
    items_version = vec_art.manifest["items_version"]
    items = load_items(store, items_version)
    ids = vtable.column("item_id").to_pylist()
    gallery_pos = [i for i, iid in enumerate(ids) if split_of(iid) == split]
    gallery_ids = [ids[i] for i in gallery_pos]
    keep = set(gallery_ids)
    gallery_items = items.filter(np.array([i in keep for i in items.column("item_id").to_pylist()]))
    rows = gallery_items.select([c for c in gallery_items.column_names if c != "attributes"]).to_pylist()
    by_id = {r["item_id"]: r for r in rows}
    index = VectorIndex.build(vectors[gallery_pos], gallery_ids, [by_id[i] for i in gallery_ids],
                              IndexConfig(threads=1), encoder_id=encoder_id, kind="flat")
    rc = recall_cfg.model_copy(deep=True)
    depth = cfg.eval.depth
    for name in ROUTES:
        rc.route(name).depth = depth
    recall = Recall.from_parts(index, gallery_items, encoder=encoder, cfg=rc)
    queries = build_queries(rows, cfg)
    log(f"gallery: {len(gallery_ids)} {split}-split products; queries: "
        + ", ".join(f"{k}={len(v)}" for k, v in queries.items()))
    runs = route_runs(recall, queries, progress=progress)
    weights = {r: rc.route(r).weight for r in ROUTES}
    results = score_runs(runs, queries, weights, rc.rrf_k, gallery_ids, seed=cfg.eval.seed)
    metrics: dict[str, Any] = {
        "split": split, "gallery_size": len(gallery_ids), "encoder_id": encoder_id,
        "vectors_version": vec_art.version, "items_version": items_version,
        "route_depth": depth, "rrf_k": rc.rrf_k, "route_weights": weights,
        "queries": {k: len(v) for k, v in queries.items()},
        "min_relevant": cfg.eval.min_relevant,
        "notes": {
            "bm25 on title": "oracle: the title is in the BM25 index",
            "attribute and bm25 on category/colour/usage/attribute_phrase":
                "structured match on the same catalog fields that define relevance "
                "(BM25 indexes the attribute values too)",
            "text_image@gallery": "image vectors only, whole gallery ranked (Marqo protocol)",
        },
        "results": results,
    }
    if tune:
        grid = cfg.eval.tune_grid
        metrics["tuning"] = tune_weights(runs, queries, gallery_ids, rc.rrf_k, grid)[:20]
        log("best weights on this split: " + json.dumps(metrics["tuning"][0]))
    metrics["targets"] = [
        {"set": s, "system": sys_, "metric": m, "target": t,
         "value": results.get(s, {}).get(sys_, {}).get(m),
         "met": bool((results.get(s, {}).get(sys_, {}).get(m) or 0) >= t)}
        for s, sys_, m, t in TARGETS]
    phrase = results.get("attribute_phrase", {})
    for m in ("P@1", "P@10", "AP") if phrase else ():
        singles = {r: phrase[r][m] for r in ROUTES}
        metrics["targets"].append({"set": "attribute_phrase", "system": "fusion", "metric": m,
                                   "target": "> every single route", "value": phrase["fusion"][m],
                                   "single_routes": singles,
                                   "met": bool(all(phrase["fusion"][m] > v for v in singles.values()))})
    with store.write(kinds.EMBED_EVAL, config={"embed": cfg.eval.model_dump(mode="json"), "split": split,
                                   "recall": rc.model_dump(mode="json")}) as w:
        (w.path / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float), encoding="utf-8")
        w.add_artifact_input(vec_art)
        w.add_artifact_input(enc_art)
        w.metrics = {"split": split, "gallery_size": len(gallery_ids), "targets": metrics["targets"]}
    return store.load(kinds.EMBED_EVAL, w.version)


def read_metrics(art: Artifact) -> dict[str, Any]:
    return json.loads(art.file("metrics.json").read_text(encoding="utf-8"))


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text table of every query set x system (for the terminal and the README)."""
    res = metrics.get("results") or {}
    lines = [f"gallery: {metrics.get('gallery_size')} {metrics.get('split', 'test')}-split products, "
             f"encoder {metrics.get('encoder_id')}, route weights {metrics.get('route_weights')}"]
    for set_name, systems in res.items():
        cols = [c for c in next(iter(systems.values())) if c != "queries"]
        n = next(iter(systems.values())).get("queries")
        lines.append(f"\n{set_name} ({n} queries)   " + "  ".join(f"{c:>7}" for c in cols))
        for sys_name, m in systems.items():
            lines.append(f"  {sys_name:<26}" + "  ".join(f"{m[c]:7.3f}" for c in cols))
    for t in (metrics.get("tuning") or [])[:5]:
        lines.append("tuning: " + json.dumps(t))
    for t in metrics.get("targets", []):
        lines.append(f"target {t['set']}/{t['system']} {t['metric']} {t['target']}: "
                     f"{t['value'] if t['value'] is None else round(t['value'], 3)} "
                     f"{'met' if t['met'] else 'MISSED'}")
    return "\n".join(lines)
