"""Hand-made inline SVG charts for the report (no plotting dependency, no external files).

Charts are small and static: horizontal bars for a metric per group (scene, mode, ...) and a
histogram for latencies. Text is escaped; sizes are in CSS pixels.
"""

from __future__ import annotations

import html
import math
from typing import Sequence

PALETTE = ("#2f6db5", "#d9822b", "#3a9c5b", "#a6499b", "#7f7f7f")


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float | None],
              counts: Sequence[int], *, vmax: float | None = 1.0, fmt: str = "{:.0%}",
              width: int = 460, bar_h: int = 16, better: str = "higher") -> str:
    """Horizontal bars, one per label, with the value and its count printed beside the bar."""
    known = [v for v in values if v is not None]
    top = vmax if vmax is not None else (max(known) if known else 1.0) or 1.0
    label_w, value_w = 150, 110
    plot_w = width - label_w - value_w
    h = 24 + len(labels) * (bar_h + 6)
    out = [f'<svg class="chart" role="img" aria-label="{_e(title)}" width="{width}" height="{h}" '
           f'viewBox="0 0 {width} {h}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="0" y="14" class="ct">{_e(title)}</text>']
    for i, (lab, v, n) in enumerate(zip(labels, values, counts)):
        y = 24 + i * (bar_h + 6)
        out.append(f'<text x="{label_w - 6}" y="{y + bar_h - 4}" text-anchor="end" class="cl">{_e(lab)}</text>')
        out.append(f'<rect x="{label_w}" y="{y}" width="{plot_w}" height="{bar_h}" fill="#eef1f5"/>')
        if v is None:
            out.append(f'<text x="{label_w + 4}" y="{y + bar_h - 4}" class="cl">not measured</text>')
            continue
        frac = max(0.0, min(1.0, v / top)) if top else 0.0
        good = frac if better == "higher" else 1.0 - frac
        colour = "#3a9c5b" if good >= 0.9 else "#d9a22b" if good >= 0.7 else "#c8463d"
        out.append(f'<rect x="{label_w}" y="{y}" width="{plot_w * frac:.1f}" height="{bar_h}" fill="{colour}"/>')
        out.append(f'<text x="{label_w + plot_w + 6}" y="{y + bar_h - 4}" class="cv">'
                   f'{_e(fmt.format(v))} (n={n})</text>')
    out.append("</svg>")
    return "".join(out)


def histogram(title: str, series: dict[str, Sequence[float]], *, bins: int = 24,
              width: int = 560, height: int = 200, unit: str = "ms", log: bool = True) -> str:
    """Overlaid step histograms of several series on shared bins (log-spaced when ``log``)."""
    values = [v for vs in series.values() for v in vs if v is not None and v > 0]
    if not values:
        return f'<p class="muted">{_e(title)}: no values</p>'
    lo, hi = min(values), max(values)
    if hi <= lo:
        hi = lo * 1.01 + 1e-9
    if log:
        edges = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / bins) for i in range(bins + 1)]
    else:
        edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
    counts: dict[str, list[int]] = {}
    for name, vs in series.items():
        c = [0] * bins
        for v in vs:
            if v is None or v <= 0:
                continue
            j = next((k for k in range(bins) if v <= edges[k + 1]), bins - 1)
            c[j] += 1
        counts[name] = c
    top = max(max(c) for c in counts.values()) or 1
    left, bottom, right = 40, 34, 10
    pw, ph = width - left - right, height - bottom - 24
    out = [f'<svg class="chart" role="img" aria-label="{_e(title)}" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="0" y="14" class="ct">{_e(title)}</text>',
           f'<line x1="{left}" y1="{24 + ph}" x2="{left + pw}" y2="{24 + ph}" stroke="#888"/>',
           f'<text x="{left - 4}" y="30" text-anchor="end" class="cl">{top}</text>',
           f'<text x="{left - 4}" y="{24 + ph}" text-anchor="end" class="cl">0</text>']
    for k in (0, bins // 2, bins):
        x = left + pw * k / bins
        out.append(f'<text x="{x:.0f}" y="{24 + ph + 14}" text-anchor="middle" class="cl">'
                   f'{edges[k]:.0f} {unit}</text>')
    for s, (name, c) in enumerate(counts.items()):
        colour = PALETTE[s % len(PALETTE)]
        pts = []
        for k, n in enumerate(c):
            x0, x1 = left + pw * k / bins, left + pw * (k + 1) / bins
            y = 24 + ph - ph * n / top
            pts += [f"{x0:.1f},{y:.1f}", f"{x1:.1f},{y:.1f}"]
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(pts)}"/>')
        out.append(f'<text x="{left + pw - 4}" y="{36 + 14 * s}" text-anchor="end" class="cl" '
                   f'fill="{colour}">{_e(name)} (n={sum(c)})</text>')
    out.append("</svg>")
    return "".join(out)


def reliability(title: str, bins: Sequence[dict], *, size: int = 260) -> str:
    """Reliability diagram: per confidence bin, accuracy (bar) against the diagonal of perfect
    calibration, with each bin's mean confidence (dot) and count; ``bins`` as
    `mmrec.bench.metrics.calibration` gives them ({bin: [lo, hi], confidence, accuracy, count})."""
    left, top, pad = 34, 24, 22
    pw = ph = size - left - 10
    h = top + ph + pad + 14
    x = lambda v: left + pw * max(0.0, min(1.0, v))  # noqa: E731 -- two tiny axis maps
    y = lambda v: top + ph - ph * max(0.0, min(1.0, v))  # noqa: E731
    out = [f'<svg class="chart" role="img" aria-label="{_e(title)}" width="{size}" height="{h}" '
           f'viewBox="0 0 {size} {h}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="0" y="14" class="ct">{_e(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#f7f8fa" stroke="#ccc"/>',
           f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" stroke="#888" stroke-dasharray="4 3"/>']
    for v in (0.0, 0.5, 1.0):
        out.append(f'<text x="{x(v):.0f}" y="{top + ph + 13}" text-anchor="middle" class="cl">{v:.1f}</text>')
        out.append(f'<text x="{left - 4}" y="{y(v) + 4:.0f}" text-anchor="end" class="cl">{v:.1f}</text>')
    out.append(f'<text x="{left + pw / 2:.0f}" y="{top + ph + pad + 10}" text-anchor="middle" '
               f'class="cl">confidence (bars: accuracy)</text>')
    for b in bins:
        lo, hi = b["bin"]
        acc, conf, n = b["accuracy"], b["confidence"], b["count"]
        out.append(f'<rect x="{x(lo) + 1:.1f}" y="{y(acc):.1f}" width="{x(hi) - x(lo) - 2:.1f}" '
                   f'height="{y(0) - y(acc):.1f}" fill="{PALETTE[0]}" opacity="0.75">'
                   f'<title>{lo:.1f}–{hi:.1f}: accuracy {acc:.2f}, mean confidence {conf:.2f}, n={n}</title></rect>')
        out.append(f'<circle cx="{x(conf):.1f}" cy="{y(conf):.1f}" r="3" fill="{PALETTE[1]}"/>')
        out.append(f'<text x="{(x(lo) + x(hi)) / 2:.1f}" y="{min(y(acc) - 3, y(0) - 3):.1f}" '
                   f'text-anchor="middle" class="cl">{n}</text>')
    out.append("</svg>")
    return "".join(out)


def heat(value: float | None, better: str = "higher") -> str:
    """Background colour of a table cell for a 0..1 value (green good, red bad)."""
    if value is None:
        return "#f4f4f4"
    good = value if better == "higher" else 1.0 - value
    good = max(0.0, min(1.0, good))
    r = int(200 + 40 * (1 - good))
    g = int(120 + 110 * good)
    return f"rgb({r},{g},140)"
