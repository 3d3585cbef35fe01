"""Interaction and profile contracts, keyed-hash pseudonymisation, and the RTR / H&M adapters.

Raw user ids stop here: every adapter replaces them with ``Pseudonymiser`` digests before a
table exists, and drops quasi-identifiers (H&M postal codes). The key comes from the
environment (``MMREC_PSEUDONYM_KEY``) or a local key file outside the artifact tree; artifacts
record only a fingerprint of it, so two artifacts can be checked for the same key.

Profiles are versioned by ``as_of`` time (one row per user and declaration time, null =
static), so features join the profile a user had at the event time (see
`mmrec.rank.features.asof_index`), never a later one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmrec import kinds
from mmrec.artifacts import Artifact, ArtifactStore, sha256_file
from mmrec.errors import ConfigError, InputError
from mmrec.rank.config import PseudonymConfig, RankConfig

SCHEMA_VERSION = 1
EVENTS = ("impression", "click", "purchase", "rental", "rating")
CHANNELS = ("app", "kiosk", "web")
# the artifact kind of each source's interactions
KIND_OF = {"rtr": kinds.INTERACTIONS_RTR, "hm": kinds.INTERACTIONS_HM, "sim": kinds.INTERACTIONS_SIM}
SOURCES = tuple(KIND_OF)

INTERACTIONS_FILE = "interactions.parquet"
PROFILES_FILE = "profiles.parquet"
ITEMS_FILE = "items.parquet"

INTERACTIONS_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),     # pseudonym, never the raw id
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("event", pa.string(), nullable=False),       # one of EVENTS
    pa.field("value", pa.float32()),                      # rating/10 (RTR), price (H&M): LABEL ONLY
    pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("request_id", pa.string()),                  # groups one impression list
    pa.field("position", pa.int16()),                     # 0-based slot in that list
    pa.field("occasion", pa.string()),                    # context: RTR rented_for / usage
    pa.field("scene", pa.string()),
    pa.field("season", pa.string()),
    pa.field("channel", pa.string()),
    pa.field("recall_rank", pa.int16()),                  # fused recall rank (1-based), if logged
    pa.field("recall_routes", pa.int8()),                 # how many recall routes found it
    pa.field("review_fit", pa.string()),                  # review-time (RTR): LABEL ONLY
], metadata={"mmrec.schema": "interactions", "mmrec.schema_version": str(SCHEMA_VERSION)})

PROFILES_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("as_of", pa.timestamp("us", tz="UTC")),      # declared at; null = static
    pa.field("source", pa.string(), nullable=False),
    pa.field("age", pa.float32()),
    pa.field("gender", pa.string()),                      # men | women | null
    pa.field("body_type", pa.string()),
    pa.field("size", pa.float32()),                       # source's numeric size scale
    pa.field("height_cm", pa.float32()),
    pa.field("weight_kg", pa.float32()),
    pa.field("bust_band", pa.float32()),
    pa.field("cup", pa.float32()),                        # ordinal: aa=0, a=1, b=2, ...
    pa.field("preferred_occasions", pa.list_(pa.string())),
    pa.field("price_band", pa.string()),
    pa.field("segment", pa.string()),
    pa.field("split_bucket", pa.int16(), nullable=False),  # 0..99, stable per user
    pa.field("extra", pa.map_(pa.string(), pa.string())),
], metadata={"mmrec.schema": "profiles", "mmrec.schema_version": str(SCHEMA_VERSION)})

# Fields written after the event (the review): labels at most, never features.
REVIEW_TIME_FIELDS = ("value", "review_fit", "rating", "fit", "recommend", "review_text",
                      "review_summary")

CUP_ORDER = {"aa": 0, "a": 1, "b": 2, "c": 3, "d": 4, "dd": 5, "e": 5, "ddd": 6, "f": 6,
             "g": 7, "h": 8, "i": 9, "j": 10}
AGE_RANGE = (15.0, 90.0)  # RTR holds ages like 116 and 0: outside this range -> unknown


# -- pseudonymisation ----------------------------------------------------------------------

class Pseudonymiser:
    """HMAC-SHA256 of ``namespace + raw id`` under a secret key; vectorised over unique ids."""

    def __init__(self, key: bytes, *, namespace: str, digest_chars: int = 16):
        if len(key) < 16:
            raise ConfigError(f"pseudonymisation key must be >= 16 bytes, got {len(key)}")
        self._key = key
        self.namespace = namespace
        self.digest_chars = digest_chars

    @classmethod
    def from_config(cls, cfg: PseudonymConfig, *, namespace: str) -> "Pseudonymiser":
        return cls(load_key(cfg), namespace=namespace, digest_chars=cfg.digest_chars)

    @property
    def fingerprint(self) -> str:
        """Identifies the key (same key -> same fingerprint) without revealing it."""
        return hmac.new(self._key, b"mmrec-key-fingerprint", hashlib.sha256).hexdigest()[:12]

    def one(self, raw: str) -> str:
        msg = f"{self.namespace}\x1f{raw}".encode("utf-8")
        return "u_" + hmac.new(self._key, msg, hashlib.sha256).hexdigest()[: self.digest_chars]

    def array(self, raw: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Pseudonymise a column (any type; compared as its string form)."""
        raw = pc.cast(raw, pa.string())
        if isinstance(raw, pa.ChunkedArray):
            raw = raw.combine_chunks()
        if raw.null_count:
            raise InputError(f"{raw.null_count} rows have no user id; drop them before ingest")
        enc = pc.dictionary_encode(raw)
        uniq = pa.array([self.one(v) for v in enc.dictionary.to_pylist()], pa.string())
        return pc.take(uniq, enc.indices)


def load_key(cfg: PseudonymConfig) -> bytes:
    """The secret key: env var ``cfg.key_env`` (hex or text), else ``cfg.key_file`` (created)."""
    env = os.environ.get(cfg.key_env)
    if env:
        try:
            return bytes.fromhex(env)
        except ValueError:
            return env.encode("utf-8")
    if cfg.key_file is None:
        raise ConfigError(f"set {cfg.key_env} to a secret (e.g. `export {cfg.key_env}=$(python "
                          f"-c 'import secrets; print(secrets.token_hex(32))')`)")
    path = Path(cfg.key_file).expanduser()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def split_bucket(raw: pa.Array, namespace: str) -> pa.Array:
    """0..99 from an unkeyed hash of the raw id: splits stay the same whatever the key.

    100 buckets carry under 7 bits, far too little to re-identify anyone.
    """
    vals = pc.cast(raw, pa.string())
    if isinstance(vals, pa.ChunkedArray):
        vals = vals.combine_chunks()
    enc = pc.dictionary_encode(vals)
    uniq = np.array([int.from_bytes(hashlib.sha1(f"{namespace}:{v}".encode()).digest()[:4], "big")
                     % 100 for v in enc.dictionary.to_pylist()], np.int16)
    return pa.array(uniq[np.asarray(enc.indices)], pa.int16())


def age_band(age: np.ndarray) -> np.ndarray:
    """'18-24', '25-34', ... for segments; NaN -> 'unknown'."""
    edges = np.array([0, 25, 35, 45, 55, 200])
    names = np.array(["<25", "25-34", "35-44", "45-54", "55+"])
    out = names[np.clip(np.searchsorted(edges, np.nan_to_num(age, nan=0), side="right") - 1, 0, 4)]
    return np.where(np.isnan(age), "unknown", out)


def segment_of(gender, age: np.ndarray) -> np.ndarray:
    """User segment used for segment popularity: ``<gender or any>:<age band>``."""
    g = np.array(["any" if v is None else str(v) for v in gender], dtype=object)
    return (g + ":" + age_band(np.asarray(age, np.float64)).astype(object)).astype(str)


# -- adapters ------------------------------------------------------------------------------

@dataclass
class SourceTables:
    interactions: pa.Table
    profiles: pa.Table
    items: pa.Table
    notes: dict


def _f32(col) -> np.ndarray:
    """Float column as numpy with NaN for nulls."""
    col = pc.cast(col, pa.float32())
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return np.asarray(col.fill_null(np.nan).to_numpy(zero_copy_only=False), np.float32)


def _nullable(a: np.ndarray) -> pa.Array:
    """numpy float -> arrow float32 with NaN stored as null."""
    return pa.array(np.asarray(a, np.float32), pa.float32(), from_pandas=True)


def _clip_age(a: np.ndarray) -> np.ndarray:
    return np.where((a >= AGE_RANGE[0]) & (a <= AGE_RANGE[1]), a, np.nan).astype(np.float32)


def _str_col(col) -> pa.Array:
    col = pc.cast(col, pa.string())
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def read_rtr(path: str | Path, pseudo: Pseudonymiser) -> SourceTables:
    """Rent the Runway rentals -> interactions (event ``rental``) + profile snapshots + items.

    The review date is the only time stamp RTR has, so it stands for the rental time. Rating and
    fit are review-time fields: kept as labels (``value``, ``review_fit``), never features.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"RTR parquet not found: {path} (expected rtr/interactions.parquet)")
    t = pq.read_table(path)
    need = {"user_id", "item_id", "rating", "rented_for", "body_type", "category", "size", "age",
            "height_in", "weight_lbs", "bust_size_num", "bust_size_letter", "review_date", "fit"}
    missing = sorted(need - set(t.column_names))
    if missing:
        raise InputError(f"{path}: missing RTR columns {missing}")
    ts = pc.assume_timezone(pc.cast(t["review_date"], pa.timestamp("us")), "UTC")
    users = pseudo.array(t["user_id"])
    n = t.num_rows
    inter = pa.table({
        "user_id": users,
        "item_id": _str_col(t["item_id"]),
        "event": pa.array(["rental"] * n, pa.string()),
        "value": pc.divide(pc.cast(t["rating"], pa.float32()), pa.scalar(10.0, pa.float32())),
        "ts": ts,
        "request_id": pa.nulls(n, pa.string()),
        "position": pa.nulls(n, pa.int16()),
        "occasion": _str_col(t["rented_for"]),
        "scene": pa.nulls(n, pa.string()),
        "season": pa.nulls(n, pa.string()),
        "channel": pa.array(["web"] * n, pa.string()),
        "recall_rank": pa.nulls(n, pa.int16()),
        "recall_routes": pa.nulls(n, pa.int8()),
        "review_fit": _str_col(t["fit"]),
    }, schema=INTERACTIONS_SCHEMA)
    cup = np.array([CUP_ORDER.get(c, np.nan) if c else np.nan
                    for c in _str_col(t["bust_size_letter"]).to_pylist()], np.float32)
    age = _clip_age(_f32(t["age"]))
    gender = np.array(["women"] * n, dtype=object)  # RTR rents women's clothing only
    profiles = pa.table({
        "user_id": users,
        "as_of": ts,
        "source": pa.array(["rtr"] * n, pa.string()),
        "age": _nullable(age),
        "gender": pa.array(gender, pa.string()),
        "body_type": _str_col(t["body_type"]),
        "size": _nullable(_f32(t["size"])),
        "height_cm": _nullable(_f32(t["height_in"]) * np.float32(2.54)),
        "weight_kg": _nullable(_f32(t["weight_lbs"]) * np.float32(0.45359237)),
        "bust_band": _nullable(_f32(t["bust_size_num"])),
        "cup": _nullable(cup),
        "preferred_occasions": pa.nulls(n, pa.list_(pa.string())),
        "price_band": pa.nulls(n, pa.string()),
        "segment": pa.array(segment_of(gender, age), pa.string()),
        "split_bucket": split_bucket(t["user_id"], "rtr"),
        "extra": pa.nulls(n, pa.map_(pa.string(), pa.string())),
    }, schema=PROFILES_SCHEMA)
    items = _rtr_items(t)
    return SourceTables(inter, profiles, items, {"rows": n, "source_file": str(path)})


def _rtr_items(t: pa.Table) -> pa.Table:
    g = pa.table({"item_id": _str_col(t["item_id"]), "category": _str_col(t["category"])})
    agg = g.group_by("item_id").aggregate([("category", "min")])
    return pa.table({"item_id": agg["item_id"], "category": agg["category_min"]}).sort_by("item_id")


HM_ITEM_COLUMNS = ("product_type_name", "product_group_name", "graphical_appearance_name",
                   "colour_group_name", "perceived_colour_master_name", "department_name",
                   "index_name", "index_group_name", "section_name", "garment_group_name")


def read_hm(folder: str | Path, pseudo: Pseudonymiser) -> SourceTables:
    """H&M sample: purchases (value = price), static customer profiles, article features.

    Postal codes are quasi-identifiers and are dropped here.
    """
    folder = Path(folder)
    files = {k: folder / f"{k}_sample.parquet" for k in ("transactions", "customers", "articles")}
    for k, p in files.items():
        if not p.is_file():
            raise InputError(f"H&M {k} file not found: {p} (expected hm_sample/data/sample/)")
    tx = pq.read_table(files["transactions"])
    cu = pq.read_table(files["customers"])
    ar = pq.read_table(files["articles"])
    n = tx.num_rows
    ts = pc.assume_timezone(pc.strptime(tx["t_dat"], format="%Y-%m-%d", unit="us"), "UTC")
    inter = pa.table({
        "user_id": pseudo.array(tx["customer_id"]),
        "item_id": _str_col(tx["article_id"]),
        "event": pa.array(["purchase"] * n, pa.string()),
        "value": pc.cast(tx["price"], pa.float32()),
        "ts": ts,
        "request_id": pa.nulls(n, pa.string()),
        "position": pa.nulls(n, pa.int16()),
        "occasion": pa.nulls(n, pa.string()),
        "scene": pa.nulls(n, pa.string()),
        "season": pa.nulls(n, pa.string()),
        "channel": pa.array(["web"] * n, pa.string()),
        "recall_rank": pa.nulls(n, pa.int16()),
        "recall_routes": pa.nulls(n, pa.int8()),
        "review_fit": pa.nulls(n, pa.string()),
    }, schema=INTERACTIONS_SCHEMA)
    m = cu.num_rows
    age = _clip_age(_f32(cu["age"]))
    extra = []
    for club, news, fn, active in zip(*(cu[c].to_pylist() for c in
                                        ("club_member_status", "fashion_news_frequency", "FN", "Active"))):
        extra.append([(k, str(v)) for k, v in (("club", club), ("news", news), ("fn", fn),
                                               ("active", active)) if v is not None])
    gender = np.array([None] * m, dtype=object)  # H&M customers carry no gender
    profiles = pa.table({
        "user_id": pseudo.array(cu["customer_id"]),
        "as_of": pa.nulls(m, pa.timestamp("us", tz="UTC")),
        "source": pa.array(["hm"] * m, pa.string()),
        "age": _nullable(age),
        "gender": pa.array(gender, pa.string()),
        "body_type": pa.nulls(m, pa.string()),
        "size": pa.nulls(m, pa.float32()),
        "height_cm": pa.nulls(m, pa.float32()),
        "weight_kg": pa.nulls(m, pa.float32()),
        "bust_band": pa.nulls(m, pa.float32()),
        "cup": pa.nulls(m, pa.float32()),
        "preferred_occasions": pa.nulls(m, pa.list_(pa.string())),
        "price_band": pa.nulls(m, pa.string()),
        "segment": pa.array(segment_of(gender, age), pa.string()),
        "split_bucket": split_bucket(cu["customer_id"], "hm"),
        "extra": pa.array(extra, pa.map_(pa.string(), pa.string())),
    }, schema=PROFILES_SCHEMA)
    items = pa.table({"item_id": _str_col(ar["article_id"]),
                      **{c: _str_col(ar[c]) for c in HM_ITEM_COLUMNS}}).sort_by("item_id")
    return SourceTables(inter, profiles, items, {"rows": n, "source_file": str(files["transactions"])})


# -- artifacts -----------------------------------------------------------------------------

def kind_of(source: str) -> str:
    if source not in SOURCES:
        raise InputError(f"unknown interaction source {source!r}; choose one of {list(SOURCES)}")
    return KIND_OF[source]


def default_source_path(source: str, cfg: RankConfig) -> Path:
    base = cfg.shared_path()
    return {"rtr": base / "rtr" / "interactions.parquet",
            "hm": base / "hm_sample" / "data" / "sample"}[source]


def ingest_source(source: str, path: str | Path | None, cfg: RankConfig,
                  store: ArtifactStore) -> Artifact:
    """Read a real source with its adapter and write an ``interactions_<source>`` artifact."""
    if source not in ("rtr", "hm"):
        raise InputError(f"--source must be rtr or hm (simulated logs come from `mmrec rank "
                         f"simulate`), got {source!r}")
    path = Path(path) if path is not None else default_source_path(source, cfg)
    pseudo = Pseudonymiser.from_config(cfg.pseudonym, namespace=source)
    tables = (read_rtr if source == "rtr" else read_hm)(path, pseudo)
    return write_tables(store, source, tables, cfg, key_fingerprint=pseudo.fingerprint,
                        inputs=[path])


def write_tables(store: ArtifactStore, source: str, tables: SourceTables, cfg: RankConfig, *,
                 key_fingerprint: str | None, inputs: list[Path] = (),
                 extra_files: dict[str, pa.Table] | None = None,
                 artifact_inputs: list[Artifact] = ()) -> Artifact:
    with store.write(kind_of(source), config=cfg.model_dump(mode="json"),
                     schema_version=SCHEMA_VERSION) as w:
        pq.write_table(tables.interactions, w.path / INTERACTIONS_FILE, compression="zstd")
        pq.write_table(tables.profiles, w.path / PROFILES_FILE, compression="zstd")
        pq.write_table(tables.items, w.path / ITEMS_FILE, compression="zstd")
        for name, table in (extra_files or {}).items():
            (w.path / name).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, w.path / name, compression="zstd")
        for p in inputs:
            p = Path(p)
            w.add_input(p, sha256=sha256_file(p) if p.is_file() else None)
        for a in artifact_inputs:
            w.add_artifact_input(a)
        inter = tables.interactions
        events = pc.value_counts(inter["event"]).to_pylist()
        w.metrics = {
            "interactions": inter.num_rows,
            "users": len(pc.unique(inter["user_id"])),
            "items": len(pc.unique(inter["item_id"])),
            "events": {e["values"]: e["counts"] for e in events},
            "ts_min": str(pc.min(inter["ts"]).as_py()), "ts_max": str(pc.max(inter["ts"]).as_py()),
        }
        w.extra["source"] = source
        w.extra["pseudonym_key_fingerprint"] = key_fingerprint
        w.extra["simulated"] = source == "sim"
        w.extra["notes"] = json.loads(json.dumps(tables.notes, default=str))
    return store.load(kind_of(source), w.version)


def load_tables(store: ArtifactStore, source: str, version: str | None = None
                ) -> tuple[Artifact, SourceTables]:
    art = store.load(kind_of(source), version)
    return art, SourceTables(pq.read_table(art.file(INTERACTIONS_FILE)),
                             pq.read_table(art.file(PROFILES_FILE)),
                             pq.read_table(art.file(ITEMS_FILE)), art.manifest.get("notes", {}))
