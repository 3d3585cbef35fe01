"""PII scrubbing for SFT records: planted personal data never survives, product codes do."""

from __future__ import annotations

import pytest

from mmrec.attributes.dataset.pii import fold_fullwidth, scan, scrub

PLANTED = [
    ("Call +86 138 0013 8000 for details", "phone"),
    ("call 138-0013-8000.", "phone"),
    ("手机 １３８００１３８０００ 联系", "phone"),            # full-width digits
    ("电话：＋８６　１３８　００１３　８０００", "phone"),       # full-width + and ideographic spaces
    ("whatsapp 98765 43210", "phone"),
    ("office (022) 2345 6789", "phone"),
    ("13800138000", "phone"),
    ("mail a.b-c@shop.example.cn now", "email"),
    ("ＭＡＩＬ：ａｂｃ＠ｅｘａｍｐｌｅ．ｃｏｍ", "email"),        # full-width e-mail
    ("id 11010519491231002X here", "national_id"),
    ("SSN 123-45-6789", "national_id"),
    ("aadhaar 1234 5678 9012", "national_id"),
]

KEEP = [
    "Roadster Men 170/92A Navy Shirt",
    "SKU HRX-20931-BLK",
    "code AB-1234567890",
    "MYN1234567890123",
    "Levis 511 Slim Fit Jeans 32/34",
    "Puma Men 2011 Black T-shirt",
    "Pack of 3 Socks",
    "Titan Watch 1578SL02",
    "Nike Air Max 90 EU 42",
    "v2.0.1 firmware",
]


@pytest.mark.parametrize("text,kind", PLANTED)
def test_planted_pii_is_removed(text, kind):
    out, hits = scrub(text)
    assert hits[kind] >= 1, (text, out)
    assert sum(scan(out).values()) == 0, out
    digits = "".join(c for c in fold_fullwidth(out) if c.isdigit())
    assert len(digits) < 6, f"digits of the number survived in {out!r}"


@pytest.mark.parametrize("text", KEEP)
def test_product_codes_and_sizes_survive(text):
    out, hits = scrub(text)
    assert out == text and not hits


def test_none_and_empty():
    assert scrub(None) == (None, {})
    assert scrub("")[0] == ""
