"""Artifact store: manifest written last, verification, atomic CURRENT swap, interruptions."""

from __future__ import annotations

import json
import os

import pytest

from mmrec.artifacts import MANIFEST, ArtifactStore, atomic_write_text
from mmrec.errors import ArtifactError, ArtifactNotFound


def make(store: ArtifactStore, text: str, **kw):
    with store.write("thing", config={"k": text}, **kw) as w:
        (w.path / "data.txt").write_text(text)
        (w.path / "sub").mkdir()
        (w.path / "sub" / "x.bin").write_bytes(b"\x00" * 10)
        w.metrics["n"] = len(text)
    return store.load("thing")


def test_write_then_load_verifies_manifest(store):
    art = make(store, "hello")
    assert art.version == store.current_version("thing")
    m = json.loads((art.path / MANIFEST).read_text())
    assert set(m["files"]) == {"data.txt", "sub/x.bin"}
    assert m["metrics"] == {"n": 5} and m["config"] == {"k": "hello"}
    assert m["kind"] == "thing" and m["schema_version"] == 1 and m["created_at"]
    assert art.file("data.txt").read_text() == "hello"


def test_tampered_file_is_refused(store):
    art = make(store, "hello")
    art.file("data.txt").write_text("HELLO")
    with pytest.raises(ArtifactError, match="sha256"):
        store.load("thing")


def test_interrupted_write_leaves_previous_current_loadable(store):
    first = make(store, "v1")
    with pytest.raises(RuntimeError):
        with store.write("thing") as w:
            (w.path / "data.txt").write_text("half written")
            raise RuntimeError("killed mid-write")
    assert store.current_version("thing") == first.version
    assert store.load("thing").file("data.txt").read_text() == "v1"
    assert store.versions("thing") == [first.version]
    assert not [p for p in store.kind_dir("thing").iterdir() if p.name.startswith(".tmp-")]


def test_crash_without_cleanup_is_never_loadable(store):
    """A process killed before the manifest is written leaves a temp dir nobody can load."""
    first = make(store, "v1")
    gen = store.write("thing")
    w = gen.__enter__()
    (w.path / "data.txt").write_text("partial")
    # simulate SIGKILL: the context manager never exits
    assert store.versions("thing") == [first.version]
    assert store.load("thing").version == first.version
    with pytest.raises(ArtifactNotFound):
        store.load("thing", w.version)
    assert store.clean_tmp("thing") == 1


def test_current_swap_and_versions(store):
    a = make(store, "a")
    b = make(store, "b")
    assert store.versions("thing") == sorted([a.version, b.version])
    assert store.current_version("thing") == b.version
    store.set_current("thing", a.version)
    assert store.load("thing").file("data.txt").read_text() == "a"
    with pytest.raises(ArtifactNotFound):
        store.set_current("thing", "no-such-version")
    assert store.current_version("thing") == a.version


def test_resolve_by_path_and_missing_kind(store):
    a = make(store, "a")
    assert store.resolve(str(a.path), "thing").version == a.version
    assert store.resolve(None, "thing").version == a.version
    with pytest.raises(ArtifactNotFound, match="build one first"):
        store.load("other")


def test_atomic_write_text_replaces(tmp_path):
    p = tmp_path / "CURRENT"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert os.listdir(tmp_path) == ["CURRENT"]
