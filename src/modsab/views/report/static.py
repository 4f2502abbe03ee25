"""Static PNG and SVG files of the report's figures (matplotlib), for papers.

They draw the same :mod:`modsab.views.report.figures` objects as the page, and
``figures.json`` beside them holds those numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from modsab.contract.errors import InputError
from modsab.views.report.figures import BarChart, Figure, Heatmap, LineChart, to_json
from modsab.views.report.svg import PALETTE


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise InputError(
            "--figures needs matplotlib", hint="pip install 'modsab[report]' (or pip install matplotlib)"
        ) from error
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _bars(ax, chart: BarChart) -> None:
    n_series = max(len(chart.series), 1)
    width = 0.8 / n_series
    x = np.arange(len(chart.groups))
    for s, name in enumerate(chart.series):
        bars = [row[s] for row in chart.values]
        heights = [np.nan if b.value is None else b.value for b in bars]
        lower = [0 if b.low is None or b.value is None else b.value - b.low for b in bars]
        upper = [0 if b.high is None or b.value is None else b.high - b.value for b in bars]
        ax.bar(
            x + (s - (n_series - 1) / 2) * width,
            heights,
            width,
            label=name,
            color=PALETTE[s % len(PALETTE)],
            yerr=[lower, upper],
            capsize=2,
            error_kw={"elinewidth": 0.8},
        )
    ax.set_xticks(x, chart.groups)
    ax.set_ylim(0, 1)
    ax.set_ylabel(chart.y_label)
    ax.legend(fontsize=7, frameon=False, bbox_to_anchor=(1.01, 1), loc="upper left")


def _heat(ax, chart: Heatmap) -> None:
    values = np.asarray(chart.values, dtype=float)
    ax.imshow(values, cmap="Reds", aspect="auto", vmin=0)
    ax.set_xticks(range(len(chart.columns)), chart.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(chart.rows)), chart.rows)
    ax.set_xlabel(chart.column_label)
    peak = values.max() if values.size else 0
    for (r, c), v in np.ndenumerate(values):
        ax.text(
            c, r, f"{v:g}", ha="center", va="center", fontsize=7, color="white" if peak and v / peak > 0.55 else "k"
        )


def _lines(ax, chart: LineChart) -> None:
    if chart.diagonal:
        ax.plot([0, 1], [0, 1], ls="--", color="#999", lw=1)
    for s, line in enumerate(chart.lines):
        y = [np.nan if v is None else v for v in line.y]
        ax.plot(line.x, y, marker="o", ms=3, label=line.name, color=PALETTE[s % len(PALETTE)])
        if line.low and any(v is not None for v in line.low):
            lo = [np.nan if v is None else v for v in line.low]
            hi = [np.nan if v is None else v for v in line.high]
            ax.vlines(line.x, lo, hi, color=PALETTE[s % len(PALETTE)], lw=1)
    ax.set_xlim(*chart.x_range)
    ax.set_ylim(0, 1)
    ax.set_xlabel(chart.x_label)
    ax.set_ylabel(chart.y_label)
    if len(chart.lines) > 1:
        ax.legend(fontsize=7, frameon=False, bbox_to_anchor=(1.01, 1), loc="upper left")


def write_figures(figures: list[Figure], directory: str | Path) -> list[Path]:
    """Write ``<key>.png`` and ``<key>.svg`` per figure plus ``figures.json``; return the paths."""
    plt = _pyplot()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for figure in figures:
        fig, ax = plt.subplots(figsize=(7, 3.6) if isinstance(figure, BarChart) else (5.5, 3.8))
        if isinstance(figure, BarChart):
            _bars(ax, figure)
        elif isinstance(figure, Heatmap):
            _heat(ax, figure)
        else:
            _lines(ax, figure)
        ax.set_title(figure.title, fontsize=10)
        fig.tight_layout()
        for suffix in ("png", "svg"):
            path = directory / f"{figure.key}.{suffix}"
            fig.savefig(path, dpi=150 if suffix == "png" else None)
            written.append(path)
        plt.close(fig)
    data = directory / "figures.json"
    data.write_text(json.dumps(to_json(figures), indent=1, ensure_ascii=False), encoding="utf-8")
    written.append(data)
    return written
