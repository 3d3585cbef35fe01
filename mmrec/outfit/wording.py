"""How explanation text is worded, and how it is cut back into statements to verify.

The generator (`mmrec.outfit.explain`) and the verifier (`mmrec.outfit.verify`) must agree on
both: how one item of a category is named, and where a statement ends (quotes may hold dots).
"""

from __future__ import annotations

import re

# Categories whose plural is also how one item is called.
_PLURAL_NOUNS = ("shoes", "sandals", "heels", "flats", "flip flops", "jeans", "trousers",
                 "shorts", "capris", "leggings", "jeggings", "track pants", "sunglasses",
                 "tights", "gloves", "booties", "boots", "cufflinks", "suspenders", "briefs",
                 "boxers", "lounge pants", "lounge shorts", "rain trousers", "tracksuits",
                 "dungarees", "churidar", "salwar", "patiala", "swimwear")
_SENTENCE = re.compile(r"[^.!?]*[.!?]")


def is_plural_noun(cat: str) -> bool:
    return cat.endswith(_PLURAL_NOUNS)


def display_category(cat: str) -> str:
    """How one item of ``cat`` is named in text ("shirts" -> "shirt", "jeans" stays)."""
    if is_plural_noun(cat) or not cat.endswith("s"):
        return cat
    if cat.endswith(("ches", "shes", "sses")):
        return cat[:-2]
    return cat[:-1]


def split_statements(text: str) -> list[str]:
    """Sentences of ``text`` (a statement ends with . ! or ? outside quotes)."""
    if '"' not in text:  # no quotes to respect: one regex pass instead of a loop per character
        out = [s for s in map(str.strip, _SENTENCE.findall(text)) if s.strip(".!? ")]
        tail = _SENTENCE.sub("", text).strip()
        return out + [tail] if tail.strip(".!? ") else out
    return _split_quoted(text)


def _split_quoted(text: str) -> list[str]:
    out, buf, quoted = [], [], False
    for ch in text:
        buf.append(ch)
        if ch == '"':
            quoted = not quoted
        elif ch in ".!?" and not quoted:
            s = "".join(buf).strip()
            if s.strip(".!? "):
                out.append(s)
            buf = []
    tail = "".join(buf).strip()
    if tail.strip(".!? "):
        out.append(tail)
    return out


def join_phrases(parts: list[str]) -> str:
    """A list as read aloud: "a", "a and b", "a, b and c"."""
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def capitalise(s: str) -> str:
    return s[:1].upper() + s[1:]


def attr_phrase(fld: str, value: str) -> str:
    """How an attribute value reads after "is": "slim fit", "made of linen", "checked"."""
    return {"fit": f"{value} fit", "material": f"made of {value}"}.get(fld, value)


def quote_safe(text: str) -> str:
    # a double quote inside the quoted query would end the quote early for split_statements
    return text.replace('"', "'")
