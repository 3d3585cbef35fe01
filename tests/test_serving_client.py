"""The documented client retries what is safe to retry, and nothing else."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from mmrec.serving.client import MmrecClient


@pytest.fixture()
def flaky():
    """A loopback server that answers from a script of (status, headers) per request."""
    script: list[tuple[int, dict]] = []
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            status, headers = script.pop(0) if script else (200, {})
            body = json.dumps({"ok": status < 400, "key": self.headers.get("X-API-Key")}).encode()
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", **headers}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # keep test output clean
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", script, seen
    srv.shutdown()
    srv.server_close()


def test_overload_is_retried_with_the_same_body_until_served(flaky):
    url, script, seen = flaky
    script += [(503, {"Retry-After": "0"}), (429, {"Retry-After": "0"})]
    with MmrecClient(url, "secret", seed=0) as c:
        out = c.recommend({"scene": "office"})
        assert out == {"ok": True, "key": "secret"} and c.retries == 2
    assert seen == [{"scene": "office"}] * 3


def test_a_client_error_is_not_retried_and_retries_are_bounded(flaky):
    url, script, seen = flaky
    script += [(422, {})]
    with MmrecClient(url, "k") as c, pytest.raises(httpx.HTTPStatusError):
        c.events([{"event_id": "e1"}])
    assert len(seen) == 1
    script += [(503, {"Retry-After": "0"})] * 3
    with MmrecClient(url, "k", max_retries=2) as c, pytest.raises(httpx.HTTPStatusError):
        c.recommend({"scene": "office"})
    assert len(seen) == 4 and not script  # 1 + 2 retries, each answered 503: the last is raised


def test_a_dropped_connection_is_retried():
    with MmrecClient("http://127.0.0.1:9", "k", max_retries=1, timeout_s=1) as c, \
            pytest.raises(httpx.TransportError):
        c.recommend({"scene": "office"})  # nothing listens on port 9: both attempts refused
    assert c.retries == 1


def test_gateway_answers_are_retried_but_not_the_apps_own_500(flaky):
    """Ray Serve's HAProxy front answers 502/503/504 as a text/plain 500 (no live replica): retried;
    the app's own 500 is JSON and would fail again: raised at once."""
    from mmrec.serving.retry import retryable

    assert retryable(500, "text/plain") and retryable(500, None) and retryable(502) and retryable(504)
    assert not retryable(500, "application/json") and not retryable(422) and not retryable(404)
    url, script, seen = flaky
    script += [(502, {}), (500, {"Content-Type": "text/plain"})]
    with MmrecClient(url, "k", seed=0) as c:
        assert c.recommend({"scene": "office"})["ok"] and c.retries == 2
    script += [(500, {"Content-Type": "application/json"})]
    with MmrecClient(url, "k") as c, pytest.raises(httpx.HTTPStatusError):
        c.recommend({"scene": "office"})
    assert len(seen) == 4
