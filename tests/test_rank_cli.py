"""`mmrec rank ...` in-process with the tiny profile; plus a quick check on the real RTR split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmrec.artifacts import ArtifactStore
from mmrec.cli import main
from rank_fixtures import write_hm, write_items, write_rtr


def test_simulate_train_eval_latency_user(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MMREC_PSEUDONYM_KEY", "ab" * 32)
    art = tmp_path / "art"
    write_items(ArtifactStore(art))
    rtr = write_rtr(tmp_path / "src" / "rtr.parquet")
    hm = write_hm(tmp_path / "src" / "hm")
    base = ["--artifacts", str(art), "--profile", "tiny", "--quiet", "rank"]
    src = ["--set", f"sim.rtr_path={rtr}", "--set", f"sim.hm_path={hm / 'customers_sample.parquet'}"]
    assert main(base + ["simulate", *src]) == 0
    assert "SIMULATED" in capsys.readouterr().err
    assert main(base + ["train", "--dataset", "myntra-sim"]) == 0
    version = capsys.readouterr().out.strip()
    assert (art / "ranker" / version / "bundle.json").is_file()
    imp = json.loads((art / "ranker" / version / "importance.json").read_text())
    assert set(imp) == {"lambdarank", "binary"} and imp["binary"][0]["gain_share"] > 0
    assert main(base + ["eval", "--dataset", "myntra-sim"]) == 0
    ev = ArtifactStore(art).load("rank_eval")
    metrics = json.loads(ev.file("metrics.json").read_text())
    assert metrics["myntra-sim"]["utility_ndcg@10"]["oracle"] == pytest.approx(1.0)
    assert main(base + ["latency", "--requests", "15", "--candidates", "50", "--cpu", "-1"]) == 0
    latency = json.loads(ArtifactStore(art).load("rank_latency").file("metrics.json").read_text())
    assert latency["candidates"] == 50 and latency["score"]["p99_ms"] > 0
    capsys.readouterr()
    assert main(base + ["user"]) == 0
    uid = capsys.readouterr().out.split("e.g. ")[1].split(",")[0].strip()
    assert main(base + ["user", uid, "--limit", "2"]) == 0
    assert '"simulated": true' in capsys.readouterr().out
    assert main(base + ["user", "nobody"]) == 2
    # real-data ingest works on the fixture files; the RTR split needs more than six rentals
    assert main(base + ["ingest", "--source", "rtr", "--path", str(rtr)]) == 0
    assert main(base + ["train", "--dataset", "rtr"]) == 2
    assert "split is empty" in capsys.readouterr().err


def test_missing_inputs_exit_2(tmp_path, capsys):
    base = ["--artifacts", str(tmp_path / "none"), "--profile", "tiny", "rank"]
    assert main(base + ["train", "--dataset", "myntra-sim"]) == 2
    assert "mmrec" in capsys.readouterr().err
    assert main(base + ["eval"]) == 2
    assert main(base + ["train", "--dataset", "nope"]) == 2
    assert main(base + ["simulate", "--set", "sim.n_users=-3"]) == 2


@pytest.mark.data
def test_real_rtr_split_holds_users_and_time_out(shared_data, tmp_path, monkeypatch):
    from mmrec.rank import rtr as R
    from mmrec.rank.config import RankConfig
    from mmrec.rank.interactions import Pseudonymiser, read_rtr

    tables = read_rtr(shared_data / "rtr" / "interactions.parquet",
                      Pseudonymiser(b"t" * 32, namespace="rtr"))
    c = RankConfig().rtr
    prep = R.prepare(tables, c)
    d, sp = prep.d, prep.split
    test_users = set(d.user[sp.test_new].tolist())
    assert not test_users & set(d.user[sp.stats].tolist())          # never seen in training
    assert not test_users & set(d.user[sp.val].tolist())
    t_test = R._us(c.test_start)
    assert (d.ts[sp.train] < t_test).all() and (d.ts[sp.test_new] >= t_test).all()
    assert len(sp.test_new) > 1000 and len(sp.train) == c.max_train_groups
    # candidates: 1 + 99, distinct, and the positive is the rented item
    g = R.sample_groups(d, sp.test_new[:200], 99, "uniform_active", np.random.default_rng(0))
    assert (np.diff(g.offsets) == 100).all()
    pos = g.label == 1
    assert pos.sum() == 200 and (g.item[pos] == d.item[g.row[pos]]).all()
