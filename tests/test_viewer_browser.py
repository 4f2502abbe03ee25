"""``modsab view`` in a real browser (headless Debian Chromium driven by Playwright), against
a server the test starts on a free loopback port (``python -m modsab view RUN --port 0``)
and stops at the end.

A 1M-instance run made by ``modsab synth`` + ``modsab diagnose --instances`` (cached
under the temp dir, see tests/viewer_runs.py): the page opens, every filter shows the
count pandas finds in instances.parquet, sorting and paging go through the server, a
row opens with its descriptors. The XSS probe run: payloads in ids, labels, agent names,
raw answers, descriptor names and values, config and a filter's error message render as
text and never run. The static report above its size limit says it shows a sample.
Times are printed (``-s``), never asserted.
"""

from __future__ import annotations

import json
import os
import time

import pandas as pd
import pytest
import synthetic
import viewer_runs
from conftest import watched_page
from viewer_runs import BAD_AGENT, BAD_FIELD, BAD_LABEL

pytestmark = pytest.mark.slow

pytest.importorskip("duckdb", reason="pip install 'modsab[view]'")
pytest.importorskip("starlette", reason="pip install 'modsab[view]'")

#: The one console message a test may cause on purpose: the server's 400 for a bad filter.
EXPECTED_400 = "the server responded with a status of 400"


@pytest.fixture(scope="session")
def million():
    return viewer_runs.million_run()


@pytest.fixture(scope="module")
def million_frame(million):
    import pyarrow.parquet as pq

    columns = ["instance_id", "dataset", "gold", "fused_top1", "gold_rank"]
    columns += [f"{a}.{f}" for a in ("text", "audio", "vision", "joint") for f in ("role", "confidence")]
    return pq.read_table(million / "instances.parquet", columns=columns).to_pandas()


@pytest.fixture(scope="module")
def million_url(million):
    with viewer_runs.view_server(million) as url:
        yield url


@pytest.fixture(scope="module")
def xss_dir(tmp_path_factory):
    return viewer_runs.xss_run(tmp_path_factory.mktemp("view-xss") / "xss-run")


@pytest.fixture(scope="module")
def xss_url(xss_dir):
    with viewer_runs.view_server(xss_dir) as url:
        yield url


@pytest.fixture
def view_page(chromium):
    """Open the viewer at a URL, watched (console errors, page errors, dialogs)."""
    pages = []

    def opener(url: str):
        page = watched_page(chromium)
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("#ib-table[data-state=ready]", timeout=60_000)
        page.opened = time.perf_counter() - start
        pages.append(page)
        return page

    yield opener
    for page in pages:
        page.close()


CHANGES: list[float] = []  # seconds from request to rows drawn, measured in the page


def settle(page, action, timeout: float = 60) -> None:
    """Do ``action`` (a filter, sort or page change) and wait for the table's answer."""
    before = page.get_attribute("#ib-table", "data-seq")
    action()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = page.get_attribute("#ib-table", "data-state")
        if page.get_attribute("#ib-table", "data-seq") != before and state in ("ready", "error"):
            if state == "ready":
                CHANGES.append(int(page.get_attribute("#ib-table", "data-ms")) / 1000)
            return
        page.wait_for_timeout(15)
    raise AssertionError("the table did not answer")


def count(page) -> int:
    return int(page.get_attribute("#ib-count", "data-count"))


def set_filters(page, *, role="", agent="", gold="", pred="", dataset="", id_contains="", expr=""):
    """Set every control (one request per change) and return the count shown."""
    for selector, value in (
        ("#f-role", role),
        ("#f-agent", agent),
        ("#f-gold", gold),
        ("#f-pred", pred),
        ("#f-dataset", dataset),
    ):
        if page.input_value(selector) != value:
            settle(page, lambda s=selector, v=value: page.select_option(s, v))
    for selector, value in (("#f-id", id_contains), ("#f-expr", expr)):
        if page.input_value(selector) != value:
            settle(page, lambda s=selector, v=value: (page.fill(s, v), page.press(s, "Enter")))
    return count(page)


def expected(frame, agents, *, role="", agent="", gold="", pred="", dataset="", id_contains="", extra=None):
    keep = pd.Series(True, index=frame.index)
    if gold:
        keep &= frame["gold"] == gold
    if pred:
        keep &= frame["fused_top1"] == pred
    if dataset:
        keep &= frame["dataset"] == dataset
    if id_contains:
        keep &= frame["instance_id"].str.lower().str.contains(id_contains.lower(), regex=False)
    if role:
        roles = {"potential_sabotage", "successful_sabotage"} if role == "potential_any" else {role}
        keep &= frame[[f"{a}.role" for a in ([agent] if agent else agents)]].isin(roles).any(axis=1)
    if extra is not None:
        keep &= extra(frame)
    return keep


def test_a_million_instances_filter_sort_and_page_on_the_server(million_url, million_frame, view_page, capsys):
    frame, agents = million_frame, ["text", "audio", "vision", "joint"]
    page = view_page(million_url)
    assert count(page) == len(frame) == 1_000_000
    assert page.locator("#ib-body tr.inst").count() == 50
    assert "1,000,000 instances" in page.locator("header").inner_text()
    assert page.locator("#summary-body table").count() == 2  # headline and per-agent rates
    cases = [
        ({"role": "successful_sabotage", "agent": "audio"}, None),
        ({"role": "potential_any"}, None),
        ({"gold": "joy", "pred": "anger"}, None),
        ({"role": "contributor", "agent": "text", "dataset": "synth1"}, None),
        ({"id_contains": "I99999"}, None),
        (
            {"expr": "audio.confidence >= 0.95 and gold_rank > 1"},
            lambda f: (f["audio.confidence"] >= 0.95) & (f["gold_rank"] > 1),
        ),
        (
            {"role": "wrong", "agent": "vision", "expr": "joint.role != contributor"},
            lambda f: f["joint.role"] != "contributor",
        ),
    ]
    CHANGES.clear()
    for case, extra in cases:
        shown = set_filters(page, **case)
        keep = expected(frame, agents, extra=extra, **{k: v for k, v in case.items() if k != "expr"})
        assert shown == int(keep.sum()) > 0, case
        assert page.locator("#ib-body tr.inst").count() == min(50, shown)
        assert page.locator("#ib-error").is_hidden()
    # sorted on the server: the most confident successful audio sabotage first, ties in file order
    set_filters(page, role="successful_sabotage", agent="audio")
    settle(page, lambda: page.select_option("#f-sort", "audio.confidence"))
    settle(page, lambda: page.select_option("#f-dir", "-"))
    keep = expected(frame, agents, role="successful_sabotage", agent="audio")
    ranked = frame[keep].sort_values("audio.confidence", ascending=False, kind="stable")
    shown_ids = page.locator("#ib-body tr.inst td:first-child").all_inner_texts()
    assert shown_ids == ranked["instance_id"].head(50).tolist()
    # paging: next, then last
    settle(page, lambda: page.click("#ib-next"))
    assert page.locator("#ib-body tr.inst td:first-child").all_inner_texts() == ranked["instance_id"][50:100].tolist()
    pages = -(-len(ranked) // 50)
    assert page.locator("#ib-page").inner_text() == f"page 2 of {pages:,}"
    settle(page, lambda: page.click("#ib-last"))
    assert page.locator("#ib-body tr.inst").count() == len(ranked) - (pages - 1) * 50
    assert page.locator("#ib-next").is_disabled()
    # one instance: its row, agents and descriptors from descriptors.parquet
    first = page.locator("#ib-body tr.inst").first
    instance = first.locator("td").first.inner_text()
    first.click()
    page.wait_for_selector("tr.detail[data-ready]")
    detail = page.locator("tr.detail").inner_text()
    assert f"utterance number {instance[1:]}" in detail and "successful sabotage" in detail
    if os.environ.get("MODSAB_VIEW_SCREENSHOT"):  # the README's docs/view.png
        page.evaluate("document.getElementById('instances').scrollIntoView()")
        page.screenshot(path=os.environ["MODSAB_VIEW_SCREENSHOT"])
    assert page.problems == []
    with capsys.disabled():
        print(
            f"\n[view 1M] page open {page.opened:.2f} s; {len(CHANGES)} filter, sort and page changes, request to "
            f"rows drawn in the page: median {sorted(CHANGES)[len(CHANGES) // 2]:.3f} s, max {max(CHANGES):.3f} s"
        )


def test_payloads_in_the_data_render_as_text_and_never_run(xss_url, xss_dir, view_page):
    frame = pd.read_parquet(xss_dir / "instances.parquet")
    agents = ["text", "audio", BAD_AGENT, "base"]
    page = view_page(xss_url)
    assert count(page) == len(frame)
    assert BAD_AGENT in page.locator("#summary-body").inner_text()
    assert BAD_AGENT in page.locator("#f-agent").inner_text() and BAD_LABEL in page.locator("#f-gold").inner_text()
    # the agent whose name is a payload, through the filter language (a `quoted` column)
    shown = set_filters(page, role="contributor", agent=BAD_AGENT)
    assert shown == int(expected(frame, agents, role="contributor", agent=BAD_AGENT).sum()) > 0
    assert "`" + BAD_AGENT + ".role`" in page.locator("#f-effective").inner_text()
    shown = set_filters(page, gold=BAD_LABEL)
    assert shown == int((frame["gold"] == BAD_LABEL).sum()) > 0
    assert set(page.locator("#ib-body tr.inst td:nth-child(3)").all_inner_texts()) == {BAD_LABEL}
    # ids with payloads; open one: raw answers and descriptors (a payload as a field name too)
    shown = set_filters(page, id_contains="script")
    assert shown == int(frame["instance_id"].str.contains("script").sum()) > 0
    first = page.locator("#ib-body tr.inst").first
    assert "<script>" in first.inner_text() or "</script>" in first.inner_text()
    first.click()
    page.wait_for_selector("tr.detail[data-ready]")
    page.locator("tr.detail details.raw").first.click()
    raw = page.locator("tr.detail details.raw pre").first.inner_text()
    assert "window.__xss" in raw or "</script><b>x</b>" in raw  # a payload of the raw answers, shown as text
    descriptors = page.locator("tr.detail details.descriptors").inner_text()
    assert BAD_FIELD in descriptors and synthetic.XSS[1] in descriptors
    assert BAD_AGENT in page.locator("tr.detail").inner_text()
    # a payload in a filter comes back in the server's error message: shown as text
    payload = "<img src=x onerror=window.__xss=9>"
    settle(page, lambda: (page.fill("#f-expr", f"`{payload}` = 1"), page.press("#f-expr", "Enter")))
    assert page.get_attribute("#ib-table", "data-state") == "error"
    assert payload in page.locator("#ib-error").inner_text()
    assert payload in page.locator("#f-effective").inner_text()
    settle(page, lambda: (page.fill("#f-expr", f"gold = {json.dumps(payload)}"), page.press("#f-expr", "Enter")))
    assert count(page) == 0 and page.locator("#ib-error").is_hidden()
    assert page.evaluate("window.__xss") is None
    assert page.locator("img").count() == 0 and page.locator("main b").count() == 0
    assert page.locator("main svg").count() == 0 and page.locator("body script").count() == 2
    assert [p for p in page.problems if EXPECTED_400 not in p] == []
    assert len(page.problems) == 1  # the one bad filter


def test_a_sampled_report_says_so_in_the_browser(tmp_path, open_page, monkeypatch):
    from modsab.core.diagnosis import diagnose
    from modsab.views.report import browser, read_extras, write_report

    run = synthetic.write_run(tmp_path / "run", 900, xss=True)
    monkeypatch.setattr(browser, "REPORT_INSTANCE_LIMIT", 250)
    out = write_report(diagnose(run, bootstrap=0, baseline="base"), tmp_path / "report.html", extras=read_extras(run))
    page = open_page(out)
    assert int(page.get_attribute("#ib-count", "data-count")) == 250
    note = page.locator("#ib-sample")
    assert note.is_visible() and "Showing 250 of 900 instances, sampled" in note.inner_text()
    assert "modsab view" in note.inner_text()
    assert page.evaluate("window.__xss") is None and page.problems == []
