"""The A/B report: per variant, how often its answers and the items they showed were engaged.

Units and rates, two of each kind (every metric names its unit in the report):
- per answer (one answered recommend, one ``request_id``): ``ctr`` is the share of a
  variant's answers with at least one attributed click on an item they showed, likewise
  ``add_to_cart_rate`` and ``purchase_rate``. The variant decides the whole answer, so this is
  the shopper-facing unit; but an answer shows a dozen items, and when nearly every answer
  gets some click (the simulated shoppers: 99%) it cannot tell two variants apart.
- per shown item (one (request_id, item_id) row of the answer): ``item_ctr`` is clicked shown
  items over shown items, ``item_add_to_cart_rate`` likewise; it counts how many of the items
  a variant chose were wanted, so it separates variants whose answers all get some click.
Events are attributed by `mmrec.feedback.attribution.join` (request_id, else the same user
and item within the window).

Intervals (95%):
- each variant's rate: Wilson score interval over its answers (shown items). It treats those
  as independent, which answers of one user (items of one answer) are not; it describes the
  variant's rate, and is narrower than a user-level interval.
- a variant's difference to control: a user-clustered bootstrap (users resampled with
  replacement within each variant, the rate recomputed as successes over answers, 2,000
  resamples, percentile interval; for the item rates, clicked items over shown items of the
  resampled users). Users, not answers, are what bucketing randomised: a heavy
  user's answers rise and fall together, and a two-proportion interval over answers would
  count them as independent evidence and come out too narrow.

Answers without a user (kiosk visitors) all go to one variant by rule, not by chance: they are
left out of the comparison and counted in ``excluded_anonymous``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmrec.errors import InputError

Z95 = 1.959963984540054
METRICS = {"ctr": "clicked", "add_to_cart_rate": "added", "purchase_rate": "purchased"}
ITEM_METRICS = {"item_ctr": "clicked", "item_add_to_cart_rate": "added"}
UNITS = {**dict.fromkeys(METRICS, "answer"), **dict.fromkeys(ITEM_METRICS, "shown item")}


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of the proportion ``k / n`` ((0, 1) when n == 0)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # exact ends at k = 0 and k = n (the formula leaves rounding dust there)
    return (0.0 if k == 0 else max(0.0, mid - half)), (1.0 if k == n else min(1.0, mid + half))


@dataclass
class Users:
    """One variant's answers grouped by user: answers and successes per user, per metric."""

    answers: np.ndarray                 # int64 [users]
    successes: dict[str, np.ndarray]    # metric -> int64 [users]


def bootstrap_diff(a: Users, b: Users, metric: str, *, resamples: int = 2000, seed: int = 0
                   ) -> tuple[float, float]:
    """95% percentile interval of rate(b) - rate(a), resampling users within each variant."""
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    chunk = _chunk(max(len(a.answers), len(b.answers)))
    for lo in range(0, resamples, chunk):
        m = min(resamples - lo, chunk)
        out[lo:lo + m] = _rates(b, metric, m, rng) - _rates(a, metric, m, rng)
    q = np.quantile(out, [0.025, 0.975])
    return float(q[0]), float(q[1])


def _chunk(n_users: int) -> int:
    return max(1, min(500, 4_000_000 // max(n_users, 1)))  # resamples per pass: <= ~32 MB of indices


def _rates(u: Users, metric: str, m: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, len(u.answers), size=(m, len(u.answers)))
    n = u.answers[idx].sum(axis=1)
    return u.successes[metric][idx].sum(axis=1) / np.maximum(n, 1)


def _per_user(answers: dict[str, dict[str, int]], trials: str = "answers", metrics=METRICS) -> Users:
    users = sorted(answers)
    return Users(np.array([answers[u][trials] for u in users], dtype=np.int64),
                 {m: np.array([answers[u][m] for u in users], dtype=np.int64) for m in metrics})


def load(*, store: Path | None = None, export: Path | None = None) -> tuple[Any, Any]:
    """(impressions, events) tables in the export's schemas, from a store file or an export."""
    from mmrec.feedback.attribution import read_export, read_store

    if (store is None) == (export is None):
        raise InputError("give exactly one of a feedback store (--store) or an export folder (--export)")
    if store is not None:
        if not Path(store).is_file():
            raise InputError(f"no feedback store at {store}")
        return read_store(store)
    if not (Path(export) / "impressions").is_dir():
        raise InputError(f"{export} is not a feedback export (no impressions/ folder); "
                         "write one with `mmrec feedback export --out DIR`")
    return read_export(export)


def _select(impressions, *, experiment: str | None, since: dt.datetime | None,
            until: dt.datetime | None) -> tuple[Any, str]:
    """Impressions of one experiment within [since, until); the experiment's name."""
    import pyarrow.compute as pc

    t = impressions.filter(pc.is_valid(impressions["variant"]))
    if t.num_rows == 0:
        raise InputError(f"no impression has an A/B variant ({impressions.num_rows} item rows without one): "
                         "declare `ab:` variants in serve.yaml and serve traffic first")
    exp = pc.map_lookup(t["versions"], "experiment", "first")
    found = sorted({e for e in exp.to_pylist() if e is not None})
    if experiment is None:
        if len(found) > 1:
            raise InputError(f"the data holds several experiments {found}; choose one with --experiment")
        experiment = found[0] if found else None
    elif experiment not in found:
        raise InputError(f"no impressions of experiment {experiment!r}; the data holds {found}")
    if experiment is not None:
        t = t.filter(pc.equal(exp, experiment))
    if since is not None:
        t = t.filter(pc.greater_equal(t["ts"], since))
    if until is not None:
        t = t.filter(pc.less(t["ts"], until))
    if t.num_rows == 0:
        raise InputError(f"no impressions of experiment {experiment!r} between {since} and {until}")
    return t, experiment or "?"


def report(impressions, events, *, experiment: str | None = None, since: dt.datetime | None = None,
           until: dt.datetime | None = None, window: dt.timedelta = dt.timedelta(hours=24),
           control: str | None = None, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Per-variant rates with Wilson intervals, and each variant's difference to ``control``.

    Args:
        impressions, events: tables in the export's schemas (`load`).
        control: the baseline variant; default the one named "control", else the first by name.
        window: how long after an answer an event without its request_id may still count.
    """
    from mmrec.feedback.attribution import join

    imp, experiment = _select(impressions, experiment=experiment, since=since, until=until)
    joined = join(imp, events, window=window)
    per: dict[str, dict[str, dict[str, int]]] = {}  # variant -> user -> counts
    answers: dict[str, dict[str, int]] = {}  # request_id -> metric -> 0/1, plus identity
    anonymous = 0
    cols = {c: joined[c].to_pylist() for c in ("request_id", "user_id", "variant", *METRICS.values())}
    for i, rid in enumerate(cols["request_id"]):
        a = answers.get(rid)
        if a is None:
            a = answers[rid] = {"user": cols["user_id"][i], "variant": cols["variant"][i],
                                "shown": 0, **dict.fromkeys(METRICS, 0), **dict.fromkeys(ITEM_METRICS, 0)}
        a["shown"] += 1
        for m, col in METRICS.items():
            a[m] |= int(bool(cols[col][i]))
        for m, col in ITEM_METRICS.items():
            a[m] += int(bool(cols[col][i]))
    for a in answers.values():
        if a["user"] is None:
            anonymous += 1
            continue
        u = per.setdefault(a["variant"], {}).setdefault(
            a["user"], {"answers": 0, "shown": 0, **dict.fromkeys(METRICS, 0), **dict.fromkeys(ITEM_METRICS, 0)})
        u["answers"] += 1
        for m in ("shown", *METRICS, *ITEM_METRICS):
            u[m] += a[m]
    if not per:
        raise InputError(f"experiment {experiment!r}: every answer is anonymous ({anonymous}); "
                         "the comparison needs answers to signed-in users")
    names = sorted(per)
    control = control or ("control" if "control" in per else names[0])
    if control not in per:
        raise InputError(f"--control {control!r} is not a variant with answers; have {names}")
    users = {v: _per_user(per[v]) for v in names}
    items = {v: _per_user(per[v], "shown", ITEM_METRICS) for v in names}
    out: dict[str, Any] = {
        "experiment": experiment, "control": control, "unit": "answered recommend (request_id)",
        "units": {m: ("answered recommend (request_id): an answer with at least one" if u == "answer"
                      else "shown item (request_id, item_id): clicked or added shown items over shown items")
                  for m, u in UNITS.items()},
        "since": since.isoformat() if since else None, "until": until.isoformat() if until else None,
        "attribution_window_hours": window.total_seconds() / 3600,
        "excluded_anonymous": anonymous, "interval": "95%: Wilson per variant; difference to control: "
        f"user-clustered bootstrap ({resamples} resamples, seed {seed})", "variants": {}}
    for v in names:
        u = users[v]
        n = int(u.answers.sum())
        row: dict[str, Any] = {"answers": n, "users": len(u.answers), "shown_items": int(items[v].answers.sum())}
        for group, ms in ((users, METRICS), (items, ITEM_METRICS)):
            g = group[v]
            trials = int(g.answers.sum())
            for m in ms:
                k = int(g.successes[m].sum())
                lo, hi = wilson(k, trials)
                row[m] = {"unit": UNITS[m], "trials": trials, "successes": k,
                          "rate": k / trials if trials else 0.0, "ci95": [lo, hi]}
                if v != control:
                    c = group[control]
                    base = int(c.successes[m].sum()) / max(int(c.answers.sum()), 1)
                    dlo, dhi = bootstrap_diff(c, g, m, resamples=resamples, seed=seed)
                    row[m]["diff_vs_control"] = {"diff": row[m]["rate"] - base, "ci95": [dlo, dhi],
                                                 "excludes_0": dlo > 0 or dhi < 0}
        out["variants"][v] = row
    return out


def table(rep: dict[str, Any]) -> str:
    """The report as a fixed-width text table: one line per metric and variant, rates in %."""
    w = max(14, 2 + max(len(v) for v in rep["variants"]))
    lines = [f"experiment {rep['experiment']} (control: {rep['control']}); "
             f"attribution window {rep['attribution_window_hours']:g} h; "
             f"{rep['excluded_anonymous']} anonymous answers left out",
             "units: ctr, add_to_cart_rate, purchase_rate per answer (n = answers; an answer with at "
             "least one); item_* per shown item (n = shown items)",
             f"{'metric':<22}{'variant':<{w}}{'users':>7}{'n':>9}{'rate':>9}  {'95% CI':<17}"
             f"{'vs control':>11}  95% CI"]
    for m in (*METRICS, *ITEM_METRICS):
        for v, row in rep["variants"].items():
            r = row.get(m)
            if r is None:  # a report written before the item rates
                continue
            n = row["answers"] if UNITS[m] == "answer" else row["shown_items"]
            line = (f"{m:<22}{v:<{w}}{row['users']:>7}{n:>9}{100 * r['rate']:>8.2f}%  "
                    f"{'[%.2f, %.2f]' % (100 * r['ci95'][0], 100 * r['ci95'][1]):<17}")
            d = r.get("diff_vs_control")
            if d:
                line += (f"{100 * d['diff']:>+8.2f} pp  [{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]"
                         + (" *" if d["excludes_0"] else ""))
            lines.append(line.rstrip())
    lines.append(f"intervals: {rep['interval']}; * the difference's interval excludes 0")
    return "\n".join(lines)
