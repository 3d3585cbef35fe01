"""The merchandiser report renders in headless Chromium with its sections, plots and photos."""

from __future__ import annotations

import re

import pytest
from PIL import Image, ImageStat

import bench_fixtures as BF
import chromium_helper
from mmrec.bench.report import render_report
from mmrec.bench.runner import Runner, prepare
from mmrec.bench.system import InProcessSystem

SECTIONS = ("summary", "scenes", "breakdowns", "latency", "tagging", "components", "gallery", "guide")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A run of a recommender that ignores the scene rules: the gallery has real failures."""
    root = tmp_path_factory.mktemp("bench_report")
    store, suite = BF.write_world(root, modes=("scene", "text"), repeats=1)
    p = prepare(suite, store)
    system = InProcessSystem(BF.recommender(store, root / "scenes.yaml", drop_rules=True))
    out = root / "run"
    Runner(p, system, out, progress=False).run()
    return render_report(out, p.truth.rows), p


def test_report_is_self_contained_html(report):
    path, _ = report
    page = path.read_text()
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in page
    assert "<svg" in page and "data:image/jpeg;base64," in page
    # nothing is fetched from elsewhere: no external scripts, styles or images
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_report_renders_in_chromium(report, tmp_path):
    path, prepared = report
    url = path.resolve().as_uri()
    dom = chromium_helper.dump_dom(url)
    for sid in SECTIONS:
        assert f'id="{sid}"' in dom, sid
    gallery = dom[dom.index('id="gallery"'):dom.index('id="guide"')]
    assert "scene_rule" in gallery and "office dress code" in gallery  # the rule that failed
    assert gallery.count('src="data:image/jpeg;base64,') >= 3        # product photos
    assert dom.count("<svg") >= 3                                     # per-scene charts + histogram
    shot = chromium_helper.screenshot(url, tmp_path / "report.png")
    img = Image.open(shot).convert("L")
    assert img.size == (1280, 2400)
    # a rendered page, not a blank one: the header band is dark, the body light, with detail
    assert ImageStat.Stat(img.crop((0, 0, 1280, 60))).mean[0] < 120
    assert ImageStat.Stat(img).stddev[0] > 20
