"""The smoke suite (benchmark/suites/smoke.yaml) on the real catalog, as CI runs it.

The store holds the real catalog only: the items artifact of ./artifacts when there is one,
else ../shared/data/myntra ingested here (CI). With no models the recommender retrieves with its
catalog filter and refuses photo requests (re-shot catalog photos, real phone photos, H&M
packshots), which are recorded as errors, and serves the full catalog truth (`--full-truth`:
new arrivals need a tagger): the test checks the suite, the runner, the hand-written query
judges and the hard guarantees quickly and without torch. The same suite with every
model: `mmrec bench run --suite benchmark/suites/smoke.yaml` (docs/benchmark.md).
Needs ../shared/data (skipped without it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmrec.artifacts import ArtifactStore
from mmrec.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.data
def test_smoke_suite_on_the_real_catalog(tmp_path, shared_data):
    dev = ArtifactStore(REPO / "artifacts")
    store = ArtifactStore(tmp_path / "artifacts")
    if dev.current_version("items") is not None:
        version = dev.current_version("items")
        shutil.copytree(dev.kind_dir("items") / version, store.kind_dir("items") / version)
        store.set_current("items", version)
    else:
        assert main(["--artifacts", str(store.root), "--quiet", "catalog", "ingest",
                     "--source", str(shared_data / "myntra")]) == 0
    out = tmp_path / "smoke"
    rc = main(["--artifacts", str(store.root), "--quiet", "bench", "run", "--suite",
               str(REPO / "benchmark/suites/smoke.yaml"), "--out", str(out), "--no-publish",
               "--full-truth", "--data", str(shared_data)])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["run"]["n_cases"] == 75 and m["run"]["complete"]
    # only photo requests fail: a store without tagger and encoder refuses them
    modes = {mode: body["cases"] for mode, body in m["by_mode"].items()}
    assert modes == {"scene": 11, "text": 11, "photo": 11, "real_photo": 12, "other_retailer": 6, "query": 24}
    assert len(m["errors"]) == 11 + 12 + 6
    t = m["totals"]
    assert t["answered"]["cases"] == 75
    # the hand-written queries are judged on what they state, per language, with zh/en parity
    assert t["query.constraints"]["cases"] > 0 and set(m["by_lang"]) >= {"en", "zh"}
    assert m["query_parity"]["pairs"] >= 8
    assert "withheld.scene_rules" not in t
    # hard guarantees, judged on catalog truth
    assert t["scene_rules"]["value"] == 1.0 and t["complete"]["value"] == 1.0
    assert t["gender_violation"]["value"] == 0.0 and t["mixed_gender"]["value"] == 0.0
    assert (out / "report.html").stat().st_size > 10_000
