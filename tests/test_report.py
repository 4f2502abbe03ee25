"""The HTML report without a browser: sections, safety of the markup, CLI, static figures."""

import json
import re
import sqlite3

import pytest
import synthetic
from typer.testing import CliRunner

from modsab.cli import app
from modsab.core.diagnosis import diagnose
from modsab.views.report import build_report, read_extras, report_from_path, write_report
from modsab.views.report.browser import json_for_script
from modsab.views.report.figures import all_figures, to_json


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return synthetic.write_run(tmp_path_factory.mktemp("run") / "x", 300, diagnostics="modsab", xss=True)


@pytest.fixture(scope="module")
def result(run):
    return diagnose(run, labels="meld", baseline="base", bootstrap=200)


def _script_blocks(html):
    return re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)


def test_page_is_self_contained_with_csp(result, run):
    html = build_report(result, extras=read_extras(run))
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp).group(1)
    for attributes, _ in _script_blocks(html):
        assert f'nonce="{nonce}"' in attributes or 'type="application/' in attributes
    assert not re.search(r'(src|href)="(https?:)?//', html), "no remote resources"
    assert "<link" not in html and " style=" not in html


def test_payloads_stay_text(result, run):
    html = build_report(result, extras=read_extras(run))
    for payload in synthetic.XSS:
        assert payload not in html  # never raw: escaped in markup, \\u003c in JSON, gzip in the text block
    # exactly the script blocks we wrote: figure data, instance data, text data, the script
    assert len(_script_blocks(html)) == 4
    data = json.loads(re.search(r'id="instance-data">(.*?)</script>', html, re.S).group(1))
    assert any("<script>" in i for i in data["id"])  # the data itself is intact


def test_json_for_script_cannot_break_out():
    text = json_for_script({"a": "</script><!-- \u2028 & <img>"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!-- \u2028 & <img>"}


def test_sections_follow_the_diagnosis(result, run):
    with_extras = build_report(result, extras=read_extras(run))
    sections = ("run", "headline", "profile", "calibration", "tau", "fusion_compare", "causal", "shapley", "instances")
    for section in sections:
        assert f'<section id="{section}">' in with_extras
    plain = build_report(result)
    for section in ("calibration", "tau", "fusion_compare", "causal", "shapley"):
        assert f'<section id="{section}">' not in plain
    assert 'id="text-data"' not in plain  # no descriptors or raw answers given
    summary_only = build_report(result.to_dict())
    assert '<section id="instances">' not in summary_only and 'data-figure="headline"' in summary_only


def test_diagnostics_sections_become_figures_and_tables(result, run):
    sections = read_extras(run).diagnosis
    figures = {f.key: f for f in all_figures({**result.to_dict(), **sections})}
    assert {"causal sabotage", "causal contribution"} <= set(figures["reliability"].series)
    audio = figures["reliability"].groups.index("audio")
    causal = figures["reliability"].values[audio][figures["reliability"].series.index("causal sabotage")]
    assert causal.value == sections["causal"]["agents"]["audio"]["causal_sabotage_rate"]
    assert causal.low == sections["causal"]["ci"]["agents.audio.causal_sabotage_rate"][0]
    calibration = [f for k, f in figures.items() if k.startswith("calibration_")]
    assert len(calibration) == 5 and all(len(c.lines[0].x) >= 3 for c in calibration)
    assert {"tau_successful_sabotage_rate", "tau_potential_sabotage_rate"} <= set(figures)
    html = build_report(result, extras=read_extras(run))
    for text in (
        "phi(correct)",
        "causal | paper",
        "diff vs uniform",
        "confidence auroc",
        "successful sabotage rate",  # the tau sweep, one figure per cell (drawn as curves above it)
    ):
        assert text in html, text


def test_other_shapes_of_diagnostics_still_render(tmp_path):
    run = synthetic.write_run(tmp_path / "run", 60, diagnostics="generic")
    result = diagnose(run, bootstrap=0)
    figures = {f.key for f in all_figures({**result.to_dict(), **read_extras(run).diagnosis})}
    assert {"calibration_audio_0", "tau_sweep"} <= figures
    html = build_report(result, extras=read_extras(run))
    for section in ("calibration", "tau", "fusion_compare", "causal"):
        assert f'<section id="{section}">' in html
    assert "audio_potential" in html and "uniform" in html


def test_broken_optional_files_are_noted_not_fatal(tmp_path):
    run = synthetic.write_run(tmp_path / "run", 40, raw=False, descriptors=False)
    (run / "diagnosis.json").write_text("{not json", encoding="utf-8")
    (run / "descriptors.parquet").write_bytes(b"not parquet")
    sqlite3.connect(run / "store.db").execute("create table other (a text)").connection.commit()
    extras = read_extras(run)
    assert len(extras.notes) == 3 and not extras.descriptors and not extras.raw_answers
    html = build_report(diagnose(run, bootstrap=0), extras=extras)
    assert "left out" in html and '<section id="instances">' in html


def test_descriptors_long_format(tmp_path):
    import pandas as pd

    from modsab.views.report.inputs import read_descriptors

    path = tmp_path / "descriptors.parquet"
    pd.DataFrame(
        {"instance_id": ["a", "a", "b"], "modality": ["audio", "vision", "audio"], "text": ["loud", "smile", "soft"]}
    ).to_parquet(path)
    assert read_descriptors(path) == {"a": {"audio": "loud", "vision": "smile"}, "b": {"audio": "soft"}}


def test_cli_writes_report_and_figures(run, tmp_path):
    out, figures = tmp_path / "r.html", tmp_path / "figs"
    outcome = CliRunner().invoke(
        app,
        [
            "report",
            str(run),
            "--out",
            str(out),
            "--labels",
            "meld",
            "--baseline",
            "base",
            "--bootstrap",
            "50",
            "--figures",
            str(figures),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "gpt-4o-mini" in html and "t-v3" in html
    for key in ("headline", "reliability", "heatmap_successful_by_gold", "tau_successful_sabotage_rate"):
        assert (figures / f"{key}.png").stat().st_size > 1000
        assert (figures / f"{key}.svg").read_text().lstrip().startswith("<?xml")
    # the static figures draw the same numbers as the page
    embedded = json.loads(re.search(r'id="figure-data">(.*?)</script>', html, re.S).group(1))
    assert json.loads((figures / "figures.json").read_text()) == embedded


def test_write_report_from_a_predictions_file(run, tmp_path):
    path = report_from_path(run / "predictions.jsonl", tmp_path / "r.html", bootstrap=0)
    assert "Instance browser" in path.read_text(encoding="utf-8")
    assert write_report(diagnose(run, bootstrap=0), tmp_path / "s" / "r.html").exists()


def test_figure_data_matches_the_diagnosis(result):
    d = result.to_dict()
    headline = to_json(all_figures(d))[0]
    assert headline["series"][0] == "Base T1"
    assert headline["values"][0][1]["value"] == d["fusion_topk"]["1"]
    assert headline["values"][0][1]["low"] == d["ci"]["fusion_topk.1"][0]
    assert headline["groups"] == ["all", "meld", "mer"]
