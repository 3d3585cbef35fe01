"""Index folders on disk: the faiss structure, the label map with its filter metadata, and
an info file. `mmrec.recall.build` writes them inside an index artifact and publishes it.

Files of a folder:
- ``index.faiss``: the faiss index (labels are its ids, or its sequential positions);
- ``labels.parquet``: per label the item id, alive flag, source tag and filter metadata;
- ``index.json``: kind, dim, encoder id and counts (plus the caller's ``extra_info``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec.errors import ArtifactError
from mmrec.recall.config import FILTER_FIELDS, IndexConfig
from mmrec.recall.faiss_index import TOMBSTONE_KINDS, faiss_module
from mmrec.recall.index import VectorIndex
from mmrec.recall.meta import ItemMeta

INDEX_FILE = "index.faiss"
LABELS_FILE = "labels.parquet"
INFO_FILE = "index.json"


def write_index_dir(index: VectorIndex, out_dir: str | Path,
                    extra_info: dict[str, Any] | None = None) -> None:
    """Write index.faiss, labels.parquet and index.json into ``out_dir``."""
    faiss = faiss_module()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index.index, str(out / INDEX_FILE))
    rows = index.meta.rows(range(len(index.item_ids)))
    table = pa.table({
        "label": pa.array(np.arange(len(index.item_ids)), pa.int64()),
        "item_id": pa.array(index.item_ids, pa.string()),
        "alive": pa.array(index.alive, pa.bool_()),
        "tag": pa.array(index.tags, pa.string()),
        **{f: pa.array([r[f] for r in rows], pa.string()) for f in FILTER_FIELDS},
        "price": pa.array([r["price"] for r in rows], pa.float64()),
        "in_stock": pa.array([r["in_stock"] for r in rows], pa.bool_()),
    })
    pq.write_table(table, out / LABELS_FILE)
    info = {"kind": index.kind, "dim": index.dim, "encoder_id": index.encoder_id,
            "labels": len(index.item_ids), "alive": index.n_alive, "dead": index.n_dead,
            **(extra_info or {})}
    (out / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")


def read_index_dir(path: str | Path, cfg: IndexConfig) -> VectorIndex:
    """Read a folder written by `write_index_dir`; ``cfg`` supplies the search-time parameters."""
    faiss = faiss_module()
    path = Path(path)
    try:
        info = json.loads((path / INFO_FILE).read_text(encoding="utf-8"))
        table = pq.read_table(path / LABELS_FILE)
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: not a readable index folder ({e})") from e
    structure = faiss.read_index(str(path / INDEX_FILE))
    if structure.ntotal != (info["alive"] if info["kind"] not in TOMBSTONE_KINDS else info["labels"]):
        raise ArtifactError(f"{path}: faiss holds {structure.ntotal} vectors, index.json disagrees ({info})")
    rows = table.select([*FILTER_FIELDS, "price", "in_stock"]).to_pylist()
    meta = ItemMeta.from_rows(rows, cfg.filter_cache)
    return VectorIndex(cfg, info["kind"], int(info["dim"]), structure,
                       table.column("item_id").to_pylist(),
                       np.asarray(table.column("alive").to_numpy(zero_copy_only=False), dtype=bool),
                       meta, info.get("encoder_id"), table.column("tag").to_pylist())
