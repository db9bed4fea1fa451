"""What the commands print or write: rows as an aligned table for people, JSON or CSV for scripts."""

from __future__ import annotations

import csv
import io
import json
from typing import Iterable

TABLE_CELL = 48  # characters of a cell a table shows; the JSON and CSV keep everything


def format_rows(rows: list[dict], columns: Iterable[str], fmt: str) -> str:
    """Rows as an aligned text table, a JSON array or CSV with a header line."""
    columns = list(columns)
    if fmt == "json":
        return json.dumps([{c: row[c] for c in columns} for row in rows], ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: _csv_cell(row[c]) for c in columns} for row in rows)
        return out.getvalue()
    return _table(rows, columns)


def _csv_cell(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def _table(rows: list[dict], columns: list[str]) -> str:
    def cell(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.2f}"
        text = " ".join(str(value).split()) if isinstance(value, str) else str(value)
        return text if len(text) <= TABLE_CELL else text[: TABLE_CELL - 1] + "…"

    cells = [[cell(row[c]) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    lines = [columns, ["-" * w for w in widths], *cells]
    return "".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() + "\n" for line in lines)
