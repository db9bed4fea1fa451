"""What the commands print: rows as an aligned table for people; JSON or CSV for scripts, as exchange encodes them."""

from __future__ import annotations

import re
from typing import Iterable

from dicom_node.store.exchange import encode_rows

TABLE_CELL = 48  # characters of a cell a table shows (UIDs always whole); the JSON and CSV keep everything
# Control characters a description may carry (BEL, BS, ESC starting a terminal sequence, DEL, C1): a table
# shows them as \xNN instead of letting the terminal act on them.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def format_rows(rows: list[dict], columns: Iterable[str], fmt: str) -> str:
    """Rows as an aligned text table, or as the files `import` reads back (JSON, CSV: store/exchange.py)."""
    return _table(rows, list(columns)) if fmt == "table" else encode_rows(rows, columns, fmt)


def _table(rows: list[dict], columns: list[str]) -> str:
    def cell(value, whole: bool) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.2f}"
        text = " ".join(str(value).split()) if isinstance(value, str) else str(value)
        text = CONTROL.sub(lambda control: f"\\x{ord(control[0]):02x}", text)
        return text if whole or len(text) <= TABLE_CELL else text[: TABLE_CELL - 1] + "…"

    # A UID is pasted back into another command: never shortened (64 characters at most).
    cells = [[cell(row[c], c.endswith("uid")) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    lines = [columns, ["-" * w for w in widths], *cells]
    return "".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() + "\n" for line in lines)
