"""How well an encoder's image vectors place real phone photos among the catalog's products.

For the photos of one photographer split of ``real_photos`` (probes excluded), against every
catalog product with an image (the labelled pool, as the served index holds it):

  neighbour_slot_P@10   share of the 10 nearest catalog products (image to image) that fill the
                        photo's true slot: what the photo's look-alikes show the shopper
  knn_slot_acc          majority slot of those 10 (slot "other" not voted, as
                        `PhotoAnchoring.majority_slot` reads it): the neighbours' slot vote
  probe_slot_acc        a logistic regression fitted on the catalog's vectors -> slot, read on
                        the photos (a linear probe: is the slot linearly there at all?)

Choose recipes on ``--split val``; read ``--split test`` once per adopted recipe.

Usage (repo root):
  .venv/bin/python -m lab.embed.photo_probe --artifacts artifacts --split val \
      --out docs/results/<name>/photo_probe_val.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

TABLE = Path("benchmark/suites/photos/real_photos.yaml")


def catalog_pool(store, encoder, items_version: str | None, cache_dir: Path | None):
    """(item ids, slots, vectors) of every catalog product with a decodable image."""
    from mmrec.catalog.ingest import load_items
    from mmrec.embed.data import cached_pixels

    items = load_items(store, items_version)
    items = items.filter(np.array([u is not None for u in items.column("image_uri").to_pylist()]))
    pix = cached_pixels(items.select(["item_id", "image_uri", "image_sha256"]), encoder.image_size,
                        cache_dir or store.root / ".cache" / "embed", progress=False)
    slot_of = dict(zip(items.column("item_id").to_pylist(), items.column("slot").to_pylist()))
    vecs = encoder.encode_pixels(np.asarray(pix.pixels))
    return pix.item_ids, [slot_of[i] or "other" for i in pix.item_ids], vecs


def slot_metrics(photo_vecs: np.ndarray, photo_slots: list[str], pool_vecs: np.ndarray,
                 pool_slots: list[str], k: int = 10) -> dict[str, float]:
    """Neighbour-slot P@k and the neighbours' majority-slot accuracy."""
    sims = photo_vecs @ pool_vecs.T
    top = np.argsort(-sims, axis=1)[:, :k]
    pool = np.asarray(pool_slots)
    p_at_k, vote_ok = [], []
    for row, truth in zip(top, photo_slots):
        near = pool[row]
        p_at_k.append(float(np.mean(near == truth)))
        votes = Counter(s for s in near if s != "other")
        vote_ok.append(bool(votes) and votes.most_common(1)[0][0] == truth)
    return {f"neighbour_slot_P@{k}": float(np.mean(p_at_k)), "knn_slot_acc": float(np.mean(vote_ok))}


def probe_accuracy(pool_vecs: np.ndarray, pool_slots: list[str], photo_vecs: np.ndarray,
                   photo_slots: list[str], seed: int = 0) -> float:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=300, C=1.0, random_state=seed)
    clf.fit(pool_vecs, pool_slots)
    return float(np.mean(clf.predict(photo_vecs) == np.asarray(photo_slots)))


def labelled_photos(data: Path, split: str, taxonomy) -> list:
    """The labelled photos of a real-photo photographer split (probes excluded), or H&M's
    packshots with a slot (``split == "hm"``)."""
    from mmrec.bench.photo_sources import load_real_photo_table, other_retailer_photos, real_photos

    if split == "hm":
        return [ph for ph in other_retailer_photos(data / "hm_sample" / "data" / "sample", taxonomy) if ph.slot]
    table = load_real_photo_table(TABLE, taxonomy)
    return [ph for ph in real_photos(data / "real_photos", table, split) if not ph.probe]


def write_result(out: dict, path: Path | None) -> None:
    """Print a measurement as JSON and, with ``path``, write it there too."""
    print(json.dumps(out, indent=1))
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


def photo_args(p: argparse.ArgumentParser, *, threads: int = 1) -> None:
    """The arguments every photo measurement of the lab takes."""
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--split", choices=("val", "calibration", "test", "hm"), default="val",
                   help="real-photo photographer split (calibration: held out from training like "
                        "val), or hm: H&M's packshots (another retailer)")
    p.add_argument("--threads", type=int, default=threads)
    p.add_argument("--out", type=Path, default=None)


def open_encoder(args: argparse.Namespace):
    """(store, encoder artifact, encoder) for ``--artifacts`` / ``--encoder``, on ``--threads``."""
    import torch

    from mmrec.artifacts import ArtifactStore
    from mmrec.embed.encoder import Encoder

    torch.set_num_threads(args.threads)
    store = ArtifactStore(args.artifacts)
    art = store.load("encoder", args.encoder)
    return store, art, Encoder.from_dir(art.path, device="cpu")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    photo_args(p)
    p.add_argument("--encoder", default=None, help="encoder version (default: CURRENT)")
    p.add_argument("--items", default=None, help="items version (default: CURRENT)")
    p.add_argument("--cache-dir", type=Path, default=None, help="catalog pixel cache (default: <artifacts>/.cache/embed)")
    args = p.parse_args(argv)

    from mmrec.images import load_image
    from mmrec.taxonomy import default_taxonomy

    t0 = time.perf_counter()
    store, enc_art, encoder = open_encoder(args)
    ids, slots, vecs = catalog_pool(store, encoder, args.items, args.cache_dir)
    photos = labelled_photos(args.data, args.split, default_taxonomy())
    pvecs = encoder.encode_images([load_image(ph.uri) for ph in photos])
    pslots = [ph.slot for ph in photos]
    out = {"encoder": enc_art.version, "split": args.split, "photos": len(photos),
           "senders": len({ph.sender for ph in photos}), "pool": len(ids),
           **slot_metrics(pvecs, pslots, vecs, slots),
           "probe_slot_acc": probe_accuracy(vecs, slots, pvecs, pslots),
           "majority_slot_share": Counter(pslots).most_common(1)[0][1] / len(pslots),
           "seconds": round(time.perf_counter() - t0, 1)}
    write_result(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
