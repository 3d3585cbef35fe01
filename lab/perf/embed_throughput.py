"""Embedding throughput of an encoder artifact on catalog images (wall clock and CPU time).

Two numbers, both over the same N catalog images:
  model:      letterboxed uint8 pixels (decoded beforehand) -> L2-normalised vectors
  end_to_end: JPEG files -> `mmrec.images.load_image` -> letterbox -> vectors, as
              `mmrec embed catalog` runs it (decode threads + torch threads)

Usage (from the repo root; measure on a quiet machine, the numbers are wall clock):
  .venv/bin/python -m lab.perf.embed_throughput --threads 2 --n 4096
Writes runs/embed_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    p.add_argument("--encoder", default=None, help="encoder version (default: CURRENT)")
    p.add_argument("--n", type=int, default=4096, help="images to embed")
    p.add_argument("--threads", type=int, default=2, help="torch threads and decode threads")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", type=Path, default=Path("runs/embed_throughput.json"))
    args = p.parse_args(argv)

    import torch

    from mmrec.artifacts import ArtifactStore
    from mmrec.catalog.ingest import load_items
    from mmrec.embed.catalog import embed_images_local
    from mmrec.embed.data import decode_many
    from mmrec.embed.encoder import Encoder

    torch.set_num_threads(args.threads)
    store = ArtifactStore(args.artifacts)
    enc = Encoder.load(store, args.encoder, device="cpu")
    uris = load_items(store, columns=["image_uri"]).column("image_uri").to_pylist()[: args.n]
    enc.encode_texts(["warm up"])
    enc.encode_pixels(decode_many(uris[:64], enc.image_size, workers=args.threads)[0])  # warm-up

    pixels, _ = decode_many(uris, enc.image_size, workers=args.threads)
    w, c = time.perf_counter(), time.process_time()
    enc.encode_pixels(pixels, batch_size=args.batch_size)
    model = {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c}

    w, c = time.perf_counter(), time.process_time()
    _, errors = embed_images_local(enc, uris, batch_size=args.batch_size, workers=args.threads,
                                   progress=False)
    e2e = {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c}
    n = len(uris)
    out = {
        "encoder_id": enc.encoder_id, "images": n, "failures": sum(e is not None for e in errors),
        "threads": args.threads, "batch_size": args.batch_size,
        "cpus_visible": len(os.sched_getaffinity(0)), "load_avg_1min": os.getloadavg()[0],
        "model": {**model, "images_per_s": n / model["wall_s"]},
        "end_to_end": {**e2e, "images_per_s": n / e2e["wall_s"]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
