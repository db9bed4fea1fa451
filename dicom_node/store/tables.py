"""The store's tables: what the node keeps of each study, series and instance, and what each
distinct Series Description means (the model's label, its place in the queue, people's corrections).

The effective label of a description is never stored: queries derive it from the latest correction of
any of its spellings (case, blanks, underscores), else the model, so a correction also covers series
stored before it and spellings seen after it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from sqlalchemy import DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from slm.harmonizer import description_key

UID = String(64)


def utcnow() -> datetime:
    """Naive UTC: every time in the store is UTC, whatever the database does with time zones."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def description_hash(text: str) -> str:
    """The key of a description row: a 10,000-character description still fits a unique index."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def spelling_hash(text: str) -> str:
    """What the spellings of one description share (slm.harmonizer.description_key), hashed as text_hash
    is: a correction of one spelling labels them all."""
    return description_hash(description_key(text))


class Base(DeclarativeBase):
    pass


class Description(Base):
    """One distinct Series Description text, its place in the queue and the model's label."""

    __tablename__ = "descriptions"
    id: Mapped[int] = mapped_column(primary_key=True)
    text_hash: Mapped[str] = mapped_column(String(64), unique=True)
    spelling_hash: Mapped[str | None] = mapped_column(String(64), index=True)  # see spelling_hash()
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8))  # queued | mapped
    label: Mapped[str | None] = mapped_column(String(16), index=True)
    confidence: Mapped[float | None] = mapped_column(Float, index=True)
    model_version: Mapped[str | None] = mapped_column(String(200))
    mapped_at: Mapped[datetime | None] = mapped_column(DateTime)
    first_seen: Mapped[datetime] = mapped_column(DateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)  # backoff after a failure
    __table_args__ = (Index("ix_descriptions_queue", "status", "next_attempt_at"),)


class Correction(Base):
    __tablename__ = "corrections"
    id: Mapped[int] = mapped_column(primary_key=True)
    description_id: Mapped[int] = mapped_column(ForeignKey("descriptions.id"), index=True)
    label: Mapped[str] = mapped_column(String(16))
    who: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Study(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_uid: Mapped[str] = mapped_column(UID, unique=True)
    accession_number: Mapped[str | None] = mapped_column(String(64))
    study_date: Mapped[str | None] = mapped_column(String(32))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    patient_name: Mapped[str | None] = mapped_column(String(324))
    first_seen: Mapped[datetime] = mapped_column(DateTime)


class Series(Base):
    __tablename__ = "series"
    id: Mapped[int] = mapped_column(primary_key=True)
    series_uid: Mapped[str] = mapped_column(UID, unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    description_id: Mapped[int | None] = mapped_column(ForeignKey("descriptions.id"), index=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    protocol_name: Mapped[str | None] = mapped_column(Text)
    manufacturer: Mapped[str | None] = mapped_column(Text)
    model_name: Mapped[str | None] = mapped_column(Text)
    body_part: Mapped[str | None] = mapped_column(String(64))
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_date: Mapped[str | None] = mapped_column(String(32))
    first_seen: Mapped[datetime] = mapped_column(DateTime)


class Instance(Base):
    __tablename__ = "instances"
    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_class_uid: Mapped[str | None] = mapped_column(UID)
    transfer_syntax: Mapped[str | None] = mapped_column(UID)
    file_path: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime)
    calling_ae: Mapped[str | None] = mapped_column(String(16))  # who sent it: routing rules may ask


# ---- reports and the companion job ---------------------------------------------------------------


class Report(Base):
    """One radiology report (DICOM SR, HL7 ORU or an imported file), its text by section.

    It links to a study by Study Instance UID, else by Accession Number, at query time: a report may
    arrive before its images. The claim columns let several job runners share the work without doing
    a report twice; attempts and next_attempt_at make a failing report wait with backoff.
    """

    __tablename__ = "reports"
    id: Mapped[int] = mapped_column(primary_key=True)
    report_key: Mapped[str] = mapped_column(String(200), unique=True)  # sr:<SOP Instance UID>, hl7:..., file:...
    source: Mapped[str] = mapped_column(String(8))  # sr | hl7 | csv | text
    study_uid: Mapped[str | None] = mapped_column(UID, index=True)
    accession_number: Mapped[str | None] = mapped_column(String(64), index=True)
    report_date: Mapped[str | None] = mapped_column(String(32))
    indication: Mapped[str | None] = mapped_column(Text)
    comparison: Mapped[str | None] = mapped_column(Text)
    findings: Mapped[str | None] = mapped_column(Text)
    impression: Mapped[str | None] = mapped_column(Text)  # the radiologist's, when the report has one
    patient_id: Mapped[str | None] = mapped_column(String(64))
    patient_name: Mapped[str | None] = mapped_column(String(324))
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)


class ReportResult(Base):
    """What one model version made of one report; unique per (report, version), so each is done once."""

    __tablename__ = "report_results"
    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    model_version: Mapped[str] = mapped_column(String(200))
    labels: Mapped[str] = mapped_column(Text)  # JSON: the 13 findings and No Finding, "Yes"/"No"
    impression: Mapped[str] = mapped_column(Text)  # generated from the other sections
    processed_by: Mapped[str | None] = mapped_column(String(200))
    processed_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    __table_args__ = (UniqueConstraint("report_id", "model_version", name="uq_report_results_version"),)


# ---- routing: the outgoing queue ----------------------------------------------------------------


class Forward(Base):
    """One instance to forward by one routing rule: unique per (rule, instance), so each goes once.

    pending until the destination answers Success (sent) or refuses it routing.max_attempts times
    (failed); an unreachable destination only makes it wait (next_attempt_at, doubling). claimed_by
    and claimed_until keep two workers on one database from sending the same row at once.
    """

    __tablename__ = "forwards"
    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(64))
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    destination: Mapped[str] = mapped_column(String(300))  # AE@host:port when queued, for `slmnode routes`
    status: Mapped[str] = mapped_column(String(8))  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime)
    queued_at: Mapped[datetime] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    __table_args__ = (
        UniqueConstraint("rule", "instance_id", name="uq_forwards_rule_instance"),
        Index("ix_forwards_queue", "rule", "status", "next_attempt_at"),
    )


class OrthancLabel(Base):
    """The label last written to Orthanc as a series' metadata (orthanc.url), so that a new or corrected
    label is written once; orthanc_id None: Orthanc did not have the series when asked."""

    __tablename__ = "orthanc_labels"
    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), unique=True)
    label: Mapped[str] = mapped_column(String(16))
    orthanc_id: Mapped[str | None] = mapped_column(String(64))
    written_at: Mapped[datetime] = mapped_column(DateTime)


# ---- the model registry --------------------------------------------------------------------------


class ModelVersion(Base):
    """A trained model the node may run: where it is, how it scored, when it was made."""

    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(200), unique=True)  # slm.engine.Engine.version
    path: Mapped[str] = mapped_column(Text)
    adapter: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[str | None] = mapped_column(Text)  # JSON
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Promotion(Base):
    """The history of which version runs: the latest row is the active one; rollback adds a row too."""

    __tablename__ = "promotions"
    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # promote | rollback
    who: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


# ---- people who use the web pages and the API ----------------------------------------------------


class User(Base):
    """Someone who may log in to the pages or the API: a role and an argon2 password hash, never the password."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer | reviewer | admin
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class WebSession(Base):
    """A login: a page session (cookie) or an API token. Only the token's SHA-256 is kept, so a copy of
    the database opens no session; csrf is the token the session's forms must send back."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # page | api
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
