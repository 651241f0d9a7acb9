"""The champion's HTML report as a person sees it: rendered by headless Chromium.

A full-page screenshot is kept in tests/artifacts/ (gitignored). The page must load with no
console error and no network request (it is one self-contained file), show every section's
plots, and keep every plot's text readable: a title and axis labels, no text smaller than 6 px,
none outside its plot, none overlapping another (the next-purchase-day grid's subplot titles
once sat on the row above's tick labels).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from browser import Browser, available
from ltv.report import SECTIONS

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WIDTH = 1200
PLOTTED = ("Gain curve", "Deciles", "Calibration", "Next purchase day", "Drivers")

# what the page shows, measured in the browser: per section its plots, per plot its texts' boxes
MEASURE = """(() => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const sections = {};
  let current = null;
  for (const el of document.body.children) {
    if (el.tagName === 'H2') { current = el.textContent; sections[current] = 0; }
    else if (current !== null) sections[current] += el.tagName === 'svg' ? 1 : el.querySelectorAll('svg').length;
  }
  const plots = [...document.querySelectorAll('svg')].map(svg => {
    const tagged = kind => [...svg.querySelectorAll(`g[id^="plot-${kind}-"]`)].map(g => g.textContent.trim());
    const texts = [...svg.querySelectorAll('text')].filter(t => t.textContent.trim()).map(t => ({
      text: t.textContent.trim(), box: box(t), size: parseFloat(getComputedStyle(t).fontSize),
      role: (t.closest('g[id^="plot-"]') || {id: ''}).id.split('-')[1] || ''}));
    return {box: box(svg), title: tagged('title'), xlabel: tagged('xlabel'), ylabel: tagged('ylabel'), texts};
  });
  const small = [...document.querySelectorAll('p, td, th, li, h1, h2, a')]
    .filter(e => e.textContent.trim() && parseFloat(getComputedStyle(e).fontSize) < 10).map(e => e.textContent.slice(0, 40));
  return {sections, plots, small, title: document.title};
})()"""


def _overlap(a: list[float], b: list[float], slack: float = 1.0) -> bool:
    return a[0] + slack < b[2] and b[0] + slack < a[2] and a[1] + slack < b[3] and b[1] + slack < a[3]


def problems(page: dict) -> list[str]:
    """What is wrong with the measured page (empty when it reads well)."""
    found = [f"section {s!r} is missing" for s in SECTIONS if s not in page["sections"]]
    found += [f"section {s!r} shows no plot" for s in PLOTTED if not page["sections"].get(s)]
    found += [f"text smaller than 10 px: {t!r}" for t in page["small"]]
    for i, plot in enumerate(page["plots"]):
        left, top, right, bottom = plot["box"]
        name = (plot["title"] or [f"plot {i + 1}"])[0]
        if right - left < 100 or bottom - top < 100:
            found.append(f"{name}: drawn at {right - left:.0f} x {bottom - top:.0f} px")
        for kind in ("title", "xlabel", "ylabel"):
            if not any(plot[kind]):
                found.append(f"{name}: no {kind}")
        texts = plot["texts"]
        for t in texts:
            if t["size"] < 6:
                found.append(f"{name}: {t['text']!r} is {t['size']:.1f} px")
            b = t["box"]
            if b[0] < left - 1 or b[1] < top - 1 or b[2] > right + 1 or b[3] > bottom + 1:
                found.append(f"{name}: {t['text']!r} lies outside the plot")
        for j, a in enumerate(texts):
            for b in texts[j + 1:]:
                if "title" in (a["role"], b["role"]) or "label" in a["role"] + b["role"]:
                    if _overlap(a["box"], b["box"]):
                        found.append(f"{name}: {a['text']!r} overlaps {b['text']!r}")
    return found


def render(report: Path, screenshot: Path) -> tuple[dict, list[str], list[str]]:
    """(measurements, console errors, network requests) of the report opened in Chromium."""
    browser = Browser()
    try:
        session = browser.page()
        browser.send("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": 900, "deviceScaleFactor": 1,
                                                             "mobile": False}, session=session)
        browser.send("Page.navigate", {"url": report.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        page = browser.send("Runtime.evaluate", {"expression": MEASURE, "returnByValue": True},
                            session=session)["result"]["value"]
        browser.screenshot(session, screenshot, WIDTH)
        events = list(browser.events)
    finally:
        browser.close()
    errors = [str(e["params"].get("args") or e["params"]) for e in events if
              (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    requests = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    return page, errors, [u for u in requests if u != report.resolve().as_uri() and not u.startswith("data:")]


@pytest.fixture(scope="module")
def browser_ready() -> None:
    why = available()
    if why:
        pytest.skip(why)


def test_the_champions_report_reads_well_in_chromium(browser_ready, scoring_lake, tmp_path) -> None:
    from ltv import datasets
    from ltv.training import write_evaluation

    config, lake, engine, registry = scoring_lake
    champion = registry.champion()
    spec = datasets.find_spec(config, champion.lineage["dataset"]["name"])
    target, _ = write_evaluation(config, lake, engine, registry.load(champion.version),
                                 f"model version {champion.version} (champion)", spec, tmp_path / "report")
    shot = ARTIFACTS / "champion-report.png"
    page, errors, requests = render(target / "report.html", shot)
    assert shot.stat().st_size > 10_000, "a full-page screenshot is saved"
    assert not errors, f"console errors: {errors}"
    assert not requests, f"the report is not self-contained, it requested: {requests}"
    assert len(page["plots"]) >= len(PLOTTED)
    assert problems(page) == []


def test_the_checks_catch_overlapping_and_unlabelled_plots(browser_ready, tmp_path) -> None:
    """The measurement finds what it is for: an overlapping title, a missing label, a request."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ltv.report import _svg

    fig, axes = plt.subplots(2, 1, figsize=(4, 3))  # no layout: the lower title sits on the upper tick labels
    for ax in axes:
        ax.plot([0, 1], [0, 1])
        ax.set(title="a long title that collides", xlabel="x", ylabel="y")
        ax.title.set_fontsize(16)
    overlapping = _svg(fig)
    bare = plt.figure()
    bare.add_subplot().plot([0, 1])
    with pytest.raises(ValueError, match="lacks its title, xlabel, ylabel"):
        _svg(bare)
    page_file = tmp_path / "bad.html"
    page_file.write_text("<!doctype html><html><body><h2>Gain curve</h2>" + overlapping
                         + "<img src='http://127.0.0.1:9/x.png'><script>console.error('boom')</script></body></html>")
    page, errors, requests = render(page_file, tmp_path / "bad.png")
    assert any("overlaps" in p for p in problems(page)), problems(page)
    assert errors and requests == ["http://127.0.0.1:9/x.png"]
