"""Radiology reports from files into the store: plain text, CSV, and HL7 v2 ORU^R01 messages.

Each reader yields what it read one report at a time, a ReportRecord or the reason it was refused, with
where it was (file, line, message number), so that one bad row or message never stops the others and
a refusal says where to look without quoting the report. A report's key is stable (the HL7 message's
sending facility and control ID, the CSV report_id, else a hash of the linked text), so importing a
file again adds nothing. HL7 is parsed with hl7apy; only the text is read back by hand, because hl7apy
keeps HL7 escape sequences such as \\.br\\ (a line break) as they are.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from hl7apy import exceptions as hl7_errors
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from tqdm import tqdm

from dicom_node.reports.record import ReportRecord
from dicom_node.reports.sections import Sections, dicom_date, section_coded
from dicom_node.store.database import Store
from dicom_node.store.reports import record_reports
from slm.tasks import REPORT_SECTIONS
from training.exports import unescape_csv_cell

SUFFIXES = {".txt": "text", ".csv": "csv", ".hl7": "hl7", ".oru": "hl7"}
# Bounds on what one report may be, so that a huge or endless file costs bounded memory and time:
# a line (an HL7 segment, a CSV row), a text file or an HL7 message of at most 1 MB, and a message of
# at most 1,000 segments (hl7apy takes about 1.5 ms per segment).
MAX_LINE_BYTES = 2**20
MAX_SEGMENTS = 1000
READ_BYTES = 2**16
PEEK_BYTES = 4096  # what format detection looks at
COMMIT_EVERY = 500  # imported reports per transaction
LINE_END = re.compile(rb"\r\n|\r|\n")
MLLP_FRAMING = str.maketrans("", "", "\x0b\x1c")  # start and end block bytes around each message
SEGMENT_END = re.compile(r"\r\n|\r|\n")
# "Accession Number: A123" / "Study Instance UID: 1.2.3" lines of a text report link it to its study.
LINK_LINE = re.compile(r"^\s*(accession(?: number| no\.?)?|study instance uid)\s*:\s*(\S+)\s*$", re.IGNORECASE)
TEXT_VALUE_TYPES = {"TX", "FT", "ST"}
DICOM_STUDY_CODE = "113014"  # DCM "DICOM Study": an OBX whose value is the Study Instance UID
# OBX-3 observation ID suffixes (HL7 v2 chapter 7): the impression, the report body, an addendum.
OBX_SUFFIX_SECTIONS = {"IMP": "impression", "GDT": "findings", "ADT": "findings"}


class Refused(ValueError):
    """A report (a file, a CSV row, an HL7 message) that cannot be imported; says why, never with
    patient data or report text."""


@dataclass
class ImportSummary:
    added: int = 0
    already_there: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (where, why)


Read = tuple[str, "ReportRecord | Refused"]  # where it was, what was read there


def import_reports(
    store: Store,
    paths: Iterable[str | Path],
    study_uid: str | None = None,
    accession: str | None = None,
    keep_patient_identifiers: bool = False,
    fmt: str = "auto",
) -> ImportSummary:
    """Read every report in `paths` and store it; `study_uid` and `accession` link text files. Reports
    are committed COMMIT_EVERY at a time (one fsync each), the last ones when the files are read."""
    paths = [Path(path) for path in paths]
    summary = ImportSummary()
    waiting: list[ReportRecord] = []

    def commit() -> None:
        added = record_reports(store, waiting)
        summary.added += added
        summary.already_there += len(waiting) - added
        waiting.clear()

    for path in tqdm(paths, unit="file", file=sys.stderr, disable=None if len(paths) > 1 else True):
        for where, read in read_reports(path, fmt, study_uid, accession, keep_patient_identifiers):
            if isinstance(read, Refused):
                summary.refused.append((where, str(read)))
                continue
            waiting.append(read)
            if len(waiting) >= COMMIT_EVERY:
                commit()
    commit()
    return summary


def read_reports(
    path: Path,
    fmt: str = "auto",
    study_uid: str | None = None,
    accession: str | None = None,
    keep_patient_identifiers: bool = False,
) -> Iterator[Read]:
    """The reports in one file, each with where it was. The file is read as a stream, line by line."""
    where = str(path)
    try:
        with _open_regular(path) as file:
            kind = file_format(path, decoded(file.peek(PEEK_BYTES)[:PEEK_BYTES])) if fmt == "auto" else fmt
            if kind == "hl7":
                yield from hl7_reports(_lines(file), where, keep_patient_identifiers)
            elif kind == "csv":
                yield from csv_reports((line + "\n" for line in _lines(file)), where)
            elif kind == "text":
                data = file.read(MAX_LINE_BYTES + 1)
                if len(data) > MAX_LINE_BYTES:
                    raise Refused(f"larger than {MAX_LINE_BYTES // 2**20} MB: not a report as text")
                yield where, text_report(decoded(data), study_uid, accession)
            else:
                yield where, Refused("unknown format: name the file .txt, .csv, .hl7 or .oru, or give the format")
    except Refused as exc:
        yield where, exc
    except OSError as exc:
        yield where, Refused(f"cannot read the file: {exc.strerror or type(exc).__name__}")


def _open_regular(path: Path) -> io.BufferedReader:
    """The file opened for reading; Refused if it is not a regular file (a device such as /dev/zero, a
    FIFO, a socket, or a link to one), told by the open file itself so it cannot change in between.
    O_NONBLOCK: opening a FIFO would otherwise wait for a writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Refused("not a regular file (a device, FIFO or socket): only files can be imported")
    return open(fd, "rb")


def _lines(file: io.BufferedReader) -> Iterator[str]:
    """The file's lines (ended by CR, LF or CR LF, as HL7 segments are), read a piece at a time and each
    decoded on its own; Refused at a line longer than MAX_LINE_BYTES."""
    rest = b""
    while chunk := file.read(READ_BYTES):
        data = rest + chunk
        held = b"\r" if data.endswith(b"\r") else b""  # may be the first half of a CR LF
        *lines, rest = LINE_END.split(data[: len(data) - len(held)])
        rest += held
        if len(rest) > MAX_LINE_BYTES:
            raise Refused(f"a line longer than {MAX_LINE_BYTES // 2**20} MB: not a report file")
        yield from map(decoded, lines)
    if rest:
        yield decoded(rest.rstrip(b"\r"))


def file_format(path: Path, text: str) -> str | None:
    """text, csv or hl7 by the file's suffix, else hl7 if it starts with an MSH segment; else None."""
    if path.suffix.lower() in SUFFIXES:
        return SUFFIXES[path.suffix.lower()]
    return "hl7" if text.translate(MLLP_FRAMING).lstrip().startswith("MSH") else None


def decoded(data: bytes) -> str:
    # UTF-8 (with or without a byte order mark) as written today; else ISO 8859-1, which older RIS
    # exports use and which decodes any byte. Decided per line: one stray byte changes one line only.
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _record(source: str, key: str | None, sections: Sections, study_uid, accession, **fields) -> ReportRecord:
    """A report from its parts; without a key of its own, it is keyed by a hash of what it says."""
    if not sections:
        raise Refused("no report text")
    if not study_uid and not accession:
        raise Refused("no Study Instance UID and no Accession Number to link it to its study")
    text = sections.as_dict()
    if key is None:
        content = json.dumps([study_uid, accession, *(text[name] for name in REPORT_SECTIONS)])
        key = hashlib.sha256(content.encode()).hexdigest()
    return ReportRecord(f"{source}:{key}", source, study_uid, accession, **text, **fields)


# ---- plain text -------------------------------------------------------------------------------


def text_report(text: str, study_uid: str | None = None, accession: str | None = None) -> ReportRecord:
    """One report written as text: sections by headings ("FINDINGS:"), text before any heading counts
    as findings; linked by the given UID/accession, else by the file's own link lines."""
    sections = Sections()
    found = {}
    lines = []
    for line in text.splitlines():
        link = LINK_LINE.match(line)
        if link:
            found["uid" if link[1].lower().startswith("study") else "accession"] = link[2]
        else:
            lines.append(line)
    sections.add_lines(lines)
    return _record("text", None, sections, study_uid or found.get("uid"), accession or found.get("accession"))


# ---- CSV --------------------------------------------------------------------------------------


def csv_reports(lines: Iterable[str], where: str) -> Iterator[Read]:
    """One report per row: study_uid and/or accession_number, then section columns (indication,
    comparison, findings, impression) and/or a `text` column read like a text report; optional
    report_id and report_date. `lines` end with their newline, as csv.reader wants them."""
    lines = iter(lines)
    first_line = next(lines, "")
    rows = csv.reader(itertools.chain([first_line], lines), delimiter=max(",;\t", key=first_line.count))
    header = [name.strip().lower() for name in next(rows, [])]
    if not {"study_uid", "accession_number"} & set(header):
        yield where, Refused("no study_uid or accession_number column")
        return
    if not {*REPORT_SECTIONS, "text"} & set(header):
        yield where, Refused(f"no text column: give {', '.join(REPORT_SECTIONS)} or text")
        return
    line = rows.line_num + 1
    while True:
        try:
            values = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:  # a cell over csv.field_size_limit(), say; the reader goes on after it
            values = Refused(f"not readable as CSV: {exc}")
        if isinstance(values, Refused):
            yield f"{where}: line {line}", values
        elif any(value.strip() for value in values):
            try:
                cells = (unescape_csv_cell(value).strip() for value in values)
                yield f"{where}: line {line}", _csv_row(dict(zip(header, cells)))
            except Refused as exc:
                yield f"{where}: line {line}", exc
        line = rows.line_num + 1


def _csv_row(row: dict[str, str]) -> ReportRecord:
    sections = Sections()
    for name in REPORT_SECTIONS:
        sections.add(name, row.get(name))
    sections.add_lines((row.get("text") or "").splitlines())
    return _record(
        "csv",
        row.get("report_id") or None,
        sections,
        row.get("study_uid") or None,
        row.get("accession_number") or None,
        report_date=dicom_date(row.get("report_date")),
    )


# ---- HL7 v2 ORU^R01 ---------------------------------------------------------------------------


def hl7_reports(lines: Iterable[str], where: str, keep_patient_identifiers: bool = False) -> Iterator[Read]:
    """One report per ORU^R01 message in the file's lines (MLLP-framed or not, any segment separator)."""
    for number, line, segments in _messages(lines):
        place = f"{where}: message {number} (line {line})"
        if number == 0:
            yield f"{where}: line {line}", Refused("text before the first MSH segment")
        elif segments is None:
            yield place, Refused(f"more than {MAX_SEGMENTS} segments or {MAX_LINE_BYTES // 2**20} MB: not one report")
        else:
            try:
                yield place, oru_report(segments, keep_patient_identifiers)
            except Refused as exc:
                yield place, exc


def _messages(lines: Iterable[str]) -> Iterator[tuple[int, int, list[str] | None]]:
    """(number in the file, first line, segments) of each message, segments None for one too large to
    read (the rest of it is skipped, not kept); lines before the first MSH come as message 0."""
    number, first_line, segments, size = 0, 0, [], 0
    for line_number, line in enumerate(lines, start=1):
        for segment in SEGMENT_END.split(line.translate(MLLP_FRAMING)):
            if not segment.strip():
                continue
            if segment.startswith("MSH"):
                if segments or segments is None:
                    yield number, first_line, segments
                number, first_line, segments, size = number + 1, line_number, [segment], len(segment)
            elif segments is not None:
                first_line = first_line if segments else line_number
                segments.append(segment)
                size += len(segment)
                if len(segments) > MAX_SEGMENTS or size > MAX_LINE_BYTES:
                    segments = None
    if segments or segments is None:
        yield number, first_line, segments


def oru_report(segments: list[str], keep_patient_identifiers: bool = False) -> ReportRecord:
    """The report of one ORU^R01 message given as its segments."""
    message = _parsed(segments)
    escapes = _Escapes(message.encoding_chars)
    msh = message.children[0]
    kind = [escapes.text(_component(_field(msh, 9), n)) for n in (1, 2)]
    if kind != ["ORU", "R01"]:
        raise Refused(f"not an ORU^R01 message but {'^'.join(kind)}")
    control_id = escapes.text(_component(_field(msh, 10), 1))
    if not control_id:
        raise Refused("no message control ID (MSH-10)")
    facility = escapes.text(_raw(_field(msh, 4)))
    obr = _segment(message, "OBR")
    if obr is None:
        raise Refused("no OBR segment")
    accession = next(
        (value for number in (18, 3, 2) if (value := escapes.text(_component(_field(obr, number), 1)))), None
    )
    sections, study_uid_obx = _observations(message, escapes)
    identifiers = {}
    pid = _segment(message, "PID")
    if keep_patient_identifiers and pid is not None:
        identifiers = {
            "patient_id": escapes.text(_component(_field(pid, 3), 1)) or None,
            "patient_name": _person_name(_field(pid, 5), escapes),
        }
    return _record(
        "hl7",
        f"{facility}:{control_id}",
        sections,
        escapes.text(_component(_field(_segment(message, "ZDS"), 1), 1)) or study_uid_obx,
        accession,
        report_date=dicom_date(escapes.text(_component(_field(obr, 7), 1))),
        **identifiers,
    )


def _observations(message, escapes: "_Escapes") -> tuple[Sections, str | None]:
    """The report text of the message's OBX segments by section, and the Study Instance UID if an OBX
    gives it. An OBX-3 naming a section starts it; a heading inside the text switches it."""
    sections = Sections()
    study_uid = section = named_before = None
    for obx in (segment for segment in message.children if segment.name == "OBX"):
        identifier = [escapes.text(_component(_field(obx, 3), n)) for n in (1, 2, 3)]
        if identifier[0] == DICOM_STUDY_CODE or "study instance uid" in identifier[1].lower():
            study_uid = study_uid or escapes.text(_component(_field(obx, 5), 1)) or None
        elif escapes.text(_raw(_field(obx, 2))) in TEXT_VALUE_TYPES:
            named = _obx_section(*identifier)
            if named and named != named_before:
                section = named
            named_before = named
            text = "\n".join(escapes.text(_raw(value)) for value in _fields(obx, 5))
            section = sections.add_lines(text.splitlines(), section)
    return sections, study_uid


def _parsed(segments: list[str]):
    """The message as hl7apy reads it, leniently (real feeds bend the standard); Refused if it cannot.
    The reasons are ours: hl7apy's messages may quote a piece of the message."""
    try:
        return parse_message("\r".join(segments), validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)
    except hl7_errors.UnsupportedVersion:
        raise Refused("HL7 version (MSH-12) missing or not supported") from None
    except hl7_errors.InvalidEncodingChars:
        raise Refused("invalid encoding characters in MSH-2") from None
    except hl7_errors.InvalidName:
        raise Refused("a segment name unknown to HL7 v2 (a line cut in two?)") from None
    except Exception as exc:  # whatever else hl7apy raises on a malformed message
        raise Refused(f"cannot parse the message ({type(exc).__name__})") from None


def _obx_section(code: str, name: str, scheme: str) -> str | None:
    """The section an OBX-3 identifier names: its suffix (19005-8&IMP), its code, or its name."""
    code, _, suffix = code.partition("&")
    return OBX_SUFFIX_SECTIONS.get(suffix.strip().upper()) or section_coded(scheme, code, name)


def _person_name(field, escapes: "_Escapes") -> str | None:
    """PID-5 as DICOM writes a person's name: family^given^middle."""
    parts = [escapes.text(_component(field, n)) for n in (1, 2, 3)]
    return "^".join(parts).rstrip("^") or None


# hl7apy's tree: segment -> fields (one child per repetition, named SEG_n) -> components -> subcomponents.


def _segment(message, name: str):
    return next((segment for segment in message.children if segment.name == name), None)


def _fields(segment, number: int) -> list:
    if segment is None:
        return []
    name = f"{segment.name}_{number}"
    return [child for child in segment.children if child.name == name]


def _field(segment, number: int):
    """The field's first repetition, None if absent."""
    return next(iter(_fields(segment, number)), None)


def _components(field) -> list[str]:
    """The field's components as they are written (escape sequences kept), subcomponents joined by &."""
    if field is None:
        return []
    return ["&".join(_leaf(sub) for sub in component.children) for component in field.children]


def _component(field, number: int) -> str:
    components = _components(field)
    return components[number - 1] if number <= len(components) else ""


def _raw(field) -> str:
    return "^".join(_components(field))


def _leaf(subcomponent) -> str:
    value = getattr(subcomponent.value, "value", subcomponent.value)
    return value if isinstance(value, str) else subcomponent.to_er7()


class _Escapes:
    """HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\, \\.br\\ line breaks, \\Xhh\\ bytes) in the
    message's own encoding characters; formatting ones (\\H\\, \\.sp\\, ...) become nothing or a line break."""

    def __init__(self, encoding_chars: dict[str, str]):
        escape = encoding_chars["ESCAPE"]
        self.literal = {
            "F": encoding_chars["FIELD"],
            "S": encoding_chars["COMPONENT"],
            "T": encoding_chars["SUBCOMPONENT"],
            "R": encoding_chars["REPETITION"],
            "E": escape,
        }
        self.pattern = re.compile(re.escape(escape) + r"([^" + re.escape(escape) + r"\r\n]{1,64})" + re.escape(escape))

    def text(self, raw: str) -> str:
        return self.pattern.sub(self._replace, raw).strip()

    def _replace(self, match: re.Match) -> str:
        code = match[1]
        if code in self.literal:
            return self.literal[code]
        if code.startswith((".br", ".sp")):
            return "\n"
        if code.startswith("X"):
            try:
                return bytes.fromhex(code[1:]).decode("latin-1")
            except ValueError:
                return ""
        return ""  # highlighting (\H\ \N\), indents, character set switches
