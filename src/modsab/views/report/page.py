"""The HTML page: sections from the typed diagnosis, inline SVG, the instance browser.

One file, no remote resource: the stylesheet and the script are inlined with a fresh
nonce that the Content-Security-Policy names, so nothing else can run. Every text
from data or models is escaped here (:func:`html.escape`) or, in the browser, set
with ``textContent``; the embedded JSON escapes ``<``, ``>`` and ``&``.
"""

from __future__ import annotations

import datetime as _dt
import secrets
from html import escape
from importlib import resources
from typing import Any

from modsab.core.result import Summary
from modsab.views.report import figures as fig
from modsab.views.report.browser import json_for_script, sample_note
from modsab.views.report.data import ReportData
from modsab.views.report.markup import table
from modsab.views.report.sections import section_table
from modsab.views.report.svg import render

#: Sections other diagnostics may add to the diagnosis JSON, with their headings.
OPTIONAL_TABLES: tuple[tuple[str, str], ...] = (
    ("fusion_compare", "Fusion strategies"),
    ("causal", "Causal (counterfactual) sabotage"),
    ("shapley", "Shapley contributions"),
    ("ablation", "Ablation audit (end-to-end models)"),
)


def _asset(name: str) -> str:
    return resources.files("modsab.views.report").joinpath("assets", name).read_text(encoding="utf-8")


def _ci(summary: Summary, key: str) -> str:
    low, high = fig._interval(summary.ci, key)
    return "" if low is None or high is None else f" [{low:.3f}, {high:.3f}]"


def _flatten(data: dict[str, Any], prefix: str = "") -> list[list[Any]]:
    out = []
    for key, value in data.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append([f"{prefix}{key}", value])
    return out


# -- sections --------------------------------------------------------------------------------


def _run_section(data: ReportData, config: dict[str, Any], notes: list[str]) -> str:
    d = data.result
    boot = d.bootstrap
    facts = [
        ["source", d.source],
        ["instances", d.n_instances],
        ["labels", d.labels],
        ["label set", d.label_source],
        ["fused agents", d.fused_agents],
        ["baseline (Base T1)", d.baseline],
        ["fusion weights", d.weights],
        ["tau", d.tau],
        ["confidence scale", d.scale],
        ["bootstrap", f"{boot.resamples} resamples, level {boot.level}, seed {boot.seed}"],
        ["instances without gold", d.n_without_gold],
        ["records skipped", d.n_skipped],
    ]
    parts = ['<section id="run"><h2>Run</h2>', table(["", ""], [f for f in facts if f[1] is not None], cls="kv")]
    if config:
        parts += ["<h3>Config, model and prompt versions</h3>", table(["key", "value"], _flatten(config), cls="kv")]
    examples = d.invalid_label_examples
    rows = [
        [a, e.n, e.abstained, e.missing_records, e.invalid_labels, examples.get(a, [])] for a, e in d.agents.items()
    ]
    parts += [
        "<h3>Answers per agent</h3>",
        table(["agent", "answered", "abstained", "missing records", "invalid labels", "invalid examples"], rows),
    ]
    skipped = d.skipped
    if skipped:
        parts.append(f"<h3>Skipped records ({len(skipped)})</h3>")
        parts.append(table(["where", "reason"], [[s.where, s.reason] for s in skipped[:50]]))
    for note in notes:
        parts.append(f'<p class="note">{escape(note)}</p>')
    parts.append("</section>")
    return "".join(parts)


def _headline_section(data: ReportData, chart: fig.BarChart) -> str:
    groups = fig._groups(data)
    ks = sorted(data.result.fusion_topk, key=int)
    headers = ["group", "n", "Base T1"] + [f"Fus T{k}" for k in ks]
    rows = []
    for name, s in groups:
        base = s.baseline_top1
        row = [name, s.n_instances, "–" if base is None else f"{base:.3f}{_ci(s, 'baseline_top1')}"]
        for k in ks:
            v = s.fusion_topk[k]
            row.append("–" if v is None else f"{v:.3f}{_ci(s, f'fusion_topk.{k}')}")
        rows.append(row)
    note = f"Intervals: {data.result.bootstrap.level:.0%} percentile bootstrap over instances."
    return (
        '<section id="headline"><h2>Headline: fused top-k vs baseline</h2>'
        f'<div class="figs">{render(chart)}</div>{table(headers, rows)}<p class="note">{escape(note)}</p></section>'
    )


def _profile_section(data: ReportData, figures: list[fig.Figure]) -> str:
    keys = [
        ("top1", "top-1"),
        ("contributor_share", "contributor share"),
        ("potential_sabotage_share", "potential share"),
        ("successful_sabotage_share", "successful share"),
        ("success_given_potential", "success | potential"),
    ]
    summary = data.result
    rows = []
    for agent, e in summary.agents.items():
        row = [agent, "yes" if e.fused else "no"]
        for key, _ in fig.PROFILE_RATES:
            v = getattr(e, key)
            row.append("–" if v is None else f"{v:.3f}{_ci(summary, f'agents.{agent}.{key}')}")
        row += [getattr(e, key) for key, _ in keys[1:]]
        rows.append(row)
    headers = ["agent", "fused"] + [name for _, name in fig.PROFILE_RATES] + [name for _, name in keys[1:]]
    heat = "".join(render(f) for f in figures if isinstance(f, fig.Heatmap))
    profile = next(f for f in figures if f.key == "reliability")
    return (
        '<section id="profile"><h2>Reliability profile</h2>'
        f'<div class="figs">{render(profile)}</div>{table(headers, rows)}'
        '<p class="note">Rates are over the instances each agent answered; shares are over the fused agents.</p>'
        f'<h3>Which agent sabotages which label</h3><div class="figs">{heat}</div></section>'
    )


def _optional_sections(data: ReportData, figures: list[fig.Figure]) -> list[tuple[str, str, str]]:
    """``(id, heading, html)`` of the sections later diagnostics add, when present."""
    out = []
    calibration = [f for f in figures if f.key.startswith("calibration_")]
    section = data.section("calibration")
    if section is not None:
        body = "".join(render(f) for f in calibration)
        out.append(
            ("calibration", "Calibration", f'<div class="figs">{body}</div>{section_table("calibration", section)}')
        )
    section = data.section("tau_sweep")
    if section is not None:
        sweep = "".join(render(f) for f in figures if f.key.startswith("tau_"))
        out.append(("tau", "Tau sweep", f'<div class="figs">{sweep}</div>{section_table("tau_sweep", section)}'))
    for key, heading in OPTIONAL_TABLES:
        section = data.section(key)
        if section is not None:
            out.append((key, heading, section_table(key, section)))
    return out


_BROWSER = """<section id="instances"><h2>Instance browser</h2>
<div class="filters">
<label>role<select id="f-role"><option value="">any</option>
<option value="successful_sabotage">successful sabotage</option>
<option value="potential_any">potential sabotage (incl. successful)</option>
<option value="contributor">contributor</option><option value="wrong">wrong (below tau)</option>
<option value="abstained">abstained</option></select></label>
<label>agent<select id="f-agent"><option value="">any agent</option></select></label>
<label>gold<select id="f-gold"><option value="">any</option></select></label>
<label>predicted (fused top-1)<select id="f-pred"><option value="">any</option></select></label>
<label id="f-dataset-wrap">dataset<select id="f-dataset"><option value="">any</option></select></label>
<label>instance id<input id="f-id" type="search" placeholder="contains"></label>
</div>
<div class="pager"><button id="ib-prev" type="button">&#8249; prev</button><span id="ib-page"></span>
<button id="ib-next" type="button">next &#8250;</button><strong id="ib-count" data-count=""></strong></div>
<p class="note">Click a row for each agent's ranked candidates (confidence 0-100), quality, raw answer and
descriptors. Role and agent combine: "agent" alone does nothing; with a role it asks that agent.</p>
<table id="ib-table"><thead><tr><th>instance</th><th>dataset</th><th>gold</th><th>fused top-1</th>
<th>gold rank</th><th>agents (top label, confidence)</th></tr></thead><tbody id="ib-body"></tbody></table>
</section>"""


def page(
    data: ReportData,
    *,
    instances: dict[str, Any] | None,
    texts: str | None = None,
    config: dict[str, Any],
    notes: list[str],
    title: str,
) -> str:
    figures = fig.all_figures(data)
    nonce = secrets.token_urlsafe(18)
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
    sections = [("run", "Run"), ("headline", "Headline"), ("profile", "Reliability")]
    optional = _optional_sections(data, figures)
    sections += [(sid, heading) for sid, heading, _ in optional]
    if instances is not None:
        sections.append(("instances", "Instances"))
    nav = "".join(f'<a href="#{sid}">{escape(heading)}</a>' for sid, heading in sections)
    body = [
        _run_section(data, config, notes),
        _headline_section(data, next(f for f in figures if f.key == "headline")),
        _profile_section(data, figures),
    ]
    body += [f'<section id="{sid}"><h2>{escape(h)}</h2>{html}</section>' for sid, h, html in optional]
    generated = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    from modsab import __version__

    scripts = [f'<script type="application/json" id="figure-data">{json_for_script(fig.to_json(figures))}</script>']
    if instances is not None:
        body.append(_BROWSER.replace("</h2>", f"</h2>{sample_note(instances)}", 1))
        scripts.append(f'<script type="application/json" id="instance-data">{json_for_script(instances)}</script>')
        if texts:
            scripts.append(
                f'<script type="application/octet-stream" id="text-data" data-encoding="gzip+base64">{texts}</script>'
            )
        scripts.append(f'<script nonce="{nonce}">{_asset("report.js")}</script>')
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        f'<style nonce="{nonce}">{_asset("report.css")}</style></head><body>'
        f"<header><h1>{escape(title)}</h1><p>{data.result.n_instances} instances · "
        f"{escape(data.result.source)} · modsab {escape(__version__)} · {generated}</p></header>"
        f"<nav>{nav}</nav><main>{''.join(body)}</main>{''.join(scripts)}</body></html>\n"
    )
