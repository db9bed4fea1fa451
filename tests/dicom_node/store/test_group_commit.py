"""Group commit: record_instance calls waiting at once share one transaction, and each returns only
once that transaction has committed; a bad record fails alone; SQLite's synchronous setting."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from dicom_node.node import Node
from dicom_node.store.database import Store, StoreError
from tests.support.helpers_dicom import KeywordHarmonizer, node_settings, record
from tests.support.store_counts import count_instances, count_series

WAITING = 12


def commits_of(store: Store) -> list:
    """A list that grows by one at every transaction the store commits."""
    commits = []
    event.listen(store.engine, "commit", lambda _conn: commits.append(1))
    return commits


class Calls:
    """record_instance(record) for each record, each in its own thread, as association threads do."""

    def __init__(self, store: Store, records):
        self.outcomes: dict[int, object] = {}
        self.threads = [threading.Thread(target=self._call, args=(store, n, r)) for n, r in enumerate(records)]
        for thread in self.threads:
            thread.start()

    def _call(self, store, n, rec):
        try:
            self.outcomes[n] = store.record_instance(rec)
        except Exception as exc:
            self.outcomes[n] = exc

    def finish(self) -> list:
        for thread in self.threads:
            thread.join(30)
        return [self.outcomes.get(n) for n in range(len(self.threads))]


@contextmanager
def another_writer_holding(url: str):
    """Another connection holds what an instance's INSERT needs, as another process could: SQLite's
    write lock, or on PostgreSQL a lock on the instances table."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        blocker = sqlite3.connect(parsed.database, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        return
    engine = create_engine(url)
    try:
        with engine.connect() as blocker:
            blocker.execute(text("LOCK TABLE instances IN EXCLUSIVE MODE"))  # until the rollback
            try:
                yield
            finally:
                blocker.rollback()
    finally:
        engine.dispose()


def while_another_writer_holds_the_database(url, calls):
    """Start `calls` while another writer holds the database, so that they pile up; check that none
    has returned yet; then let go."""
    with another_writer_holding(url):
        started = calls()
        time.sleep(0.5)
        assert started.outcomes == {}, "a call returned before its row could be committed"
    return started.finish()


def test_calls_waiting_at_once_share_one_commit(store):
    store.record_instance(record("0.0", series="4.1"))  # study, series and description known and cached
    commits = commits_of(store)
    records = [record(f"4.{n}", series="4.1") for n in range(WAITING)]

    outcomes = while_another_writer_holds_the_database(store.url, lambda: Calls(store, records))

    assert outcomes == [True] * WAITING
    assert count_instances(store) == WAITING + 1
    # The first commit may hold only what the writer had taken when it met the lock; the rest share one.
    assert len(commits) <= 2


def test_a_bad_record_fails_alone_and_duplicates_in_one_batch_are_told_apart(store):
    good = [record(f"5.{n}", series=f"5.{n % 3}") for n in range(WAITING)]  # three new series, racing
    bad = dataclasses.replace(good[0], sop_instance_uid=None)  # violates NOT NULL
    again = record("5.1", series="5.1")  # a duplicate of good[1], sent in the same batch
    records = [*good[:6], bad, *good[6:], again]

    outcomes = while_another_writer_holds_the_database(store.url, lambda: Calls(store, records))

    assert isinstance(outcomes[6], IntegrityError)
    assert sorted(outcomes[:6] + outcomes[7:], key=str) == [False] + [True] * WAITING
    assert count_instances(store) == WAITING
    assert count_series(store) == 3


def test_close_commits_what_is_waiting_then_refuses(url):
    store = Store(url)
    calls = Calls(store, [record(f"6.{n}") for n in range(WAITING)])
    store.close()
    outcomes = calls.finish()  # a call that came too late is refused; none is left hanging
    assert all(outcome is True or isinstance(outcome, StoreError) for outcome in outcomes)
    with pytest.raises(StoreError, match="closed"):
        store.record_instance(record("6.99"))
    reopened = Store(store.url)
    assert count_instances(reopened) == outcomes.count(True)
    reopened.close()


@pytest.mark.sqlite_only
@pytest.mark.parametrize("synchronous, pragma", [("full", 2), ("normal", 1)])
def test_synchronous_setting_reaches_every_sqlite_connection(tmp_path, synchronous, pragma):
    settings = node_settings(
        tmp_path, store={"url": f"sqlite:///{tmp_path / 'store.sqlite'}", "synchronous": synchronous}
    )
    store = Node(settings, KeywordHarmonizer()).store  # the node passes the setting on (nothing started)
    try:
        assert store.record_instance(record("7.1"))
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar() == pragma
    finally:
        store.close()
    with pytest.raises(StoreError, match="synchronous"):
        Store(settings.store.url, synchronous="off")
