"""Chinese text helpers for the query parser: Traditional -> Simplified, segmentation, numerals.

Both third-party pieces load lazily, once, behind a lock: OpenCC's ``t2s`` tables (~5 ms) and a
private jieba ``Tokenizer`` (~0.5 s the first time on a machine, ~0.3 s from jieba's cache file).
A private tokenizer, not jieba's global one, so that the taxonomy's words added here never
change how other code in the process segments text, and other code's words never change ours.
Pure Python; no torch.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Iterable

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LOCK = threading.Lock()
_T2S = None


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


def to_simplified(text: str) -> str:
    """Traditional (and mixed) Chinese -> Simplified; other characters are left as they are."""
    global _T2S
    if not has_cjk(text):
        return text
    if _T2S is None:
        with _LOCK:
            if _T2S is None:
                from opencc import OpenCC  # opencc-python-reimplemented: pure Python, offline tables

                _T2S = OpenCC("t2s")
    return _T2S.convert(text)


class Segmenter:
    """A private jieba tokenizer that knows ``words`` (the taxonomy's zh terms and cue words).

    Args:
        words: multi-character words to keep whole; single characters need no entry.
    """

    def __init__(self, words: Iterable[str]):
        self._words = sorted({w for w in words if len(w) > 1})
        self._tok = None
        self._lock = threading.Lock()

    def _tokenizer(self):
        if self._tok is None:
            with self._lock:
                if self._tok is None:
                    import jieba

                    # jieba logs "Building prefix dict..." at DEBUG to stderr on every load;
                    # its logger is its own, so quieting it touches nothing else.
                    jieba.setLogLevel(logging.WARNING)
                    tok = jieba.Tokenizer()
                    for w in self._words:
                        # freq=None: jieba picks a frequency high enough that the word is kept
                        # whole where the main dictionary would split it (白衬衫 stays a jieba
                        # word, 藏青色 and 连衣裙 become ours).
                        tok.add_word(w)
                    self._tok = tok
        return self._tok

    def cut(self, text: str) -> list[str]:
        """Words of a Chinese run (Latin letters and digits inside it come out as their own words).

        HMM is off: unknown words come out as single characters instead of guessed compounds,
        so a taxonomy term is never glued to a neighbour the dictionary does not know.
        """
        return [w for w in self._tokenizer().cut(text, HMM=False) if w.strip()]


_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
           "七": 7, "八": 8, "九": 9}  # fmt: skip
_UNITS = {"十": 10, "百": 100, "千": 1000}
CN_NUMERAL = "[零〇一二两三四五六七八九十百千万]+"


def cn_number(text: str) -> int | None:
    """Chinese numeral -> int: 三百 300, 两千 2000, 一千五 1500 (the spoken short form), 1万 10000.

    Returns None for text that is not a numeral this reads (it never guesses).
    """
    if not text or any(c not in _DIGITS and c not in _UNITS and c != "万" for c in text):
        return None
    if "万" in text:
        head, _, tail = text.partition("万")
        high = cn_number(head) if head else 1
        low = cn_number(tail) if tail else 0
        if high is None or low is None:
            return None
        return high * 10_000 + low
    total, cur, last_unit = 0, None, None
    for c in text:
        if c in _DIGITS:
            if cur is not None:  # two digits in a row ("二三") is not a numeral
                return None
            cur = _DIGITS[c]
        else:
            unit = _UNITS[c]
            total += (1 if cur is None else cur) * unit
            cur, last_unit = None, unit
    if cur is not None:
        # 一千五 = 1500: a lone digit after a unit counts in the next unit down
        total += cur * (last_unit // 10 if last_unit and last_unit >= 100 else 1)
    return total
