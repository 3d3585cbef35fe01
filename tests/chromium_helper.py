"""Headless Chromium for browser tests: find or install it, screenshot a page, dump its DOM.

Debian's ``chromium`` package; installed with apt-get when missing and the tests run as root,
otherwise the calling test is skipped with the reason. Every call gets a fresh profile
directory, so runs never share state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars")


def chromium() -> str:
    """Path of the chromium binary, installing it if possible; skips the test otherwise."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and cannot be installed here (needs root + apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            pytest.skip(f"could not install chromium ({' '.join(cmd)}): {r.stderr[-300:]}")
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("apt-get installed chromium but no `chromium` binary is on PATH")
    return path


def _run(url: str, extra: list[str], *, timeout: float = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="mmrec-chromium-") as profile:
        cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def screenshot(url: str, path: Path, *, width: int = 1280, height: int = 2400) -> Path:
    """Render ``url`` and save a PNG screenshot to ``path``."""
    r = _run(url, [f"--window-size={width},{height}", f"--screenshot={path}"])
    if not Path(path).is_file():
        raise AssertionError(f"chromium wrote no screenshot (exit {r.returncode}): {r.stderr[-500:]}")
    return Path(path)


def dump_dom(url: str, *, budget_ms: int = 5000) -> str:
    """The DOM after the page ran its scripts (``--dump-dom``)."""
    r = _run(url, [f"--virtual-time-budget={budget_ms}", "--dump-dom"])
    if r.returncode != 0 or not r.stdout:
        raise AssertionError(f"chromium --dump-dom failed (exit {r.returncode}): {r.stderr[-500:]}")
    return r.stdout
