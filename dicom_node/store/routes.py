"""The forwards table's owner: the outgoing queue of the routing rules (jobs/routing.py sends it).

A rule's matching instances are queued by one INSERT ... SELECT, each (rule, instance) at most once
(a unique key), so an instance is forwarded once per rule whatever happens: a restart, a correction
that relabels its series back and forth, two nodes on one database. A row is sent, waits out a
failure, or is given up only through the functions here, each in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, exists, func, literal, or_, select, update
from sqlalchemy.engine import Engine

from dicom_node.config import RouteRule, RoutingSettings
from dicom_node.store.database import Store, insert_ignore
from dicom_node.store.mappings import latest_corrections
from dicom_node.store.tables import Correction, Description, Forward, Instance, Series, utcnow
from dicom_node.store.times import retry_wait

PENDING, SENT, FAILED = "pending", "sent", "failed"


def destination(rule: RouteRule) -> str:
    """How `slmnode routes` names a rule's destination: AE@host:port."""
    to = rule.send_to
    return f"{to.ae_title}@{to.host}:{to.port}" + (" (TLS)" if to.tls else "")


@dataclass(frozen=True)
class Watermark:
    """What the queue was last filled from: a newer instance, mapping or correction means matching again."""

    instance_id: int
    mapped_at: datetime | None
    correction_id: int


def watermark(engine: Engine) -> Watermark:
    with engine.connect() as conn:
        return Watermark(
            conn.scalar(select(func.coalesce(func.max(Instance.id), 0))),
            conn.scalar(select(func.max(Description.mapped_at))),
            conn.scalar(select(func.coalesce(func.max(Correction.id), 0))),
        )


def enqueue(store: Store, rule: RouteRule, after_instance_id: int = 0) -> None:
    """Queue every instance (with an id above `after_instance_id`) whose series the rule matches and
    that the rule has not queued yet. A series matches once its description has a label (the latest
    correction's, else the model's); a correction counts as confidence 1."""
    when = rule.when
    corrected = latest_corrections()
    label = func.coalesce(corrected.c.label, Description.label)
    confidence = case((corrected.c.label.is_not(None), 1.0), else_=Description.confidence)
    now = utcnow()
    query = (
        select(
            literal(rule.name), Instance.id, literal(destination(rule)), literal(PENDING), literal(0), literal(now)
        )
        .select_from(Instance)
        .join(Series, Series.id == Instance.series_id)
        .join(Description, Description.id == Series.description_id)
        .outerjoin(corrected, corrected.c.spelling_hash == Description.spelling_hash)
        .where(
            Instance.id > after_instance_id,
            label.is_not(None),
            ~exists().where(Forward.rule == rule.name, Forward.instance_id == Instance.id),
        )
    )
    if when.labels:
        query = query.where(label.in_(when.labels))
    if when.modalities:
        query = query.where(Series.modality.in_(when.modalities))
    if when.calling_aes:
        query = query.where(Instance.calling_ae.in_(when.calling_aes))
    if when.min_confidence > 0:
        query = query.where(confidence >= when.min_confidence)
    columns = ["rule", "instance_id", "destination", "status", "attempts", "queued_at"]
    with store.transaction() as conn:
        conn.execute(insert_ignore(store.engine, Forward.__table__).from_select(columns, query))


@dataclass(frozen=True)
class Claimed:
    forward_id: int
    sop_instance_uid: str
    file_path: str | None
    attempts: int


def claim(store: Store, rule: str, worker: str, limit: int, claim_seconds: float) -> list[Claimed]:
    """Up to `limit` due pending rows of `rule`, oldest first, claimed by `worker` until claim_seconds
    from now (a dead worker's claims expire; a restarted one takes its own back with release_claims)."""
    now = utcnow()
    until = now + timedelta(seconds=claim_seconds)
    free = and_(
        Forward.rule == rule,
        Forward.status == PENDING,
        or_(Forward.next_attempt_at.is_(None), Forward.next_attempt_at <= now),
        or_(Forward.claimed_until.is_(None), Forward.claimed_until < now),
    )
    with store.transaction() as conn:
        ids = list(conn.scalars(select(Forward.id).where(free).order_by(Forward.id).limit(limit)))
        if not ids:
            return []
        conn.execute(update(Forward).where(Forward.id.in_(ids), free).values(claimed_by=worker, claimed_until=until))
        rows = conn.execute(
            select(Forward.id, Instance.sop_instance_uid, Instance.file_path, Forward.attempts)
            .join(Instance, Instance.id == Forward.instance_id)
            .where(Forward.id.in_(ids), Forward.claimed_by == worker, Forward.claimed_until == until)
            .order_by(Forward.id)
        )
        return [Claimed(*row) for row in rows]


def release_claims(store: Store, worker: str) -> None:
    """Give back every claim of `worker`: a node killed mid-forward sends those rows again after its restart."""
    with store.transaction() as conn:
        conn.execute(
            update(Forward)
            .where(Forward.claimed_by == worker, Forward.status == PENDING)
            .values(claimed_by=None, claimed_until=None)
        )


def mark_sent(store: Store, forward_id: int) -> None:
    with store.transaction() as conn:
        conn.execute(
            update(Forward)
            .where(Forward.id == forward_id)
            .values(status=SENT, sent_at=utcnow(), last_error=None, claimed_by=None, claimed_until=None)
        )


def record_failure(
    store: Store, rows: list[Claimed], error: str, settings: RoutingSettings, refused: bool = False
) -> None:
    """Count a failed try: each row waits retry_seconds, doubled at each try, up to max_retry_seconds.
    A row the destination `refused` (a failure status, a missing file) is given up as failed once it
    has been tried routing.max_attempts times; an unreachable destination is waited for without end."""
    now = utcnow()
    with store.transaction() as conn:
        for row in rows:
            give_up = refused and row.attempts + 1 >= settings.max_attempts
            wait = retry_wait(row.attempts, settings.retry_seconds, settings.max_retry_seconds)
            conn.execute(
                update(Forward)
                .where(Forward.id == row.forward_id)
                .values(
                    status=FAILED if give_up else PENDING,
                    attempts=row.attempts + 1,
                    last_error=error,
                    next_attempt_at=None if give_up else now + wait,
                    claimed_by=None,
                    claimed_until=None,
                )
            )


@dataclass(frozen=True)
class RouteSummary:
    """One rule's queue as `slmnode routes` shows it."""

    rule: str
    destination: str
    pending: int
    retrying: int  # pending after a failed try
    sent: int
    failed: int
    last_sent_at: datetime | None
    last_error: str | None


def summary(engine: Engine) -> list[RouteSummary]:
    """Per rule and destination: how many instances wait, wait after a failure, went, were given up; the latest error."""
    def count(condition):
        return func.sum(case((condition, 1), else_=0))

    query = (
        select(
            Forward.rule,
            Forward.destination,
            count(and_(Forward.status == PENDING, Forward.attempts == 0)),
            count(and_(Forward.status == PENDING, Forward.attempts > 0)),
            count(Forward.status == SENT),
            count(Forward.status == FAILED),
            func.max(Forward.sent_at),
        )
        .group_by(Forward.rule, Forward.destination)
        .order_by(Forward.rule, Forward.destination)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        errors = {}
        for rule, where in ((row[0], row[1]) for row in rows):
            errors[rule, where] = conn.scalar(
                select(Forward.last_error)
                .where(Forward.rule == rule, Forward.destination == where, Forward.last_error.is_not(None))
                .order_by(Forward.id.desc())
                .limit(1)
            )
    return [RouteSummary(*row, errors[row[0], row[1]]) for row in rows]
