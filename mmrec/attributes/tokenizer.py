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
# Maximal runs of text characters, or of JSON-structure characters (with spaces between them).
STRUCTURE_SPLIT = r'[^"{}\[\]:,\n]+|["{}\[\]:,\n ]+'
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


def train_tokenizer(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2,
                    atomic_words: Iterable[str] = ()):
    """Train a byte-level BPE on ``texts`` and wrap it as a transformers fast tokenizer.

    Args:
        texts: training text (titles, prompt templates, JSON answers).
        vocab_size: target size including the 256 byte symbols, the special tokens and
            ``atomic_words``.
        min_frequency: merges seen fewer times are not learned.
        atomic_words: whole words that become single tokens wherever they stand alone (the
            taxonomy values): each attribute is then one decision of the model, and a rare
            value is not spelled out of sub-word pieces that titles crowd out of the vocabulary.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    atomic = sorted({w for w in atomic_words if w and w.strip() == w}, key=lambda w: (-len(w), w))
    if vocab_size < 256 + len(SPECIAL_TOKENS) + len(atomic) + 1:
        raise ValueError(f"vocab_size must exceed the 256 bytes + {len(SPECIAL_TOKENS)} special "
                         f"tokens + {len(atomic)} atomic words, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    # Pre-tokenisation: text runs (words, spaces, sentence punctuation) vs JSON structure runs
    # (quotes, braces, colons, commas, newlines, with their spaces). Much coarser than GPT-2's
    # per-word split, so a repeated prompt sentence can become one token and a JSON field costs
    # ~4 tokens instead of ~6: on a 2-core CPU, sequence length is training time. A value never
    # shares a pre-token with the quotes around it, so its tokens are the same wherever it
    # appears in the answer (the constrained decoder relies on that).
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(STRUCTURE_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(atomic), min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    # single_word: "men" inside "women" stays BPE; normalized=False: matched case-sensitively
    tok.add_tokens([AddedToken(w, single_word=True, normalized=False) for w in atomic])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
        additional_special_tokens=list(SPECIAL_TOKENS[1:]), chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False, model_max_length=4096)
    return fast
