"""Model and processor loading: pretrained Qwen2/2.5-VL (standard) or built offline (mini/tiny).

Both paths return the same classes (``Qwen2_5_VLForConditionalGeneration`` or
``Qwen2VLForConditionalGeneration`` + their processor), so training, decoding and export code
never branch on the profile. Every processor gets an explicit pixel budget: without one a large
photo becomes thousands of vision tokens and runs out of memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from mmrec.attributes.config import MiniArch, ModelConfig
from mmrec.errors import ConfigError


def _ids(tokenizer, *tokens: str) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(t) for t in tokens]


def mrope_sections(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (time, height, width) as Qwen does (1:1.5:1.5)."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def build_processor(tokenizer, *, min_pixels: int, max_pixels: int):
    """Qwen2.5-VL processor around ``tokenizer`` with a fixed pixel budget."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               video_processor=Qwen2VLVideoProcessor(),
                               chat_template=tokenizer.chat_template)


def mini_config(arch: MiniArch, tokenizer):
    """A ``Qwen2_5_VLConfig`` of ``arch``'s size whose special token ids are ``tokenizer``'s."""
    from transformers import Qwen2_5_VLConfig

    pad, eos, image, video, vstart, vend = _ids(
        tokenizer, "<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>",
        "<|vision_start|>", "<|vision_end|>")
    head_dim = arch.hidden_size // arch.num_heads
    text = dict(
        vocab_size=len(tokenizer), hidden_size=arch.hidden_size,
        intermediate_size=int(arch.hidden_size * arch.mlp_ratio), num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads, num_key_value_heads=arch.num_kv_heads,
        max_position_embeddings=arch.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": arch.rope_theta,
                         "mrope_section": mrope_sections(head_dim)},
        bos_token_id=pad, eos_token_id=eos, pad_token_id=pad,
    )
    vision = dict(
        depth=arch.vision_layers, hidden_size=arch.vision_hidden_size,
        intermediate_size=int(arch.vision_hidden_size * arch.vision_mlp_ratio),
        num_heads=arch.vision_heads, out_hidden_size=arch.hidden_size, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2,
        # one window covers the whole (square) input, so windowed and full attention coincide
        window_size=arch.image_size, fullatt_block_indexes=[arch.vision_layers - 1],
    )
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=image,
                            video_token_id=video, vision_start_token_id=vstart,
                            vision_end_token_id=vend, tie_word_embeddings=arch.tie_word_embeddings)


def build_mini(arch: MiniArch, tokenizer, *, seed: int = 0):
    """Randomly initialised mini model + processor (pixel budget = ``arch.image_size`` squared)."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    cfg = mini_config(arch, tokenizer)
    model = Qwen2_5_VLForConditionalGeneration(cfg)
    pad, eos = _ids(tokenizer, "<|endoftext|>", "<|im_end|>")
    model.generation_config = GenerationConfig(pad_token_id=pad, eos_token_id=eos, bos_token_id=pad,
                                               do_sample=False)
    side = arch.image_size * arch.image_size
    return model, build_processor(tokenizer, min_pixels=side, max_pixels=side)


def mini_tokenizer(arch: MiniArch, texts: Iterable[str], atomic_words: Iterable[str] = ()):
    from mmrec.attributes.tokenizer import train_tokenizer

    return train_tokenizer(texts, arch.vocab_size, atomic_words=atomic_words)


def _dtype(name: str):
    import torch

    if name == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def load_pretrained(name_or_path: str | Path, *, min_pixels: int, max_pixels: int,
                    dtype: str = "auto", attn_implementation: str = "sdpa", device: str = "cpu"):
    """Load a Qwen2-VL / Qwen2.5-VL checkpoint (hub name or directory) and its processor.

    Args:
        name_or_path: e.g. ``Qwen/Qwen2.5-VL-3B-Instruct`` (needs the hub or its cache) or a
            directory written by ``save_pretrained`` (mmrec's mini models included).
        min_pixels / max_pixels: per-image pixel budget given to the image processor.
        dtype: ``auto`` = bf16 on a GPU that supports it, else float32.
    """
    from transformers import AutoConfig, AutoProcessor

    try:
        cfg = AutoConfig.from_pretrained(str(name_or_path))
    except OSError as e:
        raise ConfigError(f"cannot load a model config from {name_or_path!r}: {e}. Give a local "
                          "checkpoint directory, or a hub name with the hub (or its cache) reachable") from e
    cls = _model_class(cfg.model_type, name_or_path)
    model = cls.from_pretrained(str(name_or_path), dtype=_dtype(dtype),
                                attn_implementation=attn_implementation)
    processor = AutoProcessor.from_pretrained(str(name_or_path))
    set_pixel_budget(processor, min_pixels, max_pixels)
    return model.to(device), processor


def _model_class(model_type: str, source: Any):
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    classes = {"qwen2_5_vl": Qwen2_5_VLForConditionalGeneration, "qwen2_vl": Qwen2VLForConditionalGeneration}
    if model_type not in classes:
        raise ConfigError(f"{source}: model_type {model_type!r} is not a Qwen-VL model; "
                          f"supported: {sorted(classes)}")
    return classes[model_type]


def checkpoint_dtype(name_or_path: str | Path) -> str:
    """The dtype a checkpoint's weights were saved in (its config's ``dtype``), e.g. ``bfloat16``
    for the Qwen2.5-VL hub checkpoints; ``float32`` when the config does not say."""
    from transformers import AutoConfig

    dtype = getattr(AutoConfig.from_pretrained(str(name_or_path)), "dtype", None)
    if dtype is None:
        return "float32"
    return dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")


def set_pixel_budget(processor, min_pixels: int, max_pixels: int) -> None:
    """Every image is resized to between ``min_pixels`` and ``max_pixels`` (multiples of 28 px)."""
    from transformers.image_utils import SizeDict

    processor.image_processor.size = SizeDict(shortest_edge=min_pixels, longest_edge=max_pixels)


def save_model(model, processor, path: str | Path) -> None:
    """``save_pretrained`` of model, processor and generation config into ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)


def load_model(cfg: ModelConfig, path: str | Path | None = None, *, device: str = "cpu"):
    """Load ``path`` (a saved mini/base model) or, for standard, ``cfg.name_or_path``."""
    src = path if path is not None else cfg.name_or_path
    if src is None:
        raise ConfigError("no model to load: give a saved model directory or model.name_or_path")
    lo, hi = cfg.pixel_budget()
    return load_pretrained(src, min_pixels=lo, max_pixels=hi, dtype=cfg.dtype,
                           attn_implementation=cfg.attn_implementation, device=device)
