"""Reports imported from HL7 v2 ORU^R01, CSV and text files into a real SQLite store, and by the CLI."""

from __future__ import annotations

import os
import shutil
import threading
import time
import tracemalloc
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import event, select

from dicom_node.cli.main import cli
from dicom_node.reports import importers
from dicom_node.reports.importers import import_reports
from dicom_node.store.database import Store
from dicom_node.store.tables import Report
from tests.support.helpers_dicom import TIMEOUT
from tests.support.databases import store_url
from tests.support.paths import DATA

ORU = DATA / "oru_r01.hl7"
SECTIONS = ("indication", "comparison", "findings", "impression")
UNLINKED = "no Study Instance UID and no Accession Number to link it to its study"
ORU_STUDY = "1.2.840.113619.2.55.3.2831164355.761.1718092800.1"


def stored(store) -> dict:
    with store.engine.connect() as conn:
        return {row.report_key: row for row in conn.execute(select(Report))}


def counts(summary) -> tuple[int, int, list]:
    return summary.added, summary.already_there, summary.refused


def sections(row) -> dict:
    return {name: getattr(row, name) for name in SECTIONS}


def test_hl7_oru_file_gives_one_report_per_message_with_sections_and_links(store, tmp_path):
    assert counts(import_reports(store, [ORU])) == (2, 0, [])
    reports = stored(store)
    assert set(reports) == {"hl7:GENHOSP:RIS000123", "hl7:NORTHCLINIC:RIS000124"}
    # Sections named by LOINC codes and OBX-3 suffixes, one observation in two OBX segments.
    first = reports["hl7:GENHOSP:RIS000123"]
    assert (first.source, first.study_uid, first.accession_number, first.report_date) == (
        "hl7",
        ORU_STUDY,
        "ACC7781",
        "20240611",
    )
    assert sections(first) == {
        "indication": "Cough and fever for one week.",
        "comparison": "Chest radiograph 2023-01-04.",
        "findings": "The heart size is normal.\nRight lower lobe airspace opacity.\nNo pleural effusion.",
        "impression": "Right lower lobe pneumonia.",
    }
    # One FT observation with headings and escape sequences inside; linked by OBR-3 only.
    second = reports["hl7:NORTHCLINIC:RIS000124"]
    assert (second.study_uid, second.accession_number, second.report_date) == (None, "ACC7790", "20240612")
    assert sections(second) == {
        "indication": "Shortness of breath.",
        "comparison": "None.",
        "findings": "Mild cardiomegaly. Small bilateral pleural effusions & interstitial edema.",
        "impression": "Congestive heart failure.",
    }
    assert {(row.patient_id, row.patient_name) for row in reports.values()} == {(None, None)}

    # Again, and again as an MLLP feed with CR separators: nothing new.
    framed = tmp_path / "feed.oru"
    first, second = ORU.read_text().split("\nMSH")
    messages = [first, "MSH" + second]
    framed.write_bytes(b"".join(b"\x0b" + m.replace("\n", "\r").encode() + b"\r\x1c\r" for m in messages))
    assert counts(import_reports(store, [ORU, framed])) == (0, 4, [])
    assert len(stored(store)) == 2


def test_hl7_patient_identifiers_are_kept_only_when_allowed(tmp_path):
    kept = Store(store_url(tmp_path, "kept"))
    try:
        import_reports(kept, [ORU], keep_patient_identifiers=True)
        rows = stored(kept)
    finally:
        kept.close()
    assert (rows["hl7:GENHOSP:RIS000123"].patient_id, rows["hl7:GENHOSP:RIS000123"].patient_name) == (
        "MRN4471",
        "Rivera^Ana^M",
    )
    assert (rows["hl7:NORTHCLINIC:RIS000124"].patient_id, rows["hl7:NORTHCLINIC:RIS000124"].patient_name) == (
        "MRN5520",
        "Okafor^Chidi",
    )


GOOD = (
    "MSH|^~\\&|RADRIS|GENHOSP|PACSNODE|GENHOSP|20240615090000||ORU^R01|RIS000200|P|2.4\n"
    "PID|1||MRN7001^^^GENHOSP^MR||Secret^Patient\n"
    "OBR|1|PLC8001|FIL8001|71045^XR CHEST 1 VIEW^CPT4|||20240615083000\n"
    "OBX|1|HD|113014^DICOM Study^DCM||1.2.826.0.1.3680043.8.498.7001||||||F\n"
    "OBX|2|TX|&IMP^Impression||No pneumothorax.||||||F\n"
)
BAD_MESSAGES = [  # (message, the reason it is refused)
    (
        "MSH|^~\\&|HIS|GENHOSP|PACSNODE|GENHOSP|20240615090100||ADT^A01|HIS000001|P|2.5\n"
        "PID|1||MRN7002^^^GENHOSP^MR||Secret^Patient\n",
        "not an ORU^R01 message but ADT^A01",
    ),
    (
        "MSH|^~\\&&|RADRIS|GENHOSP|PACSNODE|GENHOSP|20240615090200||ORU^R01|RIS000201|P|2.5\n",
        "invalid encoding characters in MSH-2",
    ),
    (
        "MSH|^~\\&|RADRIS|GENHOSP|PACSNODE|GENHOSP|20240615090300||ORU^R01|RIS000202|P|2.5\n"
        "PID|1||MRN7003^^^GENHOSP^MR||Secret^\nPatient\n",
        "a segment name unknown to HL7 v2 (a line cut in two?)",
    ),
    (
        "MSH|^~\\&|RADRIS|GENHOSP|PACSNODE|GENHOSP|20240615090400||ORU^R01|RIS000203|P|2.5\n"
        "PID|1||MRN7004^^^GENHOSP^MR||Secret^Patient\n",
        "no OBR segment",
    ),
    (
        "MSH|^~\\&|RADRIS|GENHOSP|PACSNODE|GENHOSP|20240615090500||ORU^R01|RIS000204|P|2.5\n"
        "OBR|1|||71045^XR CHEST 1 VIEW^CPT4\nOBX|1|TX|&GDT||Lungs clear.\n",
        UNLINKED,
    ),
    (
        "MSH|^~\\&|RADRIS|GENHOSP|PACSNODE|GENHOSP|20240615090600||ORU^R01|RIS000205|P|2.5\n"
        "OBR|1|PLC8006\nOBX|1|NM|8867-4^Heart rate^LN||72\n",
        "no report text",
    ),
]


def test_malformed_and_other_messages_are_refused_with_the_reason_while_the_rest_is_imported(store, tmp_path):
    feed = tmp_path / "mixed.hl7"
    feed.write_text("stray line\n" + GOOD + "".join(message for message, _ in BAD_MESSAGES))
    summary = import_reports(store, [feed], keep_patient_identifiers=False)
    assert (summary.added, summary.already_there) == (1, 0)
    first_lines = [7, 9, 10, 13, 15, 18]
    assert summary.refused == [(f"{feed}: line 1", "text before the first MSH segment")] + [
        (f"{feed}: message {number} (line {line})", why)
        for number, line, (_, why) in zip(range(2, 8), first_lines, BAD_MESSAGES)
    ]
    assert all("Secret" not in why and "MRN" not in why for _, why in summary.refused)
    (row,) = stored(store).values()
    assert (row.report_key, row.study_uid, row.accession_number) == (
        "hl7:GENHOSP:RIS000200",
        "1.2.826.0.1.3680043.8.498.7001",
        "FIL8001",
    )
    assert (row.impression, row.findings, row.report_date) == ("No pneumothorax.", None, "20240615")


def test_csv_files_with_section_columns_or_a_text_column(store):
    summary = import_reports(store, [DATA / "reports.csv", DATA / "reports_text_column.csv"])
    assert (summary.added, summary.already_there) == (4, 0)
    assert summary.refused == [(f"{DATA / 'reports.csv'}: line 5", UNLINKED)]
    reports = stored(store)
    with_id = reports["csv:R-1001"]
    assert (with_id.study_uid, with_id.accession_number, with_id.report_date) == (
        "1.2.826.0.1.3680043.8.498.900101",
        "ACC9001",
        "20240613",
    )
    assert sections(with_id) == {
        "indication": "Fever.",
        "comparison": "None.",
        "findings": "Left lower lobe consolidation.\nSmall left effusion.",
        "impression": "Left lower lobe pneumonia.",
    }
    assert (reports["csv:R-1002"].study_uid, reports["csv:R-1002"].comparison) == (None, None)
    by_text = {row.accession_number: row for row in reports.values() if not row.report_key.startswith("csv:R-")}
    assert set(by_text) == {"ACC9101", "ACC9102"}
    assert all(row.report_key.startswith("csv:") and len(row.report_key) == 4 + 64 for row in by_text.values())
    assert sections(by_text["ACC9101"]) == {
        "indication": "Dyspnea.",
        "comparison": None,
        "findings": "Pulmonary vascular congestion.",
        "impression": "Mild edema.",
    }
    assert sections(by_text["ACC9102"])["findings"] == "Heart and lungs normal."
    again = import_reports(store, [DATA / "reports.csv", DATA / "reports_text_column.csv"])
    assert (again.added, again.already_there, len(again.refused)) == (0, 4, 1)


def test_text_report_linked_by_its_own_lines_or_by_the_caller(store, tmp_path):
    assert counts(import_reports(store, [DATA / "report.txt"])) == (1, 0, [])
    (row,) = stored(store).values()
    assert (row.source, row.study_uid, row.accession_number) == ("text", "1.2.826.0.1.3680043.8.498.880100", "ACC8801")
    assert sections(row) == {
        "indication": "67-year-old with chest pain.",
        "comparison": "Chest radiograph 2022-11-02.",
        "findings": "CHEST RADIOGRAPH, PA AND LATERAL\nThe cardiomediastinal silhouette is within normal limits.\n"
        "There is no focal consolidation, pleural effusion or pneumothorax.",
        "impression": "No acute cardiopulmonary process.",
    }
    assert counts(import_reports(store, [DATA / "report.txt"])) == (0, 1, [])

    unlinked = tmp_path / "dictated.txt"
    unlinked.write_text("Findings: Lungs clear.\nImpression: Normal.\n")
    assert counts(import_reports(store, [unlinked]))[2] == [(str(unlinked), UNLINKED)]
    assert counts(import_reports(store, [unlinked], accession="ACC4242"))[:2] == (1, 0)
    linked = [row for row in stored(store).values() if row.accession_number == "ACC4242"]
    assert [(row.findings, row.impression) for row in linked] == [("Lungs clear.", "Normal.")]


def test_a_nul_in_a_reports_text_is_dropped_so_the_report_is_kept(store, tmp_path):
    """PostgreSQL text cannot hold NUL; a report carrying one was refused there."""
    report = tmp_path / "nul.txt"
    report.write_text("Findings: Lungs\0 clear.\nImpression: Normal.\0\n")
    assert counts(import_reports(store, [report], accession="ACC0000"))[:2] == (1, 0)
    assert [(row.findings, row.impression) for row in stored(store).values()] == [("Lungs clear.", "Normal.")]


def test_cli_imports_a_folder_reports_refusals_on_stderr_and_exits_1(tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    for name in ("reports.csv", "report.txt"):
        shutil.copy(DATA / name, folder / name)
    shutil.copy(ORU, folder / "feed.msg")  # no known suffix: HL7 by its content
    (folder / "notes.doc").write_text("not a report")
    config = tmp_path / "node.yaml"
    config.write_text(f"store:\n  url: {store_url(tmp_path)}\n")

    def run(*args):
        return CliRunner().invoke(cli, ["--config", str(config), "reports", "import", *map(str, args)])

    first = run(folder)
    assert first.exit_code == 1
    assert first.stdout == "5 reports added, 0 already there, 2 refused\n"
    assert first.stderr.splitlines() == [
        f"refused {folder / 'notes.doc'}: unknown format: name the file .txt, .csv, .hl7 or .oru, or give the format",
        f"refused {folder / 'reports.csv'}: line 5: {UNLINKED}",
    ]
    again = run(folder / "feed.msg", folder / "report.txt")
    assert (again.exit_code, again.stdout) == (0, "0 reports added, 3 already there, 0 refused\n")
    forced = run("--format", "text", "--accession", "ACC5151", folder / "notes.doc")
    assert (forced.exit_code, forced.stdout) == (0, "1 reports added, 0 already there, 0 refused\n")


# ---- hostile files: devices, FIFOs, huge files and messages ----------------------------------------


def oru_message(number: int, observations: int = 1, attachment: int = 0) -> str:
    """An ORU^R01 with `observations` text OBX segments, and an encapsulated (ED) one of `attachment`
    bytes, which the importer does not keep."""
    segments = [
        f"MSH|^~\\&|RIS|HOSP|SLM|NODE|20240101||ORU^R01|MSG{number}|P|2.5",
        f"OBR|1||ACC{number}",
        *(f"OBX|{i}|TX|18782-3^FINDINGS^LN||No acute disease.||||||F" for i in range(1, observations + 1)),
    ]
    if attachment:
        segments.append(f"OBX|{observations + 1}|ED|PDF^Report^L||^AP^^Base64^{'A' * attachment}||||||F")
    return "\r".join(segments) + "\r"


def in_a_thread(function, *args):
    """function(*args), or AssertionError if it has not returned within TIMEOUT (a FIFO read blocks)."""
    result = []
    thread = threading.Thread(target=lambda: result.append(function(*args)), daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert result, f"{function.__name__} still running after {TIMEOUT} s"
    return result[0]


def test_devices_fifos_and_links_to_them_are_refused_with_a_clear_message(store, tmp_path):
    fifo = tmp_path / "feed.hl7"
    os.mkfifo(fifo)
    (tmp_path / "zero.hl7").symlink_to("/dev/zero")
    paths = [fifo, tmp_path / "zero.hl7", Path("/dev/zero"), ORU]
    added, _, refused = counts(in_a_thread(import_reports, store, paths))
    assert added == 2  # the ORU file after them
    assert [where for where, _ in refused] == [str(path) for path in paths[:3]]
    assert all("not a regular file" in why for _, why in refused)


def test_reports_are_committed_in_batches(store, tmp_path, monkeypatch):
    monkeypatch.setattr(importers, "COMMIT_EVERY", 10)  # 500 in use; 25 reports parse faster than 1,100
    path = tmp_path / "many.hl7"
    path.write_text("".join(oru_message(number) for number in range(1, 26)))
    commits = []
    event.listen(store.engine, "commit", lambda _conn: commits.append(1))
    assert counts(import_reports(store, [path])) == (25, 0, [])
    assert len(commits) == 3  # 10 + 10 + 5, not a transaction each


def test_a_large_hl7_file_is_read_as_a_stream(store, tmp_path):
    path = tmp_path / "large.hl7"
    with path.open("w") as file:
        for number in range(1, 101):
            file.write(oru_message(number, attachment=200_000))
    assert path.stat().st_size > 19 * 2**20
    tracemalloc.start()
    try:
        summary = import_reports(store, [path])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert counts(summary) == (100, 0, [])
    assert peak < 12 * 2**20  # a message at a time, never the whole file


def test_a_message_with_thousands_of_segments_is_refused_quickly(store, tmp_path):
    path = tmp_path / "huge.hl7"
    path.write_text(oru_message(1) + oru_message(2, observations=20_000) + oru_message(3))
    started = time.monotonic()
    added, _, refused = counts(import_reports(store, [path]))
    assert time.monotonic() - started < 5
    assert added == 2
    assert refused == [(f"{path}: message 2 (line 4)", "more than 1000 segments or 1 MB: not one report")]
