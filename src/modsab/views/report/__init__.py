"""``modsab report``: one self-contained HTML page per run, plus static figures.

    from modsab.core.diagnosis import diagnose
    from modsab.views.report import build_report, write_report

    html = build_report(diagnose("runs/x/predictions.jsonl", labels="meld"))
    write_report(diagnosis, "report.html", figures="figs/")

or, from a predictions file or a run directory (reads ``diagnosis.json``,
descriptors, raw answers and config when present): :func:`report_from_path`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modsab.core.diagnosis import Diagnosis
from modsab.core.result import DiagnosisResult
from modsab.views.report.data import ReportData
from modsab.views.report.inputs import Extras, read_extras

__all__ = ["Extras", "ReportData", "build_report", "read_extras", "report_from_path", "write_report"]


def _merge(diagnosis: Diagnosis | DiagnosisResult | dict[str, Any], extras: Extras) -> ReportData:
    """The typed diagnosis, with the sections of a run's ``diagnosis.json`` it lacks."""
    return ReportData.read(diagnosis, extras.diagnosis)


def build_report(
    diagnosis: Diagnosis | DiagnosisResult | dict[str, Any],
    *,
    extras: Extras | None = None,
    descriptors: dict[str, dict[str, str]] | None = None,
    raw_answers: dict[str, dict[str, str]] | None = None,
    config: dict[str, Any] | None = None,
    title: str | None = None,
) -> str:
    """The report as one HTML string.

    ``diagnosis`` is a :class:`~modsab.core.diagnosis.Diagnosis` (full report with the
    instance browser), its typed result or its JSON dict (figures and tables only).
    ``descriptors`` and ``raw_answers`` map instance id to ``{field or agent: text}``;
    ``config`` is shown as the run's config. ``extras`` bundles all of these as read from a run directory.
    """
    from modsab.views.report.browser import instance_data, sample_rows, text_data
    from modsab.views.report.page import page

    extras = extras or Extras()
    d = _merge(diagnosis, extras)
    instances = texts = None
    if isinstance(diagnosis, Diagnosis):
        rows = sample_rows(diagnosis.pset.n_instances)  # above the limit: a seeded sample, said so on the page
        instances = instance_data(diagnosis, rows)
        texts = text_data(
            diagnosis.pset.instance_ids if rows is None else diagnosis.pset.instance_ids[rows],
            descriptors=descriptors if descriptors is not None else extras.descriptors,
            raw_answers=raw_answers if raw_answers is not None else extras.raw_answers,
        )
    run_config = {**extras.config, **(config or {})}
    name = title or f"modsab report: {Path(d.result.source or 'predictions').parent.name or 'run'}"
    return page(d, instances=instances, texts=texts, config=run_config, notes=extras.notes, title=name)


def write_report(
    diagnosis: Diagnosis | DiagnosisResult | dict[str, Any],
    out: str | Path,
    *,
    figures: str | Path | None = None,
    **options: Any,
) -> Path:
    """Write :func:`build_report` to ``out``; with ``figures``, also PNG + SVG files there."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    extras = options.get("extras") or Extras()
    out.write_text(build_report(diagnosis, **options), encoding="utf-8")
    if figures is not None:
        from modsab.views.report.figures import all_figures
        from modsab.views.report.static import write_figures

        write_figures(all_figures(_merge(diagnosis, extras)), figures)
    return out


def report_from_path(
    path: str | Path,
    out: str | Path,
    *,
    figures: str | Path | None = None,
    title: str | None = None,
    **diagnose_options: Any,
) -> Path:
    """Diagnose a predictions file or run directory and write its report (and figures)."""
    from modsab.core.diagnosis import diagnose

    path = Path(path)
    extras = read_extras(path)
    result = diagnose(path, **diagnose_options)
    return write_report(result, out, figures=figures, extras=extras, title=title)
