"""A byte-level BPE tokenizer trained by mmrec, with Qwen's chat special tokens and template.

The mini/tiny models cannot download Qwen's 151k-token vocabulary, so mmrec trains a small one
on the catalog's titles and the prompt templates. It keeps what Qwen2-VL code relies on: the
special tokens (``<|im_start|>``, ``<|im_end|>``, ``<|vision_start|>``, ``<|image_pad|>``, ...),
ChatML turns, and ``<|im_end|>`` as the end of an answer. Byte-level BPE means no input is ever
out of vocabulary.
"""

from __future__ import annotations

from typing import Iterable

# Qwen2-VL's special tokens, in Qwen's order; the ids differ (ours start at 0).
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"

# ChatML as Qwen2-VL writes it: each turn "<|im_start|>{role}\n{content}<|im_end|>\n", images as
# "<|vision_start|><|image_pad|><|vision_end|>" (the processor expands <|image_pad|> to one
# token per merged patch). Content may be a string or a list of typed parts. No default system
# prompt is injected: the records carry their own.
CHAT_TEMPLATE = (
    # No whitespace control ("{%-"): it would also strip the newlines ChatML needs; the pieces
    # below are concatenated with no stray whitespace between tags instead.
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2):
    """Train a byte-level BPE on ``texts`` and wrap it as a transformers fast tokenizer.

    Args:
        texts: training text (titles, prompt templates, JSON answers).
        vocab_size: target size including the 256 byte symbols and the special tokens.
        min_frequency: merges seen fewer times are not learned.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size must exceed the 256 bytes + {len(SPECIAL_TOKENS)} special "
                         f"tokens, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    # GPT-2 style pre-tokenisation: letters, digits and punctuation runs never merge across,
    # which keeps a value's tokens the same wherever it appears in the JSON (the constrained
    # decoder relies on that).
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
        additional_special_tokens=list(SPECIAL_TOKENS[1:]), chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False, model_max_length=4096)
    return fast
