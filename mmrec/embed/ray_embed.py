"""Catalog embedding on Ray Data, for catalogs too big for one process or one machine.

Each actor loads the encoder artifact once (``map_batches`` with a callable class), decodes its
batch of images through `mmrec.images` and returns vectors; Ray streams batches between actors
and keeps input order. The encoder folder and the image URIs must be readable from every
worker (a shared filesystem or object store path) when ``ray.address`` points to a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from mmrec.embed.config import EmbedConfig


class _EmbedBatch:
    """Ray actor body: one Encoder per actor, reused for every batch it receives."""

    def __init__(self, encoder_dir: str, device: str, decode_workers: int, threads: int) -> None:
        from mmrec.embed.encoder import Encoder

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.encoder = Encoder.from_dir(encoder_dir, device=device)
        self.workers = decode_workers

    def __call__(self, batch: pa.Table) -> pa.Table:
        from mmrec.embed.local_embed import embed_images_local

        uris = batch.column("uri").to_pylist()
        vecs, errors = embed_images_local(self.encoder, uris, batch_size=len(uris) or 1,
                                          workers=self.workers, progress=False)
        flat = pa.array(vecs.reshape(-1), pa.float32())
        return pa.table({
            "pos": batch.column("pos"),
            "vector": pa.FixedSizeListArray.from_arrays(flat, vecs.shape[1]),
            "error": pa.array(errors, pa.string()),
        })


def embed_with_ray(encoder_dir: str | Path, uris: list[str | None],
                   cfg: EmbedConfig) -> tuple[np.ndarray, list[str | None]]:
    """Embed ``uris`` with Ray Data actors; returns vectors [n, d] and per-uri errors (None = ok)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    rc = cfg.catalog.ray
    started = False
    if not ray.is_initialized():
        if rc.address:
            ray.init(address=rc.address)
        else:
            ray.init(num_cpus=max(1, int(rc.actors * rc.cpus_per_actor + 0.999)),
                     include_dashboard=False, log_to_driver=False)
        started = True
    try:
        ds = ray.data.from_arrow(pa.table({"pos": pa.array(np.arange(len(uris)), pa.int64()),
                                           "uri": pa.array(uris, pa.string())}))
        out = ds.map_batches(
            _EmbedBatch,
            fn_constructor_kwargs={"encoder_dir": str(encoder_dir), "device": cfg.model.device,
                                   "decode_workers": cfg.catalog.decode_workers,
                                   "threads": max(1, int(rc.cpus_per_actor))},
            batch_size=cfg.catalog.batch_size, batch_format="pyarrow", concurrency=rc.actors,
            num_cpus=rc.cpus_per_actor, num_gpus=rc.gpus_per_actor or None,
        )
        table = pa.concat_tables(
            [pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b
             for b in out.iter_batches(batch_format="pyarrow", batch_size=None)])
    finally:
        if started:
            ray.shutdown()
    order = np.argsort(table.column("pos").to_numpy())
    col = table.column("vector").combine_chunks()
    vecs = col.values.to_numpy(zero_copy_only=False).reshape(-1, col.type.list_size)[order]
    errors = [table.column("error")[int(i)].as_py() for i in order]
    return np.ascontiguousarray(vecs, dtype=np.float32), errors
