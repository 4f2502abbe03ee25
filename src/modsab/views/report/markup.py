"""Escaped HTML tables: every cell goes through :func:`html.escape`; each table of the page
also downloads as CSV (:func:`data_table`)."""

from __future__ import annotations

import re
from html import escape
from typing import Any
from urllib.parse import quote


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def table(headers: list[str], rows: list[list[Any]], *, cls: str = "") -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for value in row:
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            cells.append(
                f'<td class="num">{escape(_fmt(value))}</td>' if numeric else f"<td>{escape(_fmt(value))}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def rows_table(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return table(columns, [[row.get(c) for c in columns] for row in rows])


#: A figure cell as the report writes it: ``0.412 [0.380, 0.441]`` (signs and dashes allowed).
_ESTIMATE = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?) \[([-+]?\d+(?:\.\d+)?), ([-+]?\d+(?:\.\d+)?)\]\s*$")


def _csv_columns(headers: list[str], rows: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows for CSV: a column of ``value [low, high]`` cells becomes three columns
    (``name``, ``name low``, ``name high``), numbers as numbers."""
    width = max([len(headers), *(len(r) for r in rows)]) if rows else len(headers)
    estimate = [any(isinstance(r[c], str) and _ESTIMATE.match(r[c]) for r in rows if c < len(r)) for c in range(width)]
    out_headers: list[str] = []
    for c in range(width):
        name = str(headers[c]) if c < len(headers) else f"column {c + 1}"
        out_headers += [name, f"{name} low", f"{name} high"] if estimate[c] else [name]
    out_rows = []
    for row in rows:
        cells: list[Any] = []
        for c in range(width):
            value = row[c] if c < len(row) else None
            if estimate[c]:
                match = _ESTIMATE.match(value) if isinstance(value, str) else None
                if match:
                    cells += [float(g) for g in match.groups()]
                else:  # a point without interval, a dash, or text
                    cells += [None if value in ("–", "-") else value, None, None]
            else:
                cells.append(value)
        out_rows.append(cells)
    return out_headers, out_rows


def csv_text(headers: list[str], rows: list[list[Any]]) -> str:
    """The table as CSV (RFC 4180 quoting; lists joined with ", "; None as an empty cell)."""
    import csv
    import io

    out_headers, out_rows = _csv_columns(headers, rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(out_headers)
    for row in out_rows:
        writer.writerow(["" if v is None or v == "–" else (_fmt(v) if isinstance(v, list | tuple | bool) else v) for v in row])
    return buffer.getvalue()


def data_table(
    name: str,
    title: str,
    headers: list[str],
    rows: list[list[Any]],
    *,
    cls: str = "",
    open_: bool = False,
    caption: str = "",
) -> str:
    """A table under its figure: collapsed (``<details>``, open with ``open_``), inside a
    horizontal scroller so it never widens the page, with a CSV download of its rows (a
    ``data:`` link: no script, no network). ``name`` is the CSV file's stem."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "table"
    href = "data:text/csv;charset=utf-8," + quote(csv_text(headers, rows), safe="")
    summary = f"Table: {title} ({len(rows)} row{'' if len(rows) == 1 else 's'})"
    note = f'<p class="note">{escape(caption)}</p>' if caption else ""
    return (
        f'<div class="tbl" data-table="{escape(stem)}"><a class="csv" download="{escape(stem)}.csv" '
        f'href="{escape(href)}" title="download this table as CSV">CSV</a>'
        f'<details{" open" if open_ else ""}><summary>{escape(summary)}</summary>'
        f'<div class="scroll">{table(headers, rows, cls=cls)}</div>{note}</details></div>'
    )


def data_rows_table(name: str, title: str, rows: list[dict[str, Any]], **options: Any) -> str:
    """:func:`data_table` of a list of dicts (columns in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return data_table(name, title, columns, [[row.get(c) for c in columns] for row in rows], **options)
