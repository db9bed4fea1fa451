"""`slmnode reports list|show|export`: reports linked to their studies at query time, filtered, with
their latest result, through the real CLI on a real SQLite store."""

import csv
import io
import json

import pytest
from click.testing import CliRunner
from tests.support import databases
from tests.support.dicom_factory import cr_instance
from pydicom.uid import ExplicitVRLittleEndian

from dicom_node.cli.main import cli
from dicom_node.jobs.reports import ReportJob
from dicom_node.dicom.header import InstanceRecord
from dicom_node.reports.record import ReportRecord
from dicom_node.store.database import Store
from dicom_node.store.reports import record_report
from slm.tasks import FINDINGS, LABEL_KEYS, no_finding

STUDY, ACCESSION = "1.2.826.0.1.3680043.8.498.7", "ACC-7"
LATER_STUDY = "1.2.826.0.1.3680043.8.498.8"  # its report comes before its images


class KeywordReader:
    """Deterministic and instant: a finding is Yes when the report names it; the impression is the
    first sentence of the last section it is given."""

    version = "keywords-reports-1"

    def label(self, texts):
        labels = []
        for text in texts:
            found = {finding: "Yes" if finding.lower() in text.lower() else "No" for finding in FINDINGS}
            labels.append({**found, "No Finding": no_finding(found)})
        return labels

    def impression(self, texts):
        return [text.splitlines()[-1].split(": ", 1)[-1].split(".")[0] + "." for text in texts]


def receive_study(store: Store, study_uid: str, accession: str | None, series: int) -> None:
    for number in range(1, series + 1):
        instance = cr_instance(study_uid=study_uid, description=f"chest view {number}")  # the job reads chest films' reports
        instance.SeriesNumber, instance.AccessionNumber = number, accession
        store.record_instance(InstanceRecord.from_dataset(instance, ExplicitVRLittleEndian))


@pytest.fixture
def store_url(tmp_path):
    url = databases.store_url(tmp_path)
    store = Store(url)
    receive_study(store, STUDY, ACCESSION, series=2)
    reports = [
        ReportRecord("sr:1", "sr", STUDY, None, indication="Dyspnea", findings="Cardiomegaly. Small pleural effusion.",
                     report_date="20240105", patient_name="Doe^Jane", patient_id="PID-123"),
        ReportRecord("hl7:2", "hl7", None, ACCESSION, findings="Lungs are clear.", impression="Normal chest.",
                     report_date="202403011230"),
        ReportRecord("csv:3", "csv", LATER_STUDY, None, findings="Right lower lobe consolidation, pneumonia.",
                     report_date="2024-02-10"),
    ]
    for report in reports:
        record_report(store, report)
    ReportJob(store, KeywordReader()).run_until_done()
    record_report(store, ReportRecord("text:4", "text", "9.9.9", None, findings="Fracture of the left rib."))
    store.close()
    return url


@pytest.fixture
def slmnode(tmp_path, store_url):
    config = tmp_path / "node.yaml"
    config.write_text(f"store:\n  url: {store_url}\n")

    def run(*args) -> str:
        result = CliRunner().invoke(cli, ["--config", str(config), "reports", *map(str, args)])
        assert result.exit_code == 0, result.output
        return result.output

    return run


def listed(slmnode, *filters) -> list[dict]:
    return json.loads(slmnode("list", "--format", "json", *filters))


def test_list_links_each_report_to_its_study_by_uid_else_accession(slmnode, store_url):
    rows = listed(slmnode)
    assert [row["id"] for row in rows] == [1, 2, 3, 4]
    assert [row["study_uid"] for row in rows] == [STUDY, STUDY, LATER_STUDY, "9.9.9"]  # 2 by its accession
    first = rows[0]
    assert first["status"] == "processed" and first["model_version"] == KeywordReader.version
    assert first["findings"] == "Cardiomegaly, Pleural Effusion"
    assert first["impression"] == "Cardiomegaly."
    assert rows[1]["findings"] == "No Finding" and rows[3]["status"] == "waiting"

    table = slmnode("list")
    assert table.splitlines()[0].split() == [
        "id", "study_uid", "accession_number", "source", "report_date", "status", "findings", "impression",
        "model_version",
    ]
    assert "Doe" not in table and "PID-123" not in table  # identifiers are never listed


def test_list_filters(slmnode):
    def ids(*filters):
        return [row["id"] for row in listed(slmnode, *filters)]

    assert ids("--study", STUDY) == [1, 2]
    assert ids("--accession", ACCESSION) == [1, 2]  # 1 through its linked study
    assert ids("--study", "1.2.3.4") == []
    assert ids("--label", "pleural effusion") == [1]
    assert ids("--label", "PNEUMONIA") == [3]
    assert ids("--label", "no finding") == [2]
    assert ids("--since", "2024-02-10") == [2, 3, 4]  # 4 has no date of its own: the day it was received
    assert ids("--unprocessed") == [4]
    assert ids("--label", "Cardiomegaly", "--since", "2024-02-01") == []


def test_a_report_links_when_its_study_arrives(slmnode, store_url):
    assert "no study received yet" in slmnode("show", "3")
    store = Store(store_url)
    receive_study(store, LATER_STUDY, None, series=3)
    store.close()
    [shown] = json.loads(slmnode("show", "--study", LATER_STUDY, "--format", "json"))
    assert shown["linked_study"] == {"study_uid": LATER_STUDY, "series_count": 3}


def test_show_one_report(slmnode):
    text = slmnode("show", "1")
    assert "Dyspnea" in text and "Cardiomegaly. Small pleural effusion." in text
    assert f"{STUDY} (2 series received)" in text
    assert "positive findings     Cardiomegaly, Pleural Effusion" in text
    assert KeywordReader.version in text and "Doe" not in text

    [shown] = json.loads(slmnode("show", "2", "--format", "json"))
    assert shown["sections"]["impression"] == "Normal chest."
    assert shown["linked_study"] == {"study_uid": STUDY, "series_count": 2}
    assert shown["labels"]["No Finding"] == "Yes" and shown["generated_impression"] == "Lungs are clear."
    assert [r["id"] for r in json.loads(slmnode("show", "--accession", ACCESSION, "--format", "json"))] == [1, 2]


def test_show_asks_for_one_report_and_says_when_there_is_none(tmp_path, store_url):
    config = tmp_path / "node.yaml"
    config.write_text(f"store:\n  url: {store_url}\n")
    runner = CliRunner()
    none = runner.invoke(cli, ["--config", str(config), "reports", "show"])
    assert none.exit_code == 2 and "give one of REPORT_ID, --study UID or --accession NUMBER" in none.output
    missing = runner.invoke(cli, ["--config", str(config), "reports", "show", "99"])
    assert missing.exit_code == 1 and "no report 99 in the store" in missing.output


def test_export_csv_has_the_labels_as_columns_and_json_as_an_object(slmnode, tmp_path):
    rows = list(csv.DictReader(io.StringIO(slmnode("export"))))
    assert len(rows) == 4
    assert list(rows[0])[-14:] == list(LABEL_KEYS)
    assert rows[0]["Cardiomegaly"] == "Yes" and rows[0]["Edema"] == "No" and rows[3]["Cardiomegaly"] == ""
    assert [row["status"] for row in rows] == ["processed"] * 3 + ["waiting"]  # not applicable would say so
    assert rows[1]["linked_study_uid"] == STUDY and rows[1]["generated_impression"] == "Lungs are clear."
    assert not any("Doe" in value or "PID-123" in value for row in rows for value in row.values())

    slmnode("export", "--format", "json", "-o", tmp_path / "reports.json")
    exported = json.loads((tmp_path / "reports.json").read_text(encoding="utf-8"))
    assert exported[2]["labels"]["Pneumonia"] == "Yes" and exported[3]["labels"] is None
    assert exported[0]["findings"] == "Cardiomegaly. Small pleural effusion."


def test_csv_export_escapes_formula_cells(slmnode, store_url):
    store = Store(store_url)
    record_report(store, ReportRecord("csv:5", "csv", "9.9.8", "=1+1", findings='=HYPERLINK("http://evil.example")'))
    store.close()
    (row,) = [row for row in csv.DictReader(io.StringIO(slmnode("export"))) if row["study_uid"] == "9.9.8"]
    assert row["findings"] == '\'=HYPERLINK("http://evil.example")' and row["accession_number"] == "'=1+1"


class OtherReader(KeywordReader):
    """A second model version, with impressions of its own."""

    version = "keywords-reports-2"

    def impression(self, texts):
        return ["Second opinion." for _ in texts]


def test_reports_show_the_running_versions_results_after_a_rollback(store_url, slmnode):
    from dicom_node.models import registry

    store = Store(store_url)
    for reader in (KeywordReader(), OtherReader()):
        registry.register(store, reader.version, f"/models/{reader.version}")
        registry.promote(store, reader.version, "test")
        ReportJob(store, reader).run_until_done()
    assert {row["model_version"] for row in listed(slmnode)} == {"keywords-reports-2"}
    registry.rollback(store, "test")  # keywords-reports-1 runs again: its results, though older, come first
    store.close()
    rows = listed(slmnode)
    assert {row["model_version"] for row in rows} == {"keywords-reports-1"}
    assert "Second opinion." not in slmnode("export", "--format", "json")
