"""The product split every model shares: held-out products are never trained on.

The tagger, the encoder and the benchmark's kiosk photos all use this one function, so a
"held-out product" means the same thing everywhere. Numeric ids use ``id % 10`` (0 = test,
1 = val), matching the measurements in STACK-NOTES; other ids use a stable hash.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")


def bucket(item_id: str, modulo: int = 10) -> int:
    s = str(item_id).strip()
    if s.isdigit():
        return int(s) % modulo
    return int.from_bytes(hashlib.sha1(s.encode("utf-8")).digest()[:8], "big") % modulo


def split_of(item_id: str) -> str:
    """``test`` for bucket 0 (10%), ``val`` for bucket 1 (10%), ``train`` otherwise."""
    b = bucket(item_id)
    return "test" if b == 0 else "val" if b == 1 else "train"


def is_held_out(item_id: str) -> bool:
    """True for products no model may train on (the test split)."""
    return split_of(item_id) == "test"
