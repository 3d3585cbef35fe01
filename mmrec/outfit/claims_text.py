"""Explanation claims: one checked statement with its facts, said in English and Chinese, and
the choice of which claims an explanation has room for.

A claim is built once from facts (`mmrec.outfit.explain`); the English sentence is what the
verifier reads, and the Chinese sentence says the same thing with the taxonomy's and the scene
book's Chinese names, so the two languages never state different things.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmrec.outfit.facts import Fact
from mmrec.outfit.scenes import Scene
from mmrec.taxonomy import Taxonomy

HARMONY_ZH = {
    "all neutrals": "全身中性色",
    "one accent": "中性色配一个亮色",
    "tonal": "同一色系的深浅搭配",
    "accents": "几种亮色点缀",
}


@dataclass
class Claim:
    """One statement: its kind, the facts that back it, its English and Chinese sentences."""

    kind: str  # outfit, query, photo, history, profile, rules, harmony, usage, detail
    facts: list[Fact] = field(default_factory=list)
    en: str = ""
    zh: str = ""


def select_claims(claims: list[Claim], max_claims: int, max_words: int) -> tuple[list[Claim], list[Fact]]:
    """The head of ``claims`` (most telling first) that fits ``max_claims`` sentences and
    ``max_words`` English words, and the facts of every claim kept. One personal reason (history
    or profile) is enough: a second would crowd out the scene's rules."""
    kept: list[Claim] = []
    words = 0
    personal = False
    for c in claims:
        if len(kept) >= max_claims:
            break
        if c.kind in ("history", "profile") and personal:
            continue
        n = len(c.en.split())
        if words + n > max_words:
            continue  # a shorter claim further down may still fit
        kept.append(c)
        words += n
        personal = personal or c.kind in ("history", "profile")
    return kept, [f for c in kept for f in c.facts]


def zh_value(tax: Taxonomy, fld: str, value: str | None) -> str:
    """A taxonomy value's Chinese name (the value itself when it has none)."""
    if value is None:
        return ""
    return tax.zh_name(fld, value) or value


def zh_item(tax: Taxonomy, colour: str | None, category: str | None) -> str:
    """"白色衬衫": the colour (if said) and the category in Chinese."""
    noun = zh_value(tax, "category", category) if category else "单品"
    return f"{zh_value(tax, 'colour', colour)}{noun}" if colour else noun


def zh_join(parts: list[str]) -> str:
    """A list as read in Chinese: "a", "a和b", "a、b和c"."""
    if len(parts) <= 1:
        return "".join(parts)
    return "、".join(parts[:-1]) + "和" + parts[-1]


def zh_scene(scene: Scene) -> str:
    return scene.label_zh or scene.label
