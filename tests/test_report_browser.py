"""The report in a real browser (headless Debian Chromium driven by Playwright).

Figures render, filters show exactly the instances pandas counts, rows open with
candidates, raw answers and descriptors, payloads in the data never execute, and
the console stays clean. Screenshots are saved under the test's tmp dir (and to
``$MODSAB_REPORT_SCREENSHOTS`` when set, e.g. docs/: report.png, report-instances.png).
"""

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import synthetic

from modsab.core.diagnosis import diagnose
from modsab.views.report import read_extras, write_report

pytestmark = pytest.mark.slow

N_FIGURES = 14  # headline, reliability, 2 heatmaps, causal vs paper, fusion strategies, 5 calibration diagrams, 3 tau sweep charts


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    run = synthetic.write_run(tmp_path_factory.mktemp("run") / "meld-4o", 3000, diagnostics="modsab", xss=True)
    result = diagnose(run, labels="meld", baseline="base", bootstrap=200)
    out = write_report(result, run.parent / "report.html", extras=read_extras(run))
    return out, result.instances(), list(result.pset.labels), list(result.pset.agents)


def expected(frame, agents, *, role="", agent=None, gold=None, pred=None, dataset=None, id_contains=""):
    keep = pd.Series(True, index=frame.index)
    if gold is not None:
        keep &= frame["gold"] == gold
    if pred is not None:
        keep &= frame["fused_top1"] == pred
    if dataset is not None:
        keep &= frame["dataset"] == dataset
    if id_contains:
        keep &= frame["instance_id"].str.lower().str.contains(id_contains.lower(), regex=False)
    if role:
        roles = {"potential_sabotage", "successful_sabotage"} if role == "potential_any" else {role}
        columns = [f"{a}.role" for a in ([agent] if agent else agents)]
        keep &= frame[columns].isin(roles).any(axis=1)
    return int(keep.sum())


def set_filters(page, labels, agents, *, role="", agent=None, gold=None, pred=None, dataset=None, id_contains=""):
    page.select_option("#f-role", role)
    page.select_option("#f-agent", "" if agent is None else str(agents.index(agent)))
    page.select_option("#f-gold", "" if gold is None else str(labels.index(gold)))
    page.select_option("#f-pred", "" if pred is None else str(labels.index(pred)))
    if dataset is not None or page.locator("#f-dataset-wrap").is_visible():
        page.select_option("#f-dataset", "" if dataset is None else str(sorted(["meld", "mer"]).index(dataset)))
    page.fill("#f-id", id_contains)
    page.wait_for_timeout(200)  # the id box is debounced
    return int(page.get_attribute("#ib-count", "data-count"))


def test_figures_render_and_payloads_never_execute(built, open_page, tmp_path):
    out, frame, labels, agents = built
    page = open_page(out)
    charts = page.locator("svg.chart")
    assert charts.count() == N_FIGURES
    for i in range(N_FIGURES):
        chart = charts.nth(i)
        box = chart.bounding_box()
        assert box["width"] > 100 and box["height"] > 100
        assert chart.locator("rect.bar, rect.cell, circle.point").count() > 0, chart.get_attribute("data-figure")
    # open a row whose id carries a payload: its text shows, nothing runs
    set_filters(page, labels, agents, id_contains="script")
    page.locator("#ib-body tr.inst").first.click()
    page.wait_for_selector("details.raw")
    page.locator("details.raw").first.click()
    assert "<script>" in page.locator("#ib-body tr.inst").first.inner_text()
    assert "window.__xss" in page.locator("details.raw pre").first.inner_text()
    assert (
        "<img src=x" in page.locator("details.descriptors").first.inner_text()
        or "<script>" in page.locator("details.descriptors").first.inner_text()
    )
    assert "gpt-4o-mini<img" in page.locator("#run").inner_text()
    assert page.evaluate("window.__xss") is None
    assert page.locator("img").count() == 0 and page.locator("b").count() == 0
    page.screenshot(path=tmp_path / "report.png", full_page=True)
    assert page.problems == []


def test_filters_show_the_instances_pandas_counts(built, open_page):
    out, frame, labels, agents = built
    page = open_page(out)
    assert int(page.get_attribute("#ib-count", "data-count")) == len(frame)
    assert page.locator("#ib-body tr.inst").count() == 50  # paged
    cases = [
        {"role": "successful_sabotage"},
        {"role": "successful_sabotage", "agent": "audio"},
        {"role": "potential_any", "agent": "vision", "dataset": "mer"},
        {"role": "contributor", "agent": "text", "gold": "anger"},
        {"role": "abstained"},
        {"gold": "neutral", "pred": "joy"},
        {"pred": "sadness", "dataset": "meld"},
        {"role": "wrong", "agent": "tav", "gold": "fear", "pred": "neutral"},
        {"id_contains": "dia1"},
    ]
    for case in cases:
        shown = set_filters(page, labels, agents, **case)
        assert shown == expected(frame, agents, **case), case
        assert page.locator("#ib-body tr.inst").count() == min(50, shown)
    set_filters(page, labels, agents, role="contributor")
    page.click("#ib-next")
    assert page.locator("#ib-page").inner_text().startswith("page 2 of")
    assert page.problems == []


def _shared_data() -> Path | None:
    if os.environ.get("MODSAB_DATA"):
        return Path(os.environ["MODSAB_DATA"])
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return None


@pytest.mark.data
def test_report_over_real_meld_gold_labels(open_page, tmp_path):
    data = _shared_data()
    csv = data / "meld" / "test_sent_emo.csv" if data else None
    if csv is None or not csv.is_file():
        pytest.skip("needs ../shared/data/meld/test_sent_emo.csv (or MODSAB_DATA)")
    meld = pd.read_csv(csv)
    ids = [f"dia{d}_utt{u}" for d, u in zip(meld["Dialogue_ID"], meld["Utterance_ID"], strict=True)]
    run = synthetic.write_run(
        tmp_path / "meld-test", len(meld), gold=meld["Emotion"].str.lower().tolist(), ids=ids, datasets=("meld",)
    )
    result = diagnose(run, labels="meld", baseline="base", bootstrap=200)
    out = write_report(result, tmp_path / "report.html", extras=read_extras(run), title="modsab report: MELD test")
    frame, labels = result.instances(), list(result.pset.labels)
    assert len(frame) == len(meld)
    page = open_page(out)
    page.select_option("#f-gold", str(labels.index("joy")))
    assert int(page.get_attribute("#ib-count", "data-count")) == int((meld["Emotion"] == "joy").sum())
    page.select_option("#f-gold", "")
    docs = Path(os.environ["MODSAB_REPORT_SCREENSHOTS"]) if os.environ.get("MODSAB_REPORT_SCREENSHOTS") else None
    if docs:
        page.evaluate("document.getElementById('headline').scrollIntoView()")
        page.screenshot(path=docs / "report.png")
    page.locator("#ib-body tr.inst").nth(1).click()
    page.wait_for_selector("details.raw")
    page.screenshot(path=tmp_path / "report.png", full_page=True)
    if docs:
        page.evaluate("document.getElementById('instances').scrollIntoView()")
        page.screenshot(path=docs / "report-instances.png")
    assert page.problems == []
    shutil.rmtree(run)


def test_payloads_in_labels_agent_names_and_invalid_labels_stay_text(open_page, tmp_path):
    bad_label = '<img src=x onerror="window.__xss=3">'
    bad_agent = "</script><script>window.__xss=4</script>"
    agents = {"text": (0.6, 75), bad_agent: (0.4, 80)}
    rows = synthetic.records(200, labels=(*synthetic.MELD, bad_label), prior=None, agents=agents, datasets=())
    for row in rows[::7]:
        row["candidates"].append({"label": "<svg onload=window.__xss=5>", "confidence": 30})
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = diagnose(run, bootstrap=50)
    assert bad_label in result.pset.labels and bad_agent in result.pset.agents
    assert result.to_dict()["invalid_labels"]  # the odd candidate label is counted and shown as an example
    out = write_report(result, tmp_path / "report.html", extras=read_extras(run))
    page = open_page(out)
    labels, agent_names = list(result.pset.labels), list(result.pset.agents)
    shown = set_filters(page, labels, agent_names, gold=bad_label)
    assert shown == int((result.instances()["gold"] == bad_label).sum()) > 0
    page.locator("#ib-body tr.inst").first.click()
    assert bad_agent in page.locator("tr.detail").inner_text()
    assert "<svg onload" in page.locator("#run").inner_text()
    assert bad_label in page.locator('svg[data-figure="heatmap_successful_by_gold"]').text_content()
    assert page.evaluate("window.__xss") is None
    assert page.locator("img").count() == 0 and page.locator("main svg:not(.chart)").count() == 0
    assert page.problems == []
