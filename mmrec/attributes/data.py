"""Records -> model tensors: tokenised chat turns, images, the mirror augmentation and the batch collator.

A record is tokenised once (prompt and answer separately, so the loss mask is exact) with one
``<|image_pad|>``; the collator runs the image processor on the batch and expands that token to
as many as the image yields, exactly as ``Qwen2_5_VLProcessor`` does (a test checks the two
agree). For the mini profile every image is resized once to a fixed square and cached as uint8
(``PixelCache``): decoding 12k JPEGs per epoch would cost more than the model's forward pass.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmrec.attributes.prompts import chat_messages

IGNORE_INDEX = -100


@dataclass
class Example:
    prompt_ids: list[int]   # chat prompt up to "<|im_start|>assistant\n", one image token
    answer_ids: list[int]   # the answer, "<|im_end|>" and the newline after it (empty for prompts)
    image: int | str        # PixelCache row, or an image path
    record: dict[str, Any] | None = None
    flip: bool = False      # mirror the image horizontally (augmentation)


class Mirrored:
    """Every example twice, plain and mirrored: horizontal-flip augmentation with no RNG.

    The sampler shuffles the 2n items, so each epoch shows each record once each way. Keeping
    randomness out of the collator matters for resuming: the Trainer fetches the first batch
    after a resume before it restores the RNG state, and prefetches one batch ahead, so any
    random draw in the collator would make a resumed run diverge from an uninterrupted one.
    """

    def __init__(self, examples: Sequence[Example]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return 2 * len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return replace(self.examples[i // 2], flip=bool(i % 2))


def split_turns(record: dict[str, Any], processor, *, lowercase_answer: bool = False) -> tuple[str, str]:
    """The chat text of a record's prompt (ending with the generation prompt) and its answer."""
    msgs = chat_messages(record["messages"], len(record["images"]))
    if lowercase_answer and msgs[-1]["role"] == "assistant":
        msgs[-1] = {"role": "assistant",
                    "content": [{**p, "text": p["text"].lower()} if p["type"] == "text" else p
                                for p in msgs[-1]["content"]]}
    if msgs[-1]["role"] != "assistant":
        prompt = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        return prompt, ""
    prompt = processor.apply_chat_template(msgs[:-1], add_generation_prompt=True, tokenize=False)
    full = processor.apply_chat_template(msgs, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently with and without the "
                         "answer; cannot mask the prompt out of the loss")
    return prompt, full[len(prompt):]


def encode_records(records: Sequence[dict[str, Any]], processor, image_index: dict[str, int] | None = None,
                   *, keep_records: bool = False, lowercase_answers: bool = False) -> list[Example]:
    """Tokenise records; identical prompt texts (most of them) are tokenised once."""
    tok = processor.tokenizer
    cache: dict[str, list[int]] = {}

    def ids(text: str) -> list[int]:
        if text not in cache:
            cache[text] = tok(text, add_special_tokens=False)["input_ids"]
        return cache[text]

    out = []
    for r in records:
        if len(r["images"]) != 1:
            raise ValueError(f"record {r.get('id')}: the tagger trains on one image per record, got {len(r['images'])}")
        prompt, answer = split_turns(r, processor, lowercase_answer=lowercase_answers)
        path = r["images"][0]
        image = image_index[path] if image_index is not None else path
        out.append(Example(ids(prompt), tok(answer, add_special_tokens=False)["input_ids"] if answer else [],
                           image, r if keep_records else None))
    return out


class PixelCache:
    """Every dataset image squashed to ``size`` x ``size`` uint8 RGB, decoded once and memory-mapped."""

    def __init__(self, pixels: np.ndarray, paths: list[str]):
        self.pixels = pixels
        self.paths = paths
        self.index = {p: i for i, p in enumerate(paths)}

    @classmethod
    def build(cls, paths: Sequence[str], size: int, cache_dir: str | Path, *, progress: bool = False) -> PixelCache:
        from tqdm import tqdm

        from mmrec.images import load_image, resize_square

        paths = sorted(set(paths))
        key = hashlib.sha256(("\n".join(paths) + f"\n{size}").encode()).hexdigest()[:16]
        cache_dir = Path(cache_dir)
        npy, names = cache_dir / f"pixels-{size}-{key}.npy", cache_dir / f"pixels-{size}-{key}.json"
        if npy.is_file() and names.is_file():
            return cls(np.load(npy, mmap_mode="r"), json.loads(names.read_text()))
        cache_dir.mkdir(parents=True, exist_ok=True)
        arr = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
        for i, p in enumerate(tqdm(paths, desc=f"cache {size}px", unit="img", disable=not progress)):
            arr[i] = np.asarray(resize_square(load_image(p), size))
        tmp = npy.with_suffix(".tmp.npy")
        np.save(tmp, arr)
        tmp.replace(npy)  # atomic: a half-written cache is never picked up
        names.write_text(json.dumps(paths))
        return cls(arr, paths)

    def batch(self, rows: Sequence[int]):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(self.pixels[np.asarray(rows)]))
        return x.permute(0, 3, 1, 2).contiguous()  # [B, 3, H, W] uint8


def square_pixels(images: Sequence[Any], size: int):
    """PIL images -> the cache's representation (squashed to ``size``), [B, 3, H, W] uint8."""
    import torch

    from mmrec.images import resize_square

    arr = np.stack([np.asarray(resize_square(im, size)) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


class Collator:
    """Pads a batch of Examples into model inputs (labels only on answer tokens).

    Args:
        processor: the model's processor (its image processor and tokenizer are used).
        pixels: a PixelCache for integer images; None when examples carry image paths.
        left_pad: pad on the left (generation) instead of the right (training).
        extras: objects whose ``batch(rows)`` adds tensors per pixel-cache row to each batch
            (`losses.ExtraLoss` plug-ins, e.g. the distillation targets; the trainer takes them
            out again before the forward).
    """

    def __init__(self, processor, pixels: PixelCache | None = None, *, left_pad: bool = False,
                 extras: Sequence[Any] = ()):
        self.extras = [x for x in extras if x.batch_keys]
        by_row = [x.name for x in self.extras if x.needs_pixel_rows]
        if by_row and pixels is None:
            raise ValueError(f"{by_row} add tensors indexed by pixel-cache row: pass the PixelCache")
        self.processor = processor
        self.pixels = pixels
        self.left_pad = left_pad
        tok = processor.tokenizer
        self.pad_id = tok.pad_token_id
        self.image_token_id = tok.convert_tokens_to_ids("<|image_pad|>")
        self.merge = processor.image_processor.merge_size

    def images(self, examples: Sequence[Example]):
        from PIL import ImageOps

        from mmrec.images import load_image

        flip = [e.flip for e in examples]
        if self.pixels is not None:
            x = self.pixels.batch([int(e.image) for e in examples])
            if any(flip):
                import torch

                mask = torch.tensor(flip)
                x[mask] = x[mask].flip(-1)
            return x
        return [ImageOps.mirror(img) if e.flip else img for e, img in
                zip(examples, (load_image(e.image) for e in examples))]

    def __call__(self, examples: Sequence[Example], images: Any = None) -> dict[str, Any]:
        import torch

        vis = self.processor.image_processor(images=images if images is not None else self.images(examples),
                                             return_tensors="pt")
        n_tokens = (vis["image_grid_thw"].prod(-1) // (self.merge ** 2)).tolist()
        seqs, labels = [], []
        for e, n in zip(examples, n_tokens):
            prompt: list[int] = []
            for t in e.prompt_ids:
                prompt.extend([t] * n if t == self.image_token_id else [t])
            seqs.append(prompt + e.answer_ids)
            labels.append([IGNORE_INDEX] * len(prompt) + e.answer_ids)
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        lab = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (s, l) in enumerate(zip(seqs, labels)):
            sl = slice(width - len(s), width) if self.left_pad else slice(0, len(s))
            ids[i, sl] = torch.tensor(s)
            lab[i, sl] = torch.tensor(l)
            mask[i, sl] = 1
        batch = {"input_ids": ids, "attention_mask": mask,
                 "mm_token_type_ids": (ids == self.image_token_id).long(),
                 "pixel_values": vis["pixel_values"], "image_grid_thw": vis["image_grid_thw"]}
        if any(e.answer_ids for e in examples):
            batch["labels"] = lab
        if self.extras and images is None:
            for x in self.extras:
                batch.update(x.batch([int(e.image) if x.needs_pixel_rows else e.image for e in examples]))
        return batch
