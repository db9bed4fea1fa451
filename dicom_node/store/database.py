"""The store: opening the node's database, and the C-STORE write path of studies, series and instances.

`record_instance` is the C-STORE hot path, and its cost is the commit: with synchronous=FULL every
commit waits for an fsync of the write-ahead log (about 2 ms on a virtual disk), far more than the
INSERT itself. So instances are committed in groups: each call hands its record to one writer thread
and waits; the writer takes every record waiting at that moment into one transaction, commits once,
and wakes them all. One association still pays one fsync per instance, but eight share one, and no
call returns before its own row is committed. Usually a record is a single INSERT: the ids of studies,
series and descriptions already seen are cached in memory (rows are never deleted, and ids are cached
only after their transaction committed, so a cached id is always valid). A new description is
inserted here too, queued, in the transaction of the instance that brought it.
Every other table has one owner module that writes it through `Store.transaction`: descriptions'
labels and the harmonization queue in mappings.py, corrections in corrections.py, reports in
reports.py (their claims and results in jobs/reports.py), model versions and promotions in
models/registry.py.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, event, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DatabaseError, DBAPIError

from dicom_node.dicom.header import InstanceRecord
from dicom_node.store.migrations import upgrade
from dicom_node.store.tables import (
    Base,
    Description,
    Instance,
    Series,
    Study,
    description_hash,
    spelling_hash,
    utcnow,
)


class StoreError(Exception):
    """The store cannot be used as asked (a clear message for the CLI; see also SchemaError)."""


# ---- connection -------------------------------------------------------------------------------


SYNCHRONOUS = ("full", "normal")  # SQLite's synchronous settings the node accepts
BUSY_SECONDS = 30  # how long a SQLite connection waits for another's lock


def insert_ignore(engine: Engine, table):
    """INSERT that skips a row whose unique key is already there, in the database's own words.

    Its result's rowcount says how many rows went in (1 or 0 for one row), as every driver reports it
    for a plain INSERT. Plain: inline() keeps SQLAlchemy from adding RETURNING to learn a new id (with
    it, PostgreSQL's driver reports -1), and SQLAlchemy keeps an INSERT's rowcount only when asked.
    """
    name = engine.dialect.name
    if name in ("sqlite", "postgresql"):
        statement = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[name](table).on_conflict_do_nothing()
    elif name in ("mysql", "mariadb"):
        statement = insert(table).prefix_with("IGNORE")
    else:
        raise StoreError(f"unsupported database {name!r}: use SQLite, PostgreSQL or MySQL")
    return statement.inline().execution_options(preserve_rowcount=True)


def _sqlite_engine(url: str, synchronous: str) -> Engine:
    """SQLite in WAL mode, synchronous=FULL unless asked otherwise, every write transaction BEGIN IMMEDIATE.

    WAL lets the CLI read while the node writes. synchronous=FULL fsyncs the WAL at every commit: a
    C-STORE Success tells the sender it may delete its copy, so the row must survive a power cut, not
    only a crash of the node. NORMAL fsyncs only at checkpoints: a commit survives the node's crash but
    may be lost with the machine. BEGIN IMMEDIATE takes the write lock at the start, so a writer waits
    out busy_timeout instead of failing when it upgrades a read.
    """
    if synchronous not in SYNCHRONOUS:
        raise StoreError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, not {synchronous!r}")
    engine = create_engine(url, connect_args={"check_same_thread": False}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")
        _into_wal(cursor)
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


# The extra that installs a database's driver, for the URLs that driver serves.
DRIVER_EXTRAS = {"postgresql": ("slmnode[postgres]", "psycopg 3", "postgresql+psycopg://")}


def _server_engine(url: str) -> Engine:
    """The engine of a database server (PostgreSQL, MySQL), or a StoreError that says which driver to install."""
    try:
        return create_engine(url, hide_parameters=True)
    except ModuleNotFoundError as exc:
        parsed = make_url(url)
        where = parsed.render_as_string(hide_password=True)
        message = f"the store {where} needs the database driver {exc.name!r}, which is not installed"
        extra = DRIVER_EXTRAS.get(parsed.get_backend_name())
        if extra is not None:
            name, driver, scheme = extra
            message += f": pip install '{name}' installs {driver}, for store URLs that begin {scheme}"
        raise StoreError(message) from None


def _into_wal(cursor) -> None:
    """PRAGMA journal_mode=WAL, waiting out another connection that is doing the same (nodes started
    together on a new file): the exclusive lock it takes is not waited for by busy_timeout."""
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "database is locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class DriverInsert:
    """An insert_ignore of `columns` as the database driver's own SQL, run on its cursor.

    The C-STORE path inserts one instance row per call; SQLAlchemy's execution machinery around it
    (execution context, events, result object) cost about 0.07 ms of CPU per row, more than the
    driver's insert itself (a one-row transaction took 0.174 ms, now 0.105), and on 2 cores shared
    with the senders that was 0.04-0.07 of the ratio to a bare SCP. The statement is still
    SQLAlchemy's, compiled once for the dialect, and each value goes through its column type's bind
    processing, so the row is stored exactly as a Core insert would store it.
    """

    def __init__(self, engine: Engine, table, columns: tuple[str, ...]):
        dialect = engine.dialect
        compiled = insert_ignore(engine, table).compile(dialect=dialect, column_keys=list(columns))
        self.sql = str(compiled)
        self._positions = compiled.positiontup if compiled.positional else None
        self._processors = {
            column: table.c[column].type.dialect_impl(dialect).bind_processor(dialect) for column in columns
        }

    def parameters(self, row: dict) -> tuple | dict:
        values = {
            column: process(row[column]) if process else row[column] for column, process in self._processors.items()
        }
        return tuple(values[name] for name in self._positions) if self._positions is not None else values


INSTANCE_COLUMNS = (
    "sop_instance_uid", "series_id", "sop_class_uid", "transfer_syntax", "file_path", "received_at", "calling_ae"
)


class _IdCache:
    """A bounded map from a natural key (UID, description hash) to a row id, least recently used out."""

    def __init__(self, capacity: int = 8192):
        self.capacity = capacity
        self._ids: OrderedDict[str, int] = OrderedDict()

    def get(self, key: str) -> int | None:
        row_id = self._ids.get(key)
        if row_id is not None:
            self._ids.move_to_end(key)
        return row_id

    def put(self, key: str, row_id: int) -> None:
        self._ids[key] = row_id
        self._ids.move_to_end(key)
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


# ---- the store --------------------------------------------------------------------------------

MAX_BATCH = 256  # instances committed in one transaction at most


class _Waiting:
    """A record_instance call waiting for the writer thread: its record, then its outcome."""

    __slots__ = ("record", "done", "inserted", "error")

    def __init__(self, record: InstanceRecord):
        self.record = record
        self.done = threading.Event()
        self.inserted = False
        self.error: Exception | None = None


class Store:
    """The node's memory. Safe to share between pynetdicom's association threads.

    `synchronous` ("full" or "normal") applies to SQLite only; see _sqlite_engine.
    """

    def __init__(self, url: str, synchronous: str = "full"):
        self.url = url
        # hide_parameters: a database error must not carry patient identifiers into a log.
        if url.startswith("sqlite"):
            self.engine = _sqlite_engine(url, synchronous)
        else:
            self.engine = _server_engine(url)
        # One writer at a time inside this process: SQLite serializes writers anyway, and waiting on
        # a lock is cheaper and fairer than spinning on busy_timeout. Other processes use busy_timeout.
        self._lock = threading.Lock()
        self._writer = self.engine.execution_options(write=True)
        self._study_ids = _IdCache()
        self._series_ids = _IdCache()
        self._description_ids = _IdCache()
        self._instance_insert = DriverInsert(self.engine, Instance.__table__, INSTANCE_COLUMNS)
        self._inserts = {
            model: insert_ignore(self.engine, model.__table__) for model in (Study, Series, Description)
        }
        # The group commit: record_instance calls wait in _waiting for the writer thread, started at
        # the first call; None in the queue tells the writer to finish.
        self._waiting: queue.SimpleQueue[_Waiting | None] = queue.SimpleQueue()
        self._waiting_lock = threading.Lock()  # nothing is queued after close() queued its None
        self._writer_thread: threading.Thread | None = None
        self._writer_connection: Connection | None = None  # the writer thread's own, opened at its first batch
        self._closed = False
        self.last_instance_at = float("-inf")  # time.monotonic() of the latest record_instance call
        try:
            upgrade(self._writer, Base.metadata)
        except DatabaseError as exc:  # no such folder, no permission, not a database, server down
            where = make_url(url).render_as_string(hide_password=True)
            raise StoreError(f"cannot open the store {where}: {exc.orig}") from None

    def close(self) -> None:
        """Commit what is waiting, stop the writer thread, close the connections."""
        with self._waiting_lock:
            if self._writer_thread is not None and not self._closed:
                self._waiting.put(None)
            self._closed = True
        if self._writer_thread is not None:
            self._writer_thread.join()
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction, one at a time in this process; modules with tables of their own write through it."""
        with self._lock, self._writer.begin() as conn:
            yield conn

    # -- C-STORE hot path

    def record_instance(self, record: InstanceRecord) -> bool:
        """Store one instance; returns once its row is committed. False when its SOP Instance UID
        was already stored. Raises what storing this record raised (other records are not affected)."""
        self.last_instance_at = time.monotonic()
        waiting = _Waiting(record)
        with self._waiting_lock:
            if self._closed:
                raise StoreError("the store is closed")
            if self._writer_thread is None:
                self._writer_thread = threading.Thread(target=self._write_batches, name="store-writer", daemon=True)
                self._writer_thread.start()
            self._waiting.put(waiting)
        waiting.done.wait()
        if waiting.error is not None:
            raise waiting.error
        return waiting.inserted

    def _write_batches(self) -> None:
        """The writer thread: commit every record waiting at that moment in one transaction, until close()."""
        while True:
            batch = [self._waiting.get()]
            while len(batch) < MAX_BATCH and batch[-1] is not None:
                try:
                    batch.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            closing = batch[-1] is None  # close() queues nothing after it
            if closing:
                batch.pop()
            if batch:
                self._commit_batch(batch)
            if closing:
                if self._writer_connection is not None:
                    self._writer_connection.close()
                return

    def _commit_batch(self, batch: list[_Waiting]) -> None:
        """Commit the batch's rows together; if that fails, one by one, so a bad row fails alone."""
        try:
            self._insert_and_commit(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:
                for waiting in batch:
                    try:
                        self._insert_and_commit([waiting])
                    except Exception as exc:
                        waiting.error = exc
        for waiting in batch:
            waiting.done.set()

    def _insert_and_commit(self, batch: list[_Waiting]) -> None:
        # One connection for the writer's lifetime saves a pool checkout per batch; after an error
        # SQLAlchemy replaces its database connection at the next begin().
        if self._writer_connection is None:
            self._writer_connection = self._writer.connect()
        conn = self._writer_connection
        learned: list[tuple[_IdCache, str, int]] = []
        with self._lock:
            with conn.begin():
                for waiting in batch:
                    waiting.inserted = self._insert_instance(conn, waiting.record, learned)
            for cache, key, row_id in learned:  # only now that they are committed
                cache.put(key, row_id)

    def _insert_instance(self, conn: Connection, record: InstanceRecord, learned: list) -> bool:
        series_id = self._series_ids.get(record.series_uid)
        if series_id is None:
            series_id = self._ensure_series(conn, record, learned)
        row = {
            "sop_instance_uid": record.sop_instance_uid,
            "series_id": series_id,
            "sop_class_uid": record.sop_class_uid,
            "transfer_syntax": record.transfer_syntax,
            "file_path": record.file_path,
            "received_at": utcnow(),
            "calling_ae": record.calling_ae,
        }
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute(self._instance_insert.sql, self._instance_insert.parameters(row))
            return cursor.rowcount == 1
        except self.engine.dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy would raise it, values hidden
            raise DBAPIError.instance(
                self._instance_insert.sql, None, exc, self.engine.dialect.loaded_dbapi.Error, hide_parameters=True
            ) from None
        finally:
            cursor.close()

    def _ensure_series(self, conn: Connection, record: InstanceRecord, learned: list) -> int:
        now = utcnow()
        study_id = self._study_ids.get(record.study_uid)
        if study_id is None:
            study = {
                "study_uid": record.study_uid,
                "accession_number": record.accession_number,
                "study_date": record.study_date,
                "patient_id": record.patient_id,
                "patient_name": record.patient_name,
                "first_seen": now,
            }
            study_id = self._insert_or_find(conn, Study, study, "study_uid", self._study_ids, learned)
        description_id = self._ensure_description(conn, record.series_description, learned)
        series = {
            "series_uid": record.series_uid,
            "study_id": study_id,
            "description_id": description_id,
            "modality": record.modality,
            "protocol_name": record.protocol_name,
            "manufacturer": record.manufacturer,
            "model_name": record.model_name,
            "body_part": record.body_part,
            "series_number": record.series_number,
            "series_date": record.series_date,
            "first_seen": now,
        }
        return self._insert_or_find(conn, Series, series, "series_uid", self._series_ids, learned)

    def _ensure_description(self, conn: Connection, text: str | None, learned: list) -> int | None:
        """The id of a description row, queueing the text for harmonization when it is new."""
        if text is None or not text.strip():
            return None
        key = description_hash(text)
        description_id = self._description_ids.get(key)
        if description_id is None:
            description = {"text_hash": key, "spelling_hash": spelling_hash(text), "text": text, "status": "queued",
                           "attempts": 0, "first_seen": utcnow()}
            description_id = self._insert_or_find(
                conn, Description, description, "text_hash", self._description_ids, learned
            )
        return description_id

    def description_id(self, conn: Connection, text: str) -> int:
        """The id of the description row of `text`, queueing it when new: a correction or an imported
        mapping may name a description no series has brought yet."""
        description_id = self._ensure_description(conn, text, learned=[])
        if description_id is None:
            raise ValueError("a blank series description cannot be mapped")
        return description_id

    def _insert_or_find(self, conn: Connection, model, row: dict, key: str, cache: _IdCache, learned: list) -> int:
        """The id of the row whose unique `key` column holds row[key], inserting `row` if there is none."""
        conn.execute(self._inserts[model], row)
        row_id = conn.scalar(select(model.id).where(getattr(model, key) == row[key]))
        learned.append((cache, row[key], row_id))  # cached once the transaction commits
        return row_id
