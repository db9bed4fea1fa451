"""What people and scripts ask of the store: mappings with their effective labels, and series views.

The effective label is the latest correction's (by time, then by order of entry), else the model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine

from dicom_node.store.tables import Correction, Description, Instance, Series, Study


@dataclass(frozen=True)
class Mapping:
    """A description's effective label; the first seven fields are the mappings export."""

    description: str
    label: str | None
    confidence: float | None
    model_version: str | None
    mapped_at: datetime | None
    corrected: bool
    series_count: int
    model_label: str | None
    status: str
    first_seen: datetime
    attempts: int


@dataclass(frozen=True)
class CorrectionRow:
    description: str
    label: str
    who: str
    note: str | None
    created_at: datetime


@dataclass(frozen=True)
class SeriesMapping:
    study_uid: str
    series_uid: str
    series_number: int | None
    modality: str | None
    description: str | None
    label: str | None
    confidence: float | None
    model_version: str | None
    source: str  # corrected | model | queued | no description
    instances: int


def _latest_corrections():
    """Per description, the label of its latest correction (by time, then by order of entry)."""
    rank = (
        func.row_number()
        .over(partition_by=Correction.description_id, order_by=(Correction.created_at.desc(), Correction.id.desc()))
        .label("rank")
    )
    ranked = select(Correction.description_id, Correction.label, rank).subquery()
    return select(ranked.c.description_id, ranked.c.label).where(ranked.c.rank == 1).subquery()


def mappings(
    engine: Engine,
    label: str | None = None,
    below: float | None = None,
    search: str | None = None,
    since: datetime | None = None,
    unreviewed: bool = False,
) -> list[Mapping]:
    """Every description with its effective label, filtered; `since` is when it was first seen."""
    corrected = _latest_corrections()
    series_counts = select(Series.description_id, func.count().label("n")).group_by(Series.description_id).subquery()
    effective = func.coalesce(corrected.c.label, Description.label)
    query = (
        select(
            Description.text,
            effective,
            Description.confidence,
            Description.model_version,
            Description.mapped_at,
            corrected.c.label.is_not(None),
            func.coalesce(series_counts.c.n, 0),
            Description.label,
            Description.status,
            Description.first_seen,
            Description.attempts,
        )
        .outerjoin(corrected, corrected.c.description_id == Description.id)
        .outerjoin(series_counts, series_counts.c.description_id == Description.id)
        .order_by(Description.text)
    )
    if label is not None:
        query = query.where(effective == label)
    if below is not None:
        query = query.where(Description.confidence < below)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(Description.text.ilike(pattern, escape="\\"))
    if since is not None:
        query = query.where(Description.first_seen >= since)
    if unreviewed:
        query = query.where(corrected.c.label.is_(None))
    with engine.connect() as conn:
        return [Mapping(*row) for row in conn.execute(query)]


def corrections(engine: Engine) -> list[CorrectionRow]:
    query = (
        select(Description.text, Correction.label, Correction.who, Correction.note, Correction.created_at)
        .join(Description, Description.id == Correction.description_id)
        .order_by(Correction.created_at, Correction.id)
    )
    with engine.connect() as conn:
        return [CorrectionRow(*row) for row in conn.execute(query)]


def series_mappings(engine: Engine, study_uid: str | None = None, series_uid: str | None = None) -> list[SeriesMapping]:
    """The series of one study (or the one series) with their descriptions' effective labels."""
    corrected = _latest_corrections()
    instance_counts = select(Instance.series_id, func.count().label("n")).group_by(Instance.series_id).subquery()
    query = (
        select(
            Study.study_uid,
            Series.series_uid,
            Series.series_number,
            Series.modality,
            Description.text,
            func.coalesce(corrected.c.label, Description.label),
            Description.confidence,
            Description.model_version,
            case(
                (corrected.c.label.is_not(None), "corrected"),
                (Description.status == "mapped", "model"),
                (Description.status == "queued", "queued"),
                else_="no description",
            ),
            func.coalesce(instance_counts.c.n, 0),
        )
        .join(Study, Study.id == Series.study_id)
        .outerjoin(Description, Description.id == Series.description_id)
        .outerjoin(corrected, corrected.c.description_id == Description.id)
        .outerjoin(instance_counts, instance_counts.c.series_id == Series.id)
        .order_by(Series.series_number, Series.series_uid)
    )
    if study_uid is not None:
        query = query.where(Study.study_uid == study_uid)
    if series_uid is not None:
        query = query.where(Series.series_uid == series_uid)
    with engine.connect() as conn:
        return [SeriesMapping(*row) for row in conn.execute(query)]
