"""Apply the judges to one case: a response (API JSON) -> a record of observations and failures.

The record is what the runner appends to ``results.jsonl``: the judged outfits (ids, slots,
explanation text and the checks each failed, for the report's gallery) and ``obs``, the
per-metric observations that `mmrec.bench.metrics` aggregates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from collections import Counter

from mmrec.bench import judges as J
from mmrec.bench.claims import ClaimContext, ClaimJudge
from mmrec.bench.personas import Persona
from mmrec.bench.probe_stats import precision_at, ranking_metrics
from mmrec.bench.queries import constraint_failures
from mmrec.bench.suite import OUTSIDE_MODES, Case
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
    withheld: frozenset[str] = frozenset()  # items served as new arrivals (photo + title only)
    _vocab: dict[str, list[str]] = field(default_factory=dict)
    _claims: ClaimJudge | None = None
    _has_prices: bool | None = None

    @property
    def has_prices(self) -> bool:
        """Whether the catalog states any price (a ceiling can be judged only then)."""
        if self._has_prices is None:
            self._has_prices = any(J.known_price(r.get("price")) for r in self.rows.values())
        return self._has_prices

    @property
    def claim_judge(self) -> ClaimJudge:
        if self._claims is None:
            self._claims = ClaimJudge(self.taxonomy)
        return self._claims

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


def photo_truth(case: Case, truth: Truth) -> dict[str, Any] | None:
    """What the photographed garment truly is: {slot, categories, colour_family, gender}."""
    if case.photo_truth is not None:
        return dict(case.photo_truth)
    row = truth.rows.get(case.photo_item) if case.photo_item else None
    if row is None:
        return None
    cat = J.truth_value(row, "category")
    return {"slot": J.truth_value(row, "slot"), "categories": [cat] if cat else [],
            "colour_family": truth.taxonomy.colour_family(J.truth_value(row, "colour")),
            "gender": J.truth_value(row, "gender"), "probe": False}


def query_terms(case: Case, truth: Truth) -> dict[str, Any] | None:
    """The item terms a typed query states: hand-written constraints, or a generated query's
    expected attributes."""
    if case.mode == "query":
        return dict(case.constraints)
    if case.text and case.expect:
        out: dict[str, Any] = {}
        if case.expect.get("category"):
            out["categories"] = [case.expect["category"]]
        if case.expect.get("colour"):
            out["colour_family"] = truth.taxonomy.colour_family(case.expect["colour"])
        return out
    return None


def _history_counts(persona: Persona, truth: Truth) -> dict[str, Counter]:
    out = {f: Counter() for f in ("colour", "category")}
    for i in persona.history:
        row = truth.rows.get(i)
        for f in out:
            v = J.truth_value(row, f) if row is not None else None
            if v:
                out[f][v] += 1
    return out


def _photo_reading(case: Case, response: Mapping[str, Any], ptruth: Mapping[str, Any],
                   truth: Truth, obs: dict[str, list[float]]) -> dict[str, Any]:
    """Judge how the system read the photo (slot, category, colour family, gender, abstention)
    against the photo's truth; returns the reading for the report and calibration."""
    photo = response.get("photo") or {}
    attrs = photo.get("attributes") or {}
    slot = photo.get("slot")
    abstained = bool(photo.get("abstained")) or slot is None
    m = case.mode
    cat = (attrs.get("category") or {}).get("value")
    conf = photo.get("slot_confidence")
    if conf is None:
        conf = (attrs.get("category") or {}).get("confidence")
    guess = photo.get("slot_guess") or slot  # what an abstained reading leaned to
    out = {"slot": slot, "category": cat, "abstained": abstained, "confidence": conf,
           "truth_slot": ptruth.get("slot"), "probe": bool(ptruth.get("probe")), "correct": None,
           "guess": guess, "guess_correct": guess == ptruth["slot"] if guess and ptruth.get("slot") else None}
    if ptruth.get("probe"):
        _obs(obs, f"{m}.probe_abstain", abstained)
        return out
    if not ptruth.get("slot"):
        return out
    _obs(obs, f"{m}.abstain", abstained)
    correct = slot == ptruth["slot"]
    _obs(obs, f"{m}.slot_all", correct)
    if abstained:
        choices = list(photo.get("slot_choices") or [])
        if choices:  # how well the question is asked: where the true slot sits among the choices
            at = choices.index(ptruth["slot"]) if ptruth["slot"] in choices else len(choices)
            _obs(obs, f"{m}.ask_first", at == 0)
            _obs(obs, f"{m}.ask_top2", at < 2)
        return out
    out["correct"] = correct
    _obs(obs, f"{m}.slot", correct)
    if ptruth.get("categories"):
        _obs(obs, f"{m}.category", cat in ptruth["categories"])
    if ptruth.get("colour_family"):
        col = (attrs.get("colour") or {}).get("value")
        _obs(obs, f"{m}.colour_family", truth.taxonomy.colour_family(col) == ptruth["colour_family"])
    if ptruth.get("gender") in ("men", "women"):
        _obs(obs, f"{m}.gender", (attrs.get("gender") or {}).get("value") == ptruth["gender"])
    return out


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
    if not (response.get("photo") or {}).get("abstained"):
        # an abstention answers with a question, not outfits: the <mode>.abstain metrics count it
        _obs(obs, "answered", bool(outfits))
        _obs(obs, "fill_rate", min(len(outfits), case.k) / case.k)
    history_truth = {f"history.{f}": [v for i in persona.history if i in truth.rows
                                      for v in [J.truth_value(truth.rows[i], f)] if v]
                     for f in ("colour", "category")}
    vocab = truth.scene_vocabulary(scene)
    ptruth = photo_truth(case, truth) if case.mode in ("photo", *OUTSIDE_MODES) else None
    qterms = query_terms(case, truth)
    hist = _history_counts(persona, truth)
    reading = _photo_reading(case, response, ptruth, truth, obs) if ptruth is not None else None
    if case.mode == "query" and case.constraints.get("price_max") is not None:
        _obs(obs, "query.price_unverifiable", not truth.has_prices)
        if not truth.has_prices:
            _obs(obs, "query.price_disclosed", any("could not be applied" in str(n)
                                                   for n in response.get("notes") or []))
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
        # Consistency checks: what the system saw is what the judges read. An outfit holding a
        # withheld product (served as a new arrival) is judged under withheld.* instead.
        seen = [str(r["item_id"]) not in truth.withheld for _, r in pairs]
        whole = all(seen)
        if whole:
            _obs(obs, "scene_rules", not rule_fails and len(pairs) == len(o.get("items") or []))
        for (_, row), ok in zip(pairs, seen):
            if ok:
                _obs(obs, "item_rules", str(row["item_id"]) not in bad_items)
        complete, valid, struct_fails = J.judge_structure(scene, pairs)
        _obs(obs, "complete" if whole else "withheld.complete",
             complete and not any(f.check == "unknown_item" for f in fails))
        for v, ok in zip(valid, seen):
            if ok:
                _obs(obs, "slot_valid", v)
        per_item, mixed, gender_fails = J.judge_gender(pairs, case.gender)
        for v, ok in zip(per_item, seen):
            if ok:
                _obs(obs, "gender_violation", v)
        _obs(obs, "mixed_gender" if whole else "withheld.mixed_gender", mixed)
        over, budget_fails = J.judge_budget(pairs, case.budget)
        _obs(obs, "budget_violation", over)
        rows = [r for _, r in pairs]
        held_back = [(slot, row) for slot, row in pairs if str(row["item_id"]) in truth.withheld]
        if held_back:  # rules and gender on withheld truth: the system saw only photo + title
            _obs(obs, "withheld.scene_rules", not any(f.item_id in {str(r["item_id"]) for _, r in held_back}
                                                       for f in rule_fails))
            for slot, row in held_back:
                _obs(obs, "withheld.item_rules", str(row["item_id"]) not in bad_items)
                _obs(obs, "withheld.slot_valid", J.truth_value(row, "slot") == slot)
                if case.gender is not None:
                    _obs(obs, "withheld.gender_violation",
                         not J.gender_ok(J.truth_value(row, "gender"), case.gender))
        if case.photo_item is not None:
            self_in = case.photo_item in {str(r["item_id"]) for r in rows}
            _obs(obs, "photo.self_in_outfit", self_in)
            if self_in:
                fails.append(J.Failure("self_retrieved", case.photo_item, "the photographed product "
                                       "itself is in the outfit (it was excluded from the request)"))
        if case.mode == "query":
            # a ceiling on a catalog without prices cannot be met or missed: it is judged apart
            # (query.price_unverifiable, and whether the shopper was told: query.price_disclosed)
            broken = constraint_failures(rows, case.constraints, tax, prices_known=truth.has_prices)
            _obs(obs, "query.constraints", not broken)
            fails += [J.Failure("constraint", None, f"{case.text!r}: {b}") for b in broken]
        if reading is not None and not reading["abstained"] and ptruth.get("slot"):
            built = any(J.truth_value(r, "slot") == ptruth["slot"] for r in rows)
            _obs(obs, f"{case.mode}.anchor_slot", built)
            if not built:
                fails.append(J.Failure("photo_slot", None, f"the photo shows a {ptruth['slot']} "
                                       "garment; the outfit has no item of that slot"))
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
            # a fact about a new arrival, or about an outfit holding one (its scene rules were
            # checked on the models' readings): quality, judged apart
            if f.get("item_id") in truth.withheld or (f.get("item_id") is None and not whole):
                _obs(obs, "withheld.fact_precision", verdict)
                continue
            _obs(obs, "fact_unverifiable", verdict is None)
            _obs(obs, "fact_precision", verdict)
            if verdict is False:
                fails.append(J.Failure("explanation", f.get("item_id"),
                                       f"false fact: {f.get('field')} = {f.get('value')!r} "
                                       f"(source {f.get('source')})"))
        claims = []
        if text:
            cctx = ClaimContext(scene=scene, rules_held=rules_held(scene, pairs), history=hist,
                                profile_occasions=persona.preferred_occasions, photo=ptruth,
                                query=qterms)
            for c in truth.claim_judge.judge(text, rows, cctx):
                claims.append(c.as_dict())
                _obs(obs, "claims.unchecked", c.ok is None)
                if c.ok is None:
                    continue
                _obs(obs, "claims.precision", c.ok)
                if c.kind in ("query", "photo"):
                    _obs(obs, f"claims.{c.kind}", c.ok)
                if any(i in truth.withheld for i in c.items):
                    _obs(obs, "withheld.claims", c.ok)
                if not c.ok:
                    fails.append(J.Failure("claim", c.items[0] if c.items else None,
                                           f"{c.kind}: {c.text!r}: {c.why}"))
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
            "explanation": text[:600], "claims": claims, "failures": [f.as_dict() for f in fails]})
    div, rep = J.diversity_across([[it["item_id"] for it in o["items"]] for o in outfits_out])
    _obs(obs, "diversity_across", div)
    _obs(obs, "repeat_rate", rep)

    tags: dict[str, list[str | None]] = {}
    photo = response.get("photo") or {}
    if ptruth is not None and ptruth.get("slot") and reading is not None and not reading["abstained"]:
        near = list(neighbours) if neighbours is not None else list(photo.get("similar") or [])
        near = [i for i in near if i != case.photo_item][:10]  # self-retrieval is judged apart
        if near:
            _obs(obs, f"{case.mode}.similar_slot@10",
                 sum(J.truth_value(truth.rows[i], "slot") == ptruth["slot"] for i in near
                     if i in truth.rows) / len(near))
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
                    _obs(obs, f"recall.{fld}_p@10", precision_at(near, rel, 10))
    if text_hits and case.expect:
        rel = {i: J.matches(truth.rows[i], case.expect) for i in text_hits[:10] if i in truth.rows}
        _obs(obs, "recall.text_p@10", precision_at(list(text_hits), rel, 10))
    if rank is not None:
        m = ranking_metrics(list(rank[0]), list(rank[1]), k=10)
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
        "photo_reading": reading, "lang": case.lang, "pair": case.pair,
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
