"""The orthanc_labels table's owner: which series' labels Orthanc has yet to be told (dicom_node/orthanc/labels.py
tells it), and what it was told."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine

from dicom_node.store.database import Store
from dicom_node.store.mappings import latest_corrections
from dicom_node.store.tables import Description, OrthancLabel, Series, utcnow


@dataclass(frozen=True)
class Unwritten:
    series_id: int
    series_uid: str
    label: str


def series_to_write(engine: Engine, limit: int) -> list[Unwritten]:
    """Series whose effective label (the latest correction's, else the model's) is not the one last written."""
    corrected = latest_corrections()
    label = func.coalesce(corrected.c.label, Description.label)
    query = (
        select(Series.id, Series.series_uid, label)
        .join(Description, Description.id == Series.description_id)
        .outerjoin(corrected, corrected.c.spelling_hash == Description.spelling_hash)
        .outerjoin(OrthancLabel, OrthancLabel.series_id == Series.id)
        .where(label.is_not(None), (OrthancLabel.label.is_(None)) | (OrthancLabel.label != label))
        .order_by(Series.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [Unwritten(*row) for row in conn.execute(query)]


def record_written(store: Store, series_id: int, label: str, orthanc_id: str | None) -> None:
    values = {"label": label, "orthanc_id": orthanc_id, "written_at": utcnow()}
    with store.transaction() as conn:
        if conn.scalar(select(OrthancLabel.id).where(OrthancLabel.series_id == series_id)) is None:
            conn.execute(insert(OrthancLabel).values(series_id=series_id, **values))
        else:
            conn.execute(update(OrthancLabel).where(OrthancLabel.series_id == series_id).values(**values))
