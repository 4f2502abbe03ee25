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
from modsab.diagnostics.findings import MIN_ANSWERS
from modsab.views.report import figures as fig
from modsab.views.report.browser import FILTER_CONTROLS, json_for_script, sample_note
from modsab.views.report.data import ReportData
from modsab.views.report.markup import data_table
from modsab.views.report.sections import section_table
from modsab.views.report.svg import render

#: Sections other diagnostics may add to the diagnosis JSON, with their headings (page order).
OPTIONAL_SECTIONS: tuple[tuple[str, str, str], ...] = (
    # (page id, JSON key, heading)
    ("causal", "causal", "Causal (counterfactual) sabotage"),
    ("fusion_compare", "fusion_compare", "Fusion strategies"),
    ("calibration", "calibration", "Calibration"),
    ("tau", "tau_sweep", "Tau sweep"),
    ("shapley", "shapley", "Shapley contributions"),
    ("ablation", "ablation", "Ablation audit (end-to-end models)"),
)
#: Page id of the section that holds a JSON key's figures (a finding's ``section``).
ANCHORS = {"agents": "profile", "fusion_topk": "headline", "tau_sweep": "tau"}
#: Headings of the foundation's sections.
HEADINGS = {"findings": "Findings", "headline": "Headline", "profile": "Reliability profile", "run": "Run"}
#: A config longer than this many rows is shown collapsed.
OPEN_CONFIG_ROWS = 12


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


def _figure(figure: fig.Figure | None) -> str:
    """The figure's SVG and, when it left something out, the sentence that says what."""
    if figure is None:
        return ""
    note = f'<p class="note fig-note">{escape(figure.note)}</p>' if figure.note else ""
    return f'<div class="fig">{render(figure)}{note}</div>'


def _figs(figures: list[fig.Figure]) -> str:
    return f'<div class="figs">{"".join(_figure(f) for f in figures)}</div>' if figures else ""


# -- sections --------------------------------------------------------------------------------


def _findings_section(data: ReportData, present: dict[str, str]) -> str:
    """What the audit concluded (``findings``), each with a link to the section behind it."""
    found = data.result.findings or []
    items = []
    for finding in found:
        anchor = ANCHORS.get(finding.section, finding.section)
        link = ""
        if anchor in present:
            link = f' <a class="see" href="#{escape(anchor)}">{escape(present[anchor])} &#8250;</a>'
        items.append(f'<li data-kind="{escape(finding.kind)}">{escape(finding.text)}{link}</li>')
    if items:
        body = f'<ol class="findings">{"".join(items)}</ol>'
    else:
        body = (
            '<p class="note">No finding: nothing in this diagnosis is decisive (findings need bootstrap '
            "intervals; the diagnostics beyond the paper, --all, add most of them).</p>"
        )
    rule = (
        "Each sentence is read off the section it links to. \u201cClearly\u201d means the 95% interval "
        "excludes the value compared with; otherwise the sentence says there is no clear difference."
    )
    return f'<section id="findings"><h2>Findings</h2>{body}<p class="note">{escape(rule)}</p></section>'


def _run_section(data: ReportData, config: dict[str, Any], notes: list[str]) -> str:
    d = data.result
    boot = d.bootstrap
    facts = [
        ["source", d.source],
        ["instances", d.n_instances],
        ["labels", d.labels],
        ["label set", d.label_source],
        ["fused agents", d.fused_agents],
        ["baseline (Base T1)", d.baseline if d.baseline else "none named (--baseline NAME)"],
        ["fusion weights", d.weights],
        ["tau", d.tau],
        ["confidence scale", d.scale],
        ["bootstrap", f"{boot.resamples} resamples, level {boot.level}, seed {boot.seed}"],
        ["instances without gold", d.n_without_gold],
        ["records skipped", d.n_skipped],
    ]
    facts = [f for f in facts if f[1] is not None]
    parts = ['<section id="run"><h2>Run</h2>', data_table("run", "the run", ["", ""], facts, cls="kv", open_=True)]
    if config:
        rows = _flatten(config)
        parts.append(
            data_table(
                "config", "config, model and prompt versions", ["key", "value"], rows, cls="kv",
                open_=len(rows) <= OPEN_CONFIG_ROWS,
            )
        )
    examples = d.invalid_label_examples
    rows = [
        [a, e.n, e.abstained, e.missing_records, e.invalid_labels, examples.get(a, [])] for a, e in d.agents.items()
    ]
    headers = ["agent", "answered", "abstained", "missing records", "invalid labels", "invalid examples"]
    parts.append(data_table("answers", "answers per agent", headers, rows, open_=True))
    skipped = d.skipped
    if skipped:
        rows = [[s.where, s.reason] for s in skipped[:50]]
        parts.append(data_table("skipped", f"skipped records ({len(skipped)})", ["where", "reason"], rows))
    for note in notes:
        parts.append(f'<p class="note">{escape(note)}</p>')
    parts.append("</section>")
    return "".join(parts)


def _headline_section(data: ReportData, chart: fig.BarChart) -> str:
    groups = fig._groups(data)
    ks = sorted(data.result.fusion_topk, key=int)
    has_baseline = any(s.baseline_top1 is not None for _, s in groups)
    headers = ["group", "n"] + (["Base T1"] if has_baseline else []) + [f"Fus T{k}" for k in ks]
    rows = []
    for name, s in groups:
        row: list[Any] = [name, s.n_instances]
        if has_baseline:
            base = s.baseline_top1
            row.append("–" if base is None else f"{base:.3f}{_ci(s, 'baseline_top1')}")
        for k in ks:
            v = s.fusion_topk[k]
            row.append("–" if v is None else f"{v:.3f}{_ci(s, f'fusion_topk.{k}')}")
        rows.append(row)
    note = f"Intervals: {data.result.bootstrap.level:.0%} percentile bootstrap over instances."
    return (
        '<section id="headline"><h2>Headline: fused top-k vs baseline</h2>'
        f"{_figs([chart])}{data_table('headline', 'fused top-k', headers, rows)}"
        f'<p class="note">{escape(note)}</p></section>'
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
    heat = [f for f in figures if isinstance(f, fig.Heatmap)]
    profile = next(f for f in figures if f.key == "reliability")
    if heat:
        by_label = _figs(heat)
    else:
        by_label = '<p class="note empty">No successful sabotage by the paper\'s rule: nothing to break down by label.</p>'
    return (
        '<section id="profile"><h2>Reliability profile</h2>'
        f"{_figs([profile])}{data_table('profile', 'rates and shares per agent', headers, rows)}"
        '<p class="note">Rates are over the instances each agent answered; shares are over the fused agents.</p>'
        f"<h3>Which agent sabotages which label</h3>{by_label}</section>"
    )


def _optional_sections(data: ReportData, figures: list[fig.Figure]) -> list[tuple[str, str, str]]:
    """``(id, heading, html)`` of the sections later diagnostics add, when present: figures
    first, then their tables (collapsed)."""
    by_key = {f.key: f for f in figures}
    out = []
    for sid, key, heading in OPTIONAL_SECTIONS:
        section = data.section(key)
        if section is None:
            continue
        if key == "causal":
            body = _figs([f for f in (by_key.get("causal_vs_paper"),) if f is not None])
        elif key == "fusion_compare":
            body = _figs([f for f in (by_key.get("fusion_strategies"),) if f is not None])
        elif key == "calibration":
            body = _figs([f for f in figures if f.key.startswith("calibration_")])
            left_out = fig.calibration_left_out(data)
            if left_out:
                names = ", ".join(f"{agent} ({n})" for agent, n in left_out)
                body += (
                    f'<p class="note empty">No reliability diagram for agents with fewer than {MIN_ANSWERS} '
                    f"answers (a handful of dots says nothing about calibration): {escape(names)}.</p>"
                )
        elif key == "tau_sweep":
            body = _figs([f for f in figures if f.key.startswith("tau_")])
        else:
            body = ""
        out.append((sid, heading, body + section_table(key, section)))
    return out


_BROWSER = """<section id="instances"><h2>Instance browser</h2>
<div class="filters">
""" + FILTER_CONTROLS + """</div>
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
    optional = _optional_sections(data, figures)
    present = {"headline": "Headline", "profile": "Reliability profile"}
    present.update({sid: heading for sid, heading, _ in optional})
    present["run"] = "Run"
    if instances is not None:
        present["instances"] = "Instances"
    nav = "".join(f'<a href="#{sid}">{escape(heading)}</a>' for sid, heading in {"findings": "Findings", **present}.items())
    body = [
        _findings_section(data, present),
        _headline_section(data, next(f for f in figures if f.key == "headline")),
        _profile_section(data, figures),
    ]
    body += [f'<section id="{sid}"><h2>{escape(h)}</h2>{html}</section>' for sid, h, html in optional]
    body.append(_run_section(data, config, notes))
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
