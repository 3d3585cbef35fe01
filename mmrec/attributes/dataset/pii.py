"""Scrub personal data (phone numbers, e-mails, national-id-like numbers) from free text.

Catalog titles and descriptions are written by sellers and sometimes carry a contact number or
an address; none of that may reach a training record. The rules are deliberately narrow so that
product codes survive: a number glued to letters, a hyphenated code ("HRX-20931-BLK") or a size
with a slash ("170/92A", "32/34") is never touched. Full-width digits and symbols (common in
Chinese listings: "＋８６ １３８…") are folded to ASCII first so the same rules see them.
"""

from __future__ import annotations

import re
from collections import Counter

PII_KINDS = ("email", "phone", "national_id")
REPLACEMENT = {"email": "[email]", "phone": "[phone]", "national_id": "[id]"}

# U+FF01..U+FF5E are full-width forms of ASCII '!'..'~'; U+3000 is the ideographic space.
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_FULLWIDTH[0x3000] = 0x20

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

# A boundary that a product code never has on both sides: no letter, digit, '/', '-', '.', '_'
# may touch the number, so "AB-1234567890", "170/92A" and "v2.0.1" are left alone.
_LEFT = r"(?<![\w/.\-])"
_RIGHT = r"(?![\w/\-]|\.\d)"

# Chinese resident id (17 digits + check digit or X), US SSN, Indian Aadhaar (4-4-4 digits).
_NATIONAL_ID = re.compile(
    _LEFT + r"(?:\d{17}[\dXx]|\d{3}-\d{2}-\d{4}|\d{4} \d{4} \d{4})" + _RIGHT)

# A phone number: optional +country code, then digit groups separated by one space, dot or
# hyphen, optionally one parenthesised area code. Digit count is checked after matching.
_PHONE = re.compile(
    _LEFT + r"(?:\+\s?\d{1,3}[\s.\-]?)?(?:\(\d{1,5}\)[\s.\-]?)?\d{2,}(?:[\s.\-]\d{2,}){0,5}" + _RIGHT)

MIN_PHONE_DIGITS = 10      # local numbers without a country code (138 0013 8000, 98765 43210)
MIN_INTL_PHONE_DIGITS = 8  # with a '+' prefix even short numbers are phones (+86 10 1234 5678)
MAX_PHONE_DIGITS = 15      # E.164 limit


def fold_fullwidth(text: str) -> str:
    """Full-width ASCII variants and the ideographic space become their ASCII forms."""
    return text.translate(_FULLWIDTH)


def _phone_like(match: str) -> bool:
    digits = sum(c.isdigit() for c in match)
    if digits > MAX_PHONE_DIGITS:
        return False
    if match.lstrip().startswith("+"):
        return digits >= MIN_INTL_PHONE_DIGITS
    return digits >= MIN_PHONE_DIGITS


def scrub(text: str | None) -> tuple[str | None, Counter]:
    """Return ``text`` with personal data replaced by ``[email]``/``[phone]``/``[id]`` and hit counts.

    Order matters: e-mails first (they may contain digits), then ids (more specific than phones).
    """
    hits: Counter = Counter()
    if text is None:
        return None, hits
    out = fold_fullwidth(text)

    def sub(kind: str, pattern: re.Pattern, s: str, accept=None) -> str:
        def repl(m: re.Match) -> str:
            if accept is not None and not accept(m.group(0)):
                return m.group(0)
            hits[kind] += 1
            return REPLACEMENT[kind]
        return pattern.sub(repl, s)

    out = sub("email", _EMAIL, out)
    out = sub("national_id", _NATIONAL_ID, out)
    out = sub("phone", _PHONE, out, _phone_like)
    return out, hits


def scan(text: str | None) -> Counter:
    """Count personal-data hits in ``text`` without changing it (the report's after-scrub check)."""
    return scrub(text)[1]
