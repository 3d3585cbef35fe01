"""Photo-tagging latency of the CURRENT tagger: one photo and a batch, adapter merged or not,
by constrained-decoding method (jacobi: fewest forwards; lockstep: one forward per field),
with and without the mirror-image view (``decode.hflip_tta``).

    .venv/bin/python -m lab.perf.tagger_latency [--artifacts artifacts] [--threads 1] [--seconds 5]
        [--models adapter merged] [--methods jacobi lockstep] [--tta off on]

Photos come from the shared Myntra catalog (../shared/data/myntra/images); each setting is
timed for ``--seconds`` after one warm-up call and reported as milliseconds per call.
"""

from __future__ import annotations

import argparse
import glob
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--images", default="../shared/data/myntra/images")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--methods", nargs="+", default=["jacobi", "lockstep"])
    ap.add_argument("--models", nargs="+", default=["adapter", "merged"], choices=["adapter", "merged"])
    ap.add_argument("--tta", nargs="+", default=["off", "on"], choices=["off", "on"])
    args = ap.parse_args()

    import torch
    from PIL import Image

    from mmrec.artifacts import ArtifactStore
    from mmrec.attributes.tagger import Tagger, load_vlm

    torch.set_num_threads(args.threads)
    store = ArtifactStore(args.artifacts)
    paths = sorted(glob.glob(f"{args.images}/*.jpg"))[:max(args.batches)]
    if not paths:
        raise SystemExit(f"no .jpg photos under {args.images}")
    images = [Image.open(p).convert("RGB") for p in paths]
    tagger = Tagger.load(store)  # merged in memory
    merged = tagger.predictor.model
    models = {"merged": merged}
    if "adapter" in args.models:
        models["adapter"], _ = load_vlm(store.load("vlm", tagger.version), merge=False)
    for name in args.models:
        tagger.predictor.model = models[name]
        for method in args.methods:
            tagger.predictor.decode_method = method
            for tta in args.tta:
                tagger.predictor.hflip_tta = tta == "on"
                for n in args.batches:
                    tagger.tag(images[:n])
                    t0, calls = time.perf_counter(), 0
                    while time.perf_counter() - t0 < args.seconds:
                        tagger.tag(images[:n])
                        calls += 1
                    print(f"{name:8s} {method:9s} mirror {tta:3s} batch {n:3d}: "
                          f"{(time.perf_counter() - t0) / calls * 1000:7.1f} ms per call")

if __name__ == "__main__":
    main()
