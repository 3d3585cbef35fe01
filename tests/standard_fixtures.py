"""Tiny checkpoints in the format of the real pretrained models, for the `standard` paths.

- `save_qwen_vl_checkpoint`: a directory laid out like a hub Qwen2-VL / Qwen2.5-VL checkpoint
  (config.json, safetensors weights, generation config, a ``Qwen2Tokenizer`` with Qwen's
  pre-tokenisation and special tokens, an image processor whose saved pixel budget is the
  hub's wide default, a ChatML template that adds a default system turn as Qwen's does).
  Its byte-level BPE is trained here on a small corpus with a small vocabulary, so that taxonomy
  values such as "navy blue" or "formal shoes" are several tokens each, as most values are for
  the real 151k-token vocabulary (mmrec's own mini tokenizer makes each value one token).
- `save_open_clip_vit`: an open_clip local-dir folder (``open_clip_config.json`` +
  safetensors) of a tiny ViT, as a pretrained model is laid out on disk.

Weights are random but perturbed away from their init, so that round trips compare something.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

# Qwen2-VL's added tokens in the hub's order (after the BPE vocabulary there, as here).
QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
# Pixel budget a hub Qwen2-VL preprocessor_config.json carries: 4..16384 merged patches.
HUB_MIN_PIXELS, HUB_MAX_PIXELS = 56 * 56, 28 * 28 * 16384

# ChatML as the Qwen-VL checkpoints render it, written for these tests: a default system turn
# when the conversation has none, typed image/video parts, a generation prompt on request.
QWEN_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen2_tokenizer(texts: Iterable[str], vocab_size: int = 420):
    """A transformers ``Qwen2Tokenizer`` (Qwen's regex pre-tokeniser, NFC, byte-level BPE) over a
    vocabulary of ``vocab_size`` BPE tokens learned from ``texts``, plus Qwen-VL's special tokens."""
    from tokenizers import AddedToken, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    # the class's own pipeline (normaliser, pre-tokeniser) trains the merges, so they are the
    # merges that pipeline would learn on a real corpus
    tok = Qwen2Tokenizer()._tokenizer
    tok.train_from_iterator(list(texts), trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False, special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    out = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", unk_token=None, chat_template=QWEN_VL_TEMPLATE,
                         model_max_length=32768, clean_up_tokenization_spaces=False)
    out.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL[1:])})
    out.add_tokens([AddedToken("<|endoftext|>", special=True)], special_tokens=True)
    return out


def _ids(tok, *tokens: str) -> list[int]:
    return [tok.convert_tokens_to_ids(t) for t in tokens]


def qwen_vl_config(family: str, tok, hidden: int = 32, layers: int = 1, vision: int = 32):
    """A tiny ``Qwen2VLConfig`` ("qwen2_vl") or ``Qwen2_5_VLConfig`` ("qwen2_5_vl") on ``tok``'s ids."""
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    from mmrec.attributes.model import mrope_sections

    pad, eos, image, video, vstart, vend = _ids(tok, "<|endoftext|>", "<|im_end|>", "<|image_pad|>",
                                                "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    heads = 2
    text = dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=1, max_position_embeddings=2048,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                 "mrope_section": mrope_sections(hidden // heads)},
                bos_token_id=pad, eos_token_id=eos, pad_token_id=pad)
    ids = dict(image_token_id=image, video_token_id=video, vision_start_token_id=vstart, vision_end_token_id=vend)
    if family == "qwen2_vl":  # as Qwen2-VL-7B: separate output head
        vis = dict(depth=1, embed_dim=vision, hidden_size=hidden, num_heads=2, mlp_ratio=2, patch_size=14,
                   spatial_merge_size=2, temporal_patch_size=2)
        return Qwen2VLConfig(text_config=text, vision_config=vis, tie_word_embeddings=False, **ids)
    if family == "qwen2_5_vl":  # as Qwen2.5-VL-3B: tied input/output embeddings
        vis = dict(depth=2, hidden_size=vision, intermediate_size=2 * vision, num_heads=2, out_hidden_size=hidden,
                   patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                   fullatt_block_indexes=[1])
        return Qwen2_5_VLConfig(text_config=text, vision_config=vis, tie_word_embeddings=True, **ids)
    raise ValueError(f"family must be qwen2_vl or qwen2_5_vl, got {family!r}")


def save_qwen_vl_checkpoint(path: Path, family: str, tok, *, seed: int = 0) -> Path:
    """Write a random tiny ``family`` checkpoint with ``tok`` into ``path`` (hub layout)."""
    import torch
    from transformers import (GenerationConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor, Qwen2VLProcessor,
                              Qwen2VLVideoProcessor)

    torch.manual_seed(seed)
    cfg = qwen_vl_config(family, tok)
    cls, proc_cls = ((Qwen2VLForConditionalGeneration, Qwen2VLProcessor) if family == "qwen2_vl"
                     else (Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor))
    model = cls(cfg)
    with torch.no_grad():  # a random init's logits are nearly flat: make the choices decisive
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    pad, eos = _ids(tok, "<|endoftext|>", "<|im_end|>")
    model.generation_config = GenerationConfig(bos_token_id=pad, pad_token_id=pad, eos_token_id=[eos, pad],
                                               do_sample=False)
    processor = proc_cls(image_processor=Qwen2VLImageProcessor(min_pixels=HUB_MIN_PIXELS, max_pixels=HUB_MAX_PIXELS),
                         tokenizer=tok, video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN_VL_TEMPLATE)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    _hub_processor_layout(path, proc_cls.__name__)
    return path


def _hub_processor_layout(path: Path, processor_class: str) -> None:
    """Rewrite the processor files as the hub checkpoints hold them (written before transformers
    5): ``preprocessor_config.json`` with ``min_pixels``/``max_pixels`` keys, ``chat_template.json``,
    no processor or video processor config."""
    saved = json.loads((path / "processor_config.json").read_text())["image_processor"]
    (path / "processor_config.json").unlink()
    pre = {k: saved[k] for k in ("image_mean", "image_std", "patch_size", "temporal_patch_size", "merge_size")}
    pre.update(min_pixels=HUB_MIN_PIXELS, max_pixels=HUB_MAX_PIXELS, image_processor_type="Qwen2VLImageProcessor",
               processor_class=processor_class)
    (path / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    template = path / "chat_template.jinja"
    (path / "chat_template.json").write_text(json.dumps({"chat_template": template.read_text()}))
    template.unlink()


def tokenizer_texts(prompts, fields, values, titles: Iterable[str] = ()) -> list[str]:
    """A small corpus: prompts, JSON answers and titles, a few times each. Few merges are learned
    beyond the frequent prompt words, so most taxonomy values stay several tokens long."""
    from mmrec.attributes.prompts import tokenizer_corpus

    return [*tokenizer_corpus(prompts, fields, values, repeats=3), *titles, "商品 藏青色 连衣裙"]


# ----------------------------------------------------------------------------------- open_clip
TINY_VIT = {  # a ViT-B-32-shaped model config at toy size (patch 8 on 32 px: 16 patches)
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
# Preprocessing as a pretrained checkpoint states it (not mmrec's letterbox): resize the
# shortest side, centre-crop, the model's own mean/std.
TINY_VIT_PREPROCESS = {"size": 32, "mode": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                       "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}


def save_open_clip_vit(path: Path, seed: int = 0) -> Path:
    """An open_clip local-dir model folder holding a perturbed random tiny ViT."""
    import open_clip
    import torch
    from safetensors.torch import save_model

    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_VIT)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    path.mkdir(parents=True, exist_ok=True)
    (path / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": TINY_VIT, "preprocess_cfg": TINY_VIT_PREPROCESS}, indent=2))
    save_model(model, str(path / "open_clip_model.safetensors"))
    return path
