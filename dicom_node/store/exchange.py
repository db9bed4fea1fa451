"""Mappings and corrections in and out: the rows of the exports (cli/output.py writes them as a table for
people, CSV or JSON for scripts and other nodes) and the import of those files.

The export formats are the contract in notes/CONTRACTS.md (training reads the corrections export).
Importing is idempotent: a correction already there (same description, label, who and time) or a
mapping no newer than the one stored changes nothing. A mappings row whose label came from a
correction is not imported as the model's: its who and when live in the corrections export.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable

from dicom_node.store import corrections
from dicom_node.store import mappings as queries
from dicom_node.store.database import Store
from dicom_node.store.times import iso, parse_time
from slm.harmonizer import Prediction
from slm.tasks import SERIES_LABELS
from training.exports import escape_csv_cell, unescape_csv_cell

MAPPING_FIELDS = ("description", "label", "confidence", "model_version", "mapped_at", "corrected", "series_count")
CORRECTION_FIELDS = ("description", "label", "who", "note", "created_at")


class ExchangeError(ValueError):
    """A file that cannot be imported as it is; the message names the file and the row."""


def mapping_rows(mappings: Iterable[queries.Mapping]) -> list[dict]:
    """Export fields, plus what a person's table shows: where the label comes from, when first seen."""
    return [
        {
            **{field: (iso(value) if isinstance(value, datetime) else value) for field, value in asdict(m).items()},
            "source": _source(m),
            "first_seen": m.first_seen.strftime("%Y-%m-%d %H:%M"),
        }
        for m in mappings
    ]


def _source(m: queries.Mapping) -> str:
    if m.corrected:
        return "corrected"
    if m.status in ("mapped", queries.NOT_HARMONIZED):
        return "model" if m.status == "mapped" else m.status
    return f"queued, {m.attempts} failed" if m.attempts else "queued"


def correction_rows(store: Store) -> list[dict]:
    return [{**asdict(c), "created_at": iso(c.created_at)} for c in queries.corrections(store.engine)]


# ---- reading ----------------------------------------------------------------------------------


@dataclass
class ImportResult:
    kind: str  # mappings | corrections
    added: int = 0
    unchanged: int = 0
    skipped: int = 0  # mappings rows with no model label of their own (corrected or not yet mapped)


def encode_rows(rows: list[dict], columns: Iterable[str], fmt: str) -> str:
    """Rows as an export file: a JSON array, or CSV with a header line (what read_rows reads back)."""
    columns = list(columns)
    if fmt == "json":
        return json.dumps([{c: row[c] for c in columns} for row in rows], ensure_ascii=False, indent=2) + "\n"
    if fmt != "csv":
        raise ValueError(f"unknown export format {fmt!r}: json or csv")
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: _csv_cell(row[c]) for c in columns} for row in rows)
    return out.getvalue()


def _csv_cell(value):
    """A value as a CSV cell: formula-like texts escaped (training/exports.py)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return escape_csv_cell(value)
    return "" if value is None else value


def read_rows(path: Path) -> list[dict]:
    """The rows of an export file, JSON (an array of objects) or CSV, told apart by content."""
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExchangeError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if not all(isinstance(row, dict) for row in rows):
            raise ExchangeError(f"{path}: expected a JSON array of objects")
        return rows
    return [
        {name: unescape_csv_cell(value) if isinstance(value, str) else value for name, value in row.items()}
        for row in csv.DictReader(io.StringIO(text))
    ]


def import_file(store: Store, path: Path) -> ImportResult:
    """Import a mappings or corrections export (told apart by its fields) into the store."""
    rows = read_rows(path)
    names = set(rows[0]) if rows else set()
    if set(CORRECTION_FIELDS) <= names:
        kind, parse, apply = "corrections", _correction, _apply_correction
    elif set(MAPPING_FIELDS) <= names:
        kind, parse, apply = "mappings", _mapping, _apply_mapping
    else:
        raise ExchangeError(
            f"{path}: not an export; a corrections file has the fields {', '.join(CORRECTION_FIELDS)}, "
            f"a mappings file {', '.join(MAPPING_FIELDS)}"
        )
    parsed = []
    for number, row in enumerate(rows, start=1):  # all rows checked before any is written
        try:
            parsed.append(parse(row))
        except (TypeError, ValueError) as exc:
            raise ExchangeError(f"{path}: row {number}: {exc}") from None
    result = ImportResult(kind)
    for item in parsed:
        outcome = apply(store, item)
        setattr(result, outcome, getattr(result, outcome) + 1)
    return result


def _text(row: dict, field: str) -> str:
    value = row.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} is missing")
    return value


def _optional(value):
    return None if value in (None, "") else value


def _correction(row: dict) -> tuple:
    label = _text(row, "label")
    if label not in SERIES_LABELS:
        raise ValueError(f"label {label!r} is not one of {', '.join(SERIES_LABELS)}")
    return (
        _text(row, "description"),
        label,
        _text(row, "who"),
        _optional(row.get("note")),
        parse_time(_text(row, "created_at")),
    )


def _apply_correction(store: Store, item: tuple) -> str:
    return "added" if corrections.add_correction(store, *item) else "unchanged"


def _mapping(row: dict) -> tuple | None:
    description = _text(row, "description")
    corrected = row.get("corrected")
    if corrected in (True, "true", "True", "1") or _optional(row.get("label")) is None:
        return None
    prediction = Prediction(row["label"], float(row["confidence"]), _text(row, "model_version"))
    return description, prediction, parse_time(_text(row, "mapped_at"))


def _apply_mapping(store: Store, item: tuple | None) -> str:
    if item is None:
        return "skipped"
    return "added" if queries.add_mapping(store, *item) else "unchanged"
