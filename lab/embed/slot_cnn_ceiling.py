"""Ceiling check: how well can a supervised CNN trained from scratch on 2 CPU cores read a phone
photo's slot?

Not a product recipe (the design card's photo models are the Qwen-VL tagger and the CLIP
encoder); a yardstick for what the mini models leave on the table. A torchvision ResNet-18 from
random init, trained with cross-entropy on the slot (7 outfit slots, label smoothing 0.1) of the
real-photo TRAIN photographers' labelled photos and an equal share of catalog packshots per
batch (4,000 sampled products), letterboxed on white at 1.15x the input size, random crops of
60-100% of the side, mirror, brightness/contrast jitter; AdamW lr 2e-3 with a cosine over the
wall-clock budget; read on the val photographers with the mirror view averaged in.

Measured 2026-12-07 on val (151 photos, majority slot 0.477), 2 threads on a shared 2-core box,
by the first form of this script (same procedure and seeds; logs in
docs/results/perception-ask-20261207/slot_cnn_ceiling_*_scratch.log):
  64 px (stride-1 stem),  420 s:   314 steps, slot 0.589
  96 px (standard stem), 1,200 s: 1,298 steps, slot 0.781 (0.662 / 0.722 / 0.768 at steps
                                  400 / 800 / 1,000: still rising at the end of the budget)
  96 px, --photo-fraction 0.5 (this script; the machine shared with other jobs): 586 steps,
                                  0.689 -- fewer steps than the full run: not a learning curve yet
The served reading (tagger when confident, else the vote of catalog look-alikes and reference
photos, demo models) reads the same val photos 0.570 (`mmrec bench calibrate-slot`: accuracy
without abstention). Conclusion: a supervised slot objective on a wider image tower at 96 px
buys ~20 points on phone photos within a 20-minute CPU budget; the mini encoder's tower (ModifiedResNet
width 16, 64 px, contrastive only) and the tagger's 112 px ViT do not get there.

Usage (repo root; the test split is never read):
  .venv/bin/python -m lab.embed.slot_cnn_ceiling --size 96 --budget-s 1200
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np

from lab.embed.photo_probe import labelled_photos, write_result

SLOTS = ("top", "bottom", "one-piece", "outerwear", "shoes", "bag", "accessory")
CATALOG_SAMPLE = 4000
BATCH = 64


def letterboxed(uri: str, side: int) -> np.ndarray:
    """The image on a white square of ``side`` pixels, aspect kept (uint8 HWC)."""
    from PIL import Image

    im = Image.open(uri)
    im.draft("RGB", (2 * side, 2 * side))  # JPEG: decode at a reduced scale
    im = im.convert("RGB")
    w, h = im.size
    s = side / max(w, h)
    im = im.resize((max(1, round(w * s)), max(1, round(h * s))))
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(im, ((side - im.size[0]) // 2, (side - im.size[1]) // 2))
    return np.asarray(canvas)


class Batches:
    """Augmented training batches and centre-cropped reading batches of uint8 images."""

    def __init__(self, size: int, rng: np.random.Generator):
        import torch

        self.size, self.side, self.rng = size, int(size * 1.15), rng
        self.mean = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1)

    def __call__(self, images: np.ndarray, train: bool):
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        if train:
            out = torch.empty(len(x), 3, self.size, self.size)
            for j in range(len(x)):
                crop = int(self.side * self.rng.uniform(0.6, 1.0))
                ox, oy = self.rng.integers(0, self.side - crop + 1, 2)
                c = F.interpolate(x[j:j + 1, :, oy:oy + crop, ox:ox + crop], size=(self.size, self.size),
                                  mode="bilinear", align_corners=False)
                if self.rng.random() < 0.5:
                    c = c.flip(3)
                out[j] = (c * self.rng.uniform(0.75, 1.25) + self.rng.uniform(-0.1, 0.1))[0]
            x = out
        else:
            o = (self.side - self.size) // 2
            x = x[:, :, o:o + self.size, o:o + self.size]
        return (x.clamp(0, 1) - self.mean) / self.std


def model(size: int):
    import torch.nn as nn
    import torchvision

    m = torchvision.models.resnet18(num_classes=len(SLOTS))
    if size <= 64:  # keep a 32 px map after the stem at small inputs
        m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    return m


def read(m, batches: Batches, images: np.ndarray) -> np.ndarray:
    """Slot probabilities, the mirror view averaged in."""
    import torch
    import torch.nn.functional as F

    m.eval()
    out = []
    with torch.no_grad():
        for at in range(0, len(images), BATCH):
            x = batches(images[at:at + BATCH], train=False)
            out.append(((F.softmax(m(x), 1) + F.softmax(m(x.flip(3)), 1)) / 2).numpy())
    m.train()
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--budget-s", type=float, default=1200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--photo-fraction", type=float, default=1.0,
                   help="train on this share of the train photographers (whole photographers, "
                        "seeded): how accuracy grows with labelled phone photos")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from mmrec.artifacts import ArtifactStore
    from mmrec.catalog.ingest import load_items
    from mmrec.taxonomy import default_taxonomy

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    batches = Batches(args.size, rng)
    tax = default_taxonomy()
    t0 = time.perf_counter()
    train = [ph for ph in labelled_photos(args.data, "train", tax) if ph.slot in SLOTS]
    if args.photo_fraction < 1.0:
        senders = sorted({str(ph.sender) for ph in train})
        keep = set(np.random.default_rng(args.seed + 1).permutation(senders)[:round(len(senders) * args.photo_fraction)])
        train = [ph for ph in train if str(ph.sender) in keep]
    val = labelled_photos(args.data, "val", tax)
    xp = np.stack([letterboxed(ph.uri, batches.side) for ph in train])
    yp = np.array([SLOTS.index(ph.slot) for ph in train])
    xv = np.stack([letterboxed(ph.uri, batches.side) for ph in val])
    yv = np.array([ph.slot for ph in val])
    items = load_items(ArtifactStore(args.artifacts), None)
    rows = [(u, s) for u, s in zip(items.column("image_uri").to_pylist(), items.column("slot").to_pylist())
            if u and s in SLOTS]
    pick = rng.choice(len(rows), min(CATALOG_SAMPLE, len(rows)), replace=False)
    xc = np.stack([letterboxed(rows[i][0], batches.side) for i in pick])
    yc = np.array([SLOTS.index(rows[i][1]) for i in pick])
    load_s = time.perf_counter() - t0

    m = model(args.size)
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3, weight_decay=0.05)
    curve, step, t1 = [], 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t1) < args.budget_s:
        for g in opt.param_groups:
            g["lr"] = 2e-3 * 0.5 * (1 + np.cos(np.pi * elapsed / args.budget_s))
        ip, ic = rng.integers(0, len(xp), BATCH // 2), rng.integers(0, len(xc), BATCH // 2)
        x = torch.cat([batches(xp[ip], train=True), batches(xc[ic], train=True)])
        y = torch.from_numpy(np.concatenate([yp[ip], yc[ic]]))
        loss = F.cross_entropy(m(x), y, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            acc = float(np.mean(np.asarray(SLOTS)[read(m, batches, xv).argmax(1)] == yv))
            curve.append({"step": step, "seconds": round(time.perf_counter() - t1), "val_slot": acc})
            print(curve[-1], flush=True)
    acc = float(np.mean(np.asarray(SLOTS)[read(m, batches, xv).argmax(1)] == yv))
    write_result({"size": args.size, "budget_s": args.budget_s, "steps": step, "train_photos": len(xp),
                  "photo_fraction": args.photo_fraction,
                  "catalog_images": len(xc), "val_photos": len(yv), "val_slot": acc,
                  "majority_slot_share": Counter(yv.tolist()).most_common(1)[0][1] / len(yv),
                  "curve": curve, "load_seconds": round(load_s, 1)}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
