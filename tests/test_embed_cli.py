"""`mmrec embed ...` / `mmrec index ...` in-process on a tiny catalog, and the demo builder."""

from __future__ import annotations

import json

import pytest

from embed_fixtures import ingest, write_catalog
from mmrec.artifacts import ArtifactStore
from mmrec.cli import main

pytest.importorskip("torch")


def test_cli_train_embed_index_eval_latency(tmp_path, capsys):
    store = ArtifactStore(tmp_path / "art")
    ingest(store, write_catalog(tmp_path / "src", 100))
    base = ["--artifacts", str(store.root), "--profile", "tiny", "--quiet"]

    assert main([*base, "embed", "train", "--set", "train.epochs=2"]) == 0
    enc = capsys.readouterr().out.strip()
    assert store.current_version("encoder") == enc
    assert main([*base, "embed", "catalog"]) == 0
    vec = capsys.readouterr().out.strip()
    assert main([*base, "index", "build"]) == 0
    idx = capsys.readouterr().out.strip()
    assert store.load("index", idx).manifest["vectors_version"] == vec

    assert main([*base, "index", "remove", "--ids", "1003", "1004"]) == 0
    out = capsys.readouterr()
    assert "removed 2" in out.err and store.current_version("index") == out.out.strip() != idx
    assert main([*base, "index", "add"]) == 0  # the two come back from the vectors artifact
    assert "added 2, updated 0" in capsys.readouterr().err
    assert main([*base, "index", "remove"]) == 2
    assert "nothing to remove" in capsys.readouterr().err

    assert main([*base, "embed", "eval"]) == 0
    ev = capsys.readouterr().out.strip()
    m = json.loads((store.root / "embed_eval" / ev / "metrics.json").read_text())
    assert m["gallery_size"] == 10  # ids 1000..1099: every id % 10 == 0 is held out
    assert set(m["results"]) == {"title", "category", "colour", "usage", "attribute_phrase"}
    for systems in m["results"].values():
        assert {"text_image", "bm25", "attribute", "fusion", "random", "text_image@gallery"} <= set(systems)
    assert [t["metric"] for t in m["targets"]][:5] == ["R@10", "P@10", "P@10", "P@10", "AP"]
    assert main([*base, "embed", "eval", "--split", "val", "--tune"]) == 0
    mv = json.loads((store.root / "embed_eval" / capsys.readouterr().out.strip() / "metrics.json").read_text())
    assert mv["split"] == "val" and len(mv["tuning"]) == 20
    assert mv["tuning"][0]["objective"] >= mv["tuning"][-1]["objective"]

    assert main([*base, "index", "latency", "--n", "3000", "--dim", "16", "--queries", "40",
                 "--set", "flat_max=100", "--nprobe", "4", "8"]) == 0
    b = json.loads((store.root / "index_latency" / capsys.readouterr().out.strip() / "metrics.json").read_text())
    assert b["kind"] == "ivf_sq8" and b["threads"] == 1 and len(b["sweep"]) == 2
    assert all(0 < r["recall@100"] <= 1 and r["p99_ms"] > 0 for r in b["sweep"])
    assert b["sweep"][1]["recall@100"] >= b["sweep"][0]["recall@100"]  # more probes, more recall

    assert main([*base, "embed", "catalog", "--encoder", "no-such-version"]) == 2


def test_ensure_recall_artifacts_reuses_what_exists(tmp_path):
    from mmrec.recall.ensure import ensure_recall_artifacts

    store = ArtifactStore(tmp_path / "art")
    src = write_catalog(tmp_path / "src", 40)
    ingest(store, src)
    logs: list[str] = []
    first = ensure_recall_artifacts(store, profile="tiny", progress=False, log=logs.append)
    assert set(first) == {"encoder", "vectors", "index"}
    second = ensure_recall_artifacts(store, profile="tiny", progress=False, log=logs.append)
    assert {k: a.version for k, a in second.items()} == {k: a.version for k, a in first.items()}
    assert any("reusing index" in s for s in logs)
    # a catalog change: vectors grow incrementally and the index is updated, not rebuilt
    lines = (src / "styles.csv").read_text().splitlines()
    (src / "styles.csv").write_text("\n".join(lines[:-3]) + "\n")
    ingest(store, src)
    third = ensure_recall_artifacts(store, profile="tiny", progress=False, log=logs.append)
    assert third["encoder"].version == first["encoder"].version
    assert third["index"].metrics["vectors"] == 37 and any("updated in place" in s for s in logs)
