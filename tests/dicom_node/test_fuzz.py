"""Fuzzing the readers of what the network and files bring: the C-STORE header reader, the SR reader and
the HL7 / CSV report readers (hypothesis, a bounded number of examples each, so the run stays short).

What must hold for any input: a reader answers (a record, or the refusal the node turns into a proper
status or message) within a deadline, and raises nothing a caller would report wrongly: the C-STORE
handler answers 0xC210 to an exception while reading the header, but 0xA700 ("retry later") to one
from the SR reader, so that one must never raise on a dataset the header reader accepted.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicom_node.dicom.header import InstanceRecord, read_header
from dicom_node.dicom.network import quiet_dicom_libraries
from dicom_node.reports.importers import Refused, csv_reports, hl7_reports
from dicom_node.reports.record import ReportRecord
from dicom_node.reports.sr import TEXT_SR_CLASSES, report_from_sr
from tests.support.dicom_factory import mr_instance, sr_container, sr_text, text_sr

FUZZ = settings(
    max_examples=300, deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
SYNTAXES = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]
MAX_INFLATED = 2**20
quiet_dicom_libraries()  # as the node reads: pydicom does not validate (nor warn about) odd values


def encoded(ds, syntax: str) -> bytes:
    out = DicomBytesIO()
    out.is_little_endian = syntax != ExplicitVRBigEndian
    out.is_implicit_VR = syntax == ImplicitVRLittleEndian
    write_dataset(out, ds)
    return out.getvalue()


def _sr():
    findings = sr_container(("121070", "DCM", "Findings"), [sr_text("Small effusion.", ("121071", "DCM", "Finding"))])
    return text_sr([findings, sr_text("Pneumonia.", ("121073", "DCM", "Impression"))])


# Valid datasets to mutate: an MR image (small pixels) and a Comprehensive SR, in each transfer syntax.
SEEDS = [(encoded(ds, syntax), syntax) for ds in (mr_instance("t1_mprage_sag", rows=2), _sr()) for syntax in SYNTAXES]


@st.composite
def mutated(draw):
    """A seed dataset with bytes overwritten, inserted, deleted or cut off."""
    data, syntax = draw(st.sampled_from(SEEDS))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["overwrite", "insert", "delete", "cut"]))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if action == "overwrite":
            data[at : at + len(chunk)] = chunk
        elif action == "insert":
            data[at:at] = chunk
        elif action == "delete":
            del data[at : at + len(chunk)]
        else:
            del data[at:]
    return bytes(data), syntax


def read(data: bytes, syntax: str):
    """What handle_store does before storing: the header, then the record (exceptions mean 0xC210 / 0xA900)."""
    header = read_header(io.BytesIO(data), syntax, MAX_INFLATED)
    return header, InstanceRecord.from_dataset(header, syntax)


@FUZZ
@given(mutated())
def test_the_header_reader_answers_any_mutated_dataset(case):
    data, syntax = case
    try:
        header, record = read(data, syntax)
    except Exception:  # the handler's 0xC210 (or 0xA900): a proper status either way
        return
    for uid in (record.sop_instance_uid, record.study_uid, record.series_uid):
        assert isinstance(uid, str) and 0 < len(uid) <= 64
    if record.sop_class_uid in TEXT_SR_CLASSES:
        report = report_from_sr(header)  # must not raise: it would be answered 0xA700
        assert report is None or isinstance(report, ReportRecord)


@FUZZ
@given(st.binary(max_size=2048), st.sampled_from(SYNTAXES + [DeflatedExplicitVRLittleEndian]))
def test_the_header_reader_answers_any_bytes(data, syntax):
    try:
        read(data, syntax)
    except Exception:
        pass


# ---- report files ----------------------------------------------------------------------------------

HL7_PIECES = st.sampled_from(
    [
        "MSH|^~\\&|RIS|HOSP|SLM|NODE|20240101||ORU^R01|1|P|2.5", "MSH|^~\\&", "MSH|", "MSH", "OBR|1||ACC1",
        "OBX|1|TX|18782-3^FINDINGS^LN||Effusion.||||||F", "OBX|2|FT|&IMP||\\.br\\\\X41\\\\T\\",
        "OBX|3|ST|113014^^DCM||1.2",
        "ZDS|1.2.3", "PID|1||123||Doe^J", "|", "^", "~", "\\", "&", "\r", "\n", "\x0b", "\x1c", " ", "\\E\\", "\\.sp\\",
    ]
)


@FUZZ
@given(st.lists(st.one_of(HL7_PIECES, st.text(max_size=12)), max_size=40))
def test_the_hl7_reader_answers_any_file(pieces):
    lines = "".join(pieces).splitlines()
    for where, read in hl7_reports(lines, "fuzz.hl7"):
        assert isinstance(where, str) and isinstance(read, (ReportRecord, Refused))


CSV_PIECES = st.sampled_from(
    ["study_uid,accession_number,findings,text", "1.2.3,A1,Effusion.,", '"', ",", ";", "\t", "\n", "\r\n", "'=1", "\0"]
)


@FUZZ
@given(st.lists(st.one_of(CSV_PIECES, st.text(max_size=12)), max_size=40))
def test_the_csv_reader_answers_any_file(pieces):
    lines = [line + "\n" for line in "".join(pieces).splitlines()]
    for where, read in csv_reports(lines, "fuzz.csv"):
        assert isinstance(where, str) and isinstance(read, (ReportRecord, Refused))


@pytest.mark.parametrize("field", [2**17 + 1, 2**19])
def test_a_csv_cell_larger_than_the_csv_module_takes_is_refused(field):
    lines = ["study_uid,findings\n", f"1.2.3,{'x' * field}\n", "1.2.4,Effusion.\n"]
    reads = dict(csv_reports(lines, "big.csv"))
    assert "field larger than field limit" in str(reads["big.csv: line 2"])
    assert isinstance(reads["big.csv: line 3"], ReportRecord)  # and the file goes on
