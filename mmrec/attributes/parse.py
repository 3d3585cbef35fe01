"""Parse-and-repair of a generated answer into taxonomy values.

Free generation can produce almost-JSON: a missing brace at the token limit, a stray sentence
before the object, a value in another spelling. ``parse_answer`` always returns one value (or
None) per field: strict JSON first, then a key/value scan that survives truncation; every value
goes through ``Taxonomy.canonical`` and anything not in the vocabulary becomes None. Whether the
raw text was valid JSON is reported separately (the eval's validity rate).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Sequence

from mmrec.taxonomy import Taxonomy

# "key": "value" pairs, the value possibly cut off by the token limit (no closing quote)
_PAIR = re.compile(r'"\s*([A-Za-z_][\w ]*?)\s*"\s*:\s*"([^"\n]*)"?')


@dataclass
class Parsed:
    values: dict[str, str | None]
    valid_json: bool
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # raw value span in the text
    invalid: dict[str, str] = field(default_factory=dict)             # field -> rejected raw value


def _strict(text: str) -> dict | None:
    s = text.strip()
    if not (s.startswith("{") and s.endswith("}")):
        return None
    try:
        obj = json.loads(s)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def parse_answer(text: str, fields: Sequence[str], taxonomy: Taxonomy, unknown: str = "unknown") -> Parsed:
    """Values per field (canonical or None) from a generated answer; never raises on bad text."""
    obj = _strict(text)
    raw: dict[str, str] = {}
    spans: dict[str, tuple[int, int]] = {}
    for m in _PAIR.finditer(text):
        key = m.group(1).strip().lower()
        if key in fields and key not in raw:
            raw[key] = m.group(2)
            spans[key] = m.span(2)
    if obj is not None:
        # strict JSON wins over the scan (values may contain escaped quotes the scan cuts short)
        for key, value in obj.items():
            k = str(key).strip().lower()
            if k in fields and isinstance(value, str):
                raw[k] = value
    values: dict[str, str | None] = {}
    invalid: dict[str, str] = {}
    for f in fields:
        v = raw.get(f)
        if v is None or v.strip().lower() in ("", unknown, "none", "null", "n/a"):
            values[f] = None
            continue
        canon = taxonomy.canonical(f, v)
        values[f] = canon
        if canon is None:
            invalid[f] = v
    return Parsed(values, obj is not None, spans, invalid)
