"""The descriptions table's owner: what each Series Description means, and the queue that maps them.

Reading (functions of an Engine): mappings with their effective labels, corrections, series views.
Only descriptions of series of the harmonized modalities (harmonizer.modalities: MR) are mapped; a
series of another modality (a CT, an SR document) is stored and shown "not harmonized", and so is a
description only such series brought. Decided when read, so a change of the list applies to what is stored.
The effective label is the latest correction's of any spelling of the description (by time, then by order
of entry), else the model's.
Writing (functions of the Store, through its write transaction): the harmonization queue, which the
worker in jobs/harmonization.py drains, and mappings imported from another node. Only a new row is
inserted elsewhere: queued, in the C-STORE transaction of the instance that brought it (database.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy import bindparam, case, func, or_, select, update
from sqlalchemy.engine import Engine

from dicom_node.store.database import Store
from dicom_node.store.tables import Correction, Description, Instance, Series, Study, description_hash, utcnow
from dicom_node.store.times import retry_wait
from slm.harmonizer import Prediction


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
    source: str  # corrected | model | queued | no description | not harmonized
    instances: int


NOT_HARMONIZED = "not harmonized"


def _harmonized(modalities: Sequence[str]):
    """Descriptions the harmonizer maps: of a series of these modalities, or of no series at all (a
    correction or an imported mapping named it)."""
    of_series = select(Series.id).where(Series.description_id == Description.id)
    return or_(of_series.where(Series.modality.in_(modalities)).exists(), ~of_series.exists())


def latest_corrections():
    """Per spelling_hash, the label of the latest correction of any of its spellings (by time, then by order
    of entry): "ax t2 flair" corrected labels "AX_T2_FLAIR" too."""
    corrected = Description.__table__.alias("corrected_description")
    rank = (
        func.row_number()
        .over(partition_by=corrected.c.spelling_hash, order_by=(Correction.created_at.desc(), Correction.id.desc()))
        .label("rank")
    )
    ranked = (
        select(corrected.c.spelling_hash, Correction.label, rank)
        .join(corrected, corrected.c.id == Correction.description_id)
        .subquery()
    )
    return select(ranked.c.spelling_hash, ranked.c.label).where(ranked.c.rank == 1).subquery()


def mappings(
    engine: Engine,
    label: str | None = None,
    below: float | None = None,
    search: str | None = None,
    since: datetime | None = None,
    unreviewed: bool = False,
    modalities: Sequence[str] | None = None,
) -> list[Mapping]:
    """Every description with its effective label, filtered; `since` is when it was first seen. With
    `modalities`, one that only series of other modalities brought has the status "not harmonized"."""
    corrected = latest_corrections()
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
            case((_harmonized(modalities), Description.status), else_=NOT_HARMONIZED)
            if modalities is not None
            else Description.status,
            Description.first_seen,
            Description.attempts,
        )
        .outerjoin(corrected, corrected.c.spelling_hash == Description.spelling_hash)
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
    if unreviewed:  # the review queue: what the model labeled and nobody corrected (not what it never reads)
        query = query.where(corrected.c.label.is_(None), _harmonized(modalities) if modalities is not None else True)
    with engine.connect() as conn:
        return [Mapping(*row) for row in conn.execute(query)]


def effective_label(engine: Engine, text: str) -> str | None:
    """The label shown for the stored description `text`: its spellings' latest correction, else the model's."""
    corrected = latest_corrections()
    query = (
        select(func.coalesce(corrected.c.label, Description.label))
        .outerjoin(corrected, corrected.c.spelling_hash == Description.spelling_hash)
        .where(Description.text_hash == description_hash(text))
    )
    with engine.connect() as conn:
        return conn.scalar(query)


def corrections(engine: Engine) -> list[CorrectionRow]:
    query = (
        select(Description.text, Correction.label, Correction.who, Correction.note, Correction.created_at)
        .join(Description, Description.id == Correction.description_id)
        .order_by(Correction.created_at, Correction.id)
    )
    with engine.connect() as conn:
        return [CorrectionRow(*row) for row in conn.execute(query)]


def corrected_labels(engine: Engine) -> list[tuple[str, str]]:
    """Each corrected description with its latest label: what a model reading labeled neighbours knows
    of the site (slm/neighbours.py)."""
    return list({row.description: row.label for row in corrections(engine)}.items())


def series_mappings(
    engine: Engine,
    study_uid: str | None = None,
    series_uid: str | None = None,
    accession: str | None = None,
    modalities: Sequence[str] | None = None,
) -> list[SeriesMapping]:
    """The series of one study (by UID or Accession Number), or the one series, with their descriptions'
    effective labels; with
    `modalities`, a series of another modality has no label and the source "not harmonized"."""
    corrected = latest_corrections()
    other = Series.modality.is_(None) | Series.modality.not_in(modalities) if modalities is not None else False
    instance_counts = select(Instance.series_id, func.count().label("n")).group_by(Instance.series_id).subquery()
    query = (
        select(
            Study.study_uid,
            Series.series_uid,
            Series.series_number,
            Series.modality,
            Description.text,
            case((other, None), else_=func.coalesce(corrected.c.label, Description.label)),
            case((other, None), else_=Description.confidence),
            case((other, None), else_=Description.model_version),
            case(
                (other, NOT_HARMONIZED),
                (corrected.c.label.is_not(None), "corrected"),
                (Description.status == "mapped", "model"),
                (Description.status == "queued", "queued"),
                else_="no description",
            ),
            func.coalesce(instance_counts.c.n, 0),
        )
        .join(Study, Study.id == Series.study_id)
        .outerjoin(Description, Description.id == Series.description_id)
        .outerjoin(corrected, corrected.c.spelling_hash == Description.spelling_hash)
        .outerjoin(instance_counts, instance_counts.c.series_id == Series.id)
        .order_by(Series.series_number, Series.series_uid)
    )
    if study_uid is not None:
        query = query.where(Study.study_uid == study_uid)
    if series_uid is not None:
        query = query.where(Series.series_uid == series_uid)
    if accession is not None:
        query = query.where(Study.accession_number == accession)
    with engine.connect() as conn:
        return [SeriesMapping(*row) for row in conn.execute(query)]


@dataclass(frozen=True)
class ExampleSeries:
    study_uid: str
    series_uid: str
    series_number: int | None
    modality: str | None
    manufacturer: str | None


def example_series(engine: Engine, texts: list[str], per_description: int = 3) -> dict[str, list[ExampleSeries]]:
    """A few series of each description (the latest received first), for a reviewer to look at."""
    rank = func.row_number().over(partition_by=Series.description_id, order_by=Series.id.desc()).label("rank")
    ranked = (
        select(Description.text, Study.study_uid, Series.series_uid, Series.series_number, Series.modality,
               Series.manufacturer, rank)
        .join(Series, Series.description_id == Description.id)
        .join(Study, Study.id == Series.study_id)
        .where(Description.text_hash.in_([description_hash(text) for text in texts]))
        .subquery()
    )
    found: dict[str, list[ExampleSeries]] = {text: [] for text in texts}
    with engine.connect() as conn:
        for row in conn.execute(select(ranked).where(ranked.c.rank <= per_description).order_by(ranked.c.rank)):
            found[row.text].append(ExampleSeries(*row[1:6]))
    return found


def queue_depth(engine: Engine, modalities: Sequence[str] | None = None) -> int:
    """Descriptions waiting for the harmonizer (with `modalities`, those it will map: see queued_descriptions)."""
    query = select(func.count()).select_from(Description).where(Description.status == "queued")
    if modalities is not None:
        query = query.where(_harmonized(modalities))
    with engine.connect() as conn:
        return conn.scalar(query)


# ---- the harmonization queue: what the worker maps next, and what it made of it ---------------


def _mapped(label, confidence, model_version, mapped_at) -> dict:
    """The column values of a description once the model has mapped it."""
    return {
        "status": "mapped",
        "label": label,
        "confidence": confidence,
        "model_version": model_version,
        "mapped_at": mapped_at,
        "last_error": None,
        "next_attempt_at": None,
    }


def _queued(now: datetime, modalities: Sequence[str] | None = None):
    """Queued descriptions not waiting out a failure's backoff or another worker's claim and, with
    `modalities`, not only brought by series of other modalities."""
    due = (Description.next_attempt_at.is_(None)) | (Description.next_attempt_at <= now)
    queued = (Description.status == "queued") & due
    return queued & _harmonized(modalities) if modalities is not None else queued


def _next_queued(columns, now: datetime, limit: int, modalities: Sequence[str] | None = None):
    """Queued texts never mapped first (a new series' description before a re-harmonized one), then oldest first."""
    remapping = Description.model_version.is_not(None)
    return select(*columns).where(_queued(now, modalities)).order_by(remapping, Description.id).limit(limit)


def queued_descriptions(store: Store, limit: int, modalities: Sequence[str] | None = None) -> list[str]:
    """The next `limit` descriptions a worker would map, read without claiming them."""
    with store.engine.connect() as conn:
        return list(conn.scalars(_next_queued([Description.text], utcnow(), limit, modalities)))


def claim_descriptions(
    store: Store, limit: int, seconds: float, modalities: Sequence[str] | None = None
) -> list[str]:
    """The next `limit` queued descriptions, held for `seconds` by the caller, so that each is harmonized
    once however many nodes share the queue.

    A claim is the due time pushed on (next_attempt_at, the backoff's column), not a column of its own:
    another worker skips the description until then, a saved mapping or a recorded failure ends the
    claim, and the claims of a node that died come due again by themselves. A description goes to
    whoever's UPDATE matched it still due (PostgreSQL rechecks the condition on a row another
    transaction just claimed; SQLite runs one write transaction at a time).
    """
    now = utcnow()
    until = now + timedelta(seconds=seconds)
    claimed = []
    with store.transaction() as conn:
        for row_id, text in conn.execute(_next_queued([Description.id, Description.text], now, limit, modalities)).all():
            claim = update(Description).where(Description.id == row_id, _queued(now)).values(next_attempt_at=until)
            if conn.execute(claim).rowcount == 1:
                claimed.append(text)
    return claimed


def save_predictions(store: Store, texts: list[str], predictions: list[Prediction]) -> None:
    if len(texts) != len(predictions):
        raise ValueError(f"{len(texts)} descriptions but {len(predictions)} predictions")
    now = utcnow()
    rows = [
        {
            "key": description_hash(text),
            "label": p.label,
            "confidence": p.confidence,
            "model_version": p.model_version,
            "mapped_at": now,
        }
        for text, p in zip(texts, predictions)
    ]
    update_by_hash = (
        update(Description)
        .where(Description.text_hash == bindparam("key"))
        .values(_mapped(*map(bindparam, ("label", "confidence", "model_version", "mapped_at"))))
    )
    with store.transaction() as conn:
        conn.execute(update_by_hash.execution_options(synchronize_session=False), rows)


def record_failure(
    store: Store, texts: list[str], error: str, retry_seconds: float = 30.0, max_retry_seconds: float = 3600.0
) -> None:
    """Count a failed attempt; each text stays queued and waits retry_seconds * 2**(attempts - 1)."""
    now = utcnow()
    keys = [description_hash(text) for text in texts]
    with store.transaction() as conn:
        attempts = conn.execute(
            select(Description.id, Description.attempts).where(Description.text_hash.in_(keys))
        ).all()
        for row_id, done in attempts:
            wait = retry_wait(done, retry_seconds, max_retry_seconds)
            conn.execute(
                update(Description)
                .where(Description.id == row_id)
                .values(attempts=done + 1, last_error=error, next_attempt_at=now + wait)
            )


QUEUED_AGAIN = {"status": "queued", "attempts": 0, "last_error": None, "next_attempt_at": None}


def requeue_descriptions(store: Store, except_version: str | None = None) -> int:
    """Queue mapped descriptions again, all or those mapped by another version than `except_version`;
    how many. They keep their labels until the worker maps them anew."""
    query = update(Description).where(Description.status == "mapped")
    if except_version is not None:
        query = query.where(
            (Description.model_version.is_(None)) | (Description.model_version != except_version)
        )
    with store.transaction() as conn:
        return conn.execute(query.values(QUEUED_AGAIN)).rowcount


def requeue_similar(store: Store, text: str) -> int:
    """Queue again the mapped descriptions a new correction of `text` may now be the nearest known
    description of (slm/neighbours.py): similar to it, and read by the rules with doubt, where a model
    with neighbours is shown one. So a correction reaches the site's stored spellings, not only new
    ones. How many; they keep their labels until the worker maps them anew."""
    from slm.hints import leaves_room, rule_hint
    from slm.neighbours import Neighbours
    from slm.tasks import HARMONIZE

    with store.engine.connect() as conn:
        mapped = conn.execute(select(Description.id, Description.text).where(Description.status == "mapped")).all()
    near = Neighbours([(text, "corrected")]).nearest([other for _, other in mapped])
    ids = [i for (i, other), found in zip(mapped, near) if found and leaves_room(rule_hint(HARMONIZE, other))]
    if not ids:
        return 0
    with store.transaction() as conn:
        return conn.execute(update(Description).where(Description.id.in_(ids)).values(QUEUED_AGAIN)).rowcount


def add_mapping(store: Store, text: str, prediction: Prediction, mapped_at: datetime) -> bool:
    """Record a model mapping made elsewhere, unless this store already has one as recent."""
    with store.transaction() as conn:
        description_id = store.description_id(conn, text)
        newer = update(Description).where(
            Description.id == description_id,
            (Description.mapped_at.is_(None)) | (Description.mapped_at < mapped_at),
        )
        values = _mapped(prediction.label, prediction.confidence, prediction.model_version, mapped_at)
        return conn.execute(newer.values(values)).rowcount == 1
