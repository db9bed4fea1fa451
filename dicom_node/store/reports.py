"""Reports as they arrive, the reports table's inserts: one row per report_key, so that a resent SR or a
re-imported file adds nothing. The report job (jobs/reports.py) claims the rows and writes their results."""

from __future__ import annotations

import dataclasses

from dicom_node.dicom.header import MissingTag
from dicom_node.reports.record import ReportRecord
from dicom_node.store.database import Store, insert_ignore
from dicom_node.store.tables import Report, utcnow


def record_report(store: Store, report: ReportRecord) -> bool:
    """Store one report, committed before returning; False when its report_key was already stored."""
    return record_reports(store, [report]) == 1


def record_reports(store: Store, reports: list[ReportRecord]) -> int:
    """Store reports in one transaction (one commit, so an import does not wait on an fsync per report);
    how many were new."""
    for report in reports:
        if not report.study_uid and not report.accession_number:
            raise MissingTag("a report needs a Study Instance UID or an Accession Number to link it to its study")
    if not reports:
        return 0
    received_at = utcnow()
    with store.transaction() as conn:
        return sum(
            conn.execute(
                insert_ignore(store.engine, Report.__table__),
                {**dataclasses.asdict(report), "received_at": received_at, "attempts": 0},
            ).rowcount
            for report in reports
        )
