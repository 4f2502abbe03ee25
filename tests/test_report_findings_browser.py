"""The report leads with its findings, in a real browser (headless Debian Chromium, Playwright).

Each finding links to the section behind it and the link lands there; figures come before
tables, tables are collapsed and download as CSV; the page stays within its height and width
bounds on an example-like run (49 instances, six agents, long raw answers, ~200 descriptors)
and on an 8-instance run, before and after an instance is opened, at 1,024 and 1,400 px.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import synthetic

from modsab.core.diagnosis import diagnose
from modsab.views.report import ReportData, read_extras, write_report

pytestmark = pytest.mark.slow

AGENTS = {
    "text": (0.15, 30),
    "audio": (0.2, 35),
    "vision": (0.2, 40),
    "tav": (0.2, 35),
    "audio_probe": (0.5, 60),
    "text_probe": (0.2, 20),
}
#: Page height bounds (px) per viewport width: (rows closed, one instance opened with its raw
#: answers). Measured 9,016 / 9,940 and 8,323 / 8,892 (example), 5,045 / 5,969 and 4,984 / 5,534
#: (small); the page before findings was 12,842 / 21,289 and 10,949 / 20,289 px at 1,024.
HEIGHT = {
    "example": {1024: (9500, 10500), 1400: (8800, 9400)},
    "small": {1024: (5500, 6500), 1400: (5400, 6000)},
}


def _run(directory: Path, n: int) -> Path:
    """A run like the example: six agents, long unbroken raw answers, many numeric descriptors,
    a long config; every diagnostic in its diagnosis.json."""
    import pandas as pd

    run = synthetic.write_run(directory, n, agents=AGENTS, datasets=("ravdess",), descriptors=False)
    ids = [json.loads(line)["instance_id"] for line in (run / "predictions.jsonl").open()][::len(AGENTS)]
    columns = {"instance_id": ids, "transcript": ["Kids are talking by the door." for _ in ids]}
    columns["audio_path"] = ["/very/long/path/" + "x" * 160 + ".mp4" for _ in ids]  # no break opportunity
    columns.update({f"egemaps_feature_{j}": [str(0.001 * j * (i + 1)) for i in range(len(ids))] for j in range(180)})
    pd.DataFrame(columns).to_parquet(run / "descriptors.parquet", index=False)
    import sqlite3

    with sqlite3.connect(run / "store.sqlite") as db:
        db.execute("update answers set raw = raw || ?", ("," + "9" * 400,))  # one 400-character token
    config = {"model": "local:smollm2-scorer", "agent_summary": {a: {k: 1 for k in "abcdefghijkl"} for a in AGENTS}}
    (run / "run.json").write_text(json.dumps(config), encoding="utf-8")
    result = diagnose(run, labels="meld", bootstrap=200, diagnostics="all", n_folds=2)
    (run / "diagnosis.json").write_text(json.dumps(result.to_dict()), encoding="utf-8")
    return run


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = {}
    for name, n in (("example", 49), ("small", 8)):
        run = _run(tmp_path_factory.mktemp(name) / "run", n)
        result = diagnose(run, labels="meld", bootstrap=200)
        extras = read_extras(run)
        shown = ReportData.read(result, extras.diagnosis).result  # with the run's saved sections
        out[name] = (write_report(result, run.parent / "report.html", extras=extras), shown)
    return out


def _page(chromium, path: Path, width: int):
    page = chromium.new_page(viewport={"width": width, "height": 900}, accept_downloads=True)
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: page.problems.append(f"pageerror: {e}"))
    page.goto(path.resolve().as_uri())
    page.wait_for_selector("#ib-count[data-count]:not([data-count=''])")
    return page


def _size(page) -> tuple[int, int]:
    return tuple(page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"))


def test_findings_lead_and_each_link_lands_on_its_section(reports, chromium):
    path, result = reports["example"]
    page = _page(chromium, path, 1400)
    found = result.findings
    assert found, "the example-like run has findings"
    first = page.evaluate("document.querySelector('main > section').id")
    assert first == "findings"
    items = page.locator("#findings ol.findings > li")
    assert items.count() == len(found)
    for i, finding in enumerate(found):
        assert " ".join(finding.text.split()) in " ".join(items.nth(i).inner_text().split())
    links = page.locator("#findings a.see")
    assert links.count() == len(found)
    for i in range(links.count()):
        href = links.nth(i).get_attribute("href")
        page.evaluate("window.scrollTo(0, 0)")
        links.nth(i).click()
        page.wait_for_timeout(100)
        assert page.evaluate("location.hash") == href
        top = page.evaluate(f"document.getElementById({json.dumps(href[1:])}).getBoundingClientRect().top")
        nav = page.evaluate("document.querySelector('nav').getBoundingClientRect().bottom")
        assert nav - 2 <= top <= 900 / 2, (href, top)  # in view, not hidden under the sticky nav
    assert page.problems == []
    page.close()


def test_figures_come_before_their_collapsed_tables_and_every_table_downloads(reports, chromium, tmp_path):
    path, _ = reports["example"]
    page = _page(chromium, path, 1400)
    for section in ("headline", "profile", "causal", "fusion_compare", "calibration", "tau"):
        order = page.evaluate(
            f"""Array.from(document.querySelectorAll('#{section} svg.chart, #{section} .tbl'))
                 .map(e => e.tagName.toLowerCase() === 'svg' ? 'figure' : 'table')"""
        )
        assert order and order[0] == "figure" and "table" in order, (section, order)  # a figure leads
    for figure in ("causal_vs_paper", "fusion_strategies", "tau_role_changes"):
        assert page.locator(f'svg[data-figure="{figure}"]').count() == 1
    assert page.locator('svg[data-figure="tau_successful_sabotage_rate"] line.marker').count() == 1
    for section in ("headline", "profile", "causal", "fusion_compare", "calibration", "tau"):
        assert page.locator(f"#{section} .tbl details[open]").count() == 0  # collapsed under the figure
    tables = page.locator(".tbl")
    assert tables.count() >= 12 and page.locator(".tbl > a.csv[download]").count() == tables.count()
    # a download is the table's rows, a figure cell split into value, low and high
    tau = page.locator('.tbl[data-table="tau_sweep"]')
    with page.expect_download() as info:
        tau.locator("a.csv").click()
    download = info.value
    assert download.suggested_filename == "tau_sweep.csv"
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert rows[0][:5] == ["tau", "agent", "successful sabotage rate", "successful sabotage rate low", "successful sabotage rate high"]
    tau.locator("summary").click()
    assert tau.locator("tbody tr").count() == len(rows) - 1 == 10 * len(AGENTS)
    # the tau sweep is drawn as curves, not packed into cells
    assert " / " not in tau.locator("tbody").inner_text()
    assert page.problems == []
    page.close()


@pytest.mark.parametrize("name", ["example", "small"])
def test_page_height_and_width_stay_bounded(reports, chromium, name):
    path, _ = reports[name]
    for width, (closed, opened) in HEIGHT[name].items():
        page = _page(chromium, path, width)
        w, h = _size(page)
        assert w <= width, (name, width, w)
        assert h <= closed, (name, width, h)
        page.locator("#ib-body tr.inst").first.click()
        page.wait_for_selector("details.raw")
        for raw in page.locator("details.raw").all():
            raw.click()
        page.wait_for_timeout(200)
        w, h = _size(page)
        assert w <= width, (name, width, "opened", w)  # raw answers and long descriptors wrap
        detail = page.locator("tr.detail").bounding_box()["height"]
        assert detail < 1500, (name, width, detail)
        assert h <= opened, (name, width, "opened", h)
        assert page.problems == []
        page.close()


def test_small_runs_say_what_they_cannot_draw(reports, chromium):
    path, _ = reports["small"]
    page = _page(chromium, path, 1400)
    # 8 answers per agent: no reliability diagram of a few dots, a sentence instead
    assert page.locator('#calibration svg[data-figure^="calibration_"]').count() == 0
    assert "fewer than 20 answers" in page.locator("#calibration").inner_text()
    # no baseline: Base T1 is explained, not a dash
    headline = page.locator("#headline")
    assert "No Base T1: no baseline agent was named" in headline.inner_text()
    headline.locator("summary").click()
    assert "Base T1" not in headline.locator("thead").inner_text()
    # every bar drawn has a height; agents with nothing to show are named, not drawn as nothing
    heights = page.evaluate(
        "Array.from(document.querySelectorAll('svg.chart rect.bar')).map(r => r.getBoundingClientRect().height)"
    )
    assert heights and min(heights) > 0
    assert page.problems == []
    page.close()


def test_screenshot_of_the_top_of_the_page(reports, chromium, tmp_path):
    path, _ = reports["example"]
    page = _page(chromium, path, 1400)
    page.screenshot(path=tmp_path / "report-findings.png")  # docs/report-findings.png is the real example's
    assert (tmp_path / "report-findings.png").stat().st_size > 10_000
    page.close()
