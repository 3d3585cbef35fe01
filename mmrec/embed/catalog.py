"""Batch embedding of the catalog's images into a `vectors` artifact (`mmrec embed catalog`).

Incremental by default: an item whose image sha256 and encoder id equal those of its row in the
previous vectors artifact keeps that vector; only new or changed images are decoded and
embedded. Items that left the catalog are dropped. Items whose image cannot be decoded are
listed in ``failures.json`` (they stay findable by the lexical and attribute routes).

Two engines: ``local`` (decode threads + one forward pass per batch, in this process) and
``ray`` (Ray Data ``map_batches`` over encoder actors, for catalogs beyond one machine).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.embed.config import EmbedConfig
from mmrec.embed.encoder import Encoder
from mmrec.embed.local_embed import embed_images_local
from mmrec.errors import ArtifactNotFound, InputError

VECTORS_FILE = "vectors.parquet"
FAILURES_FILE = "failures.json"
SCHEMA_VERSION = 1


def vectors_schema(dim: int) -> pa.Schema:
    return pa.schema([
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        pa.field("encoder_id", pa.string(), nullable=False),
        pa.field("image_sha256", pa.string()),
    ], metadata={"mmrec.schema": "vectors", "mmrec.schema_version": str(SCHEMA_VERSION)})


def vectors_table(item_ids: list[str], vectors: np.ndarray, encoder_id: str,
                  shas: list[str | None]) -> pa.Table:
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    flat = pa.array(v.reshape(-1), pa.float32())
    return pa.table([pa.array(item_ids, pa.string()),
                     pa.FixedSizeListArray.from_arrays(flat, v.shape[1]),
                     pa.array([encoder_id] * len(item_ids), pa.string()),
                     pa.array(shas, pa.string())], schema=vectors_schema(v.shape[1]))


def read_vectors(art: Artifact) -> tuple[pa.Table, np.ndarray]:
    """The vectors table (without the vector column) and the vectors as float32 [n, d]."""
    table = pq.read_table(art.file(VECTORS_FILE))
    col = table.column("vector").combine_chunks()
    dim = col.type.list_size
    v = col.values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)
    return table.drop(["vector"]), v


@dataclass
class EmbedResult:
    artifact: Artifact
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    embed_seconds: float = 0.0
    unchanged: bool = False


def embed_catalog(store: ArtifactStore, cfg: EmbedConfig, *, items_version: str | None = None,
                  encoder_ref: str | None = None, incremental: bool = True, progress: bool = True,
                  encoder: Encoder | None = None, force_new_version: bool = False,
                  log: Callable[[str], None] | None = None) -> EmbedResult:
    """Embed every item image of an items artifact with an encoder artifact; write `vectors`.

    Args:
        store: artifact store (reads items, encoder, previous vectors; writes vectors).
        cfg: the `embed` stage config (section ``catalog``).
        items_version: items version (default: CURRENT).
        encoder_ref: encoder version or folder (default: CURRENT); ignored when ``encoder`` given.
        incremental: reuse vectors of unchanged images from the CURRENT vectors artifact.
        encoder: an already loaded encoder (must come from an encoder artifact of ``store``).
        force_new_version: write a new version even when nothing changed.
    """
    from mmrec.catalog.ingest import load_items

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    cc = cfg.catalog
    if cc.threads:
        import torch

        torch.set_num_threads(cc.threads)
    items_art = store.load(kinds.ITEMS, items_version)
    items = load_items(store, items_art.version, columns=["item_id", "image_uri", "image_sha256"])
    enc_art = store.resolve(encoder_ref, kinds.ENCODER) if encoder is None else None
    if encoder is None:
        encoder = Encoder.from_dir(enc_art.path, device=cfg.model.device)
    elif encoder.version:
        enc_art = store.load(kinds.ENCODER, encoder.version)
    ids = items.column("item_id").to_pylist()
    uris = items.column("image_uri").to_pylist()
    shas = items.column("image_sha256").to_pylist()

    prev_art, reuse = None, {}
    if incremental:
        try:
            prev_art = store.load(kinds.VECTORS)
        except ArtifactNotFound:
            prev_art = None
        if prev_art is not None:
            ptab, pvec = read_vectors(prev_art)
            for i, (iid, eid, sha) in enumerate(zip(ptab.column("item_id").to_pylist(),
                                                    ptab.column("encoder_id").to_pylist(),
                                                    ptab.column("image_sha256").to_pylist())):
                if eid == encoder.encoder_id and sha is not None:
                    reuse[iid] = (sha, pvec[i])
    todo = [i for i, (iid, sha) in enumerate(zip(ids, shas)) if not (iid in reuse and reuse[iid][0] == sha)]
    todo_set = set(todo)
    keep = [i for i in range(len(ids)) if i not in todo_set]
    t0 = time.perf_counter()
    if cc.engine == "ray" and todo:
        from mmrec.embed.ray_embed import embed_with_ray

        new_vecs, errors = embed_with_ray(enc_art.path, [uris[i] for i in todo], cfg)
    else:
        new_vecs, errors = embed_images_local(encoder, [uris[i] for i in todo],
                                              batch_size=cc.batch_size, workers=cc.decode_workers,
                                              progress=progress)
    embed_s = time.perf_counter() - t0
    failures = {ids[i]: e for i, e in zip(todo, errors) if e is not None}
    if failures:
        log(f"{len(failures)} image(s) could not be embedded (listed in {FAILURES_FILE}), e.g. "
            f"{next(iter(failures.items()))}")
    ok_new = [j for j, e in enumerate(errors) if e is None]
    out_rows = sorted([(ids[i], reuse[ids[i]][1], shas[i]) for i in keep]
                      + [(ids[todo[j]], new_vecs[j], shas[todo[j]]) for j in ok_new], key=lambda r: r[0])
    prev_ids = set()
    if prev_art is not None:
        prev_ids = set(pq.read_table(prev_art.file(VECTORS_FILE), columns=["item_id"]).column("item_id").to_pylist())
    removed = len(prev_ids - set(ids))
    res = EmbedResult(artifact=prev_art, embedded=len(ok_new), reused=len(keep), removed=removed,
                      failures=failures, embed_seconds=embed_s)
    if prev_art is not None and not ok_new and not removed and not force_new_version \
            and len(out_rows) == len(prev_ids):
        res.unchanged = True
        return res
    if not out_rows:
        raise InputError(f"no item of items/{items_art.version} has a decodable image; "
                         f"first failures: {dict(list(failures.items())[:3])}")
    table = vectors_table([r[0] for r in out_rows], np.stack([r[1] for r in out_rows]),
                          encoder.encoder_id, [r[2] for r in out_rows])
    with store.write(kinds.VECTORS, config=cfg.catalog.model_dump(mode="json"), schema_version=SCHEMA_VERSION) as w:
        pq.write_table(table, w.path / VECTORS_FILE)
        (w.path / FAILURES_FILE).write_text(json.dumps(failures, indent=1), encoding="utf-8")
        w.add_artifact_input(items_art)
        if enc_art is not None:
            w.add_artifact_input(enc_art)
        if prev_art is not None:
            w.add_artifact_input(prev_art)
        w.metrics = {"items": len(ids), "vectors": table.num_rows, "embedded": len(ok_new),
                     "reused": len(keep), "removed": removed, "failures": len(failures),
                     "dim": encoder.dim, "encoder_id": encoder.encoder_id,
                     "items_version": items_art.version, "engine": cc.engine,
                     "embed_seconds": round(embed_s, 2),
                     "images_per_s": round(len(todo) / embed_s, 1) if todo and embed_s else None}
        w.extra["encoder_id"] = encoder.encoder_id
        w.extra["items_version"] = items_art.version
    res.artifact = store.load(kinds.VECTORS, w.version)
    return res


def load_vectors(store: ArtifactStore, ref: str | Path | None = None) -> tuple[Artifact, pa.Table, np.ndarray]:
    """(artifact, table without vectors, float32 [n, d] vectors) of a vectors artifact."""
    art = store.resolve(ref, kinds.VECTORS)
    table, v = read_vectors(art)
    return art, table, v


def item_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Items as dicts without the (heavy, nested) attributes column."""
    return table.select([c for c in table.column_names if c != "attributes"]).to_pylist()
