"""SFT records: full-JSON extraction, single-attribute questions, "unknown" answers, captions.

Train records vary the instruction phrasing (seeded); val and test records use the first JSON
instruction only, the one the tagger sends at inference, so that evaluation measures the
deployed prompt. Each record keeps ``task``, ``item_id`` and, for single questions, ``field``
next to ``messages``/``images``; training tools that do not know these keys ignore them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from mmrec.attributes.prompts import PromptSet, json_answer, messages

if TYPE_CHECKING:  # pragma: no cover
    from mmrec.attributes.dataset.product import Product
    from mmrec.attributes.dataset.config import TasksConfig

TASKS = ("json", "single", "caption")


def _record(rid: str, task: str, p: "Product", msgs: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {"id": rid, "task": task, "item_id": p.item_id, **extra,
            "messages": msgs, "images": [p.image_path]}


def json_record(p: "Product", prompts: PromptSet, fields: Sequence[str], phrasing: int,
                rid: str) -> dict[str, Any]:
    answer = json_answer(p.labels, fields, prompts.unknown)
    return _record(rid, "json", p, messages(prompts.system, prompts.json_instruction(fields, phrasing), answer))


def single_records(p: "Product", prompts: PromptSet, fields: Sequence[str], n: int,
                   unknown_rate: float, rng: np.random.Generator, rid: str) -> Iterator[dict[str, Any]]:
    askable = [f for f in fields if prompts.single_questions.get(f)]
    labelled = [f for f in askable if p.labels.get(f) is not None]
    unlabelled = [f for f in askable if p.labels.get(f) is None]
    for k in range(n):
        # Asking about an unlabelled field teaches the model to abstain instead of guessing.
        pool = unlabelled if (unlabelled and (not labelled or rng.random() < unknown_rate)) else labelled
        if not pool:
            return
        field = pool[int(rng.integers(len(pool)))]
        questions = prompts.single_questions[field]
        q = questions[int(rng.integers(len(questions)))]
        answer = p.labels.get(field) or prompts.unknown
        yield _record(f"{rid}:{k}", "single", p, messages(prompts.system, q, answer), field=field)


def caption_record(p: "Product", prompts: PromptSet, rng: np.random.Generator,
                   rid: str) -> dict[str, Any] | None:
    if not p.title.strip():
        return None
    instr = prompts.caption_instructions[int(rng.integers(len(prompts.caption_instructions)))]
    return _record(rid, "caption", p, messages(prompts.system, instr, p.title.strip()))


def train_records(sampled: Sequence["Product"], prompts: PromptSet, fields: Sequence[str],
                  tasks: "TasksConfig", rng: np.random.Generator) -> list[dict[str, Any]]:
    """Records for the (resampled) train list: repeats of a product get fresh phrasings."""
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    n_phrasings = len(prompts.json_instructions)
    for p in sampled:
        k = seen.get(p.item_id, 0)
        seen[p.item_id] = k + 1
        for j in range(tasks.json_per_item):
            out.append(json_record(p, prompts, fields, int(rng.integers(n_phrasings)),
                                   f"{p.item_id}:json:{k}:{j}"))
        out.extend(single_records(p, prompts, fields, tasks.single_per_item,
                                  tasks.unknown_question_rate, rng, f"{p.item_id}:single:{k}"))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def eval_records(products: Sequence["Product"], prompts: PromptSet, fields: Sequence[str]) -> list[dict[str, Any]]:
    """One JSON record per product with the inference instruction (val/test)."""
    return [json_record(p, prompts, fields, 0, f"{p.item_id}:json") for p in products]


def caption_records(products: Sequence["Product"], prompts: PromptSet,
                    rng: np.random.Generator) -> list[dict[str, Any]]:
    recs = (caption_record(p, prompts, rng, f"{p.item_id}:caption") for p in products)
    return [r for r in recs if r is not None]


def record_texts(rec: dict[str, Any]) -> Iterator[str]:
    """Every free-text string of a record (for the after-scrub PII check)."""
    for m in rec["messages"]:
        yield m["content"]
