"""Request guards: body size cap, backpressure gate, request ids.

The body cap is a pure ASGI middleware so that it sees the raw byte stream: a declared
Content-Length over the cap is refused before reading, and a body sent without one (chunked)
is counted while it streams and refused as soon as it passes the cap -- both with 413. The
accepted body is buffered (at most the cap) and replayed to the app.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Message = dict[str, Any]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


async def _send_json(send: Callable[[Message], Awaitable[None]], status: int, body: dict,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
            (b"connection", b"close"), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": data})


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, with or without Content-Length.

    Args:
        app: the ASGI app to protect.
        max_bytes: the cap on the request body.
        on_reject: called with the reason ("declared" / "streamed") for metrics.
    """

    def __init__(self, app, max_bytes: int, on_reject: Callable[[str], None] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject or (lambda reason: None)

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, {"error": "bad_request",
                                                 "detail": "Content-Length is not an integer"})
                    return
        if declared is not None and declared > self.max_bytes:
            self.on_reject("declared")
            await _send_json(send, 413, _too_large(declared, self.max_bytes))
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_bytes:
                self.on_reject("streamed")
                await _send_json(send, 413, _too_large(total, self.max_bytes, streamed=True))
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def receive_replayed() -> Message:
            if replay:
                return replay.pop()
            return await receive()  # later messages: http.disconnect

        await self.app(scope, receive_replayed, send)


def _too_large(n: int, cap: int, streamed: bool = False) -> dict:
    what = f"more than {cap:,} bytes arrived" if streamed else f"Content-Length {n:,}"
    return {"error": "payload_too_large",
            "detail": f"request body too large: {what}; the limit is {cap:,} bytes"}


class Overloaded(Exception):
    """The gate refused a request; ``status`` is 429 (queue full) or 503 (waited too long)."""

    def __init__(self, status: int, detail: str, retry_after: int):
        super().__init__(detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after


class Gate:
    """At most ``max_inflight`` requests compute at once; ``max_queue`` may wait, for at most
    ``timeout_s``; beyond that the caller is told to come back later (backpressure)."""

    def __init__(self, max_inflight: int, max_queue: int, timeout_s: float, retry_after: int):
        self.max_inflight, self.max_queue = max_inflight, max_queue
        self.timeout_s, self.retry_after = timeout_s, retry_after
        self._sem: asyncio.Semaphore | None = None  # created lazily on the serving loop
        self.waiting = 0
        self.inflight = 0

    def _semaphore(self) -> asyncio.Semaphore:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_inflight)
        return self._sem

    async def __aenter__(self) -> "Gate":
        sem = self._semaphore()
        if sem.locked() and self.waiting >= self.max_queue:
            raise Overloaded(429, f"too many requests: {self.inflight} running and {self.waiting} "
                                  f"waiting (max_queue {self.max_queue})", self.retry_after)
        self.waiting += 1
        try:
            await asyncio.wait_for(sem.acquire(), timeout=self.timeout_s)
        except asyncio.TimeoutError:
            raise Overloaded(503, f"overloaded: waited {self.timeout_s:g}s for a free worker",
                             self.retry_after) from None
        finally:
            self.waiting -= 1
        self.inflight += 1
        return self

    async def __aexit__(self, *exc) -> None:
        self.inflight -= 1
        self._semaphore().release()


class RequestIdMiddleware:
    """Give every request an id (the caller's X-Request-ID when well-formed) and echo it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                text = value.decode("latin-1")
                rid = text if _REQUEST_ID.match(text) else None
        rid = rid or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        scope["state"]["t0"] = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)
