"""A radiology report as it arrived, whoever sent it: the one shape the SR reader and the importers
produce and the store keeps."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportRecord:
    """One radiology report as it arrived: where from, which study, its text by section.

    `report_key` makes a report that arrives twice (a resent SR, a re-imported file) one row:
    "sr:<SOP Instance UID>" for DICOM SR; the importers build theirs from the message or file.
    """

    report_key: str
    source: str  # sr | hl7 | csv | text
    study_uid: str | None
    accession_number: str | None
    indication: str | None = None
    comparison: str | None = None
    findings: str | None = None
    impression: str | None = None
    report_date: str | None = None
    patient_id: str | None = None  # None unless keep_patient_identifiers
    patient_name: str | None = None
