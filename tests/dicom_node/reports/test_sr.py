"""Reports sent as DICOM SR: each text SR class over a real association becomes one report row with its
sections, linked to its study; odd SRs are stored as instances without breaking anything."""

from __future__ import annotations

import logging

import pytest
from pydicom import dcmread
from pydicom.uid import BasicTextSRStorage, ComprehensiveSRStorage, EnhancedSRStorage, ImplicitVRLittleEndian
from sqlalchemy import select, text

from tests.support.dicom_factory import mr_instance, sr_container, sr_text, text_sr, write_files
from dicom_node.node import Node
from dicom_node.dicom.sender import send_files
from dicom_node.reports.sr import NotTextSR, report_from_sr
from dicom_node.store.tables import Report
from tests.support.helpers_dicom import TIMEOUT, KeywordHarmonizer, node_settings, start_node, stored_instances

SUCCESS, OUT_OF_RESOURCES = 0x0000, 0xA700
SECTIONS = ("indication", "comparison", "findings", "impression")


def basic_sr(study_uid=None):
    """Basic Text SR, TEXT items right under the root, each named for its section by a DCM code."""
    return text_sr(
        [
            sr_text("Chest pain.", ("121060", "DCM", "History")),
            sr_text("Heart size is normal.", ("121071", "DCM", "Finding")),
            sr_text("Lungs are clear.", ("121071", "DCM", "Finding")),
            sr_text("No acute cardiopulmonary disease.", ("121073", "DCM", "Impression")),
        ],
        sop_class=BasicTextSRStorage,
        study_uid=study_uid,
    )


def enhanced_sr(study_uid=None):
    """Enhanced SR with LOINC-coded section containers whose TEXT items have no concept name, in
    Implicit VR Little Endian (the node reads the content tree from raw elements)."""
    ds = text_sr(
        [
            sr_container(("18785-6", "LN", "Radiology Reason for study"), [sr_text("Cough for three weeks.")]),
            sr_container(("18834-2", "LN", "Radiology Comparison study"), [sr_text("Thoraxröntgen 2023-01-04.")]),
            sr_container(("18782-3", "LN", "Radiology Study observation"), [sr_text("Small left effusion.")]),
            sr_container(("19005-8", "LN", "Radiology Impression"), [sr_text("Left pleural effusion.")]),
        ],
        sop_class=EnhancedSRStorage,
        study_uid=study_uid,
    )
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def comprehensive_sr(study_uid=None):
    """Comprehensive SR as a reporting system writes it: observation context first (skipped), local
    codes known only by their meaning, a sub-container without a section name inside Findings."""
    return text_sr(
        [
            sr_text("REPORTER-7", ("121013", "DCM", "Device Observer Name"), relationship="HAS OBS CONTEXT"),
            sr_container(("L-CI", "99RIS", "Clinical information"), [sr_text("Fever.", ("L-T", "99RIS", "Text"))]),
            sr_container(("L-PS", "99RIS", "Prior studies"), [sr_text("None.")]),
            sr_container(
                ("121070", "DCM", "Findings"),
                [
                    sr_text("Right lower lobe opacity."),
                    sr_container(("L-LU", "99RIS", "Lungs"), [sr_text("No pneumothorax.")]),
                ],
            ),
            sr_container(("121076", "DCM", "Conclusions"), [sr_text("Right lower lobe pneumonia.")]),
            sr_text("Follow-up radiograph in 6 weeks.", ("121075", "DCM", "Recommendation")),
        ],
        sop_class=ComprehensiveSRStorage,
        study_uid=study_uid,
    )


def stored_reports(store) -> dict:
    with store.engine.connect() as conn:
        return {row.report_key: row for row in conn.execute(select(Report))}


def sections(row) -> dict:
    return {name: getattr(row, name) for name in SECTIONS}


def test_each_text_sr_class_becomes_one_report_linked_to_its_study(tmp_path):
    study = mr_instance()
    srs = [basic_sr(study.StudyInstanceUID), enhanced_sr(study.StudyInstanceUID), comprehensive_sr()]
    paths = write_files([study, *srs, srs[2]], tmp_path / "in")  # the last SR is sent twice
    with start_node(tmp_path) as node:
        outcomes = send_files("127.0.0.1", node.port, paths, timeout=TIMEOUT)
        reports = stored_reports(node.store)
        instances = stored_instances(node)
    assert [outcome.status for outcome in outcomes] == [SUCCESS] * 5
    assert set(instances) == {ds.SOPInstanceUID for ds in [study, *srs]}
    assert set(reports) == {f"sr:{ds.SOPInstanceUID}" for ds in srs}
    basic, enhanced, comprehensive = (reports[f"sr:{ds.SOPInstanceUID}"] for ds in srs)
    assert sections(basic) == {
        "indication": "Chest pain.",
        "comparison": None,
        "findings": "Heart size is normal.\nLungs are clear.",
        "impression": "No acute cardiopulmonary disease.",
    }
    assert sections(enhanced) == {
        "indication": "Cough for three weeks.",
        "comparison": "Thoraxröntgen 2023-01-04.",
        "findings": "Small left effusion.",
        "impression": "Left pleural effusion.",
    }
    assert sections(comprehensive) == {
        "indication": "Fever.",
        "comparison": "None.",
        "findings": "Right lower lobe opacity.\nNo pneumothorax.\nFollow-up radiograph in 6 weeks.",
        "impression": "Right lower lobe pneumonia.",
    }
    for ds, row in zip(srs, (basic, enhanced, comprehensive)):
        assert (row.source, row.study_uid, row.accession_number) == ("sr", ds.StudyInstanceUID, ds.AccessionNumber)
        assert (row.report_date, row.patient_id, row.patient_name) == ("20240611", None, None)
    assert basic.study_uid == enhanced.study_uid == study.StudyInstanceUID


def test_patient_identifiers_are_kept_only_when_the_settings_allow(tmp_path):
    settings = node_settings(tmp_path)
    settings = settings.model_copy(
        update={"store": settings.store.model_copy(update={"keep_patient_identifiers": True})}
    )
    sr = basic_sr()
    with Node(settings, KeywordHarmonizer()).start() as node:
        send_files("127.0.0.1", node.port, write_files([sr], tmp_path / "in"), timeout=TIMEOUT)
        (row,) = stored_reports(node.store).values()
    assert (row.patient_id, row.patient_name) == (sr.PatientID, str(sr.PatientName))


def test_sr_without_text_is_stored_as_an_instance_only_and_logged_without_identifiers(tmp_path, caplog):
    empty = text_sr([sr_container(("121070", "DCM", "Findings"), [])], patient="Quietpatient")
    paths = write_files([empty], tmp_path / "in")
    with caplog.at_level(logging.WARNING, logger="dicom_node"), start_node(tmp_path) as node:
        outcomes = send_files("127.0.0.1", node.port, paths, timeout=TIMEOUT)
        reports, instances = stored_reports(node.store), stored_instances(node)
    assert [outcome.status for outcome in outcomes] == [SUCCESS]
    assert list(instances) == [empty.SOPInstanceUID] and reports == {}
    assert f"No report text in instance {empty.SOPInstanceUID}" in caplog.text
    assert "Quietpatient" not in caplog.text and empty.PatientID not in caplog.text


def test_report_that_cannot_be_stored_fails_the_sr_and_its_resend_completes_it(tmp_path):
    sr = enhanced_sr()
    paths = write_files([sr], tmp_path / "in")
    with start_node(tmp_path) as node:
        with node.store.engine.begin() as db:  # the reports table out of reach: its INSERT fails
            db.execute(text("ALTER TABLE reports RENAME TO reports_away"))
        first = send_files("127.0.0.1", node.port, paths, timeout=TIMEOUT)
        with node.store.engine.begin() as db:
            db.execute(text("ALTER TABLE reports_away RENAME TO reports"))
        second = send_files("127.0.0.1", node.port, paths, timeout=TIMEOUT)
        reports = stored_reports(node.store)
    assert [outcome.status for outcome in first + second] == [OUT_OF_RESOURCES, SUCCESS]
    assert list(reports) == [f"sr:{sr.SOPInstanceUID}"]
    assert reports[f"sr:{sr.SOPInstanceUID}"].impression == "Left pleural effusion."


def test_odd_values_are_skipped_not_raised(tmp_path):
    no_concept = sr_text("Text without a concept name.")
    no_code = sr_container(("121072", "DCM", "Impressions"), [sr_text("Stable.")])
    del no_code.ConceptNameCodeSequence[0].CodeValue
    empty_sequence = sr_text("Findings-less.")
    empty_sequence.ConceptNameCodeSequence = []
    not_text = sr_text("ignored")
    not_text.ValueType = "CODE"
    bad_bytes = sr_text("x")
    bad_bytes.TextValue = b"Opacity \xff\xfe\xfd in the right lung."  # not UTF-8, the SR's character set
    ds = text_sr([no_concept, no_code, empty_sequence, not_text, bad_bytes, sr_container(("1", "99", "X"), [])])
    ds.ContentSequence.append(text_sr([]))  # an item with no ValueType at all
    written = write_files([ds], tmp_path)[0]
    with pytest.warns(UserWarning, match="replacement characters"):
        report = report_from_sr(dcmread(written))
    assert report.impression == "Stable."
    findings = report.findings.split("\n")
    assert findings[:2] == ["Text without a concept name.", "Findings-less."]
    assert findings[2].startswith("Opacity ") and findings[2].endswith(" in the right lung.")
    assert report_from_sr(text_sr([])) is None


def test_a_dataset_that_is_no_text_sr_is_refused():
    with pytest.raises(NotTextSR):
        report_from_sr(mr_instance())
