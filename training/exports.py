"""The CSV cells of the mapping store's exports, which people open in spreadsheets and training reads back.

A spreadsheet runs a cell that starts with one of FORMULA_START as a formula (=HYPERLINK(...),
+cmd|...): such a text is written with an apostrophe before it, as OWASP advises, and so is one that
starts with an apostrophe, so that reading takes exactly one off again. It lives here, below the
node's exchange module, because training reads corrections exports too (`+C AX T1` must train as
written, not as `'+C AX T1`).
"""

from __future__ import annotations

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def escape_csv_cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_START) else text


def unescape_csv_cell(text: str) -> str:
    """A CSV cell as it was before escape_csv_cell."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_START) else text
