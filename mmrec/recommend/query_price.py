"""Price ceilings in a shopper's query ("under 2000", "2000元以内", "不超过两千"): found and cut
out before the words are read, so that their numbers and words are neither attributes nor
unknown. The cue words are data in `mmrec.recommend.query_lexicon`."""

from __future__ import annotations

import re

from mmrec.recommend import query_lexicon as lex
from mmrec.recommend.zh_text import CN_NUMERAL, cn_number

_NUM = rf"(?:\d+(?:,\d{{3}})*(?:\.\d+)?\s*(?:k|千|w|万)?|{CN_NUMERAL})"
_PRICE_PATTERNS = [re.compile(p) for p in (
    rf"(?<![a-z])(?:{lex.CEILING_EN})\s*{lex.CURRENCY_BEFORE}\s*(?P<num>{_NUM})\s*{lex.CURRENCY_AFTER}",
    rf"(?:{lex.CEILING_ZH_BEFORE})\s*{lex.CURRENCY_BEFORE}\s*(?P<num>{_NUM})\s*{lex.CURRENCY_AFTER}"
    rf"\s*(?:{lex.CEILING_ZH_AFTER})?",
    rf"{lex.CURRENCY_BEFORE}\s*(?P<num>{_NUM})\s*{lex.CURRENCY_AFTER}\s*(?:{lex.CEILING_ZH_AFTER})",
)]  # fmt: skip


def price_spans(text: str) -> list[tuple[int, int, float]]:
    """Non-overlapping (start, end, ceiling) of the price phrases in ``text``, in order."""
    found: list[tuple[int, int, float]] = []
    for pattern in _PRICE_PATTERNS:
        for m in pattern.finditer(text):
            if any(m.start() < e and s < m.end() for s, e, _ in found):
                continue
            value = _amount(m.group("num"))
            if value is not None and value > 0:
                found.append((m.start(), m.end(), value))
    return sorted(found)


def _amount(raw: str) -> float | None:
    raw = raw.replace(",", "").replace(" ", "")
    if re.fullmatch(CN_NUMERAL, raw):
        n = cn_number(raw)
        return None if n is None else float(n)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(k|千|w|万)?", raw)
    if m is None:
        return None
    scale = {"k": 1000, "千": 1000, "w": 10_000, "万": 10_000}.get(m.group(2) or "", 1)
    return float(m.group(1)) * scale
