"""The honest reference for the tagger: a small CNN classifier on the same pixels, same CPU time.

A tagger that generates JSON must be worth its cost over a plain multi-head image classifier.
This one sees exactly the tagger's inputs (the PixelCache squares, the same train products,
horizontal flips) and trains for the same CPU seconds as the LoRA stage, one head per field
(unlabelled fields simply contribute no loss). Cached as a ``sft_cnn`` artifact per dataset and
budget so repeated evaluations do not retrain it.
"""

from __future__ import annotations

import json
import time
from typing import Any, Sequence

import numpy as np

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.attributes.config import CnnBaseline



def _net(width: int, heads: dict[str, int]):
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU(inplace=True), nn.MaxPool2d(2))

    class MultiHeadCnn(nn.Module):
        def __init__(self):
            super().__init__()
            w = width
            self.body = nn.Sequential(block(3, w), block(w, 2 * w), block(2 * w, 4 * w), block(4 * w, 4 * w),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.heads = nn.ModuleDict({f: nn.Linear(4 * w, n) for f, n in heads.items()})

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            z = self.body(x)
            return {f: h(z) for f, h in self.heads.items()}

    return MultiHeadCnn()


def _to_input(u8):
    """uint8 [B, 3, H, W] -> float normalised to roughly zero mean, unit scale."""
    return u8.float().div_(127.5).sub_(1.0)


def train_cnn(pixels: np.ndarray, labels: Sequence[dict[str, str | None]], fields: Sequence[str],
              cfg: CnnBaseline, budget_s: float, *, seed: int = 0, threads: int = 1) -> tuple[Any, dict]:
    """Train on uint8 images [N, H, W, 3] for ``budget_s`` CPU seconds; returns (model, classes)."""
    import math

    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    classes = {f: sorted({lab[f] for lab in labels if lab.get(f)}) for f in fields}
    classes = {f: c for f, c in classes.items() if len(c) >= 2}
    index = {f: {v: i for i, v in enumerate(c)} for f, c in classes.items()}
    targets = {f: torch.tensor([index[f].get(lab.get(f), -100) if lab.get(f) else -100 for lab in labels])
               for f in classes}
    model = _net(cfg.width, {f: len(c) for f, c in classes.items()})
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100)
    x_all = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2)
    n, steps, t0 = len(labels), 0, time.process_time()
    model.train()
    while True:
        spent = time.process_time() - t0
        if spent >= budget_s:
            break
        # cosine over the CPU budget, as the tagger's stages
        for g in opt.param_groups:
            g["lr"] = cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * spent / budget_s)))
        idx = torch.from_numpy(rng.choice(n, size=min(cfg.batch_size, n), replace=False))
        x = _to_input(x_all[idx])
        flip = torch.rand(len(idx)) < 0.5
        x[flip] = x[flip].flip(-1)
        out = model(x)
        loss = sum(loss_fn(out[f], targets[f][idx]) for f in classes if (targets[f][idx] != -100).any())
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return model, {"classes": classes, "steps": steps, "cpu_seconds": round(time.process_time() - t0, 1)}


def predict_cnn(model, classes: dict[str, list[str]], pixels: np.ndarray, batch_size: int = 256
                ) -> list[dict[str, str | None]]:
    import torch

    model.eval()
    out: list[dict[str, str | None]] = []
    x_all = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2)
    with torch.no_grad():
        for i in range(0, len(x_all), batch_size):
            logits = model(_to_input(x_all[i:i + batch_size]))
            preds = {f: logits[f].argmax(-1).tolist() for f in classes}
            for k in range(len(next(iter(preds.values()))) if preds else 0):
                out.append({f: classes[f][preds[f][k]] for f in classes})
    return out


def cached_or_train(store: ArtifactStore, dataset_version: str, pixels_train: np.ndarray,
                    labels: Sequence[dict[str, str | None]], fields: Sequence[str], cfg: CnnBaseline,
                    budget_s: float, image_size: int, threads: int = 1) -> tuple[Any, dict, Artifact]:
    """Reuse a ``sft_cnn`` artifact with the same dataset, budget and settings, or train one."""
    import torch

    # the effective budget is the key, not how it was given (null = the LoRA stage's CPU time, or
    # the same number set explicitly); threads likewise
    settings = cfg.model_dump(mode="json", exclude={"time_budget_s", "threads"})
    key = {"dataset": dataset_version, "budget_s": round(budget_s, 1), "image_size": image_size,
           "fields": list(fields), **settings, "threads": threads}
    for version in reversed(store.versions(kinds.SFT_CNN)):
        art = store.load(kinds.SFT_CNN, version)
        stored = {k: v for k, v in art.config.items() if k != "time_budget_s"}  # older keys carry it
        # CNNs of 2026-12-06 record the fit they saw; only squashed photos are what this one sees
        if stored.pop("image_fit", "squash") != "squash":
            continue
        if stored == key:
            meta = json.loads(art.file("meta.json").read_text())
            model = _net(cfg.width, {f: len(c) for f, c in meta["classes"].items()})
            model.load_state_dict(torch.load(art.file("model.pt"), weights_only=True))
            return model, meta, art
    model, meta = train_cnn(pixels_train, labels, fields, cfg, budget_s, threads=threads)
    with store.write(kinds.SFT_CNN, config=key) as w:
        torch.save(model.state_dict(), w.path / "model.pt")
        (w.path / "meta.json").write_text(json.dumps(meta))
        w.metrics = {"steps": meta["steps"], "cpu_seconds": meta["cpu_seconds"],
                     "parameters": sum(p.numel() for p in model.parameters())}
    return model, meta, store.load(kinds.SFT_CNN, w.version)
