"""Pseudonymisation: keyed, stable, and no raw user id (or the key) in any artifact file."""

from __future__ import annotations

import os
import re
import struct

import pyarrow.parquet as pq
import pytest

from mmrec.errors import ConfigError, InputError
from mmrec.rank.config import PseudonymConfig, RankConfig
from mmrec.rank.interactions import (INTERACTIONS_SCHEMA, PROFILES_SCHEMA, Pseudonymiser,
                                     ingest_source, load_key, load_tables)
from rank_fixtures import RAW_HM_CUSTOMERS, RAW_RTR_USERS, write_hm, write_rtr

KEY_HEX = "5e" * 32


def test_pseudonyms_are_keyed_and_stable():
    a = Pseudonymiser(bytes.fromhex(KEY_HEX), namespace="rtr")
    b = Pseudonymiser(bytes.fromhex("17" * 32), namespace="rtr")
    assert a.one("42") == a.one("42") and a.one("42") != a.one("43")
    assert a.one("42") != b.one("42")                                   # another key, other ids
    assert a.one("42") != Pseudonymiser(bytes.fromhex(KEY_HEX), namespace="hm").one("42")
    assert re.fullmatch(r"u_[0-9a-f]{16}", a.one("42"))
    assert a.fingerprint != b.fingerprint and KEY_HEX not in a.fingerprint
    with pytest.raises(ConfigError, match=">= 16 bytes"):
        Pseudonymiser(b"short", namespace="x")


def test_key_from_env_or_created_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MMREC_TEST_KEY", KEY_HEX)
    assert load_key(PseudonymConfig(key_env="MMREC_TEST_KEY")) == bytes.fromhex(KEY_HEX)
    monkeypatch.delenv("MMREC_TEST_KEY")
    kf = tmp_path / "k" / "pseudonym.key"
    key = load_key(PseudonymConfig(key_env="MMREC_TEST_KEY", key_file=str(kf)))
    assert len(key) == 32 and oct(kf.stat().st_mode & 0o777) == "0o600"
    assert load_key(PseudonymConfig(key_env="MMREC_TEST_KEY", key_file=str(kf))) == key
    with pytest.raises(ConfigError, match="MMREC_TEST_KEY"):
        load_key(PseudonymConfig(key_env="MMREC_TEST_KEY", key_file=None))


def _all_values(path):
    """Every value of every column of a parquet file, as strings."""
    out = set()
    for col in pq.read_table(path).to_pylist():
        for v in col.values():
            if isinstance(v, (list, tuple)):
                out.update(str(x) for x in v)
            elif isinstance(v, dict):
                out.update(str(x) for x in v.values())
            out.add(str(v))
    return out


def _scan(root, raw_ids, secrets):
    """Fail on any raw id in any file: decoded parquet values, text and raw bytes."""
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files
    for p in files:
        data = p.read_bytes()
        for s in secrets:
            assert s not in data, f"secret found in {p}"
        for raw in raw_ids:
            assert str(raw).encode() not in data, f"raw id {raw} found in {p}"
            if isinstance(raw, int):
                assert struct.pack("<q", raw) not in data, f"raw id {raw} (int64) in {p}"
        if p.suffix == ".parquet":
            values = _all_values(p)
            assert not {str(r) for r in raw_ids} & values, f"raw id among the values of {p}"


def test_ingest_writes_no_raw_id_or_key(tmp_path, store, monkeypatch):
    monkeypatch.setenv("MMREC_PSEUDONYM_KEY", KEY_HEX)
    cfg = RankConfig(pseudonym=PseudonymConfig(key_file=None))
    rtr = write_rtr(tmp_path / "src" / "rtr.parquet")
    hm = write_hm(tmp_path / "src" / "hm")
    art_r = ingest_source("rtr", rtr, cfg, store)
    art_h = ingest_source("hm", hm, cfg, store)
    _, t = load_tables(store, "rtr", art_r.version)
    assert t.interactions.schema.equals(INTERACTIONS_SCHEMA, check_metadata=False)
    assert t.profiles.schema.equals(PROFILES_SCHEMA, check_metadata=False)
    assert t.interactions.num_rows == 6 and t.profiles.num_rows == 6
    assert all(u.startswith("u_") for u in t.interactions["user_id"].to_pylist())
    assert len(set(t.interactions["user_id"].to_pylist())) == len(RAW_RTR_USERS)
    # age 116 is not an age: dropped to unknown rather than trusted
    assert None in t.profiles["age"].to_pylist()
    _, h = load_tables(store, "hm", art_h.version)
    assert "postal_code" not in h.profiles.column_names
    assert art_r.manifest["pseudonym_key_fingerprint"] == art_h.manifest["pseudonym_key_fingerprint"]
    # the same key gives the same pseudonyms run after run (joins across ingests work)
    again = ingest_source("rtr", rtr, cfg, store)
    assert load_tables(store, "rtr", again.version)[1].interactions["user_id"].equals(
        t.interactions["user_id"])
    _scan(store.root, RAW_RTR_USERS + RAW_HM_CUSTOMERS + ["p" * 64],
          [KEY_HEX.encode(), bytes.fromhex(KEY_HEX)])


def test_ingest_errors_name_the_fix(tmp_path, store, monkeypatch):
    monkeypatch.setenv("MMREC_PSEUDONYM_KEY", KEY_HEX)
    cfg = RankConfig()
    with pytest.raises(InputError, match="RTR parquet not found"):
        ingest_source("rtr", tmp_path / "nope.parquet", cfg, store)
    with pytest.raises(InputError, match="simulate"):
        ingest_source("sim", None, cfg, store)
    assert os.environ["MMREC_PSEUDONYM_KEY"] == KEY_HEX
