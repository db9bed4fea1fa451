"""Versioned schema migrations: upgrading the node never loses a store.

The store's version lives in the one-row table schema_version. A new store is created from the
current table definitions and stamped LATEST; an older one runs STEPS from its version on, all in
one transaction (SQLite and PostgreSQL roll DDL back with everything else), so an upgrade that
fails leaves the store as it was. A store written by a newer slmnode is refused, never guessed at.

A plain ordered list rather than Alembic: the node upgrades itself when it opens the store, with no
migration environment, revision files or extra command for a PACS administrator to run.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine


class SchemaError(Exception):
    """The database is not a store this slmnode can use."""


version_table = Table("schema_version", MetaData(), Column("version", Integer, nullable=False))


def _add_column(conn: Connection, table: str, column: str, type_) -> None:
    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {type_.compile(dialect=conn.dialect)}"))


def _v2_retry_backoff(conn: Connection) -> None:
    """A failed harmonization waits until next_attempt_at; the queue index covers both columns."""
    _add_column(conn, "descriptions", "next_attempt_at", DateTime())
    descriptions = Table("descriptions", MetaData(), Column("status", String), Column("next_attempt_at", DateTime))
    Index("ix_descriptions_status", descriptions.c.status).drop(conn)
    Index("ix_descriptions_queue", descriptions.c.status, descriptions.c.next_attempt_at).create(conn)


def _v3_reports_and_registry(conn: Connection) -> None:
    """Reports, what each model version made of them, and the registry of model versions: new tables only.

    Spelt out as they were in version 3, not taken from tables.py, so that a later change there
    cannot change what this step creates.
    """
    v3 = MetaData()
    Table("descriptions", v3, Column("id", Integer, primary_key=True))  # only as a foreign key target
    Table(
        "reports", v3,
        Column("id", Integer, primary_key=True),
        Column("report_key", String(200), nullable=False, unique=True),
        Column("source", String(8), nullable=False),
        Column("study_uid", String(64), index=True),
        Column("accession_number", String(64), index=True),
        Column("report_date", String(32)),
        *(Column(name, Text) for name in ("indication", "comparison", "findings", "impression")),
        Column("patient_id", String(64)),
        Column("patient_name", String(324)),
        Column("received_at", DateTime, nullable=False, index=True),
        Column("claimed_by", String(200)),
        Column("claimed_until", DateTime),
        Column("attempts", Integer, nullable=False),
        Column("last_error", Text),
        Column("next_attempt_at", DateTime),
    )
    Table(
        "report_results", v3,
        Column("id", Integer, primary_key=True),
        Column("report_id", Integer, ForeignKey("reports.id"), nullable=False, index=True),
        Column("model_version", String(200), nullable=False),
        Column("labels", Text, nullable=False),
        Column("impression", Text, nullable=False),
        Column("processed_by", String(200)),
        Column("processed_at", DateTime, nullable=False, index=True),
        UniqueConstraint("report_id", "model_version", name="uq_report_results_version"),
    )
    Table(
        "model_versions", v3,
        Column("id", Integer, primary_key=True),
        Column("version", String(200), nullable=False, unique=True),
        Column("path", Text, nullable=False),
        Column("adapter", Text),
        Column("metrics", Text),
        Column("note", Text),
        Column("created_at", DateTime, nullable=False),
    )
    Table(
        "promotions", v3,
        Column("id", Integer, primary_key=True),
        Column("model_version_id", Integer, ForeignKey("model_versions.id"), nullable=False, index=True),
        Column("action", String(16), nullable=False),
        Column("who", String(200)),
        Column("note", Text),
        Column("created_at", DateTime, nullable=False),
    )
    v3.create_all(conn, tables=[table for name, table in v3.tables.items() if name != "descriptions"])


def _v4_spellings(conn: Connection) -> None:
    """Each description's spelling_hash (what its case, blank and underscore variants share), filled in for
    the rows there are, so a correction covers every spelling of a description."""
    from dicom_node.store.tables import spelling_hash  # the rule itself, which this step must apply to old rows

    _add_column(conn, "descriptions", "spelling_hash", String(64))
    descriptions = Table(
        "descriptions", MetaData(), Column("id", Integer), Column("text", Text), Column("spelling_hash", String(64))
    )
    rows = conn.execute(select(descriptions.c.id, descriptions.c.text)).all()
    if rows:
        conn.execute(
            descriptions.update().where(descriptions.c.id == bindparam("row_id")).values(spelling_hash=bindparam("key")),
            [{"row_id": row_id, "key": spelling_hash(text)} for row_id, text in rows],
        )
    Index("ix_descriptions_spelling_hash", descriptions.c.spelling_hash).create(conn)


def _v5_routing(conn: Connection) -> None:
    """Routing: who sent each instance (instances.calling_ae), the outgoing queue (forwards) and the labels
    written back to Orthanc (orthanc_labels), spelt out as in version 5."""
    _add_column(conn, "instances", "calling_ae", String(16))
    v5 = MetaData()
    Table("instances", v5, Column("id", Integer, primary_key=True))  # only as foreign key targets
    Table("series", v5, Column("id", Integer, primary_key=True))
    forwards = Table(
        "forwards", v5,
        Column("id", Integer, primary_key=True),
        Column("rule", String(64), nullable=False),
        Column("instance_id", Integer, ForeignKey("instances.id"), nullable=False, index=True),
        Column("destination", String(300), nullable=False),
        Column("status", String(8), nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("last_error", Text),
        Column("next_attempt_at", DateTime),
        Column("claimed_by", String(200)),
        Column("claimed_until", DateTime),
        Column("queued_at", DateTime, nullable=False),
        Column("sent_at", DateTime),
        UniqueConstraint("rule", "instance_id", name="uq_forwards_rule_instance"),
        Index("ix_forwards_queue", "rule", "status", "next_attempt_at"),
    )
    orthanc_labels = Table(
        "orthanc_labels", v5,
        Column("id", Integer, primary_key=True),
        Column("series_id", Integer, ForeignKey("series.id"), nullable=False, unique=True),
        Column("label", String(16), nullable=False),
        Column("orthanc_id", String(64)),
        Column("written_at", DateTime, nullable=False),
    )
    forwards.create(conn)
    orthanc_labels.create(conn)
def _v6_users(conn: Connection) -> None:
    """Users of the web pages and the API, and their logins (page sessions and API tokens): new tables only,
    spelt out as they were in this version (see _v3_reports_and_registry)."""
    v6 = MetaData()
    Table(
        "users", v6,
        Column("id", Integer, primary_key=True),
        Column("name", String(200), nullable=False, unique=True),
        Column("role", String(16), nullable=False),
        Column("password_hash", Text, nullable=False),
        Column("created_at", DateTime, nullable=False),
    )
    Table(
        "web_sessions", v6,
        Column("id", Integer, primary_key=True),
        Column("token_hash", String(64), nullable=False, unique=True),
        Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        Column("kind", String(8), nullable=False),
        Column("csrf", String(64), nullable=False),
        Column("created_at", DateTime, nullable=False),
        Column("expires_at", DateTime, nullable=False, index=True),
    )
    v6.create_all(conn)


# STEPS[i] upgrades a store from version i + 1 to version i + 2. Append only; never edit a shipped step.
STEPS: list[Callable[[Connection], None]] = [
    _v2_retry_backoff, _v3_reports_and_registry, _v4_spellings, _v5_routing, _v6_users
]
LATEST = 1 + len(STEPS)


def stored_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table(version_table.name):
        return None
    return conn.scalar(select(version_table.c.version))


# The PostgreSQL advisory lock that one upgrade at a time holds (any constant; this one spells "slmnode").
UPGRADE_LOCK = 0x736C6D6E6F6465


def one_upgrade_at_a_time(conn: Connection) -> None:
    """Nodes started together on one database must not all create or upgrade its tables (one would fail on
    the others' half-made tables). On PostgreSQL the transaction takes an advisory lock, on SQLite the
    write lock (BEGIN IMMEDIATE, unless it began so: the Store's write engine does), held until it ends.
    Whoever waited then finds the tables made and has nothing to do."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
    elif conn.dialect.name == "sqlite" and not conn.connection.dbapi_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade(engine: Engine, metadata: MetaData) -> int:
    """Create or upgrade the schema in place, one process at a time; the version the store now has."""
    with engine.begin() as conn:
        one_upgrade_at_a_time(conn)
        version = stored_version(conn)
        if version is None:
            existing = set(inspect(conn).get_table_names())
            if existing & set(metadata.tables):
                raise SchemaError(f"{engine.url!r} holds tables but no schema_version: not an slmnode store")
            metadata.create_all(conn)
            version_table.create(conn)
            conn.execute(version_table.insert().values(version=LATEST))
            return LATEST
        if version > LATEST:
            raise SchemaError(
                f"this store has schema version {version}, newer than this slmnode understands ({LATEST}); "
                "upgrade slmnode or open a different store"
            )
        for step in STEPS[version - 1 :]:
            step(conn)
        conn.execute(version_table.update().values(version=LATEST))
        return LATEST
