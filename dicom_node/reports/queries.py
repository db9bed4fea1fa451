"""Reports as people and scripts ask for them: each with its linked study and its latest result.

A report links to a study at query time, by Study Instance UID when a study with that UID was
received, else by Accession Number: a report may arrive before its images, and then links to them
as soon as they are in. A report's result shown is the running model version's (the registry's active
one) when it has one, else the one processed last: after a rollback, reports show the restored
version's results again.
Patient identifiers are never shown or exported here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import case, func, literal, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased

from dicom_node.store.tables import Report, ReportResult, Series, Study
from dicom_node.store.times import iso
from slm.tasks import LABEL_KEYS, REPORT_SECTIONS


NOT_APPLICABLE = "not applicable"  # not a chest radiograph's report (reports/scope.py): no labels, no impression


@dataclass(frozen=True)
class ReportView:
    id: int
    report_key: str
    source: str
    study_uid: str | None  # as the report gave it
    accession_number: str | None
    report_date: str | None
    received_at: datetime
    indication: str | None
    comparison: str | None
    findings: str | None
    impression: str | None  # the radiologist's
    linked_study_uid: str | None  # the received study it links to, if any yet
    series_count: int  # of the linked study
    labels: dict[str, str] | None  # of the latest result; None: none yet, or not applicable (reports/scope.py)
    generated_impression: str | None
    model_version: str | None
    processed_at: datetime | None
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None

    @property
    def positive_findings(self) -> list[str]:
        return [key for key in LABEL_KEYS if (self.labels or {}).get(key) == "Yes"]

    @property
    def status(self) -> str:
        if self.processed_at is not None:
            return "processed" if self.labels is not None else NOT_APPLICABLE
        return f"failed {self.attempts}x" if self.attempts else "waiting"


def _latest_results(version: str | None):
    """Per report, its result by `version` if any, else the one processed last (by time, then order of entry)."""
    other_version = case((ReportResult.model_version == version, 0), else_=1) if version else literal(0)
    rank = (
        func.row_number()
        .over(
            partition_by=ReportResult.report_id,
            order_by=(other_version, ReportResult.processed_at.desc(), ReportResult.id.desc()),
        )
        .label("rank")
    )
    ranked = select(ReportResult, rank).subquery()
    return select(ranked).where(ranked.c.rank == 1).subquery("latest")


def linked_study_id():
    """The id of the study a report links to (SQL, correlated with Report): by Study Instance UID, else by Accession Number."""
    by_uid = select(Study.id).where(Study.study_uid == Report.study_uid).correlate(Report).scalar_subquery()
    by_accession = (
        select(func.min(Study.id))
        .where(Study.accession_number == Report.accession_number)
        .correlate(Report)
        .scalar_subquery()
    )
    return func.coalesce(by_uid, by_accession)


def reports(
    engine: Engine,
    report_id: int | None = None,
    study_uid: str | None = None,
    accession: str | None = None,
    label: str | None = None,
    since: date | None = None,
    unprocessed: bool = False,
    version: str | None = None,
) -> list[ReportView]:
    """Reports, oldest first, filtered: by id, by study (the report's or the linked one's UID), by
    accession (likewise), by a finding Yes in the latest result, by date (the report's own date when
    it has one, else when it was received), or only those without any result yet. Each report comes
    with its result by model `version` (the running one) when it has one, else its latest."""
    linked = aliased(Study, name="linked")
    series_count = select(func.count(Series.id)).where(Series.study_id == linked.id).correlate(linked).scalar_subquery()
    latest = _latest_results(version)
    query = (
        select(
            *Report.__table__.c,
            linked.study_uid.label("linked_study_uid"),
            series_count.label("series_count"),
            latest.c.labels,
            latest.c.impression.label("generated_impression"),
            latest.c.model_version,
            latest.c.processed_at,
        )
        .select_from(Report)
        .outerjoin(linked, linked.id == linked_study_id())
        .outerjoin(latest, latest.c.report_id == Report.id)
        .order_by(Report.id)
    )
    if report_id is not None:
        query = query.where(Report.id == report_id)
    if study_uid:
        query = query.where(or_(Report.study_uid == study_uid, linked.study_uid == study_uid))
    if accession:
        query = query.where(or_(Report.accession_number == accession, linked.accession_number == accession))
    if unprocessed:
        query = query.where(latest.c.report_id.is_(None))
    with engine.connect() as conn:
        views = [_view(row) for row in conn.execute(query)]
    if label:
        views = [view for view in views if (view.labels or {}).get(label) == "Yes"]
    if since:
        views = [view for view in views if _day(view) >= since]
    return views


def backlog(engine: Engine, version: str | None) -> int:
    """Reports without a result by model `version` (the running one): what the report job has left to do."""
    done = select(ReportResult.report_id).where(ReportResult.model_version == version)
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Report).where(Report.id.not_in(done)))


def _view(row) -> ReportView:
    fields = {name: getattr(row, name) for name in ReportView.__dataclass_fields__ if name != "labels"}
    return ReportView(
        **{**fields, "series_count": row.series_count or 0},
        labels=json.loads(row.labels) if row.labels is not None else None,
    )


def _day(view: ReportView) -> date:
    """The report's date: its own (DICOM DA, HL7 TS or ISO, read by the first eight digits), else when received."""
    digits = re.sub(r"\D", "", view.report_date or "")
    if len(digits) >= 8:
        try:
            return datetime.strptime(digits[:8], "%Y%m%d").date()
        except ValueError:
            pass
    return view.received_at.date()


# ---- rows for the CLI ---------------------------------------------------------------------------

LIST_FIELDS = (
    "id", "study_uid", "accession_number", "source", "report_date", "status",
    "findings", "impression", "model_version",
)
EXPORT_FIELDS = (
    "id", "report_key", "source", "study_uid", "linked_study_uid", "accession_number", "report_date",
    "received_at", *REPORT_SECTIONS, "status", "generated_impression", "model_version", "processed_at",
)


def list_row(view: ReportView) -> dict:
    """One line of `slmnode reports list`: the study it links to (else its own UID), positive findings."""
    return {
        "id": view.id,
        "study_uid": view.linked_study_uid or view.study_uid,
        "accession_number": view.accession_number,
        "source": view.source,
        "report_date": view.report_date,
        "status": view.status,
        "findings": ", ".join(view.positive_findings),
        "impression": view.generated_impression,
        "model_version": view.model_version,
    }


def export_row(view: ReportView, labels_as_columns: bool) -> dict:
    """Every field of a report and its latest result; the labels as 14 columns (CSV) or one object (JSON)."""
    row = {field: getattr(view, field) for field in EXPORT_FIELDS}
    row.update(received_at=iso(view.received_at), processed_at=iso(view.processed_at))
    if labels_as_columns:
        row.update({key: (view.labels or {}).get(key) for key in LABEL_KEYS})
    else:
        row["labels"] = view.labels
    return row


def show_data(view: ReportView) -> dict:
    """What `slmnode reports show` tells of one report, for JSON."""
    return {
        "id": view.id,
        "report_key": view.report_key,
        "source": view.source,
        "study_uid": view.study_uid,
        "accession_number": view.accession_number,
        "report_date": view.report_date,
        "received_at": iso(view.received_at),
        "linked_study": (
            {"study_uid": view.linked_study_uid, "series_count": view.series_count} if view.linked_study_uid else None
        ),
        "sections": {name: getattr(view, name) for name in REPORT_SECTIONS},
        "status": view.status,
        "last_error": view.last_error,
        "next_attempt_at": iso(view.next_attempt_at),
        "labels": view.labels,
        "generated_impression": view.generated_impression,
        "model_version": view.model_version,
        "processed_at": iso(view.processed_at),
    }


def show_text(view: ReportView) -> str:
    """One report for people: a line per field, the sections in full."""
    if view.linked_study_uid:
        study = f"{view.linked_study_uid} ({view.series_count} series received)"
    else:
        study = f"{view.study_uid or '-'} (no study received yet)"
    if view.status.startswith("failed"):
        status = f"{view.status}, next attempt {iso(view.next_attempt_at)}: {view.last_error}"
    else:
        status = view.status
    lines = [
        ("report", f"{view.id} ({view.source}, {view.report_key})"),
        ("study", study),
        ("accession", view.accession_number or "-"),
        ("report date", view.report_date or "-"),
        ("received", iso(view.received_at)),
        *((name, getattr(view, name) or "-") for name in REPORT_SECTIONS),
        ("status", status),
    ]
    if view.labels is not None:
        lines += [
            ("positive findings", ", ".join(view.positive_findings) or "none"),
            ("generated impression", view.generated_impression or "-"),
            ("model version", view.model_version),
        ]
    width = max(len(name) for name, _ in lines)
    return "".join(f"{name.ljust(width)}  {value}\n" for name, value in lines)
