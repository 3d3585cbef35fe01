"""The merchandiser report: one self-contained ``report.html`` per run.

Sections (each an ``<section id=...>`` the browser test looks for): ``summary`` (headline
metrics with their counts), ``scenes`` (per-scene charts and table), ``breakdowns`` (query
mode, persona segment, persona), ``latency`` (histogram and percentiles per query mode),
``tagging`` (accuracy per field and confusion matrices), ``components`` (recall and ranking
probes, catalog coverage), ``gallery`` (failing cases with product photos and the rule that
failed) and ``guide`` (how to read it). Product photos are embedded as small base64 JPEGs, so
the file opens anywhere with no network and no artifact directory.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from string import Template
from typing import Any, Mapping, Sequence

from mmrec.artifacts import atomic_write_text
from mmrec.bench import charts
from mmrec.bench.metrics import CONSISTENCY, metric_def
from mmrec.bench.photos import kiosk_photo, thumbnail_data_uri
from mmrec.bench.runner import RESULTS, read_results
from mmrec.errors import InputError

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "benchmark" / "templates" / "report.html"
SCENE_CHARTS = ("scene_rules", "complete", "compatibility", "fact_precision", "text_match",
                "photo_category")
GROUP_ORDER = ("real-scene", "withheld", "outfits", "rules", "constraints", "style", "explanations", "relevance", "recall",
               "ranking", "tagging", "latency")
# Failures a merchandiser must see first: broken dress codes and wrong outfits before wording.
SEVERITY = {"scene_rule": 0, "self_retrieved": 0, "slot": 1, "template": 1, "unknown_item": 1,
            "photo_slot": 1, "gender": 2, "budget": 2, "constraint": 2, "claim": 3,
            "explanation": 3, "photo_match": 4, "text_query": 4}
REAL_SCENE = ("query.constraints", "claims.precision", "claims.query", "claims.photo",
              "claims.unchecked")


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "–"
    unit = metric_def(name).unit
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "rate":
        return f"{value:.1%}"
    return f"{value:.3f}"


def _metric_table(metrics: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> str:
    rows = ["<table><tr><th>metric</th><th>value</th><th>count</th><th>cases</th>"
            "<th>better</th><th>what it measures</th></tr>"]
    for n in names:
        m = metrics.get(n)
        d = metric_def(n)
        val = None if m is None else m["value"]
        colour = charts.heat(val, d.better) if d.unit != "ms" and val is not None else "#fff"
        rows.append(f'<tr><td>{_e(d.label)}<br><span class="muted">{_e(n)}</span></td>'
                    f'<td class="num" style="background:{colour}">{_e(_fmt(n, val))}</td>'
                    f'<td class="num">{"–" if m is None else m["count"]}</td>'
                    f'<td class="num">{"–" if m is None else m["cases"]}</td>'
                    f'<td>{_e(d.better)}</td><td>{_e(d.help)}</td></tr>')
    rows.append("</table>")
    return "".join(rows)


def _ordered(names: Sequence[str]) -> list[str]:
    def key(n: str) -> tuple[int, str]:
        g = metric_def(n).group
        return (GROUP_ORDER.index(g) if g in GROUP_ORDER else 99, n)
    return sorted(names, key=key)


def _group_table(groups: Mapping[str, Mapping[str, Any]], names: Sequence[str], title: str) -> str:
    head = "".join(f"<th>{_e(metric_def(n).label)}</th>" for n in names)
    out = [f'<h3>{_e(title)}</h3><div class="wide"><table><tr><th>group</th><th>cases</th>{head}</tr>']
    for g, body in groups.items():
        cells = []
        for n in names:
            m = body["metrics"].get(n)
            d = metric_def(n)
            if m is None:
                cells.append('<td class="num muted">–</td>')
                continue
            colour = charts.heat(m["value"], d.better) if d.unit != "ms" else "#fff"
            cells.append(f'<td class="num" style="background:{colour}" title="n={m["count"]}">'
                         f'{_e(_fmt(n, m["value"]))}</td>')
        out.append(f"<tr><td>{_e(g)}</td><td class='num'>{body['cases']}</td>{''.join(cells)}</tr>")
    out.append("</table></div>")
    return "".join(out)


def _summary(m: Mapping[str, Any]) -> str:
    run = m["run"]
    totals = m["totals"]
    notes = []
    if not run.get("complete"):
        notes.append(f"Incomplete run: {run['n_cases']} of {run['cases']} cases judged.")
    if run.get("n_errors"):
        notes.append(f"{run['n_errors']} requests failed; they count as unanswered (see the gallery).")
    for n in (run.get("system") or {}).get("notes") or []:
        notes.append(n)
    archetypes = [p["id"] for p in m.get("personas", []) if p["resolved_from"] == "archetype"]
    if archetypes:
        notes.append(f"{len(archetypes)} personas had no user data and ran as anonymous archetypes "
                     f"(no ranking judges): {', '.join(archetypes)}.")
    else:
        notes.append("Personas are SIMULATED shoppers on this catalog, drawn from real RTR/H&M "
                     "profiles; their held-out interactions are simulated too.")
    lat = m["latency_ms"]["by_mode"]
    lat_rows = "".join(f"<tr><td>{_e(mode)}</td><td class='num'>{_fmt('latency_ms', s['p50'])}</td>"
                       f"<td class='num'>{_fmt('latency_ms', s['p99'])}</td><td class='num'>{s['count']}</td></tr>"
                       for mode, s in lat.items())
    notes_html = "".join(f'<div class="note">{_e(n)}</div>' for n in notes)
    names = [n for n in totals if n != "latency_ms"]
    real = [n for n in names if metric_def(n).group == "real-scene" or n in REAL_SCENE]
    held = [n for n in names if metric_def(n).group == "withheld"]
    consistency = [n for n in names if n in CONSISTENCY]
    other = [n for n in names if n not in set(real) | set(held) | set(consistency)]
    return (f'<section id="summary"><h2>Summary</h2>{notes_html}'
            + "<h3>Real scene: inputs the system did not make</h3><p class='muted'>Phone photos by "
            "photographers no model trained on and another retailer's packshots, judged against "
            "their own labels; hand-written shopper queries (en / zh / mixed) judged on what they "
            "state; every explanation statement checked on truth.</p>"
            + _metric_table(totals, _ordered(real)) + _query_languages(m) + _calibration(m)
            + "<h3>Withheld truth: 20% of the catalog served as new arrivals</h3><p class='muted'>"
            "These products reached the system with photo and title only; rules, gender and "
            "statements about them are judged on the withheld catalog values.</p>"
            + _metric_table(totals, _ordered(held))
            + "<h3>Components and service</h3>" + _metric_table(totals, _ordered(other))
            + "<h3>Consistency checks</h3><p class='muted'>True by construction where the system "
            "filtered and explained from the same catalog rows the judges read (every product "
            "but the withheld slice): a drop means a bug, 100% is not a quality claim.</p>"
            + _metric_table(totals, _ordered(consistency))
            + "<h3>Latency per query mode</h3><table><tr><th>mode</th><th>p50</th><th>p99</th>"
            f"<th>count</th></tr>{lat_rows}</table></section>")


def _query_languages(m: Mapping[str, Any]) -> str:
    by = m.get("by_lang") or {}
    if not by:
        return ""
    cols = [n for n in ("query.constraints", "claims.precision", "claims.query", "answered")
            if any(n in b["metrics"] for b in by.values())]
    par = m.get("query_parity")
    line = "" if not par else (f"<p>zh/en parity: {par['parity']:.1%} of {par['pairs']} pairs judged "
                               f"alike (both met {par['both_met']}, en only {par['en_only']}, "
                               f"zh only {par['zh_only']}).</p>")
    return _group_table(by, cols, "Hand-written queries per language") + line


def _calibration(m: Mapping[str, Any]) -> str:
    out = []
    for mode, cal in (m.get("calibration") or {}).items():
        if not cal:
            continue
        rows = "".join(f"<tr><td>{b['bin'][0]:.1f}–{b['bin'][1]:.1f}</td><td class='num'>"
                       f"{b['confidence']:.2f}</td><td class='num'>{b['accuracy']:.2f}</td>"
                       f"<td class='num'>{b['count']}</td></tr>" for b in cal["bins"])
        plot = charts.reliability(f"{mode}: reliability", cal["bins"])
        out.append(f"<h3>Reliability of the photo slot reading: {_e(mode)} (ECE {cal['ece']:.3f}, "
                   f"n={cal['count']})</h3><div class='charts'>{plot}</div><table><tr><th>confidence bin"
                   f"</th><th>mean confidence</th><th>accuracy</th><th>count</th></tr>{rows}</table>"
                   f"<p class='muted'>{_e(cal['note'])}</p>")
    return "".join(out)


def _scenes(m: Mapping[str, Any]) -> str:
    by = m["by_scene"]
    names = list(by)
    charts_html = []
    for metric in SCENE_CHARTS:
        vals = [by[s]["metrics"].get(metric) for s in names]
        if not any(vals):
            continue
        d = metric_def(metric)
        charts_html.append(charts.bar_chart(
            d.label, names, [v["value"] if v else None for v in vals],
            [v["count"] if v else 0 for v in vals], vmax=1.0,
            fmt="{:.0%}" if d.unit == "rate" else "{:.2f}", better=d.better))
    cols = [n for n in _ordered(m["totals"]) if not n.startswith(("tag.", "recall.", "rank."))]
    return (f'<section id="scenes"><h2>Per scene</h2><div class="charts">{"".join(charts_html)}</div>'
            + _group_table(by, cols, "All metrics per scene") + "</section>")


def _breakdowns(m: Mapping[str, Any]) -> str:
    cols = [n for n in ("answered", "scene_rules", "complete", "compatibility", "fact_precision",
                        "text_match", "photo_category", "gender_violation", "rank.ndcg@10",
                        "latency_ms") if n in m["totals"]]
    labels = {p["id"]: p["label"] for p in m.get("personas", [])}
    persona_groups = {f"{pid} — {labels.get(pid, '')}": body for pid, body in m["by_persona"].items()}
    return ('<section id="breakdowns"><h2>Query modes, segments and personas</h2>'
            + _group_table(m["by_mode"], cols, "Per query mode")
            + _group_table(m["by_segment"], cols, "Per persona segment (gender:age band)")
            + _group_table(persona_groups, cols, "Per persona") + "</section>")


def _latency(m: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> str:
    series: dict[str, list[float]] = {}
    for r in records:
        if r.get("latency_ms") is not None:
            series.setdefault(r["mode"], []).append(r["latency_ms"])
    hist = charts.histogram("Request latency per query mode (log scale)", series)
    a = m["latency_ms"]["all"]
    rows = "".join(
        f"<tr><td>{_e(k)}</td>" + "".join(f"<td class='num'>{_fmt('latency_ms', s[q])}</td>"
                                          for q in ("p50", "p90", "p99", "max")) + f"<td class='num'>{s['count']}</td></tr>"
        for k, s in [("all", a), *m["latency_ms"]["by_mode"].items()])
    return (f'<section id="latency"><h2>Latency</h2>{hist}<table><tr><th>mode</th><th>p50</th>'
            f'<th>p90</th><th>p99</th><th>max</th><th>count</th></tr>{rows}</table>'
            '<p class="muted">Measured around the whole request as the benchmark calls it '
            '(in-process: decode + recommend; --url: the HTTP round trip), one request at a time.</p></section>')


def _tagging(m: Mapping[str, Any]) -> str:
    tags = sorted(n for n in m["totals"] if n.startswith("tag."))
    if not tags:
        return ('<section id="tagging"><h2>Attribute tagging</h2><p class="muted">Not measured: '
                'the system had no tagger, or the suite has no photo cases.</p></section>')
    mats = []
    for field, cm in m.get("confusion", {}).items():
        labels = cm["labels"]
        top = max((max(r) for r in cm["matrix"]), default=1) or 1
        head = "".join(f"<th>{_e(x)}</th>" for x in labels)
        body = []
        for lab, row in zip(labels, cm["matrix"]):
            cells = "".join(
                f'<td style="background:rgba(47,109,181,{0.08 + 0.8 * v / top:.2f})">{v or ""}</td>'
                for v in row)
            body.append(f"<tr><th>{_e(lab)}</th>{cells}</tr>")
        mats.append(f'<div class="cm"><h3>{_e(field)}: accuracy {cm["accuracy"]:.1%} '
                    f'(n={cm["count"]})</h3><table class="confusion"><tr><th>true \\ predicted</th>{head}</tr>'
                    f'{"".join(body)}</table></div>')
    return ('<section id="tagging"><h2>Attribute tagging on held-out photos</h2>'
            + _metric_table(m["totals"], tags)
            + '<p class="muted">Rows: catalog truth (most frequent labels, the rest as "other"); '
              'columns: what the tagger read from the kiosk photo.</p>' + "".join(mats) + "</section>")


def _components(m: Mapping[str, Any]) -> str:
    names = sorted(n for n in m["totals"] if n.startswith(("recall.", "rank.")))
    body = (_metric_table(m["totals"], names) if names else
            '<p class="muted">Recall and ranking probes were not measured (no recall index / '
            'ranker / user data, or a --url run, which only sees the API).</p>')
    cov = m.get("coverage", {})
    cov_rows = "".join(f"<tr><td>{_e(s)}</td><td class='num'>{v['value']:.1%}</td>"
                       f"<td class='num'>{v['count']}</td></tr>" for s, v in cov.items())
    return (f'<section id="components"><h2>Recall, ranking and catalog coverage</h2>{body}'
            f'<h3>Catalog coverage (share of in-stock items shown at least once)</h3>'
            f'<table><tr><th>slot</th><th>covered</th><th>items</th></tr>{cov_rows}</table></section>')


def _thumb(rows: Mapping[str, Mapping[str, Any]], item_id: str, cache: dict[str, str | None]) -> str | None:
    if item_id not in cache:
        uri = (rows.get(item_id) or {}).get("image_uri")
        cache[item_id] = thumbnail_data_uri(uri) if uri else None
    return cache[item_id]


def _figure(rows: Mapping[str, Mapping[str, Any]], it: Mapping[str, Any],
            failures: Sequence[Mapping[str, Any]], cache: dict[str, str | None]) -> str:
    row = rows.get(it["item_id"]) or {}
    src = _thumb(rows, it["item_id"], cache)
    img = (f'<img alt="{_e(row.get("title", it["item_id"]))}" src="{src}">' if src
           else '<div class="muted">(no photo)</div>')
    fails = "".join(f'<div class="fail">{_e(f["check"])}: {_e(f["detail"])}</div>'
                    for f in failures if f["item_id"] == it["item_id"])
    cls = "bad" if fails else ""
    return (f'<figure class="{cls}">{img}<figcaption><b>{_e(it["slot"])}</b> '
            f'{_e(row.get("title", it["item_id"]))}<br><span class="muted">{_e(row.get("category"))}, '
            f'{_e(row.get("colour"))}, {_e(row.get("usage"))}</span>{fails}</figcaption></figure>')


def _kiosk_thumb(rows: Mapping[str, Mapping[str, Any]], r: Mapping[str, Any]) -> str:
    item = (r.get("request") or {}).get("photo_item")
    uri = (rows.get(item) or {}).get("image_uri") if item else None
    if not uri:
        return ""
    try:
        src = thumbnail_data_uri(kiosk_photo(uri, r["case_id"]))
    except InputError:  # the photo is gone since the run: show the case without it
        return ""
    return (f'<div class="photo">Kiosk photo (held-out product {_e(item)}):<br>'
            f'<img alt="kiosk photo" src="{src}"></div>' if src else "")


def _gallery(records: Sequence[Mapping[str, Any]], rows: Mapping[str, Mapping[str, Any]],
             max_cases: int) -> str:
    """Failing cases, most severe first: the query, the photo, each failing outfit and why."""
    entries = []
    counts: Counter[tuple[str, str]] = Counter()
    n_outfits = 0
    for r in records:
        failing = [oi for oi, o in enumerate(r["outfits"]) if o["failures"]]
        for o in r["outfits"]:
            for f in o["failures"]:
                counts[(f["check"], f["detail"])] += 1
        n_outfits += len(failing)
        if r["status"] == "error" or not r["outfits"]:
            entries.append((-1, r, []))
        elif failing:
            sev = min(SEVERITY.get(f["check"], 9) for oi in failing for f in r["outfits"][oi]["failures"])
            entries.append((sev, r, failing))
    entries.sort(key=lambda e: (e[0], e[1]["case_id"]))
    top_rules = "".join(f"<tr><td>{_e(c)}</td><td>{_e(d)}</td><td class='num'>{n}</td></tr>"
                        for (c, d), n in counts.most_common(15))
    cache: dict[str, str | None] = {}
    shown = []
    for _, r, failing in entries[:max_cases]:
        req = r.get("request") or {}
        query = f"scene {r['scene']}"
        if req.get("text"):
            query += f' + text “{req["text"]}”'
        if req.get("photo_item"):
            query += " + kiosk photo"
        parts = [f'<div><b>{_e(r["case_id"])}</b> — {_e(query)} — persona {_e(r["persona"])} '
                 f'({_e(r["segment"])})</div>', _kiosk_thumb(rows, r)]
        if not failing:
            why = r.get("error") or "; ".join(r.get("notes") or []) or "no outfit returned"
            parts.append(f'<div class="fail">No outfit: {_e(why)}</div>')
        for oi in failing:
            o = r["outfits"][oi]
            figs = "".join(_figure(rows, it, o["failures"], cache) for it in o["items"])
            whole = "".join(f'<div class="fail">{_e(f["check"])}: {_e(f["detail"])}</div>'
                            for f in o["failures"] if not f["item_id"])
            expl = f'<div class="expl">{_e(o["explanation"])}</div>' if o.get("explanation") else ""
            parts.append(f'<div>Outfit {oi + 1}</div><div class="items">{figs}</div>{whole}{expl}')
        shown.append(f'<div class="case">{"".join(parts)}</div>')
    more = len(entries) - len(shown)
    return ('<section id="gallery"><h2>Failing cases</h2>'
            f'<p>{len(entries)} cases with a failing outfit ({n_outfits} outfits) or no answer'
            + (f"; the {len(shown)} most severe are shown" if more > 0 else "") + ".</p>"
            + (f"<h3>Most frequent failures</h3><table><tr><th>check</th><th>detail</th><th>count</th></tr>"
               f"{top_rules}</table>" if top_rules else "")
            + f'<div class="gallery">{"".join(shown) or "<p>No failing case.</p>"}</div></section>')


GUIDE = """<section id="guide"><h2>How to read this report</h2><ul>
<li><b>Ground truth</b> is what the recommender never sees when it answers: the catalog's own
attributes (items.parquet), the held-out interactions of each persona, and the true attributes of
held-out products photographed at the kiosk. Rules are judged on the catalog, never on what a
model predicted about an item.</li>
<li>Every figure carries its <b>count</b> (observations) and <b>cases</b> (requests): a rate over
3 observations is an anecdote, not a result.</li>
<li><b>Scene rules met</b> and <b>Complete outfits</b> should be 100%: any miss is a broken dress
code or a wrong outfit and appears in the gallery with the rule that failed.</li>
<li><b>Fact precision</b> checks each stated fact of an explanation against the catalog;
<b>Text grounded</b> checks every attribute the text names. Uncheckable facts (model-only
values, recall routes) are counted separately, not as correct.</li>
<li><b>Recall</b> and <b>ranking</b> rows measure the components directly (in-process runs):
photo neighbours of a re-shot held-out product, and held-out positives against sampled
negatives. Personas and their interactions are simulated on this catalog.</li>
<li>Compare two runs with <code>mmrec bench compare runs/a runs/b</code>: deltas with bootstrap
confidence intervals; a configured regression fails the release gate.</li></ul></section>"""


def render_report(run_dir: str | Path, rows: Mapping[str, Mapping[str, Any]], *,
                  template: str | Path | None = None, max_gallery: int = 30) -> Path:
    """Write ``report.html`` into ``run_dir`` from its metrics.json and results.jsonl.

    Args:
        rows: catalog rows by item id (titles and photos for the gallery).
        template: HTML template with $title, $meta, $nav and $body (default:
            benchmark/templates/report.html).
        max_gallery: failing cases shown (most severe first).
    """
    run_dir = Path(run_dir)
    mpath = run_dir / "metrics.json"
    if not mpath.is_file():
        raise InputError(f"{run_dir} has no metrics.json; run `mmrec bench run --out {run_dir}` first")
    tpath = Path(template) if template else DEFAULT_TEMPLATE
    if not tpath.is_file():
        raise InputError(f"report template not found: {tpath} (pass --template FILE)")
    m = json.loads(mpath.read_text())
    records = read_results(run_dir / RESULTS)
    run = m["run"]
    system = run.get("system") or {}
    versions = ", ".join(f"{k}={v}" for k, v in sorted((system.get("versions") or {}).items()))
    meta = (f"suite {_e(run.get('suite_name'))} ({_e(run.get('suite_sha256'))}) · {run['n_cases']} cases · "
            f"{_e(system.get('kind'))} {_e(system.get('label'))} · finished {_e(run.get('finished_at'))}"
            f"<br>versions: {_e(versions)}")
    sections = [("summary", "Summary"), ("scenes", "Scenes"), ("breakdowns", "Breakdowns"),
                ("latency", "Latency"), ("tagging", "Tagging"), ("components", "Recall & ranking"),
                ("gallery", "Failing cases"), ("guide", "How to read")]
    nav = "".join(f'<a href="#{sid}">{_e(label)}</a>' for sid, label in sections)
    body = "\n".join([_summary(m), _scenes(m), _breakdowns(m), _latency(m, records), _tagging(m),
                      _components(m), _gallery(records, rows, max_gallery), GUIDE])
    page = Template(tpath.read_text(encoding="utf-8")).substitute(
        title=_e(f"mmrec benchmark — {run.get('name')}"), meta=meta, nav=nav, body=body)
    out = run_dir / "report.html"
    atomic_write_text(out, page)
    return out
