"""What a live upsert/delete costs on the served catalog, and what `mmrec index compact` costs.

    .venv/bin/python lab/inventory/derive_cost.py --artifacts artifacts --out docs/results/live-inventory-20261207/derive_cost.json

Loads the recommender of ``--artifacts`` (no photo models), then times
`mmrec.recommend.catalog_live.apply_changes` for batches of deletes and upserts (new items
embedded from their titles with recall's encoder, as the API does without a photo), the first
request after each (cold caches) against a warm one, and `mmrec.recall.compact.compact_index`
folding the largest batch into a copy of the index (in a temporary store: the given artifacts
are never written).

Outcome (2026-12-07, 12,049 items, flat index, 2 busy cores): see docs/serving.md "Live catalog".
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from mmrec.api_models import RecommendRequest
    from mmrec.artifacts import ArtifactStore
    from mmrec.config import load_config
    from mmrec.recall.compact import compact_index
    from mmrec.recommend import Recommender
    from mmrec.recommend.catalog_live import apply_changes
    from mmrec.recommend.loading import load_parts
    from mmrec.serving.threads import limit_threads

    limit_threads()
    store = ArtifactStore(args.artifacts)
    t0 = time.perf_counter()
    parts = load_parts(store, with_photo_models=False)
    base = Recommender(parts.items, parts.scenes, **parts.kwargs())
    base.warm()
    out: dict = {"items": len(base.items), "index_kind": base.recall.index.kind,
                 "load_and_warm_s": round(time.perf_counter() - t0, 1), "batches": []}
    req = RecommendRequest(scene="office", k=3)

    def timed_request(rec) -> float:
        t = time.perf_counter()
        rec.recommend(req)
        return round(1000 * (time.perf_counter() - t), 1)

    enc = base.recall.encoder
    template = next(r for r in base.items.rows if r["slot"] == "shoes")
    ids = list(base.items.ids)

    def upserts(n: int) -> list:
        rows = [{**template, "item_id": f"live-{n}-{k}", "title": f"{template['title']} {k}",
                 "image_uri": None, "image_sha256": None} for k in range(n)]
        vecs = enc.encode_texts([r["title"] for r in rows]) if n else []
        return [("upsert", r["item_id"], None, None,
                 {"row": r, "vector": [float(x) for x in v], "encoder_id": enc.encoder_id})
                for r, v in zip(rows, vecs)]

    biggest = []
    for n_del, n_up in ((1, 0), (0, 1), (100, 100), (1000, 1000)):
        changes = [("delete", i, None, None, None) for i in ids[-n_del:]] if n_del else []
        changes += upserts(n_up)
        warm_ms = timed_request(base)
        t = time.perf_counter()
        derived, changed = apply_changes(base, changes, seq=1)
        apply_s = time.perf_counter() - t
        first_ms = timed_request(derived)
        out["batches"].append({"deletes": n_del, "upserts": n_up, "changed": changed,
                               "apply_s": round(apply_s, 3), "warm_request_ms": warm_ms,
                               "first_request_after_ms": first_ms,
                               "second_request_after_ms": timed_request(derived)})
        print(out["batches"][-1], flush=True)
        biggest = changes
        # the shared index keeps each batch's tombstones, as a server does between compactions

    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("items", "index"):
            shutil.copytree(Path(args.artifacts) / kind, Path(tmp) / kind)
        copy = ArtifactStore(tmp)
        t = time.perf_counter()
        _, stats = compact_index(copy, load_config("index", profile="mini"), biggest, through_seq=len(biggest))
        out["compact"] = {**stats, "wall_s": round(time.perf_counter() - t, 2),
                          "changes": len(biggest)}
        print(out["compact"], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
