"""Per-attribute accuracy and macro-F1, colour by family, and the summary the trainer selects on.

Only products with a ground-truth label count for a field; predicting "unknown" (None) on a
labelled product counts as wrong. Macro-F1 averages over the classes present in the ground
truth, so a tagger that only ever says "tshirts" scores low even where T-shirts dominate.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from mmrec.taxonomy import Taxonomy

# The four fields the issue sets targets on, and the field names as reported.
HEADLINE_FIELDS = ("category", "gender", "colour_family", "usage")


def field_scores(y_true: Sequence[str | None], y_pred: Sequence[str | None]) -> dict[str, Any]:
    pairs = [(t, p) for t, p in zip(y_true, y_pred) if t is not None]
    n = len(pairs)
    if n == 0:
        return {"n": 0, "accuracy": None, "macro_f1": None, "unknown_rate": None}
    correct = sum(t == p for t, p in pairs)
    classes = sorted({t for t, _ in pairs})
    tp, fp, fn = Counter(), Counter(), Counter()
    for t, p in pairs:
        if t == p:
            tp[t] += 1
        else:
            fn[t] += 1
            if p is not None:
                fp[p] += 1
    f1s = []
    for c in classes:
        denom = 2 * tp[c] + fp[c] + fn[c]
        f1s.append(2 * tp[c] / denom if denom else 0.0)
    return {"n": n, "accuracy": round(correct / n, 4), "macro_f1": round(sum(f1s) / len(f1s), 4),
            "unknown_rate": round(sum(p is None for _, p in pairs) / n, 4)}


def top_confusions(y_true: Sequence[str | None], y_pred: Sequence[str | None], k: int = 5) -> list[dict[str, Any]]:
    """The ``k`` most frequent errors on labelled rows: truth, what was predicted ("unknown" for an
    abstention), how often, and out of how many rows with that truth."""
    per_class = Counter(t for t in y_true if t is not None)
    errors = Counter((t, p if p is not None else "unknown") for t, p in zip(y_true, y_pred)
                     if t is not None and t != p)
    return [{"truth": t, "predicted": p, "count": n, "of": per_class[t]}
            for (t, p), n in sorted(errors.items(), key=lambda e: (-e[1], e[0]))[:k]]


def attribute_report(truth: Sequence[Mapping[str, str | None]], preds: Sequence[Mapping[str, str | None]],
                     fields: Sequence[str], taxonomy: Taxonomy, *, confusions: int = 0) -> dict[str, Any]:
    """Per-field scores (+ ``colour_family``) and ``summary`` (mean macro-F1 / accuracy).

    ``confusions`` > 0 adds each field's most frequent errors (`top_confusions`) as
    ``top_confusions``: where a tagger goes wrong, not only how often.
    """
    if len(truth) != len(preds):
        raise ValueError(f"{len(truth)} ground-truth rows but {len(preds)} predictions")
    columns = {f: ([t.get(f) for t in truth], [p.get(f) for p in preds]) for f in fields}
    if "colour" in fields:
        columns["colour_family"] = tuple([taxonomy.colour_family(v) for v in col]
                                         for col in columns["colour"])
    out: dict[str, Any] = {}
    for f, (y_true, y_pred) in columns.items():
        out[f] = field_scores(y_true, y_pred)
        if confusions:
            out[f]["top_confusions"] = top_confusions(y_true, y_pred, confusions)
    scored = [out[f] for f in fields if out[f]["n"]]
    out["summary"] = {
        "n_items": len(truth),
        "macro_f1": round(sum(s["macro_f1"] for s in scored) / len(scored), 4) if scored else 0.0,
        "mean_accuracy": round(sum(s["accuracy"] for s in scored) / len(scored), 4) if scored else 0.0,
    }
    return out


def selection_macro_f1(report: Mapping[str, Any], fields: Sequence[str], min_labelled: int) -> tuple[float, list[str]]:
    """Mean macro-F1 over the fields with at least ``min_labelled`` labelled products, and those fields.

    What the trainer picks its best checkpoint by. A field labelled on a handful of validation
    products (Myntra: sleeve 1, fit 12, material 42 of 1,320) swings its macro-F1 between 0 and 1
    from one evaluation to the next and decides the pick by noise; such a field cannot be
    measured there, so it does not vote. With none measurable, all labelled fields vote.
    """
    scored = [f for f in fields if (report.get(f) or {}).get("n")]
    voting = [f for f in scored if report[f]["n"] >= min_labelled] or scored
    if not voting:
        return 0.0, []
    return round(sum(report[f]["macro_f1"] for f in voting) / len(voting), 4), voting


def headline(report: Mapping[str, Any]) -> dict[str, float | None]:
    """The four target numbers (category, gender, colour family, usage accuracy)."""
    return {f: (report.get(f) or {}).get("accuracy") for f in HEADLINE_FIELDS}
