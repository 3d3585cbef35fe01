"""Versioned artifact directories with a manifest written last and an atomic CURRENT pointer.

Layout::

    ROOT/<kind>/<version>/            one finished artifact (files + manifest.json)
    ROOT/<kind>/.tmp-<version>/       being written; never loadable (no manifest until the end,
                                      and not under a version name until the final rename)
    ROOT/<kind>/CURRENT               text file holding the current version's name

Writing: files go into the temp dir; on success every file is hashed, ``manifest.json`` is
written and fsynced, the dir is renamed to its version name, then CURRENT is replaced with
temp file + fsync + ``os.replace``. A crash at any point leaves the previous CURRENT valid.
Loading verifies the manifest (kind, version) and the sha256 of every listed file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from mmrec import __version__
from mmrec.errors import ArtifactError, ArtifactNotFound

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
TMP_PREFIX = ".tmp-"
DEFAULT_ROOT = Path("artifacts")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    # Directory fsync makes renames durable on POSIX; not supported everywhere, hence best effort.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new content, never a mix."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def new_version() -> str:
    """A sortable, unique version name: UTC timestamp + random suffix."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z-" + secrets.token_hex(3)


@dataclass
class Artifact:
    """A finished, verified artifact."""

    kind: str
    version: str
    path: Path
    manifest: dict[str, Any]

    def file(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise ArtifactError(
                f"{self.kind}/{self.version} has no file {name!r}; it has {sorted(self.manifest['files'])}"
            )
        return self.path / name

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest.get("metrics", {})

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})


@dataclass
class ArtifactWriter:
    """Handed out by `ArtifactStore.write`; fill ``path`` with files, set metrics and inputs."""

    kind: str
    version: str
    path: Path
    config: dict[str, Any]
    schema_version: int
    metrics: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add_input(self, path: str | Path, *, sha256: str | None = None, kind: str | None = None,
                  version: str | None = None) -> None:
        """Record an input; files are hashed, directories and artifacts are named by version."""
        p = Path(path)
        entry: dict[str, Any] = {"path": str(p)}
        if kind:
            entry["kind"], entry["version"] = kind, version
        if sha256 is not None:
            entry["sha256"] = sha256
        elif p.is_file():
            entry["sha256"] = sha256_file(p)
        self.inputs.append(entry)

    def add_artifact_input(self, art: Artifact) -> None:
        manifest_sha = sha256_file(art.path / MANIFEST)
        self.add_input(art.path, sha256=manifest_sha, kind=art.kind, version=art.version)


class ArtifactStore:
    """All artifacts under one root directory (``--artifacts DIR``, default ``./artifacts``)."""

    def __init__(self, root: str | Path = DEFAULT_ROOT):
        self.root = Path(root)

    def kind_dir(self, kind: str) -> Path:
        if not kind or "/" in kind or kind.startswith("."):
            raise ArtifactError(f"invalid artifact kind {kind!r}")
        return self.root / kind

    # -- writing -------------------------------------------------------------------------
    @contextmanager
    def write(self, kind: str, *, config: dict[str, Any] | None = None, schema_version: int = 1,
              make_current: bool = True, version: str | None = None) -> Iterator[ArtifactWriter]:
        """Create a new version of ``kind``; it becomes loadable only if the block completes."""
        version = version or new_version()
        kdir = self.kind_dir(kind)
        kdir.mkdir(parents=True, exist_ok=True)
        final = kdir / version
        if final.exists():
            raise ArtifactError(f"{final} already exists; versions are immutable")
        tmp = kdir / f"{TMP_PREFIX}{version}"
        tmp.mkdir()
        writer = ArtifactWriter(kind, version, tmp, dict(config or {}), schema_version)
        try:
            yield writer
            self._finish(writer, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if make_current:
            self.set_current(kind, version)

    def _finish(self, w: ArtifactWriter, final: Path) -> None:
        files: dict[str, str] = {}
        for p in sorted(w.path.rglob("*")):
            if p.is_file() and p.name != MANIFEST:
                files[p.relative_to(w.path).as_posix()] = sha256_file(p)
        manifest = {
            "kind": w.kind,
            "version": w.version,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "mmrec_version": __version__,
            "schema_version": w.schema_version,
            "inputs": w.inputs,
            "config": w.config,
            "metrics": w.metrics,
            "files": files,
            **w.extra,
        }
        # manifest last: its presence marks a complete directory
        with open(w.path / MANIFEST, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(w.path)
        os.rename(w.path, final)
        _fsync_dir(final.parent)

    def set_current(self, kind: str, version: str) -> None:
        """Point CURRENT at an existing, verified version (atomic swap)."""
        self.load(kind, version)
        atomic_write_text(self.kind_dir(kind) / CURRENT, version + "\n")

    # -- reading -------------------------------------------------------------------------
    def current_version(self, kind: str) -> str | None:
        try:
            text = (self.kind_dir(kind) / CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return text or None

    def versions(self, kind: str) -> list[str]:
        """Finished versions of ``kind``, oldest first."""
        kdir = self.kind_dir(kind)
        if not kdir.is_dir():
            return []
        return sorted(p.name for p in kdir.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file())

    def load(self, kind: str, version: str | None = None, *, verify: bool = True) -> Artifact:
        """Load ``kind`` at ``version`` (default: CURRENT) and verify it against its manifest."""
        if version is None:
            version = self.current_version(kind)
            if version is None:
                raise ArtifactNotFound(
                    f"no current {kind!r} artifact under {self.root}; build one first "
                    f"(see `mmrec --help`)")
        return load_dir(self.kind_dir(kind) / version, kind, verify=verify)

    def resolve(self, ref: str | Path | None, kind: str) -> Artifact:
        """Load an artifact given as None/'current', a version name, or a path to its directory."""
        if ref is None or str(ref) in ("", "current", "CURRENT"):
            return self.load(kind)
        p = Path(ref)
        if (p / MANIFEST).is_file():
            return load_dir(p, kind)
        return self.load(kind, str(ref))

    def clean_tmp(self, kind: str) -> int:
        """Remove leftovers of interrupted writes; returns how many were removed."""
        kdir = self.kind_dir(kind)
        n = 0
        if kdir.is_dir():
            for p in kdir.iterdir():
                if p.name.startswith(TMP_PREFIX) and p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                    n += 1
        return n


def load_dir(path: str | Path, kind: str, *, verify: bool = True) -> Artifact:
    """Load and verify the artifact directory ``path``, which must be of ``kind``."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ArtifactNotFound(f"{path} is not a finished {kind!r} artifact (no {MANIFEST})")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{mpath}: manifest is not valid JSON: {e}") from e
    if manifest.get("kind") != kind or manifest.get("version") != path.name:
        raise ArtifactError(
            f"{mpath}: manifest says {manifest.get('kind')}/{manifest.get('version')}, "
            f"expected {kind}/{path.name}")
    if verify:
        for name, digest in manifest.get("files", {}).items():
            fp = path / name
            if not fp.is_file():
                raise ArtifactError(f"{kind}/{path.name}: file {name} listed in the manifest is missing")
            if sha256_file(fp) != digest:
                raise ArtifactError(f"{kind}/{path.name}: file {name} does not match its sha256")
    return Artifact(kind, path.name, path, manifest)
