"""A small client for apps and kiosks: recommend and events calls that retry safely.

A recommend call changes nothing a shopper sees and an events batch is idempotent (every event
carries its ``event_id``), so both are retried after a dropped connection, a 429, a gateway
answer (502/503/504, or a proxy's non-JSON 500: `mmrec.serving.retry.retryable`) — with backoff
and jitter, honouring the server's Retry-After (capped) — and never after another 4xx or the
app's own 500, which would fail the same way again.

    from mmrec.serving.client import MmrecClient
    with MmrecClient("http://127.0.0.1:8000", api_key) as c:
        outfits = c.recommend({"scene": "office", "query_text": "navy blazer for women"})
"""

from __future__ import annotations

import random
import time
from typing import Any

import httpx

from mmrec.serving.retry import backoff_s, retryable


class MmrecClient:
    """Args:
        base_url: the API, e.g. http://127.0.0.1:8000.
        api_key: sent as X-API-Key.
        max_retries: retries after a disconnect or a retryable answer (0: none).
        timeout_s: per attempt.
        http: an httpx client to send through instead (tests pass FastAPI's in-process
            TestClient); the key is added to its headers.
    """

    def __init__(self, base_url: str, api_key: str, *, max_retries: int = 3, timeout_s: float = 10.0,
                 seed: int | None = None, http: httpx.Client | None = None):
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.max_retries = max_retries
        self.retries = 0  # attempts repeated so far (for the caller's metrics)
        self._rng = random.Random(seed)
        self._http = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)
        self._http.headers["X-API-Key"] = api_key

    def __enter__(self) -> "MmrecClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def recommend(self, request: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/recommend; returns the response JSON (raises httpx.HTTPStatusError on 4xx/5xx)."""
        return self._post("/v1/recommend", request)

    def events(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """POST /v1/events (202 or 207 with a result per event); safe to retry: ids dedupe."""
        return self._post("/v1/events", {"events": events})

    def put_user(self, user_id: str, profile: dict[str, Any]) -> dict[str, Any]:
        """PUT /v1/users/{user_id}: store (replace) a profile; a replace is safe to retry."""
        return self._post(f"/v1/users/{user_id}", profile, method="PUT")

    def _post(self, path: str, body: dict[str, Any], method: str = "POST") -> dict[str, Any]:
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                r = self._http.request(method, path, json=body)
            except httpx.TransportError:
                if last:
                    raise
                self.retries += 1
                time.sleep(backoff_s(attempt, None, self._rng))
                continue
            if retryable(r.status_code, r.headers.get("content-type")) and not last:
                self.retries += 1
                time.sleep(backoff_s(attempt, r.headers.get("Retry-After"), self._rng))
                continue
            r.raise_for_status()
            return r.json()
        raise AssertionError("unreachable: the last attempt returns or raises")
