"""Where a test's stores live: SQLite files in the test's folder, or, when SLMNODE_TEST_DB_URL names a
PostgreSQL server (postgresql+psycopg://user@127.0.0.1:55432/postgres), databases of their own there,
made fresh for the test and dropped after it (tests/conftest.py). The same suite then shows that the
store behaves the same on both. The ingest benchmark makes its PostgreSQL stores here too."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

SERVER = os.environ.get("SLMNODE_TEST_DB_URL") or None

_made: dict[str, Path] = {}  # databases made on SERVER and not dropped yet: the folder each was made for


def store_url(folder: Path, name: str = "store") -> str:
    """The URL of the store `name` of the test whose folder is `folder`; the same for the same two, so a
    test can reopen it, and new on the server at the first call."""
    if SERVER is None:
        return f"sqlite:///{folder / name}.sqlite"
    database = "slmnode_test_" + hashlib.sha256(str(folder / name).encode()).hexdigest()[:24]
    if database not in _made:
        _made[database] = folder
        return make_database(SERVER, database)
    return make_url(SERVER).set(database=database).render_as_string(hide_password=False)


def drop_databases(under: Path | None = None) -> None:
    """Drop what store_url made on the server (for folders `under` a folder, or all)."""
    for database, folder in list(_made.items()):
        if under is None or folder.is_relative_to(under):
            drop_database(SERVER, database)
            del _made[database]


def make_database(server: str, database: str) -> str:
    """A new, empty database on the server at URL `server`; its URL."""
    _run(server, f'CREATE DATABASE "{database}"')
    return make_url(server).set(database=database).render_as_string(hide_password=False)


def drop_database(server: str, database: str) -> None:
    """Drop it, with the connections still open to it (a killed node's)."""
    _run(server, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@functools.cache
def _admin(server: str) -> Engine:
    return create_engine(server, isolation_level="AUTOCOMMIT")


def _run(server: str, statement: str) -> None:
    with _admin(server).connect() as conn:
        conn.execute(text(statement))
