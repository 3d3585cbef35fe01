"""Contrastive training of the in-house CLIP encoder (`mmrec embed train`).

Recipe (measured on 2 shared CPU cores, see STACK-NOTES): letterboxed uint8 pixels cached once,
pad-and-crop + flip augmentation, one caption per image per step sampled from templates,
AdamW without weight decay on norms/biases/embeddings/logit_scale, linear warmup then cosine
over whichever ends first of the epochs or the time budget.

The loss is CLIP's symmetric cross-entropy with one change: identical captions in a batch
("tshirts" for two different T-shirts) are all positives of each other, with the target mass
shared between them, instead of being pushed apart as false negatives.

Held-out products (`mmrec.splits.is_held_out`) are removed before anything else happens.

Mixed-domain training (off unless configured): `train.real_photos.share` of each batch are real
phone photos of the train photographers with label-only captions (`mmrec.embed.photo_pairs`),
and `train.kiosk.p` of the packshots are given kiosk conditions (`mmrec.embed.kiosk`). A
caption both domains share ("shirts", "bottom") makes a photo and a packshot positives of
each other through the multi-positive loss.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore
from mmrec.embed.config import EmbedConfig
from mmrec.embed.data import CaptionSampler, cached_pixels
from mmrec.embed.encoder import Encoder
from mmrec.embed.metrics import known_item_metrics, set_metrics, top_k_indices
from mmrec.embed.slot_head import HEAD_SLOTS, IGNORE, SlotHead, slot_targets
from mmrec.errors import InputError
from mmrec.splits import split_of

if TYPE_CHECKING:  # imported where used: the real-photo pairs read the benchmark's split table
    from mmrec.embed.photo_pairs import PhotoPairs

LOG_FILE = "train_log.jsonl"


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    images_seen: int = 0
    train_seconds: float = 0.0
    cpu_seconds: float = 0.0
    log: list[dict[str, Any]] = field(default_factory=list)


def lr_at(progress: float, cfg_lr: float, warmup: float, floor: float) -> float:
    """Linear warmup to ``cfg_lr`` over ``warmup`` of training, then cosine down to ``floor * lr``."""
    if warmup > 0 and progress < warmup:
        return cfg_lr * max(progress, 1e-3) / warmup
    t = min(1.0, (progress - warmup) / max(1e-9, 1.0 - warmup))
    return cfg_lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def param_groups(model, weight_decay: float) -> list[dict[str, Any]]:
    """Decay only weight matrices/kernels: norms, biases, embeddings and logit_scale are exempt."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = (p.ndim < 2 or "bn" in name or "ln" in name or "embedding" in name
                  or "logit_scale" in name or "logit_bias" in name)
        (no_decay if exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def multi_positive_clip_loss(img, txt, logit_scale, caption_ids):
    """Symmetric InfoNCE where captions with equal ``caption_ids`` are all positives."""
    import torch
    import torch.nn.functional as F

    logits = logit_scale * img @ txt.T
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    target = same / same.sum(dim=1, keepdim=True)
    loss_i = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t = -(target * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (loss_i + loss_t) / 2


def augment(batch: np.ndarray, pad: int, flip: bool, rng: np.random.Generator) -> np.ndarray:
    """Random ``pad``-pixel white-padded crop and horizontal flip of uint8 [n, S, S, 3] images."""
    n, s = batch.shape[0], batch.shape[1]
    if pad:
        padded = np.full((n, s + 2 * pad, s + 2 * pad, 3), 255, np.uint8)
        padded[:, pad:pad + s, pad:pad + s] = batch
        dy, dx = rng.integers(0, 2 * pad + 1, size=(2, n))
        out = np.empty_like(batch)
        for i in range(n):
            out[i] = padded[i, dy[i]:dy[i] + s, dx[i]:dx[i] + s]
    else:
        out = np.array(batch)
    if flip:
        mask = rng.random(n) < 0.5
        out[mask] = out[mask, :, ::-1]
    return out


def random_crops(batch: np.ndarray, min_side: float, rng: np.random.Generator) -> np.ndarray:
    """Each uint8 [n, S, S, 3] image cropped to a random box of ``min_side``..1 of the side
    (aspect 3:4..4:3, anywhere in the frame) and resized back to S x S."""
    from PIL import Image

    n, s = batch.shape[0], batch.shape[1]
    out = np.empty_like(batch)
    for i in range(n):
        side = rng.uniform(min_side, 1.0) * s
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = int(min(s, max(2, round(side * math.sqrt(aspect)))))
        h = int(min(s, max(2, round(side / math.sqrt(aspect)))))
        x, y = int(rng.integers(0, s - w + 1)), int(rng.integers(0, s - h + 1))
        crop = Image.fromarray(batch[i, y:y + h, x:x + w])
        out[i] = np.asarray(crop.resize((s, s), Image.BILINEAR))
    return out


def split_rows(items: pa.Table, include_val: bool) -> tuple[list[int], list[int]]:
    """Row indices to train on and to check on; test-split (held-out) rows are in neither."""
    train, val = [], []
    for i, iid in enumerate(items.column("item_id").to_pylist()):
        s = split_of(iid)
        if s == "train" or (s == "val" and include_val):
            train.append(i)
        elif s == "val":
            val.append(i)
    return train, val


def retrieval_check(encoder: Encoder, pixels: np.ndarray, rows: list[dict[str, Any]],
                    min_relevant: int = 5) -> dict[str, float]:
    """Quick image-route check on a small set: title R@10 and category P@10 against image vectors."""
    if len(rows) < 2:
        return {}
    img = encoder.encode_pixels(np.asarray(pixels))
    titles = [r["title"] for r in rows]
    ranks = top_k_indices(encoder.encode_texts(titles) @ img.T, 10)
    out = {f"title_{k}": v for k, v in known_item_metrics(ranks.tolist(), list(range(len(rows)))).items()
           if k != "queries"}
    cats: dict[str, set[int]] = {}
    for i, r in enumerate(rows):
        cats.setdefault(r["category"], set()).add(i)
    queries = sorted(c for c, members in cats.items() if len(members) >= min_relevant)
    if queries:
        ranks = top_k_indices(encoder.encode_texts(queries) @ img.T, len(rows))
        m = set_metrics(ranks.tolist(), [cats[c] for c in queries])
        out.update({"category_P@10": m["P@10"], "category_AP": m["AP"]})
    return out


def _set_threads(n: int) -> None:
    import torch

    if n > 0:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only settable before the first parallel op; fine to keep default
            pass


def train_encoder(store: ArtifactStore, cfg: EmbedConfig, *, items_version: str | None = None,
                  progress: bool = True, log: Callable[[str], None] | None = None) -> Artifact:
    """Train (or, with ``train.epochs=0``, package) an encoder and write an `encoder` artifact.

    Args:
        store: artifact store holding the `items` artifact; the encoder is written there.
        cfg: the `embed` stage config.
        items_version: items version (default: CURRENT).
        progress: show a tqdm bar.
        log: where progress lines go (default: stderr).
    """
    import torch

    from mmrec.catalog.ingest import load_items

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    tc = cfg.train
    _set_threads(tc.threads)
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    items_art = store.load(kinds.ITEMS, items_version)
    items = load_items(store, items_art.version)
    encoder = Encoder.create(cfg.model)
    state = TrainState()
    metrics: dict[str, Any] = {"items_version": items_art.version}
    if tc.epochs > 0:
        items = items.filter(pc.is_valid(items.column("image_uri")))
        cache_dir = Path(tc.cache_dir) if tc.cache_dir else store.root / ".cache" / "embed"
        photos, backgrounds = _photo_inputs(cfg, encoder.image_size, cache_dir, rng, log)
        pix = cached_pixels(items.select(["item_id", "image_uri", "image_sha256"]),
                            encoder.image_size, cache_dir, workers=cfg.catalog.decode_workers,
                            progress=progress)
        if pix.failures:
            log(f"{len(pix.failures)} images could not be decoded and are skipped, e.g. "
                f"{next(iter(pix.failures.items()))}")
        keep = set(pix.item_ids)
        items = items.filter(pa.array([i in keep for i in items.column("item_id").to_pylist()]))
        if items.column("item_id").to_pylist() != pix.item_ids:
            raise AssertionError("pixel cache order differs from the items table")
        train_idx, val_idx = split_rows(items, tc.include_val)
        if tc.max_items is not None:
            train_idx = train_idx[: tc.max_items]
        if len(train_idx) < 2:
            raise InputError(f"only {len(train_idx)} trainable items with images in "
                             f"items/{items_art.version}; need at least 2 (test split excluded)")
        rows = items.select([c for c in items.column_names if c != "attributes"]).to_pylist()
        _train_loop(encoder, cfg, pix.pixels, rows, train_idx, val_idx, state, rng, progress, log,
                    photos=photos, backgrounds=backgrounds)
        if tc.real_photos.share > 0:  # 0 pairs: the source was missing (see the log)
            metrics.update({"real_photo_pairs": len(photos.photo_ids) if photos else 0,
                            "real_photo_senders": len(set(photos.senders)) if photos else 0})
        metrics.update({
            "train_items": len(train_idx), "val_items": len(val_idx),
            "held_out_excluded": int(sum(split_of(r["item_id"]) == "test" for r in rows)),
            "epochs_done": state.epoch, "steps": state.step, "train_minutes": state.train_seconds / 60,
            "train_cpu_minutes": state.cpu_seconds / 60,
            "train_images_per_s": state.images_seen / max(state.train_seconds, 1e-9),
            "threads": torch.get_num_threads(),
            "logit_scale": float(encoder.model.logit_scale.exp().item()),
        })
        if state.log:
            metrics["final"] = state.log[-1]
    with store.write(kinds.ENCODER, config=cfg.model_dump(mode="json"), schema_version=1) as w:
        name = cfg.model.name.replace("/", "-")
        encoder.save(w.path, encoder_id=f"{name}@{w.version}", version=w.version)
        if state.log:
            (w.path / LOG_FILE).write_text("".join(json.dumps(r) + "\n" for r in state.log),
                                           encoding="utf-8")
        w.add_artifact_input(items_art)
        w.metrics = metrics
    return store.load(kinds.ENCODER, w.version)


def _photo_inputs(cfg: EmbedConfig, image_size: int, cache_dir: Path, rng: np.random.Generator,
                  log: Callable[[str], None]) -> tuple["PhotoPairs | None", np.ndarray | None]:
    """Real-photo pairs (when a share of the batch is theirs) and the kiosk backgrounds."""
    tc = cfg.train
    use_pairs = tc.real_photos.share > 0
    real_backgrounds = tc.kiosk.p > 0 and tc.kiosk.backgrounds == "real_photos"
    photos = None
    if use_pairs or real_backgrounds:
        if not tc.real_photos.required and not (Path(tc.real_photos.source) / "images.csv").is_file():
            log(f"train.real_photos.source {tc.real_photos.source!r} has no images.csv: training on the "
                "catalog alone (set train.real_photos.required=true to refuse instead)")
            return None, None
        from mmrec.embed.photo_pairs import load_photo_pairs
        from mmrec.taxonomy import default_taxonomy

        photos = load_photo_pairs(tc.real_photos, default_taxonomy(), image_size, cache_dir, tc.seed)
    if tc.kiosk.p <= 0:
        backgrounds = None
    elif real_backgrounds:
        backgrounds = photos.backgrounds
    else:
        from mmrec.embed.kiosk import synthetic_backgrounds

        backgrounds = synthetic_backgrounds(256, tc.real_photos.background_size, rng)
    return (photos if use_pairs else None), backgrounds


def _train_loop(encoder: Encoder, cfg: EmbedConfig, pixels: np.ndarray, rows: list[dict[str, Any]],
                train_idx: list[int], val_idx: list[int], state: TrainState,
                rng: np.random.Generator, progress: bool, log: Callable[[str], None], *,
                photos: "PhotoPairs | None" = None, backgrounds: np.ndarray | None = None) -> None:
    import torch

    tc = cfg.train
    model = encoder.model
    captions = CaptionSampler(rows, tc.templates)
    opt = torch.optim.AdamW(param_groups(model, tc.weight_decay), lr=tc.lr, betas=tc.betas, eps=1e-6)
    n_photo, photo_captions = 0, None
    if photos is not None:
        from mmrec.embed.photo_pairs import PhotoCaptions

        n_photo = min(len(photos.photo_ids), round(tc.batch_size * tc.real_photos.share))
        photo_captions = PhotoCaptions(photos.fields, tc.real_photos.templates)
    head, row_slots, photo_slots = None, None, None
    if tc.slot_head.weight > 0:  # a supervised slot head next to the contrastive loss
        head = torch.nn.Linear(encoder.dim, len(HEAD_SLOTS))
        opt.add_param_group({"params": list(head.parameters()), "weight_decay": 0.0})
        row_slots = slot_targets([r.get("slot") for r in rows])
        photo_slots = slot_targets([f.get("slot") for f in photos.fields]) if photos is not None else None
    bs = min(tc.batch_size - n_photo, len(train_idx))  # catalog images per step
    steps_per_epoch = max(1, len(train_idx) // bs)  # drop the ragged tail: a tiny batch is a noisy step
    total_steps = steps_per_epoch * tc.epochs
    budget_s = tc.time_budget_min * 60 if tc.time_budget_min else None
    val_rows = [rows[i] for i in val_idx]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, desc="train encoder", unit="step")
    t_start, c_start = time.perf_counter(), time.process_time()
    clock = time.process_time if tc.budget_clock == "cpu" else time.perf_counter
    b_start = clock()
    done = False
    train_arr = np.asarray(train_idx)
    while not done:
        model.train()
        perm = rng.permutation(train_arr)
        for b in range(steps_per_epoch):
            elapsed = clock() - b_start
            prog = max(state.step / total_steps, elapsed / budget_s if budget_s else 0.0)
            if prog >= 1.0:
                done = True
                break
            lr = lr_at(prog, tc.lr, tc.warmup_frac, tc.min_lr_frac)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = np.sort(perm[b * bs:(b + 1) * bs])  # sorted: faster reads from the memmap
            batch = np.asarray(pixels[idx])
            if backgrounds is not None:
                from mmrec.embed.kiosk import kiosk_batch

                batch = kiosk_batch(batch, backgrounds, tc.kiosk, rng)
            texts = captions.sample(idx, rng)
            targets = row_slots[idx] if head is not None else None
            if n_photo:
                pidx = np.sort(rng.choice(len(photos.photo_ids), size=n_photo, replace=False))
                shots = photos.pixels[pidx]
                if tc.augment.photo_crop:
                    shots = random_crops(shots, tc.augment.photo_crop, rng)
                batch = np.concatenate([batch, shots])
                texts += photo_captions.sample(pidx, rng)
                if head is not None:
                    targets = np.concatenate([targets, photo_slots[pidx]])
            batch = augment(batch, tc.augment.pad, tc.augment.flip, rng)
            caption_ids = torch.tensor(_ids_of(texts))
            img = model.encode_image(encoder.pixels_to_tensor(batch), normalize=True)
            txt = model.encode_text(encoder.tokenizer(texts), normalize=True)
            loss = multi_positive_clip_loss(img, txt, model.logit_scale.exp(), caption_ids)
            if head is not None and (targets != IGNORE).any():
                loss = loss + tc.slot_head.weight * torch.nn.functional.cross_entropy(
                    head(img * tc.slot_head.scale), torch.from_numpy(targets), ignore_index=IGNORE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            with torch.no_grad():  # CLIP's clamp: a temperature above 100 destabilises training
                model.logit_scale.clamp_(0, math.log(100))
            state.step += 1
            state.images_seen += len(batch)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
        else:
            state.epoch += 1
        state.train_seconds = time.perf_counter() - t_start
        state.cpu_seconds = time.process_time() - c_start
        last_epoch = done or state.epoch >= tc.epochs
        if last_epoch:
            done = True
        if last_epoch or (tc.eval_every and state.epoch % tc.eval_every == 0):
            model.eval()
            check = retrieval_check(encoder, pixels[np.asarray(val_idx, dtype=int)], val_rows) \
                if val_idx else {}
            rec = {"epoch": state.epoch, "step": state.step, "minutes": state.train_seconds / 60,
                   "cpu_minutes": state.cpu_seconds / 60,
                   "loss": float(loss.item()), **{f"val_{k}": v for k, v in check.items()}}
            state.log.append(rec)
            log(json.dumps(rec))
    if bar is not None:
        bar.close()
    model.eval()
    if head is not None:
        encoder.slot_head = SlotHead.from_torch(head, tc.slot_head.scale)


def _ids_of(texts: list[str]) -> list[int]:
    seen: dict[str, int] = {}
    return [seen.setdefault(t.lower(), len(seen)) for t in texts]
