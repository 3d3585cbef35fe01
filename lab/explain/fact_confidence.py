"""How sure must the tagger be before an explanation cites its reading? (measurement)

Outcome (2026-12-07, demo tagger of 2026-12-07, 1,321 val-split new arrivals of run lang4):
ADOPTED per-field thresholds category 0.8 (cited readings 97.8% right, 10% of readings cited),
colour 0.9 (100%, 2.6%), season 0.85 (95.5%, 1.7%); usage, gender and pattern never reach 95%
and are never cited from the tagger. Test split, read once at these thresholds: category 98.6%
(n=139), colour 100% (n=39), season 80% (n=15). docs/results/fact-confidence-20261207/metrics.json,
docs/tagger.md "Citing the tagger".
The product's `explain.model_confidence` holds, per field, the lowest threshold at which the
cited readings are >= 95% right on the VAL split (none: the field's readings are never cited);
the test split is read once, at the adopted thresholds.

Reads the new arrivals a benchmark run tagged (``<run>/withheld_arrivals.parquet``: the val and
test splits served with photo + title only) and the catalog truth from the store.

    python -m lab.explain.fact_confidence --run runs/lang4 --artifacts artifacts \
        --out docs/results/fact-confidence-20261207
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

FIELDS = ("category", "colour", "usage", "season", "pattern", "gender")
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
TARGET = 0.95


def readings(run: Path, artifacts: Path, split: str) -> dict[str, list[tuple[float, bool]]]:
    """Per field: (confidence, right on catalog truth) of every model reading in ``split``."""
    import pyarrow.parquet as pq

    from mmrec import kinds
    from mmrec.artifacts import ArtifactStore
    from mmrec.catalog.ingest import load_items
    from mmrec.splits import split_of
    from mmrec.taxonomy import default_taxonomy

    tax = default_taxonomy()
    store = ArtifactStore(artifacts)
    truth = {r["item_id"]: r for r in load_items(store, store.load(kinds.INDEX).manifest["items_version"]).to_pylist()}
    out: dict[str, list[tuple[float, bool]]] = {f: [] for f in FIELDS}
    for r in pq.read_table(run / "withheld_arrivals.parquet").to_pylist():
        if split_of(r["item_id"]) != split:
            continue
        t = truth[r["item_id"]]
        for fld, a in dict(r["attributes"] or []).items():
            if fld not in out or a["source"] != "model" or a["confidence"] is None:
                continue
            if fld == "colour":
                ok = tax.colour_family(a["value"]) == tax.colour_family(t.get("colour"))
            else:
                ok = a["value"] == t.get(fld)
            out[fld].append((float(a["confidence"]), bool(ok)))
    return out


def table(reads: dict[str, list[tuple[float, bool]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per field and threshold: share of readings cited and their precision."""
    res: dict[str, dict[str, dict[str, float]]] = {}
    for fld, pairs in reads.items():
        conf = np.array([c for c, _ in pairs])
        ok = np.array([o for _, o in pairs], dtype=float)
        res[fld] = {"n": {"all": int(len(conf))}}
        for th in THRESHOLDS:
            m = conf >= th
            res[fld][f"{th:g}"] = {"cited": float(m.mean()) if len(m) else 0.0,
                                   "precision": float(ok[m].mean()) if m.any() else float("nan"),
                                   "n": int(m.sum())}
    return res


def choose(val: dict[str, dict[str, dict[str, float]]]) -> dict[str, float | None]:
    """Per field: the lowest threshold at which the cited readings reach TARGET precision on
    at least 10 readings (None: no threshold does; the field's readings are never cited)."""
    out: dict[str, float | None] = {}
    for fld, rows in val.items():
        out[fld] = next((th for th in THRESHOLDS if rows[f"{th:g}"]["n"] >= 10
                         and rows[f"{th:g}"]["precision"] >= TARGET), None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    val = table(readings(a.run, a.artifacts, "val"))
    chosen = choose(val)
    test = table(readings(a.run, a.artifacts, "test"))
    result = {"target_precision": TARGET, "chosen_on_val": chosen, "val": val,
              "test_at_chosen": {f: test[f][f"{th:g}"] for f, th in chosen.items() if th is not None}}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "metrics.json").write_text(json.dumps(result, indent=1))
    for fld in FIELDS:
        print(fld, "n", val[fld]["n"]["all"], " ".join(
            f"{th:g}:{val[fld][f'{th:g}']['precision']:.3f}/{val[fld][f'{th:g}']['cited']:.2f}" for th in THRESHOLDS))
    print("chosen on val:", chosen, "| test at chosen:", json.dumps(result["test_at_chosen"]))


if __name__ == "__main__":
    main()
