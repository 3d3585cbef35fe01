"""`mmrec bench run`: run a suite against the system under test, resumably, and write metrics.

A run directory (``runs/<name>/``) holds:
- ``run.json``: the suite (path, hash), the case fingerprint, the system and its versions;
- ``results.jsonl``: one judged record per case, appended and flushed as each case finishes, so
  an interrupted run resumes where it stopped (a half-written last line is dropped);
- ``metrics.json``: schema-versioned totals and breakdowns (scene, persona segment, persona,
  query mode), latency per mode, coverage and tagging confusion matrices;
- ``report.html``: the merchandiser report (`mmrec.bench.report`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mmrec import kinds
from mmrec.artifacts import ArtifactStore, atomic_write_text
from mmrec.bench import metrics as M
from mmrec.bench.judges import coverage
from mmrec.bench.personas import Persona, UserDirectory, load_persona_file, resolve_personas
from mmrec.bench.photos import kiosk_photo
from mmrec.bench.score import Truth, error_record, ranking_candidates, score_case
from mmrec.bench.suite import ANONYMOUS, OUTSIDE_MODES, Case, LoadedSuite, expand_cases, load_suite
from mmrec.bench.withheld import withheld_ids
from mmrec.bench.system import System
from mmrec.errors import InputError, MmrecError

METRICS_SCHEMA_VERSION = 1
RESULTS = "results.jsonl"


@dataclass
class Prepared:
    loaded: LoadedSuite
    truth: Truth
    personas: list[Persona]
    cases: list[Case]
    items_version: str
    users_version: str | None
    scenes_version: str
    users: UserDirectory | None = None


def catalog_rows(store: ArtifactStore) -> tuple[dict[str, dict[str, Any]], str]:
    """Catalog truth: items.parquet rows by id (attributes map as a dict)."""
    from mmrec.catalog.ingest import load_items

    art = store.load(kinds.ITEMS)
    rows = {}
    for r in load_items(store, art.version).to_pylist():
        r["attributes"] = dict(r.get("attributes") or [])
        r.pop("updated_at", None)
        rows[str(r["item_id"])] = r
    return rows, art.version


def prepare(suite_path: str | Path, store: ArtifactStore, *, users: UserDirectory | None = None,
            use_users: bool = True, limit: int | None = None,
            data_root: str | Path | None = None, withhold: bool = True) -> Prepared:
    """Load the suite, the catalog truth, scenes and personas, and expand the cases.

    Args:
        users: user data to resolve personas with; by default the store's ``interactions_sim``
            when it exists (``use_users=False``: archetypes only).
        limit: keep the first ``limit`` cases (a quick look; metrics say how many ran).
        data_root: real data for outside photos (default: the suite's ``data``).
        withhold: apply the suite's ``withheld`` slice (False: every product with its catalog
            attributes, e.g. a live API or a store without a tagger; withheld.* not measured).
    """
    from mmrec.outfit.scenes import SceneBook
    from mmrec.taxonomy import default_taxonomy

    loaded = load_suite(suite_path)
    tax = default_taxonomy()
    scenes_path = loaded.resolve(loaded.suite.scenes_file) if loaded.suite.scenes_file else None
    book = SceneBook.load(scenes_path, tax)
    rows, items_version = catalog_rows(store)
    if users is None and use_users and store.current_version(kinds.INTERACTIONS_SIM):
        users = UserDirectory.from_store(store, kinds.INTERACTIONS_SIM)
    defs = load_persona_file(loaded.resolve(loaded.suite.personas)).personas
    personas = resolve_personas(defs, users)
    cases = expand_cases(loaded, book.scenes, personas, list(rows.values()),
                         data_root=Path(data_root) if data_root else None, taxonomy=tax)
    if limit is not None:
        cases = cases[:limit]
    if any(c.persona == ANONYMOUS for c in cases):
        personas.append(Persona(id=ANONYMOUS, label="Anonymous shopper (kiosk visitor or app user "
                                "without a profile)", segment=ANONYMOUS, source="none",
                                resolved_from="none"))
    spec = loaded.suite.withheld
    withheld = frozenset(withheld_ids(rows, spec.splits)) if spec and withhold else frozenset()
    truth = Truth(rows=rows, scenes=book.scenes, personas={p.id: p for p in personas}, taxonomy=tax,
                  withheld=withheld)
    return Prepared(loaded, truth, personas, cases, items_version,
                    users.version if users is not None else None, book.version, users)


def fingerprint(cases: Sequence[Case]) -> str:
    h = hashlib.sha256()
    for c in cases:
        h.update(c.model_dump_json().encode())
    return h.hexdigest()[:16]


def read_results(path: Path) -> list[dict[str, Any]]:
    """Records of a results file; a torn last line (crash while writing) is dropped."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        with open(path, "r+b") as f:
            f.truncate(len(data))
    out = []
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


class Runner:
    """Runs prepared cases against a system into ``out``; resumes from ``results.jsonl``."""

    def __init__(self, prepared: Prepared, system: System, out: str | Path, *,
                 retry_errors: bool = False, progress: bool = True,
                 on_case: Callable[[dict[str, Any]], None] | None = None):
        self.p = prepared
        self.system = system
        self.out = Path(out)
        self.retry_errors = retry_errors
        self.progress = progress
        self.on_case = on_case
        self._pools: dict[str | None, list[str]] = {}

    # -- run bookkeeping -------------------------------------------------------------------
    def _check_run_dir(self) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        meta_path = self.out / "run.json"
        fp = fingerprint(self.p.cases)
        meta = {"schema_version": METRICS_SCHEMA_VERSION, "name": self.out.name,
                "suite": str(self.p.loaded.path), "suite_name": self.p.loaded.suite.name,
                "suite_sha256": self.p.loaded.sha256, "cases": len(self.p.cases),
                "case_fingerprint": fp, "items_version": self.p.items_version,
                "users_version": self.p.users_version}
        if meta_path.is_file():
            old = json.loads(meta_path.read_text())
            if old.get("case_fingerprint") != fp:
                raise InputError(f"{self.out} holds a run of other cases (suite {old.get('suite')}, "
                                 f"{old.get('cases')} cases); pass a new --out or --fresh to start over")
            meta["created_at"] = old.get("created_at")
        meta.setdefault("created_at", None)
        meta["created_at"] = meta["created_at"] or _now()
        meta["system"] = self.system.describe()
        meta["scenes_version"] = self.p.scenes_version
        meta["warnings"] = []
        served = (meta["system"].get("versions") or {}).get("scenes")
        if served and served != self.p.scenes_version:
            meta["warnings"].append(
                f"the system serves scenes {served} but the judges read {self.p.scenes_version}: "
                "point the suite's scenes_file and the recommender's scenes_path at the same file")
        atomic_write_text(meta_path, json.dumps(meta, indent=2))
        return meta

    def _rank_pool(self, gender: str | None) -> list[str]:
        """Negatives for the ranking probe: in-stock, outfit-slot items the shopper could wear."""
        if gender not in self._pools:
            from mmrec.bench.judges import gender_ok

            self._pools[gender] = sorted(
                i for i, r in self.p.truth.rows.items()
                if r.get("in_stock") and r.get("slot") != "other" and gender_ok(r.get("gender"), gender))
        return self._pools[gender]

    def run_case(self, case: Case) -> dict[str, Any]:
        truth = self.p.truth
        persona = truth.personas[case.persona]
        probes = self.p.loaded.suite.probes
        photo = None
        if case.mode == "photo":
            photo = kiosk_photo(case.photo_uri, case.case_id)
        elif case.mode in OUTSIDE_MODES:  # sent as the camera or the other retailer made it
            photo = Path(case.photo_uri).read_bytes()
        try:
            response, ms = self.system.recommend(case, photo)
        except InputError as e:  # the system refused the request: a bug in it or in the suite
            return error_record(case, f"refused: {e}")
        except MmrecError as e:
            return error_record(case, f"{type(e).__name__}: {e}")
        neighbours = text_hits = rank = None
        if photo is not None and probes.recall:
            neighbours = self.system.photo_neighbours(photo, probes.recall_k, case.gender)
        if case.mode == "text" and probes.recall:
            text_hits = self.system.text_recall(case, probes.recall_k)
        if probes.ranking and persona.heldout:
            cand = ranking_candidates(case, persona, self._rank_pool(case.gender),
                                      probes.ranking_negatives)
            if cand is not None:
                scores = self.system.rank_scores(case, cand[0])
                if scores is not None:
                    rank = (scores, cand[1])
        return score_case(case, response, truth, neighbours=neighbours, text_hits=text_hits,
                          rank=rank, latency_ms=ms)

    def run(self) -> dict[str, Any]:
        """Run every case not yet done; returns the metrics (also written to metrics.json)."""
        from tqdm import tqdm

        meta = self._check_run_dir()
        path = self.out / RESULTS
        done = {r["case_id"]: r for r in read_results(path)
                if r.get("status") == "ok" or not self.retry_errors}
        todo = [c for c in self.p.cases if c.case_id not in done]
        t0 = time.perf_counter()
        errors = 0
        with open(path, "a", encoding="utf-8") as f, \
                tqdm(total=len(self.p.cases), initial=len(self.p.cases) - len(todo),
                     disable=not self.progress, desc=f"bench {self.p.loaded.suite.name}",
                     unit="case") as bar:
            for case in todo:
                rec = self.run_case(case)
                errors += rec["status"] == "error"
                f.write(json.dumps(rec, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
                done[case.case_id] = rec
                if self.on_case:
                    self.on_case(rec)
                bar.set_postfix(errors=errors)
                bar.update(1)
        wall = time.perf_counter() - t0
        order = {c.case_id: n for n, c in enumerate(self.p.cases)}
        records = sorted((r for r in done.values() if r["case_id"] in order),
                         key=lambda r: order[r["case_id"]])
        meta["finished_at"] = _now()
        meta["wall_s_this_session"] = round(wall, 1)
        meta["cases_this_session"] = len(todo)
        atomic_write_text(self.out / "run.json", json.dumps(meta, indent=2))
        metrics = build_metrics(records, meta, self.p)
        atomic_write_text(self.out / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True))
        return metrics


def build_metrics(records: Sequence[dict[str, Any]], meta: dict[str, Any], p: Prepared) -> dict[str, Any]:
    """The metrics.json document of a run (see the module docstring)."""
    recommended = [it["item_id"] for r in records for o in r["outfits"] for it in o["items"]]
    catalog = {i: r["slot"] for i, r in p.truth.rows.items()
               if r.get("in_stock") and r.get("slot") != "other"}
    calibration = {m: M.calibration([r["photo_reading"] for r in records
                                     if r["mode"] == m and r.get("photo_reading")])
                   for m in sorted({r["mode"] for r in records if r.get("photo_reading")})}
    totals = M.aggregate(records)
    for mode, cal in calibration.items():  # a statistic of the whole set, not a mean of cases
        if cal:
            totals[f"{mode}.slot_ece"] = {"value": cal["ece"], "count": cal["count"], "cases": cal["count"]}
    used = {m for r in records for m in (r.get("obs") or {})} | set(totals)
    defs = {}
    for m in sorted(used):
        d = M.metric_def(m)
        defs[m] = {"label": d.label, "better": d.better, "unit": d.unit, "group": d.group, "help": d.help}
    return {
        "schema_version": METRICS_SCHEMA_VERSION,
        "kind": "mmrec.bench.metrics",
        "run": {**meta, "n_cases": len(records),
                "n_errors": sum(r["status"] == "error" for r in records),
                "complete": len(records) == len(p.cases)},
        "personas": [{"id": x.id, "label": x.label, "segment": x.segment, "source": x.source,
                      "resolved_from": x.resolved_from, "gender": x.gender,
                      "heldout": len(x.heldout), "history": len(x.history), "note": x.note}
                     for x in p.personas],
        "definitions": defs,
        "totals": dict(sorted(totals.items())),
        "by_scene": M.group_by(records, lambda r: r["scene"]),
        "by_segment": M.group_by(records, lambda r: r["segment"]),
        "by_persona": M.group_by(records, lambda r: r["persona"]),
        "by_mode": M.group_by(records, lambda r: r["mode"]),
        "latency_ms": M.latency_by_mode(records),
        "coverage": coverage(recommended, catalog),
        "confusion": M.confusion(records),
        "calibration": calibration,
        "by_lang": M.group_by([r for r in records if r.get("lang")], lambda r: r["lang"]),
        "query_parity": M.pair_parity(records, "query.constraints"),
        "errors": [{"case_id": r["case_id"], "error": r["error"]}
                   for r in records if r["status"] == "error"][:50],
    }


def publish(store: ArtifactStore, out: Path, metrics: dict[str, Any]) -> str:
    """Copy a finished run's metrics.json and report.html into ``bench_eval/<version>``."""
    import shutil

    with store.write(kinds.BENCH_EVAL, config={"run": str(out), "suite": metrics["run"]["suite"]},
                     schema_version=METRICS_SCHEMA_VERSION) as w:
        for name in ("metrics.json", "report.html", "run.json"):
            if (out / name).is_file():
                shutil.copyfile(out / name, w.path / name)
        w.metrics = {k: v["value"] for k, v in metrics["totals"].items()}
        w.extra["run_dir"] = str(out)
    return w.version


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
