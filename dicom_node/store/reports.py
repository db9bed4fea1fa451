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
    if not report.study_uid and not report.accession_number:
        raise MissingTag("a report needs a Study Instance UID or an Accession Number to link it to its study")
    row = {
        **dataclasses.asdict(report),
        "received_at": utcnow(),
        "attempts": 0,
    }
    with store.transaction() as conn:
        return conn.execute(insert_ignore(store.engine, Report.__table__), row).rowcount == 1
