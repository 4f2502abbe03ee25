"""Inline SVG for the figures of :mod:`modsab.views.report.figures`.

Hand-written SVG keeps the page small and fully offline (no chart library, no
script needed to see a figure). Every text from the data goes through
:func:`html.escape`; hovering a bar, cell or point shows its exact value and
interval (an SVG ``<title>``). Colours are presentation attributes, not ``style``
attributes, so the page's Content-Security-Policy needs no ``unsafe-inline``.
"""

from __future__ import annotations

import math
from html import escape

from modsab.views.report.figures import BarChart, Figure, Heatmap, LineChart

#: Colour-blind safe palette (Okabe-Ito), shared with the static figures.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#999999")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _interval_text(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f" [{low:.3f}, {high:.3f}]"


def _open(key: str, title: str, width: int, height: int) -> list[str]:
    return [
        f'<svg class="chart" data-figure="{escape(key)}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{width / 2:.0f}" y="18" text-anchor="middle" class="ct">{escape(title)}</text>',
    ]


def _y_axis(parts: list[str], left: float, top: float, plot_w: float, plot_h: float, label: str) -> None:
    for i in range(6):
        v = i / 5
        y = top + plot_h * (1 - v)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{v:.1f}</text>')
    parts.append(
        f'<text transform="translate(14,{top + plot_h / 2:.0f}) rotate(-90)" text-anchor="middle" '
        f'class="axis">{escape(label)}</text>'
    )


def _legend(parts: list[str], names: list[str], x: float, y: float) -> None:
    for i, name in enumerate(names):
        parts.append(f'<rect x="{x}" y="{y + 18 * i}" width="12" height="12" fill="{PALETTE[i % len(PALETTE)]}"/>')
        parts.append(f'<text x="{x + 17}" y="{y + 18 * i + 10}" class="tick">{escape(name)}</text>')


def bar_chart(chart: BarChart) -> str:
    n_groups, n_series = max(len(chart.groups), 1), max(len(chart.series), 1)
    bar_w = 14 if n_groups * n_series > 24 else 20
    left, top = 56, 32
    legend_w = max(120, 40 + int(max((len(name) for name in chart.series), default=0) * 6.2))
    group_w = n_series * bar_w + 24
    plot_w, plot_h = max(n_groups * group_w, 160), 220
    # group names wider than their group are written at a slant, with room below for them
    slant = any(len(group) * 6.5 > group_w for group in chart.groups)
    below = 30 if not slant else 24 + int(min(max(len(g) for g in chart.groups), 28) * 4.6)
    width, height = int(left + plot_w + legend_w), int(top + plot_h + below)
    parts = _open(chart.key, chart.title, width, height)
    _y_axis(parts, left, top, plot_w, plot_h, chart.y_label)
    for g, group in enumerate(chart.groups):
        x0 = left + g * group_w + 12
        for s, bar in enumerate(chart.values[g]):
            x = x0 + s * bar_w
            tip = f"{group} · {chart.series[s]}: {_fmt(bar.value)}{_interval_text(bar.low, bar.high)}"
            if bar.value is None:
                parts.append(
                    f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - 4}" class="na" text-anchor="middle">'
                    f"–<title>{escape(tip)}</title></text>"
                )
                continue
            # a zero stays visible as a thin bar (an absent value is the dash above)
            h = max(plot_h * min(max(bar.value, 0.0), 1.0), 1.5)
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2}" height="{h:.1f}" '
                f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(tip)}</title></rect>'
            )
            if bar.low is not None and bar.high is not None:
                cx = x + (bar_w - 2) / 2
                y_lo, y_hi = top + plot_h * (1 - bar.low), top + plot_h * (1 - bar.high)
                parts.append(
                    f'<path d="M{cx:.1f} {y_lo:.1f}V{y_hi:.1f}M{cx - 3:.1f} {y_lo:.1f}h6M{cx - 3:.1f} '
                    f'{y_hi:.1f}h6" stroke="#222" stroke-width="1.2" fill="none"/>'
                )
        cx = x0 + n_series * bar_w / 2
        if slant:
            label = group if len(group) <= 28 else group[:27] + "…"
            parts.append(
                f'<text transform="translate({cx:.1f},{top + plot_h + 12}) rotate(-35)" text-anchor="end" '
                f'class="axis">{escape(label)}<title>{escape(group)}</title></text>'
            )
        else:
            parts.append(
                f'<text x="{cx:.1f}" y="{top + plot_h + 18}" text-anchor="middle" class="axis">{escape(group)}</text>'
            )
    _legend(parts, chart.series, left + plot_w + 16, top)
    parts.append("</svg>")
    return "".join(parts)


#: Sequential colours for counts above zero (light orange to dark red); zero is a pale grey.
HEAT = ("#fdd49e", "#fdbb84", "#fc8d59", "#ef6548", "#d7301f", "#b30000", "#7f0000")
HEAT_ZERO = "#f1f3f5"


def _heat_colour(fraction: float) -> str:
    """The colour of a cell at ``fraction`` of the peak: grey at 0, else one of :data:`HEAT`."""
    if fraction <= 0:
        return HEAT_ZERO
    return HEAT[min(int(fraction * len(HEAT) - 1e-9), len(HEAT) - 1)]


def heatmap(chart: Heatmap) -> str:
    cell_w, cell_h, left, top = 64, 28, 110, 40
    width = int(left + cell_w * len(chart.columns) + 20)
    height = int(top + cell_h * len(chart.rows) + 74)
    parts = _open(chart.key, chart.title, width, height)
    peak = max((v for row in chart.values for v in row), default=0.0) or 1.0
    for r, row_name in enumerate(chart.rows):
        y = top + r * cell_h
        parts.append(
            f'<text x="{left - 6}" y="{y + cell_h / 2 + 4:.0f}" text-anchor="end" class="axis">'
            f"{escape(row_name)}</text>"
        )
        for c, column in enumerate(chart.columns):
            value = chart.values[r][c]
            x = left + c * cell_w
            fraction = value / peak
            tip = f"{row_name} × {column}: {value:g}"
            parts.append(
                f'<rect class="cell" x="{x}" y="{y}" width="{cell_w - 1}" height="{cell_h - 1}" '
                f'fill="{_heat_colour(fraction)}"><title>{escape(tip)}</title></rect>'
            )
            colour = "#fff" if fraction > 0.55 else ("#8a9099" if value == 0 else "#222")
            parts.append(
                f'<text x="{x + cell_w / 2:.0f}" y="{y + cell_h / 2 + 4:.0f}" text-anchor="middle" '
                f'class="tick" fill="{colour}">{value:g}</text>'
            )
    base = top + cell_h * len(chart.rows)
    for c, column in enumerate(chart.columns):
        parts.append(
            f'<text x="{left + c * cell_w + cell_w / 2:.0f}" y="{base + 16}" text-anchor="middle" '
            f'class="tick">{escape(column[:12])}<title>{escape(column)}</title></text>'
        )
    parts.append(
        f'<text x="{left + cell_w * len(chart.columns) / 2:.0f}" y="{base + 36}" text-anchor="middle" '
        f'class="axis">{escape(chart.column_label)}</text>'
    )
    # the colour key: zero, then the steps up to the peak
    key_y, key_x = base + 48, left
    parts.append(f'<text x="{key_x - 6}" y="{key_y + 10}" text-anchor="end" class="tick">count</text>')
    for i, colour in enumerate((HEAT_ZERO, *HEAT)):
        parts.append(f'<rect x="{key_x + 18 * i}" y="{key_y}" width="17" height="12" fill="{colour}"/>')
    parts.append(
        f'<text x="{key_x + 18 * (len(HEAT) + 1) + 6}" y="{key_y + 10}" class="tick">0 … {peak:g}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def line_chart(chart: LineChart) -> str:
    left, top, plot_w, plot_h = 56, 32, 260, 220
    legend_w = 190 if len(chart.lines) > 1 else 20
    width, height = int(left + plot_w + legend_w), int(top + plot_h + 50)
    parts = _open(chart.key, chart.title, width, height)
    _y_axis(parts, left, top, plot_w, plot_h, chart.y_label)
    x_min, x_max = chart.x_range
    span = (x_max - x_min) or 1.0

    def px(x: float) -> float:
        return left + plot_w * (x - x_min) / span

    def py(y: float) -> float:
        return top + plot_h * (1 - min(max(y, 0.0), 1.0))

    step = 0.2 if span > 0.6 else 0.1 if span > 0.25 else 0.05
    x = math.ceil(x_min / step - 1e-9) * step
    while x <= x_max + 1e-9:
        parts.append(f'<text x="{px(x):.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="tick">{x:.2g}</text>')
        x += step
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 38}" text-anchor="middle" class="axis">'
        f"{escape(chart.x_label)}</text>"
    )
    if chart.marker is not None and x_min <= chart.marker <= x_max:
        parts.append(
            f'<line class="marker" x1="{px(chart.marker):.1f}" x2="{px(chart.marker):.1f}" y1="{top}" '
            f'y2="{top + plot_h}" stroke="#b33a1e" stroke-dasharray="5 3"/>'
        )
        parts.append(
            f'<text x="{px(chart.marker) + 4:.1f}" y="{top + 12}" class="tick" fill="#b33a1e">'
            f"{escape(chart.marker_label)}</text>"
        )
    if chart.diagonal:
        parts.append(
            f'<line x1="{px(0):.1f}" y1="{py(0):.1f}" x2="{px(1):.1f}" y2="{py(1):.1f}" stroke="#999" '
            'stroke-dasharray="4 3"/>'
        )
    for s, line in enumerate(chart.lines):
        colour = PALETTE[s % len(PALETTE)]
        points = [(x, y) for x, y in zip(line.x, line.y, strict=True) if y is not None]
        if len(points) > 1:
            d = "M" + "L".join(f"{px(x):.1f} {py(y):.1f}" for x, y in points)
            parts.append(f'<path class="line" d="{d}" stroke="{colour}" stroke-width="2" fill="none"/>')
        for i, (x, y) in enumerate(zip(line.x, line.y, strict=True)):
            if y is None:
                continue
            low = line.low[i] if i < len(line.low) else None
            high = line.high[i] if i < len(line.high) else None
            count = line.count[i] if i < len(line.count) else None
            if low is not None and high is not None:
                parts.append(f'<path d="M{px(x):.1f} {py(low):.1f}V{py(high):.1f}" stroke="{colour}" fill="none"/>')
            tip = f"{line.name} @ {x:.3g}: {_fmt(y)}{_interval_text(low, high)}"
            if count is not None:
                tip += f" (n={count})"
            parts.append(
                f'<circle class="point" cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{colour}">'
                f"<title>{escape(tip)}</title></circle>"
            )
    if len(chart.lines) > 1:
        _legend(parts, [line.name for line in chart.lines], left + plot_w + 16, top)
    parts.append("</svg>")
    return "".join(parts)


def render(figure: Figure) -> str:
    if isinstance(figure, BarChart):
        return bar_chart(figure)
    if isinstance(figure, Heatmap):
        return heatmap(figure)
    return line_chart(figure)
