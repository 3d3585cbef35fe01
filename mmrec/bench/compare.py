"""`mmrec bench compare runs/a runs/b`: deltas with bootstrap CIs, and a release gate.

Runs are compared case by case on the case ids they share (paired bootstrap: resample cases,
recompute each metric in both runs). The gate file (``benchmark/gate.yaml``) names the
metrics that may not regress and by how much. A metric with a bound of 0 is a hard guarantee
(scene rules, gender, false statements): any move the wrong way fails, with no significance
test, since one broken rule is one too many and a bootstrap interval over a metric that is
100% in both runs but for one case never excludes zero. A metric with a positive bound fails
when its change is worse than the bound AND, with ``significance: true``, the confidence
interval excludes no change on the bad side, so noise alone never blocks a release. A gated
metric that run a measured and run b no longer measures fails too (a component dropped out).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from mmrec.bench import metrics as M
from mmrec.bench.runner import RESULTS, read_results
from mmrec.config import StrictModel
from mmrec.errors import ConfigError, InputError

DEFAULT_GATE = Path(__file__).resolve().parents[2] / "benchmark" / "gate.yaml"
LATENCY_PREFIX = "latency."
_EPS = 1e-12  # float noise of two means over the same observations


class GateRule(StrictModel):
    """How far one metric may move the wrong way (one bound per rule)."""

    max_drop: float | None = Field(None, ge=0, description="higher-is-better: allowed absolute drop")
    max_rise: float | None = Field(None, ge=0, description="lower-is-better: allowed absolute rise")
    max_rise_ratio: float | None = Field(None, ge=0, description="latency: allowed relative rise")
    absent_in_b: Literal["fail", "pass"] = Field("fail", description=(
        "a metric measured in run a but on no case of run b: fail (the bench lost it), or pass for "
        "a metric measured only on what the system answers (a photo it abstains on composes no "
        "outfit, so its outfit guarantees hold vacuously); what abstaining costs is then gated by "
        "a metric over every case, such as <mode>.slot_all"))

    @model_validator(mode="after")
    def _one(self) -> "GateRule":
        n = sum(x is not None for x in (self.max_drop, self.max_rise, self.max_rise_ratio))
        if n != 1:
            raise ValueError("set exactly one of max_drop, max_rise, max_rise_ratio")
        return self


class Gate(StrictModel):
    version: Literal[1] = 1
    significance: bool = Field(True, description="fail only when the CI excludes no change")
    level: float = Field(0.95, gt=0.5, lt=1)
    n_boot: int = Field(2000, ge=100, le=100_000)
    seed: int = 0
    metrics: dict[str, GateRule] = Field(default_factory=dict)


def load_gate(path: str | Path | None) -> Gate:
    path = Path(path) if path is not None else DEFAULT_GATE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"cannot read gate file {path}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"gate file {path} is not valid YAML: {e}") from e
    try:
        gate = Gate.model_validate(raw or {})
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise ConfigError(f"gate file {path}: {errs}") from e
    for name in gate.metrics:
        if not name.startswith(LATENCY_PREFIX):
            try:
                M.metric_def(name)
            except KeyError as e:
                raise ConfigError(f"gate file {path}: {e.args[0]}") from None
    return gate


def _load_run(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not (path / RESULTS).is_file():
        raise InputError(f"{path} is not a benchmark run (no {RESULTS}); run `mmrec bench run "
                         f"--out {path}` first")
    meta = json.loads((path / "run.json").read_text()) if (path / "run.json").is_file() else {}
    return meta, read_results(path / RESULTS)


def _latency_names(recs: list[dict[str, Any]]) -> list[str]:
    modes = sorted({r["mode"] for r in recs if r.get("latency_ms") is not None})
    return [f"latency.{q}" for q in ("p50", "p99")] + [f"latency.{q}.{m}" for m in modes
                                                      for q in ("p50", "p99")]


def _latency_pairs(a: list[dict[str, Any]], b: list[dict[str, Any]], name: str
                   ) -> tuple[list[float], list[float], float]:
    parts = name.split(".")
    q = float(parts[1][1:])
    mode = parts[2] if len(parts) > 2 else None
    xa, xb = [], []
    for ra, rb in zip(a, b):
        if mode is not None and ra["mode"] != mode:
            continue
        if ra.get("latency_ms") is not None and rb.get("latency_ms") is not None:
            xa.append(ra["latency_ms"])
            xb.append(rb["latency_ms"])
    return xa, xb, q


def compare_runs(run_a: str | Path, run_b: str | Path, gate: Gate) -> dict[str, Any]:
    """Every metric of either run: a, b, delta, CI and the gate's verdict.

    Returns:
        ``{"rows": [...], "failures": [...], "warnings": [...], "cases": n, ...}``; the gate
        passed when ``failures`` is empty.
    """
    pa, pb = Path(run_a), Path(run_b)
    meta_a, recs_a = _load_run(pa)
    meta_b, recs_b = _load_run(pb)
    warnings = []
    if meta_a.get("suite_sha256") != meta_b.get("suite_sha256"):
        warnings.append(f"different suites ({meta_a.get('suite_name')}@{meta_a.get('suite_sha256')} "
                        f"vs {meta_b.get('suite_name')}@{meta_b.get('suite_sha256')}); comparing "
                        "the cases they share")
    by_b = {r["case_id"]: r for r in recs_b}
    common = [r["case_id"] for r in recs_a if r["case_id"] in by_b]
    only = (len(recs_a) - len(common), len(recs_b) - len(common))
    if any(only):
        warnings.append(f"{only[0]} cases only in {pa.name}, {only[1]} only in {pb.name}: left out")
    if not common:
        raise InputError(f"{pa} and {pb} share no case; compare runs of the same suite")
    by_a = {r["case_id"]: r for r in recs_a}
    a = [by_a[c] for c in common]
    b = [by_b[c] for c in common]
    names = sorted({n for r in a + b for n in (r.get("obs") or {}) if n != "latency_ms"})
    rows: list[dict[str, Any]] = []
    for n in names:
        d = M.metric_def(n)
        res = M.bootstrap_delta(a, b, n, n_boot=gate.n_boot, seed=gate.seed, level=gate.level)
        row = {"metric": n, "label": d.label, "better": d.better, "unit": d.unit}
        if res is None:
            sa, na = M.case_sums(a, n)
            sb, nb = M.case_sums(b, n)
            row.update({"a": float(sa.sum() / na.sum()) if na.sum() else None,
                        "b": float(sb.sum() / nb.sum()) if nb.sum() else None,
                        "delta": None, "count_a": int(na.sum()), "count_b": int(nb.sum())})
        else:
            row.update(res)
        rows.append(row)
    for n in _latency_names(a):
        xa, xb, q = _latency_pairs(a, b, n)
        res = M.bootstrap_percentile_delta(xa, xb, q, n_boot=gate.n_boot, seed=gate.seed, level=gate.level)
        row = {"metric": n, "label": f"Latency {n[len(LATENCY_PREFIX):]}", "better": "lower", "unit": "ms"}
        row.update(res or {"a": None, "b": None, "delta": None, "count_a": 0, "count_b": 0})
        rows.append(row)
    failures = []
    for row in rows:
        rule = gate.metrics.get(row["metric"])
        row["gated"] = rule is not None
        row["significant"] = _significant(row)
        row["verdict"] = _verdict(row)
        if rule is None:
            continue
        why = _gate_failure(row, rule, gate.significance, gate.level)
        if why:
            row["verdict"] = "FAIL"
            failures.append({"metric": row["metric"], "reason": why})
    return {"a": str(pa), "b": str(pb), "cases": len(common), "warnings": warnings,
            "gate": gate.model_dump(mode="json"), "rows": rows, "failures": failures,
            "passed": not failures}


def _significant(row: dict[str, Any]) -> bool:
    lo, hi = row.get("ci_low"), row.get("ci_high")
    return lo is not None and hi is not None and (lo > 0 or hi < 0)


def _verdict(row: dict[str, Any]) -> str:
    if row.get("delta") is None:
        return "not comparable"
    if not row["significant"]:
        return "no significant change"
    worse = row["delta"] < 0 if row["better"] == "higher" else row["delta"] > 0
    return "worse" if worse else "better"


def _gate_failure(row: dict[str, Any], rule: GateRule, significance: bool, level: float
                  ) -> str | None:
    """Why a gated metric fails the release, or None when it passes."""
    a, b, delta = row.get("a"), row.get("b"), row.get("delta")
    if a is not None and row.get("count_a") and (b is None or not row.get("count_b")):
        if rule.absent_in_b == "pass":
            return None
        return f"measured in run a (n={row['count_a']}) but not in run b"
    if delta is None:
        return None
    lo, hi = row.get("ci_low"), row.get("ci_high")
    bound = next(x for x in (rule.max_drop, rule.max_rise, rule.max_rise_ratio) if x is not None)
    test = significance and bound > 0  # a hard guarantee (bound 0) fails on any regression
    if rule.max_drop is not None:
        bad = delta < -rule.max_drop - _EPS and (not test or (hi is not None and hi < 0))
        limit = f"drop > {rule.max_drop:g}"
    elif rule.max_rise is not None:
        bad = delta > rule.max_rise + _EPS and (not test or (lo is not None and lo > 0))
        limit = f"rise > {rule.max_rise:g}"
    else:
        allowed = (a or 0.0) * rule.max_rise_ratio
        bad = delta > allowed + _EPS and (not test or (lo is not None and lo > 0))
        limit = f"rise > {rule.max_rise_ratio:.0%} of {a:.1f}"
    if not bad:
        return None
    ci = "" if lo is None else f", {level:.0%} CI [{lo:+.4g}, {hi:+.4g}]"
    return f"{a:.4g} -> {b:.4g} (delta {delta:+.4g}{ci}): {limit}"


def format_table(result: dict[str, Any]) -> str:
    """Plain-text table of a comparison, gated metrics first."""
    rows = sorted(result["rows"], key=lambda r: (not r["gated"], r["metric"]))
    head = f"{'metric':28} {'a':>10} {'b':>10} {'delta':>10} {'95% CI':>22} {'n_a':>6} {'n_b':>6}  verdict"
    lines = [f"compare {result['a']} -> {result['b']} on {result['cases']} shared cases", head,
             "-" * len(head)]

    def f(v: Any, unit: str) -> str:
        if v is None:
            return "-"
        return f"{v:.1f}" if unit == "ms" else f"{v:.4f}"

    for r in rows:
        ci = "-" if r.get("ci_low") is None else f"[{f(r['ci_low'], r['unit'])}, {f(r['ci_high'], r['unit'])}]"
        name = ("*" if r["gated"] else " ") + r["metric"]
        lines.append(f"{name:28} {f(r.get('a'), r['unit']):>10} {f(r.get('b'), r['unit']):>10} "
                     f"{f(r.get('delta'), r['unit']):>10} {ci:>22} {r.get('count_a', 0):>6} "
                     f"{r.get('count_b', 0):>6}  {r['verdict']}")
    lines.append("(* gated metric)")
    for w in result["warnings"]:
        lines.append(f"warning: {w}")
    if result["failures"]:
        lines.append(f"GATE FAILED: {len(result['failures'])} metric(s) regressed")
        lines += [f"  {x['metric']}: {x['reason']}" for x in result["failures"]]
    else:
        lines.append("gate passed")
    return "\n".join(lines)
