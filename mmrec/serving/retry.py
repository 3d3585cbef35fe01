"""The retry policy of mmrec's clients (the documented client and the load generator).

A recommend call changes nothing a shopper sees and an events batch is idempotent, so both are
retried after a dropped connection, an overload answer or a gateway answer (the request never
reached a live replica); how long to wait is decided here, once.
"""

from __future__ import annotations

import random

# overload (429, 503) and gateway (502, 504) answers: the request was not served, try again later
RETRY_STATUSES = (429, 502, 503, 504)


def retryable(status: int, content_type: str | None = None) -> bool:
    """Whether an answer is worth another try.

    A 500 is retried only when it is not JSON: the app answers its own errors in JSON (a bug
    there would fail the same way again), while Ray Serve's HAProxy front rewrites its 502/503/504
    (no live replica: one being restarted, or a front left behind by a killed `mmrec serve`) into
    a text/plain 500 (docs/serving.md "kill -9 under load").
    """
    return status in RETRY_STATUSES or (status == 500 and "json" not in (content_type or "").lower())


def backoff_s(attempt: int, retry_after: str | None, rng: random.Random) -> float:
    """Wait before retry ``attempt`` (0-based): the server's Retry-After when it gives one (capped
    at 2 s), else 50 ms x 2^attempt with full jitter, so that retrying clients do not arrive together."""
    if retry_after:
        try:
            return min(2.0, max(0.0, float(retry_after)))
        except ValueError:
            pass
    return rng.uniform(0, 0.05 * 2 ** attempt)
