"""Metric definitions, aggregation of per-case observations, and the bootstrap.

Each case record holds ``obs``: metric name -> list of observations (one per outfit, item,
fact, ... as the metric defines). A metric over any set of cases is the mean of all their
observations, reported with ``count`` (observations) and ``cases`` (cases contributing), so
that no figure appears without the evidence behind it. Resampling whole cases keeps the
bootstrap honest about observations that come in correlated bundles (three outfits of one
request are not three independent trials).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from mmrec.bench.probe_stats import latency_summary


@dataclass(frozen=True)
class MetricDef:
    label: str
    better: str  # "higher" | "lower"
    unit: str    # "rate" (0..1) | "score" (0..1) | "ms"
    group: str
    help: str


METRICS: dict[str, MetricDef] = {
    "answered": MetricDef("Answered", "higher", "rate", "outfits",
                          "requests that returned at least one outfit (per case; a photo the "
                          "system declined to read is counted by <mode>.abstain instead)"),
    "fill_rate": MetricDef("Outfits / k", "higher", "rate", "outfits",
                           "outfits returned over outfits asked for (per case, abstentions aside)"),
    "scene_rules": MetricDef("Scene rules met", "higher", "rate", "rules",
                             "outfits whose every item meets the scene's rules on catalog truth "
                             "(outfits without a withheld item)"),
    "item_rules": MetricDef("Items meeting rules", "higher", "rate", "rules",
                            "items meeting the scene's rules on catalog truth"),
    "complete": MetricDef("Complete outfits", "higher", "rate", "outfits",
                          "outfits filling exactly one scene template with true slots"),
    "slot_valid": MetricDef("Valid slots", "higher", "rate", "outfits",
                            "items whose catalog slot is the slot they were returned in"),
    "compatibility": MetricDef("Compatibility", "higher", "score", "style",
                               "judge's formality + colour-harmony score per outfit (0..1)"),
    "diversity_within": MetricDef("Colour variety in outfit", "higher", "score", "style",
                                  "distinct colour families / items, per outfit"),
    "diversity_across": MetricDef("Variety across outfits", "higher", "score", "style",
                                  "1 - mean pairwise Jaccard of the outfits' item sets, per case"),
    "repeat_rate": MetricDef("Repeated items", "lower", "rate", "style",
                             "item slots repeating an item of an earlier outfit, per case"),
    "gender_violation": MetricDef("Gender violations", "lower", "rate", "constraints",
                                  "items of the other gender than asked (unisex allowed)"),
    "mixed_gender": MetricDef("Mixed-gender outfits", "lower", "rate", "constraints",
                              "outfits mixing men's and women's ranges"),
    "budget_violation": MetricDef("Budget violations", "lower", "rate", "constraints",
                                  "outfits over the shopper's budget (priced catalogs only)"),
    "explained": MetricDef("Explained", "higher", "rate", "explanations",
                           "outfits with a non-empty explanation"),
    "fact_precision": MetricDef("Fact precision", "higher", "rate", "explanations",
                                "checkable facts that are true on catalog truth / context"),
    "fact_unverifiable": MetricDef("Uncheckable facts", "lower", "rate", "explanations",
                                   "facts no ground truth can check (model-only values, routes)"),
    "text_grounded": MetricDef("Text grounded", "higher", "rate", "explanations",
                               "attribute values named in the text that are grounded"),
    "text_match": MetricDef("Text query honoured", "higher", "rate", "relevance",
                            "outfits with an item matching every attribute of the typed query"),
    "photo_category": MetricDef("Photo look-alike category", "higher", "rate", "relevance",
                                "outfit item in the photo's slot has the photo's category"),
    "photo_colour": MetricDef("Photo look-alike colour", "higher", "rate", "relevance",
                              "outfit item in the photo's slot has the photo's colour"),
    "recall.self@10": MetricDef("Photo: product in top 10", "higher", "rate", "recall",
                                "re-shot held-out product found among the 10 nearest"),
    "recall.self@k": MetricDef("Photo: product in top k", "higher", "rate", "recall",
                               "re-shot held-out product found among the k nearest (probe depth)"),
    "recall.category_p@10": MetricDef("Photo: category P@10", "higher", "rate", "recall",
                                      "top-10 photo neighbours with the product's category"),
    "recall.colour_p@10": MetricDef("Photo: colour P@10", "higher", "rate", "recall",
                                    "top-10 photo neighbours with the product's colour"),
    "recall.text_p@10": MetricDef("Text: P@10", "higher", "rate", "recall",
                                  "top-10 text-recall items matching every expected attribute"),
    "rank.ndcg@10": MetricDef("Ranking NDCG@10", "higher", "score", "ranking",
                              "held-out positives vs sampled negatives, per persona case"),
    "rank.hit@10": MetricDef("Ranking hit@10", "higher", "rate", "ranking",
                             "a held-out positive ranked in the top 10"),
    "rank.auc": MetricDef("Ranking AUC", "higher", "score", "ranking",
                          "probability a held-out positive outscores a sampled negative"),
    "latency_ms": MetricDef("Latency", "lower", "ms", "latency", "request wall time"),
    # -- quality on inputs the system did not make ---------------------------------------------
    "claims.precision": MetricDef("Statement precision", "higher", "rate", "explanations",
                                  "explanation statements true on truth / statements the judge "
                                  "could check (all kinds, text only; facts not read)"),
    "claims.unchecked": MetricDef("Unchecked statements", "lower", "rate", "explanations",
                                  "statements no judge could check (listed in results)"),
    "claims.query": MetricDef("'Matches your search' true", "higher", "rate", "explanations",
                              "statements saying items match the search whose items match the "
                              "query's stated terms"),
    "claims.photo": MetricDef("'Similar to your photo' true", "higher", "rate", "explanations",
                              "statements saying an item is similar to the photo whose item is of "
                              "the photo's true slot (and colour family where stated)"),
    "query.constraints": MetricDef("Query constraints met", "higher", "rate", "relevance",
                                   "outfits meeting everything a hand-written query states "
                                   "(gender, categories, colour family, negations, price where "
                                   "the catalog has prices)"),
    "query.price_unverifiable": MetricDef("Query price ceiling unverifiable", "lower", "rate", "relevance",
                                          "hand-written queries with a price ceiling on a catalog that "
                                          "states no price (not counted in query constraints)"),
    "query.price_disclosed": MetricDef("Unverifiable ceiling disclosed", "higher", "rate", "relevance",
                                       "of those, answers whose notes say the ceiling could not be applied"),
    "photo.self_in_outfit": MetricDef("Photographed product in outfit", "lower", "rate", "relevance",
                                      "outfits holding the re-shot product itself (excluded from the "
                                      "request, so any is a leak)"),
    "withheld.scene_rules": MetricDef("Withheld: scene rules met", "higher", "rate", "withheld",
                                      "outfits with a new-arrival item whose new-arrival items meet "
                                      "the scene rules on withheld catalog truth"),
    "withheld.item_rules": MetricDef("Withheld: items meeting rules", "higher", "rate", "withheld",
                                     "new-arrival items meeting the scene rules on withheld truth"),
    "withheld.slot_valid": MetricDef("Withheld: valid slots", "higher", "rate", "withheld",
                                     "new-arrival items returned in their true slot"),
    "withheld.gender_violation": MetricDef("Withheld: gender violations", "lower", "rate", "withheld",
                                           "new-arrival items of the other gender than asked"),
    "withheld.complete": MetricDef("Withheld: complete outfits", "higher", "rate", "withheld",
                                   "outfits with a new-arrival item filling a template with true slots"),
    "withheld.mixed_gender": MetricDef("Withheld: mixed-gender outfits", "lower", "rate", "withheld",
                                       "outfits with a new-arrival item mixing men's and women's ranges"),
    "withheld.fact_precision": MetricDef("Withheld: fact precision", "higher", "rate", "withheld",
                                         "structured facts about new-arrival items true on withheld truth"),
    "withheld.claims": MetricDef("Withheld: statement precision", "higher", "rate", "withheld",
                                 "checked statements naming a new-arrival item that are true on "
                                 "withheld truth"),
}
# Judges of how the system read an outside (or re-shot) photo, per photo mode.
PHOTO_READING = {
    "slot": ("slot", "higher", "photo slot read right, when the system did not abstain"),
    "slot_all": ("slot (abstain = miss)", "higher", "photo slot read right over all labelled photos"),
    "category": ("garment class", "higher", "read category among the label's categories"),
    "colour_family": ("colour family", "higher", "read colour's family equals the label's"),
    "gender": ("gender", "higher", "read gender equals the label's (adult lines)"),
    "abstain": ("abstained", "lower", "labelled photos the system would not read"),
    "probe_abstain": ("probes abstained", "higher", "unreadable photos (labeller unsure) it abstained on"),
    "ask_first": ("asked: right slot offered first", "higher", "abstained labelled photos whose true "
                  "slot is the first choice the shopper is offered (one tap)"),
    "ask_top2": ("asked: right slot among first two", "higher", "abstained labelled photos whose true "
                 "slot is among the first two choices offered"),
    "anchor_slot": ("outfit around true slot", "higher", "outfits holding an item of the photo's true slot"),
    "similar_slot@10": ("look-alikes of true slot P@10", "higher",
                        "top-10 look-alikes (the product itself left out) of the photo's true slot"),
    "slot_ece": ("slot confidence ECE", "lower", "expected calibration error (10 bins) of the slot "
                 "confidence over labelled photos with a read slot, abstained ones included", "score"),
}
PHOTO_MODE_LABELS = {"photo": "Re-shot catalog photo", "real_photo": "Real phone photo",
                     "other_retailer": "Other retailer's packshot"}
# Metrics that are true by construction when the system and the judges read the same rows:
# reported as consistency checks, apart from the quality numbers.
CONSISTENCY = ("scene_rules", "item_rules", "complete", "slot_valid", "gender_violation",
               "mixed_gender", "budget_violation", "fact_precision", "fact_unverifiable",
               "text_grounded", "text_match", "compatibility", "photo_category", "photo_colour",
               "recall.self@10", "recall.self@k", "recall.text_p@10")


def metric_def(name: str) -> MetricDef:
    if name in METRICS:
        return METRICS[name]
    mode, _, judge = name.partition(".")
    if mode in PHOTO_MODE_LABELS and judge in PHOTO_READING:
        label, better, help_, *unit = PHOTO_READING[judge]
        return MetricDef(f"{PHOTO_MODE_LABELS[mode]}: {label}", better, unit[0] if unit else "rate",
                         "real-scene" if mode != "photo" else "recall", help_)
    if name.startswith("tag."):
        field = name[4:]
        return MetricDef(f"Tagging: {field}", "higher", "rate", "tagging",
                         f"tagger's {field} equals catalog truth on held-out photos")
    raise KeyError(f"unknown metric {name!r}; known: {sorted(METRICS)} and tag.<field>")


def aggregate(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float | int]]:
    """Mean, observation count and case count of every metric over ``records``."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    cases: dict[str, int] = {}
    for r in records:
        for name, values in (r.get("obs") or {}).items():
            if not values:
                continue
            sums[name] = sums.get(name, 0.0) + float(sum(values))
            counts[name] = counts.get(name, 0) + len(values)
            cases[name] = cases.get(name, 0) + 1
    return {n: {"value": sums[n] / counts[n], "count": counts[n], "cases": cases[n]}
            for n in sorted(sums)}


def group_by(records: Sequence[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], str]
             ) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(key(r), []).append(r)
    return {g: {"cases": len(rs), "metrics": aggregate(rs)} for g, rs in sorted(groups.items())}


def latency_by_mode(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    ok = [r for r in records if r.get("latency_ms") is not None]
    out: dict[str, Any] = {"all": latency_summary([r["latency_ms"] for r in ok]), "by_mode": {}}
    for mode in sorted({r["mode"] for r in ok}):
        out["by_mode"][mode] = latency_summary([r["latency_ms"] for r in ok if r["mode"] == mode])
    return out


def confusion(records: Sequence[Mapping[str, Any]], top: int = 12) -> dict[str, Any]:
    """Per tagged field: the most frequent true labels (plus "other") x predicted labels."""
    pairs: dict[str, list[tuple[str, str]]] = {}
    for r in records:
        for field, (pred, truth) in (r.get("tags") or {}).items():
            pairs.setdefault(field, []).append((str(pred), str(truth)))
    out: dict[str, Any] = {}
    for field, ps in sorted(pairs.items()):
        freq: dict[str, int] = {}
        for _, t in ps:
            freq[t] = freq.get(t, 0) + 1
        labels = [t for t, _ in sorted(freq.items(), key=lambda x: (-x[1], x[0]))[:top]]
        cols = labels + ["other"]
        idx = {lab: i for i, lab in enumerate(labels)}
        m = np.zeros((len(labels) + 1, len(cols)), dtype=int)
        for p, t in ps:
            m[idx.get(t, len(labels)), idx.get(p, len(labels))] += 1
        out[field] = {"labels": cols, "matrix": m.tolist(), "count": len(ps),
                      "accuracy": sum(p == t for p, t in ps) / len(ps)}
    return out


def calibration(readings: Sequence[Mapping[str, Any]], bins: int = 10) -> dict[str, Any] | None:
    """Expected calibration error of the slot reading's confidence, with its reliability table.

    Over labelled readings that carry a confidence and read a slot, abstained or not: the
    confidence is judged on the slot the reading leaned to (a run before abstention existed
    has no ``guess_correct``: its non-abstained verdicts are used).
    """
    pts = [(float(r["confidence"]), bool(r["guess_correct"] if "guess_correct" in r else r["correct"]))
           for r in readings if r.get("confidence") is not None
           and (r["guess_correct"] if "guess_correct" in r else r.get("correct")) is not None]
    if not pts:
        return None
    table = []
    ece = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        sel = [(c, ok) for c, ok in pts if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if not sel:
            continue
        conf = sum(c for c, _ in sel) / len(sel)
        acc = sum(ok for _, ok in sel) / len(sel)
        ece += len(sel) / len(pts) * abs(conf - acc)
        table.append({"bin": [lo, hi], "confidence": conf, "accuracy": acc, "count": len(sel)})
    return {"ece": ece, "count": len(pts), "bins": table,
            "note": "confidence = the photo reading's calibrated slot confidence (the tagger's "
                    "category confidence when the system gives none), judged on the slot read, "
                    "abstained readings included"}


def pair_parity(records: Sequence[Mapping[str, Any]], metric: str) -> dict[str, Any] | None:
    """Share of en/zh query pairs judged alike: every outfit of both meets ``metric`` or
    neither does (an unanswered query counts as not meeting it)."""
    by_pair: dict[str, dict[str, bool]] = {}
    for r in records:
        if not r.get("pair") or r.get("lang") not in ("en", "zh"):
            continue
        vals = (r.get("obs") or {}).get(metric) or []
        by_pair.setdefault(r["pair"], {})[r["lang"]] = bool(vals) and all(vals)
    full = {p: v for p, v in by_pair.items() if len(v) == 2}
    if not full:
        return None
    same = [v["en"] == v["zh"] for v in full.values()]
    return {"parity": sum(same) / len(same), "pairs": len(full),
            "both_met": sum(v["en"] and v["zh"] for v in full.values()),
            "en_only": sum(v["en"] and not v["zh"] for v in full.values()),
            "zh_only": sum(v["zh"] and not v["en"] for v in full.values())}


# -- bootstrap ----------------------------------------------------------------------------------

def case_sums(records: Sequence[Mapping[str, Any]], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(sum of observations, number of observations) per record, for one metric."""
    s = np.array([float(sum((r.get("obs") or {}).get(metric) or [])) for r in records])
    n = np.array([len((r.get("obs") or {}).get(metric) or []) for r in records], dtype=float)
    return s, n


def bootstrap_delta(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], metric: str,
                    *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
                    ) -> dict[str, float | int] | None:
    """Paired bootstrap CI of (b - a) for a metric, resampling the cases both runs share.

    ``a`` and ``b`` must be aligned (same case at the same index). For ``latency_ms`` the
    statistic is the p50 and p99 of per-case latency instead of the mean.
    """
    if len(a) != len(b):
        raise ValueError(f"runs are not aligned: {len(a)} vs {len(b)} cases")
    sa, na = case_sums(a, metric)
    sb, nb = case_sums(b, metric)
    keep = (na > 0) & (nb > 0)
    if not keep.any():
        return None
    sa, na, sb, nb = sa[keep], na[keep], sb[keep], nb[keep]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(sa), size=(n_boot, len(sa)))
    va = sa[idx].sum(1) / na[idx].sum(1)
    vb = sb[idx].sum(1) / nb[idx].sum(1)
    d = vb - va
    lo, hi = np.quantile(d, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"a": float(sa.sum() / na.sum()), "b": float(sb.sum() / nb.sum()),
            "delta": float(sb.sum() / nb.sum() - sa.sum() / na.sum()),
            "ci_low": float(lo), "ci_high": float(hi), "cases": int(keep.sum()),
            "count_a": int(na.sum()), "count_b": int(nb.sum())}


def bootstrap_percentile_delta(a: Sequence[float], b: Sequence[float], q: float, *,
                               n_boot: int = 1000, seed: int = 0, level: float = 0.95
                               ) -> dict[str, float | int] | None:
    """Paired bootstrap CI of the change of a latency percentile (aligned per-case values)."""
    xa, xb = np.asarray(a, float), np.asarray(b, float)
    if len(xa) != len(xb) or len(xa) == 0:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(xa), size=(n_boot, len(xa)))
    d = np.percentile(xb[idx], q, axis=1) - np.percentile(xa[idx], q, axis=1)
    lo, hi = np.quantile(d, [(1 - level) / 2, 1 - (1 - level) / 2])
    pa, pb = float(np.percentile(xa, q)), float(np.percentile(xb, q))
    return {"a": pa, "b": pb, "delta": pb - pa, "ci_low": float(lo), "ci_high": float(hi),
            "cases": len(xa), "count_a": len(xa), "count_b": len(xb)}
