"""End to end on a tiny in-process world: CLI run, metrics.json, resume, release gate."""

from __future__ import annotations

import json
import shutil

import pytest

import bench_fixtures as BF
from mmrec.bench.runner import RESULTS, Runner, prepare, read_results
from mmrec.bench.system import InProcessSystem
from mmrec.cli import main


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_run")
    store, suite = BF.write_world(root)
    base = root / "runs" / "base"
    rc = main(["--artifacts", str(store.root), "--quiet", "bench", "run", "--suite", str(suite),
               "--out", str(base), "--set", f"scenes_path={root / 'scenes.yaml'}"])
    assert rc == 0
    return root, store, suite, base


def test_run_writes_schema_versioned_metrics_with_counts(world):
    root, store, suite, base = world
    m = json.loads((base / "metrics.json").read_text())
    assert m["schema_version"] == 1 and m["kind"] == "mmrec.bench.metrics"
    assert m["run"]["n_cases"] == 24 and m["run"]["complete"] and m["run"]["warnings"] == []
    for section in ("totals",):
        for name, v in m[section].items():
            assert set(v) == {"value", "count", "cases"} and v["count"] > 0, name
    for group in ("by_scene", "by_segment", "by_persona", "by_mode"):
        assert m[group], group
        for body in m[group].values():
            assert body["cases"] > 0 and all("count" in v for v in body["metrics"].values())
    assert set(m["by_mode"]) == {"scene", "text", "photo"}
    assert set(m["by_segment"]) == {"men:25-34", "women:35-44"}
    # the Recommender honours every rule of the tiny scenes on catalog truth
    assert m["totals"]["scene_rules"]["value"] == 1.0 and m["totals"]["complete"]["value"] == 1.0
    assert m["totals"]["gender_violation"]["value"] == 0.0
    # no photo models in this store: photo requests fail, are recorded, and count as unanswered
    assert m["run"]["n_errors"] == 8 and "ComponentMissing" in m["errors"][0]["error"]
    assert m["by_mode"]["photo"]["metrics"]["answered"]["value"] == 0.0
    assert set(m["latency_ms"]["by_mode"]) == {"scene", "text"}
    assert m["coverage"]["total"]["count"] == 96
    assert (base / "report.html").is_file()
    art = store.load("bench_eval")
    assert json.loads(art.file("metrics.json").read_text())["totals"] == m["totals"]


def test_resume_runs_only_missing_cases_and_drops_a_torn_line(world, tmp_path):
    root, store, suite, base = world
    out = tmp_path / "resumed"
    out.mkdir()
    shutil.copy(base / "run.json", out / "run.json")
    lines = (base / RESULTS).read_text().splitlines(keepends=True)
    (out / RESULTS).write_text("".join(lines[:10]) + lines[10][:40])  # crash mid-line
    ran = []
    p = prepare(suite, store)
    system = InProcessSystem(BF.recommender(store, root / "scenes.yaml"))
    Runner(p, system, out, progress=False, on_case=lambda r: ran.append(r["case_id"])).run()
    done = [r["case_id"] for r in read_results(out / RESULTS)]
    assert len(ran) == 14 and sorted(done) == sorted(c.case_id for c in p.cases)
    # a finished run resumes to nothing; retrying errors re-runs only the failed photo cases
    ran.clear()
    Runner(p, system, out, progress=False, on_case=lambda r: ran.append(r["case_id"])).run()
    assert ran == []
    Runner(p, system, out, progress=False, retry_errors=True,
           on_case=lambda r: ran.append(r["case_id"])).run()
    assert len(ran) == 8 and all("/photo/" in c for c in ran)


def test_run_dir_of_another_suite_is_refused(world, tmp_path, capsys):
    root, store, suite, base = world
    other = tmp_path / "other.yaml"
    other.write_text(suite.read_text().replace("repeats: 2", "repeats: 1"))
    for name in ("scenes.yaml", "personas.yaml"):
        shutil.copy(root / name, tmp_path / name)
    rc = main(["--artifacts", str(store.root), "--quiet", "bench", "run", "--suite", str(other),
               "--out", str(base), "--no-publish"])
    assert rc == 2 and "--fresh" in capsys.readouterr().err


def test_gate_fails_when_a_component_drops_the_scene_rules(world, capsys):
    root, store, suite, base = world
    degraded = root / "runs" / "ruleless"
    p = prepare(suite, store)
    system = InProcessSystem(BF.recommender(store, root / "scenes.yaml", drop_rules=True))
    m = Runner(p, system, degraded, progress=False).run()
    assert m["totals"]["scene_rules"]["value"] < 1.0
    capsys.readouterr()
    assert main(["bench", "compare", str(base), str(degraded)]) == 3
    out = capsys.readouterr().out
    assert "GATE FAILED" in out and "scene_rules:" in out
    # the same run against itself passes, and the comparison can be saved
    assert main(["bench", "compare", str(base), str(base), "--json", str(root / "cmp.json")]) == 0
    assert json.loads((root / "cmp.json").read_text())["passed"] is True


def test_report_command_rewrites_the_report(world, capsys):
    root, store, suite, base = world
    (base / "report.html").unlink()
    assert main(["--artifacts", str(store.root), "bench", "report", str(base)]) == 0
    assert (base / "report.html").is_file()
    assert main(["bench", "report", str(root / "nope")]) == 2
