"""Where a test's stores live: SQLite files in the test's folder, or, when SLMNODE_TEST_DB_URL names a
PostgreSQL server (postgresql+psycopg://user@127.0.0.1:55432/postgres), databases of their own there,
made fresh for the test and dropped after it (tests/conftest.py). The same suite then shows that the
store behaves the same on both."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

SERVER = os.environ.get("SLMNODE_TEST_DB_URL") or None

_made: dict[str, Path] = {}  # databases made on SERVER and not dropped yet: the folder each was made for
_admin: Engine | None = None


def store_url(folder: Path, name: str = "store") -> str:
    """The URL of the store `name` of the test whose folder is `folder`; the same for the same two, so a
    test can reopen it, and new on the server at the first call."""
    if SERVER is None:
        return f"sqlite:///{folder / name}.sqlite"
    database = "slmnode_test_" + hashlib.sha256(str(folder / name).encode()).hexdigest()[:24]
    if database not in _made:
        _run(f'CREATE DATABASE "{database}"')
        _made[database] = folder
    return make_url(SERVER).set(database=database).render_as_string(hide_password=False)


def drop_databases(under: Path | None = None) -> None:
    """Drop what store_url made on the server (for folders `under` a folder, or all); connections a test left
    open (a killed node's) go too."""
    for database, folder in list(_made.items()):
        if under is None or folder.is_relative_to(under):
            _run(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            del _made[database]


def _run(statement: str) -> None:
    global _admin
    if _admin is None:
        _admin = create_engine(SERVER, isolation_level="AUTOCOMMIT")
    with _admin.connect() as conn:
        conn.execute(text(statement))
