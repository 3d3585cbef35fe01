"""Prompt templates and the SFT record format (`messages` + `images`, one `<image>` per image).

Records follow the layout LLaMA-Factory and ms-swift read: a list of chat messages whose user
turn holds the literal placeholder ``<image>`` once per entry of ``images``. The trainer and the
tagger turn those messages into the model's own chat template (typed content lists) with
:func:`chat_messages`, so the same record works for the mini model and a real Qwen2.5-VL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import yaml
from pydantic import Field, model_validator

from mmrec.config import StrictModel, resolve_path
from mmrec.errors import ConfigError, InputError

IMAGE_PLACEHOLDER = "<image>"


class PromptSet(StrictModel):
    """The instruction phrasings of one dataset; the first JSON instruction is the inference one."""

    system: str = Field(min_length=1)
    unknown: str = "unknown"
    json_instructions: list[str] = Field(min_length=1)
    caption_instructions: list[str] = Field(min_length=1)
    single_questions: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _placeholders(self) -> PromptSet:
        for text in [self.system, *self.json_instructions, *self.caption_instructions,
                     *(q for qs in self.single_questions.values() for q in qs)]:
            if IMAGE_PLACEHOLDER in text:
                raise ValueError(f"prompt {text!r} contains {IMAGE_PLACEHOLDER}; the record "
                                 "builder adds the one image placeholder itself")
        for text in self.json_instructions:
            try:
                text.format(fields="x")
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(f"json instruction {text!r}: only {{fields}} may be substituted "
                                 f"({e})") from e
        return self

    def json_instruction(self, fields: Sequence[str], index: int = 0) -> str:
        return self.json_instructions[index].format(fields=", ".join(fields))


def load_prompts(path: str | Path) -> PromptSet:
    p = resolve_path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read prompt templates {p}: {e}") from e
    try:
        return PromptSet.model_validate(data)
    except ValueError as e:
        raise ConfigError(f"prompt templates {p}: {e}") from e


def json_answer(labels: Mapping[str, str | None], fields: Sequence[str], unknown: str = "unknown") -> str:
    """The assistant's JSON: every field in order, ``unknown`` where there is no label."""
    return json.dumps({f: labels.get(f) or unknown for f in fields}, ensure_ascii=False)


def messages(system: str, user_text: str, answer: str | None = None) -> list[dict[str, str]]:
    """A record's messages: system, user (one image placeholder first), optional assistant."""
    out = [{"role": "system", "content": system},
           {"role": "user", "content": IMAGE_PLACEHOLDER + user_text}]
    if answer is not None:
        out.append({"role": "assistant", "content": answer})
    return out


def chat_messages(msgs: Iterable[Mapping[str, Any]], n_images: int) -> list[dict[str, Any]]:
    """Record messages -> chat-template messages with ``{"type": "image"}`` parts.

    Raises InputError unless the placeholders add up to exactly ``n_images``.
    """
    out: list[dict[str, Any]] = []
    seen = 0
    for m in msgs:
        content = m["content"]
        if not isinstance(content, str):
            raise InputError(f"record message content must be a string, got {type(content).__name__}")
        if IMAGE_PLACEHOLDER not in content:
            out.append({"role": m["role"], "content": [{"type": "text", "text": content}]})
            continue
        parts: list[dict[str, Any]] = []
        pieces = content.split(IMAGE_PLACEHOLDER)
        for i, piece in enumerate(pieces):
            if i > 0:
                parts.append({"type": "image"})
                seen += 1
            if piece:
                parts.append({"type": "text", "text": piece})
        out.append({"role": m["role"], "content": parts})
    if seen != n_images:
        raise InputError(f"record has {seen} {IMAGE_PLACEHOLDER} placeholder(s) for {n_images} "
                         f"image(s); there must be exactly one per image")
    return out


def tokenizer_corpus(prompts: PromptSet, fields: Sequence[str], values: Mapping[str, Sequence[str]],
                     repeats: int = 50) -> Iterator[str]:
    """Template text for training a small BPE: every prompt and every field/value phrase.

    Repeated so that BPE merges whole template phrases (the system prompt becomes a few tokens
    instead of ~40 near-character ones) and JSON skeletons like ``", "colour": "``.
    """
    fixed = ["system\n", "user\n", "assistant\n", prompts.system, prompts.unknown, *prompts.caption_instructions,
             *(prompts.json_instruction(fields, i) for i in range(len(prompts.json_instructions))),
             *(q for qs in prompts.single_questions.values() for q in qs)]
    for _ in range(repeats):
        yield from fixed
    for f in fields:
        for v in [*values.get(f, ()), prompts.unknown]:
            for _ in range(max(1, repeats // 5)):
                yield json.dumps({f: v})[1:-1]
                yield v
    skeleton = {f: prompts.unknown for f in fields}
    for _ in range(repeats):
        yield json.dumps(skeleton)
