"""The retry policy of mmrec's clients (the documented client and the load generator).

A recommend call changes nothing a shopper sees and an events batch is idempotent, so both are
retried after a dropped connection or an overload answer; how long to wait is decided here, once.
"""

from __future__ import annotations

import random

RETRY_STATUSES = (429, 503)  # overload answers: the request was not served, try again later


def backoff_s(attempt: int, retry_after: str | None, rng: random.Random) -> float:
    """Wait before retry ``attempt`` (0-based): the server's Retry-After when it gives one (capped
    at 2 s), else 50 ms x 2^attempt with full jitter, so that retrying clients do not arrive together."""
    if retry_after:
        try:
            return min(2.0, max(0.0, float(retry_after)))
        except ValueError:
            pass
    return rng.uniform(0, 0.05 * 2 ** attempt)
