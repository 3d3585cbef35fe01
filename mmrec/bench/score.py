"""Apply the judges to one case: a response (API JSON) -> a record of observations and failures.

The record is what the runner appends to ``results.jsonl``: the judged outfits (ids, slots,
explanation text and the checks each failed, for the report's gallery) and ``obs``, the
per-metric observations that `mmrec.bench.metrics` aggregates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from mmrec.bench import judges as J
from mmrec.bench.personas import Persona
from mmrec.bench.suite import Case
from mmrec.taxonomy import Taxonomy

TAG_FIELDS = ("category", "gender", "colour", "usage", "pattern", "season")


@dataclass
class Truth:
    """Everything the judges may read and the system under test never receives."""

    rows: Mapping[str, Mapping[str, Any]]  # item id -> catalog row (items.parquet)
    scenes: Mapping[str, Any]              # scene name -> Scene
    personas: Mapping[str, Persona]
    taxonomy: Taxonomy
    tag_fields: Sequence[str] = TAG_FIELDS
    _vocab: dict[str, list[str]] = field(default_factory=dict)

    def scene_vocabulary(self, scene: Any) -> list[str]:
        """Words a scene's own definition states (its explanations may repeat them)."""
        if scene.name not in self._vocab:
            words = [scene.name, scene.label, *scene.aliases, *scene.usages, *scene.seasons]
            for r in (*scene.must, *scene.must_not):
                words += [*r.values, r.reason, *J.scan_mentions(r.reason, self.taxonomy)]
            self._vocab[scene.name] = words
        return self._vocab[scene.name]


def rules_held(scene: Any, outfit: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """Reasons of the scene rules that apply to some item of the outfit and hold for all."""
    held = []
    for kind, rules in (("must", scene.must), ("must_not", scene.must_not)):
        for r in rules:
            applicable = [row for slot, row in outfit if r.slots is None or slot in r.slots]
            if not applicable:
                continue
            vals = [J.truth_value(row, r.field) for row in applicable]
            ok = all(v in r.values for v in vals) if kind == "must" else \
                all(v is None or v not in r.values for v in vals)
            if ok:
                held.append(r.reason)
    return held


def _obs(d: dict[str, list[float]], name: str, value: Any) -> None:
    if value is None:
        return
    d.setdefault(name, []).append(float(value))


def score_case(case: Case, response: Mapping[str, Any], truth: Truth, *,
               neighbours: Sequence[str] | None = None, text_hits: Sequence[str] | None = None,
               rank: tuple[Sequence[float], Sequence[int]] | None = None,
               latency_ms: float | None = None) -> dict[str, Any]:
    """Judge one response; probes (neighbours, text_hits, rank) are optional.

    Args:
        neighbours: catalog items nearest to the kiosk photo (deepest list available).
        text_hits: text-recall results for the typed query.
        rank: (ranker scores, labels) over held-out positives and sampled negatives.
    """
    scene = truth.scenes[case.scene]
    persona = truth.personas[case.persona]
    tax = truth.taxonomy
    obs: dict[str, list[float]] = {}
    outfits_out: list[dict[str, Any]] = []
    outfits = list(response.get("outfits") or [])
    _obs(obs, "answered", bool(outfits))
    _obs(obs, "fill_rate", min(len(outfits), case.k) / case.k)
    history_truth = {f"history.{f}": [v for i in persona.history if i in truth.rows
                                      for v in [J.truth_value(truth.rows[i], f)] if v]
                     for f in ("colour", "category")}
    vocab = truth.scene_vocabulary(scene)
    for o in outfits:
        fails: list[J.Failure] = []
        pairs: list[tuple[str, Mapping[str, Any]]] = []
        for it in o.get("items") or []:
            row = truth.rows.get(str(it.get("item_id")))
            if row is None:
                fails.append(J.Failure("unknown_item", str(it.get("item_id")),
                                       "item id is not in the catalog"))
                continue
            pairs.append((str(it.get("slot")), row))
        rule_fails = J.judge_scene_rules(scene, pairs)
        bad_items = {f.item_id for f in rule_fails}
        _obs(obs, "scene_rules", not rule_fails and len(pairs) == len(o.get("items") or []))
        for _, row in pairs:
            _obs(obs, "item_rules", str(row["item_id"]) not in bad_items)
        complete, valid, struct_fails = J.judge_structure(scene, pairs)
        _obs(obs, "complete", complete and not any(f.check == "unknown_item" for f in fails))
        for v in valid:
            _obs(obs, "slot_valid", v)
        per_item, mixed, gender_fails = J.judge_gender(pairs, case.gender)
        for v in per_item:
            _obs(obs, "gender_violation", v)
        _obs(obs, "mixed_gender", mixed)
        over, budget_fails = J.judge_budget(pairs, case.budget)
        _obs(obs, "budget_violation", over)
        rows = [r for _, r in pairs]
        _obs(obs, "compatibility", J.compatibility(rows, tax))
        _obs(obs, "diversity_within", J.diversity_within(rows, tax))
        if case.mode == "text":
            hit = J.judge_text_match(rows, case.expect)
            _obs(obs, "text_match", hit)
            if hit is False:  # a relevance miss: shown in the gallery after the hard failures
                fails.append(J.Failure("text_query", None, f"no item matches the typed query "
                                                           f"{case.text!r} ({case.expect})"))
        if case.mode == "photo" and case.photo_item in truth.rows:
            photo_row = truth.rows[case.photo_item]
            same = J.judge_photo_match(pairs, photo_row, "category")
            _obs(obs, "photo_category", same)
            _obs(obs, "photo_colour", J.judge_photo_match(pairs, photo_row, "colour"))
            if same is False:
                slot = J.truth_value(photo_row, "slot")
                got = [str(r["item_id"]) for s_, r in pairs if s_ == slot]
                fails.append(J.Failure("photo_match", got[0] if got else None,
                                       f"the photo shows {J.truth_value(photo_row, 'category')!r}; "
                                       f"the outfit's {slot} is not one"))
        expl = o.get("explanation") or {}
        text = expl.get("text") or ""
        _obs(obs, "explained", bool(text.strip()))
        by_id = {str(r["item_id"]): r for r in rows}
        context = {"scene": vocab, "scene_rule": rules_held(scene, pairs),
                   "profile.occasion": persona.preferred_occasions,
                   "query": [case.text] if case.text else [], **history_truth}
        for f in expl.get("facts") or []:
            verdict = J.judge_fact(f, by_id, context)
            _obs(obs, "fact_unverifiable", verdict is None)
            _obs(obs, "fact_precision", verdict)
            if verdict is False:
                fails.append(J.Failure("explanation", f.get("item_id"),
                                       f"false fact: {f.get('field')} = {f.get('value')!r} "
                                       f"(source {f.get('source')})"))
        if text:
            text_ctx = dict(context)
            text_ctx["query_terms"] = J.scan_mentions(case.text or "", tax)
            for term, ok in J.judge_text(text, expl.get("facts") or [], by_id, text_ctx, tax):
                _obs(obs, "text_grounded", ok)
                if not ok:
                    fails.append(J.Failure("explanation", None, f"text names {term!r}, which no "
                                                                "fact or catalog value supports"))
        fails += rule_fails + struct_fails + gender_fails + budget_fails
        outfits_out.append({
            "items": [{"item_id": str(it.get("item_id")), "slot": it.get("slot")}
                      for it in o.get("items") or []],
            "score": o.get("score"), "system_compatibility": o.get("compatibility"),
            "explanation": text[:600], "failures": [f.as_dict() for f in fails]})
    div, rep = J.diversity_across([[it["item_id"] for it in o["items"]] for o in outfits_out])
    _obs(obs, "diversity_across", div)
    _obs(obs, "repeat_rate", rep)

    tags: dict[str, list[str | None]] = {}
    photo = response.get("photo") or {}
    if case.mode == "photo" and case.photo_item in truth.rows:
        photo_row = truth.rows[case.photo_item]
        pred = photo.get("attributes") or {}
        tagger = str((response.get("versions") or {}).get("tagger", "absent"))
        # no tagger loaded: tagging was not measured (rather than measured as all wrong)
        correct = (J.tagging_correct(pred, photo_row, truth.tag_fields)
                   if pred or not tagger.startswith("absent") else {})
        for f, ok in correct.items():
            _obs(obs, f"tag.{f}", ok)
            p = pred.get(f)
            tags[f] = [p.get("value") if isinstance(p, Mapping) else p, J.truth_value(photo_row, f)]
        near = list(neighbours) if neighbours is not None else list(photo.get("similar") or [])
        if near:
            _obs(obs, "recall.self@10", case.photo_item in near[:10])
            _obs(obs, "recall.self@k", case.photo_item in near)
            for fld in ("category", "colour"):
                want = J.truth_value(photo_row, fld)
                if want is not None:
                    rel = {i: J.matches(truth.rows[i], {fld: want}) for i in near[:10] if i in truth.rows}
                    _obs(obs, f"recall.{fld}_p@10", J.precision_at(near, rel, 10))
    if text_hits and case.expect:
        rel = {i: J.matches(truth.rows[i], case.expect) for i in text_hits[:10] if i in truth.rows}
        _obs(obs, "recall.text_p@10", J.precision_at(list(text_hits), rel, 10))
    if rank is not None:
        m = J.ranking_metrics(list(rank[0]), list(rank[1]), k=10)
        if m is not None:
            _obs(obs, "rank.ndcg@10", m["ndcg"])
            _obs(obs, "rank.hit@10", m["hit"])
            _obs(obs, "rank.auc", m["auc"])
    _obs(obs, "latency_ms", latency_ms)
    return {
        "case_id": case.case_id, "scene": case.scene, "persona": case.persona,
        "segment": case.segment, "mode": case.mode, "status": "ok", "error": None,
        "latency_ms": latency_ms, "request": {"text": case.text, "user_id": case.user_id,
                                              "gender": case.gender, "photo_item": case.photo_item},
        "versions": dict(response.get("versions") or {}), "notes": list(response.get("notes") or [])[:8],
        "outfits": outfits_out, "obs": obs, "tags": tags,
        "photo_similar": list(photo.get("similar") or [])[:10],
    }


def error_record(case: Case, error: str) -> dict[str, Any]:
    """A failed request: it counts as unanswered, and its error is kept for the report."""
    return {"case_id": case.case_id, "scene": case.scene, "persona": case.persona,
            "segment": case.segment, "mode": case.mode, "status": "error", "error": error[:1000],
            "latency_ms": None, "request": {"text": case.text, "user_id": case.user_id,
                                            "gender": case.gender, "photo_item": case.photo_item},
            "versions": {}, "notes": [], "outfits": [], "obs": {"answered": [0.0], "fill_rate": [0.0]},
            "tags": {}, "photo_similar": []}


def ranking_candidates(case: Case, persona: Persona, pool: Sequence[str], n_neg: int,
                       max_pos: int = 10) -> tuple[list[str], list[int]] | None:
    """Held-out positives + ``n_neg`` negatives drawn deterministically from ``pool``.

    Negatives exclude everything the persona interacted with; the list is shuffled by a case
    hash so that no order carries the label.
    """
    pos = [i for i in persona.heldout if i in set(pool)][:max_pos]
    if not pos:
        return None
    seen = set(persona.history) | set(persona.heldout)
    key = int.from_bytes(hashlib.sha1(case.case_id.encode()).digest()[:8], "big")
    cands = [i for i in pool if i not in seen]
    if not cands:
        return None
    step = max(1, len(cands) // max(n_neg, 1))
    neg = [cands[(key + j * step + j * j) % len(cands)] for j in range(min(n_neg, len(cands)))]
    neg = list(dict.fromkeys(neg))
    ids = pos + neg
    labels = [1] * len(pos) + [0] * len(neg)
    order = sorted(range(len(ids)), key=lambda j: hashlib.sha1(f"{key}:{ids[j]}".encode()).digest())
    return [ids[j] for j in order], [labels[j] for j in order]
