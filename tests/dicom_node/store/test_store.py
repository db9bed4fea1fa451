import dataclasses
import importlib.util
import io
import sqlite3
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path

import pytest
from tests.support.helpers_dicom import mr_dataset, record
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from dicom_node.store import migrations
from dicom_node.store import mappings as queries
from dicom_node.dicom.header import InstanceRecord, MissingTag
from dicom_node.store.corrections import UnknownDescription, correct
from dicom_node.store.database import Store, StoreError
from dicom_node.store.migrations import SchemaError
from tests.support.store_counts import count_instances, count_queued, count_series, count_studies
from slm.harmonizer import Prediction
from tests.support.paths import DATA

STORE_V1 = DATA / "store_v1.sql"


def test_from_dataset_reads_tags_and_leaves_patient_out():
    rec = InstanceRecord.from_dataset(mr_dataset(description="  t2 tse  "), ExplicitVRLittleEndian)
    assert rec.sop_instance_uid == "1.2.3.1" and rec.series_uid == "1.2.3.100" and rec.study_uid == "1.2.3"
    assert rec.series_description == "  t2 tse  "
    assert rec.series_number == 3 and rec.manufacturer == "SIEMENS" and rec.modality == "MR"
    assert rec.transfer_syntax == ExplicitVRLittleEndian
    assert rec.patient_id is None and rec.patient_name is None

    kept = InstanceRecord.from_dataset(mr_dataset(), ExplicitVRLittleEndian, keep_patient_identifiers=True)
    assert kept.patient_id == mr_dataset().PatientID and kept.patient_name == "Doe^Test"


def test_from_dataset_tolerates_missing_empty_and_odd_values():
    ds = mr_dataset()
    del ds.SeriesDescription
    ds.Manufacturer = ""
    ds.ProtocolName = ["AX", "T2"]  # multi-valued
    del ds.AccessionNumber
    ds.BodyPartExamined = None
    rec = InstanceRecord.from_dataset(ds, ExplicitVRLittleEndian)
    assert rec.series_description is None and rec.manufacturer is None
    assert rec.protocol_name == "AX\\T2"
    assert rec.accession_number is None and rec.body_part is None


def test_from_dataset_decodes_iso_2022_and_drops_a_bad_number():
    ds = mr_dataset(description="頭部 T2 強調")
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]  # ASCII, with escapes to JIS X 0208
    ds.add_new(0x00200011, "IS", None)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    raw = fp.getvalue().replace(b"\x20\x00\x11\x00IS\x00\x00", b"\x20\x00\x11\x00IS\x04\x00abc ")
    received = read_dataset(io.BytesIO(raw), is_implicit_VR=False, is_little_endian=True)  # as the SCP sees it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about "abc"; the record must just not have it
        rec = InstanceRecord.from_dataset(received, ExplicitVRLittleEndian)
    assert rec.series_description == "頭部 T2 強調"
    assert rec.series_number is None


def test_a_nul_inside_a_text_value_is_dropped_so_the_instance_is_kept(store):
    """PostgreSQL text cannot hold NUL: a scanner writing one inside a value had its instance refused."""
    ds = mr_dataset(description="T2\0 AX\0")
    ds.Manufacturer = "SIE\0MENS"
    rec = InstanceRecord.from_dataset(ds, ExplicitVRLittleEndian)
    assert (rec.series_description, rec.manufacturer) == ("T2 AX", "SIEMENS")
    assert store.record_instance(rec) is True
    assert count_instances(store) == 1 and count_queued(store) == 1
    assert InstanceRecord.from_dataset(mr_dataset(description="\0\0 "), ExplicitVRLittleEndian).series_description is None


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_from_dataset_needs_the_three_uids(keyword):
    ds = mr_dataset()
    delattr(ds, keyword)
    with pytest.raises(MissingTag, match=keyword):
        InstanceRecord.from_dataset(ds, ExplicitVRLittleEndian)
    setattr(ds, keyword, "")
    with pytest.raises(MissingTag):
        InstanceRecord.from_dataset(ds, ExplicitVRLittleEndian)


def test_record_instance_is_idempotent_and_queues_new_descriptions(store):
    assert store.record_instance(record("1.1")) is True
    assert store.record_instance(record("1.1")) is False
    assert store.record_instance(record("1.2")) is True
    assert store.record_instance(record("1.3", series="1.2.3.200", description="ep2d_diff")) is True
    assert store.record_instance(record("1.4", series="1.2.3.300", description="T1 MPRAGE SAG")) is True
    assert store.record_instance(record("1.5", series="1.2.3.400", description="   ")) is True
    assert count_instances(store) == 5
    assert count_series(store) == 4
    assert count_studies(store) == 1
    assert count_queued(store) == 2  # blank descriptions are not queued; repeats are queued once


def test_patient_identifiers_are_stored_only_when_allowed(store):
    kept = InstanceRecord.from_dataset(mr_dataset("1.1", study="7.1"), ExplicitVRLittleEndian, True)
    store.record_instance(kept)
    store.record_instance(record("1.2", series="7.2.1", study="7.2"))
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT study_uid, patient_id, patient_name FROM studies ORDER BY study_uid"))
        assert rows.all() == [("7.1", kept.patient_id, "Doe^Test"), ("7.2", None, None)]


def test_a_failed_write_keeps_patient_identifiers_out_of_its_message(store):
    kept = InstanceRecord.from_dataset(mr_dataset(), ExplicitVRLittleEndian, keep_patient_identifiers=True)
    broken = dataclasses.replace(kept, sop_instance_uid=None)  # violates NOT NULL after the study row
    with pytest.raises(IntegrityError) as failure:
        store.record_instance(broken)
    assert "Doe^Test" not in str(failure.value) and kept.patient_id not in str(failure.value)
    assert count_studies(store) == 0  # the whole transaction rolled back
    assert store.record_instance(kept) is True  # and nothing half-cached got in the way


def test_a_second_store_on_the_same_database_sees_committed_rows(url):
    first = Store(url)
    first.record_instance(record("1.1"))
    second = Store(url)  # as after a restart: nothing cached
    assert second.record_instance(record("1.1")) is False
    assert second.record_instance(record("1.2")) is True
    assert count_instances(first) == count_instances(second) == 2


@pytest.mark.sqlite_only
def test_sqlite_store_is_in_wal_mode_with_full_sync(store):
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def at_once(count: int, target) -> list[Exception]:
    """Run target(k) for k < count in as many threads at once; what they raised."""
    errors = []

    def run(k):
        try:
            target(k)
        except Exception as exc:  # a thread's failure does not fail the test by itself
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_eight_threads_at_once_all_stored(store):
    def sender(k):
        for i in range(40):
            assert store.record_instance(record(f"2.{k}.{i}", series=f"2.{k}", study=f"2.{k % 3}"))

    assert at_once(8, sender) == []
    assert count_instances(store) == 320
    assert count_series(store) == 8
    assert count_studies(store) == 3


def test_two_stores_on_one_database_write_at_once(url):
    """Two processes' worth of writers (no shared lock): SQLite's busy_timeout makes them take turns,
    PostgreSQL's unique keys make a second insert of one row a no-op."""
    stores = [Store(url), Store(url)]

    def sender(k):
        for i in range(50):
            stores[k % 2].record_instance(record(f"3.{k}.{i}", series=f"3.{k}"))

    assert at_once(4, sender) == []
    assert count_instances(stores[0]) == 200


@pytest.mark.slow  # sleeps through three retry delays
def test_queue_predictions_and_failures(store):
    store.record_instance(record("1.1", series="9.1", description="t1_mprage"))
    store.record_instance(record("1.2", series="9.2", description="ep2d_diff"))
    assert queries.queued_descriptions(store, 10) == ["t1_mprage", "ep2d_diff"]
    assert queries.queued_descriptions(store, 1) == ["t1_mprage"]

    queries.save_predictions(store, ["t1_mprage"], [Prediction("T1", 0.9, "test-1")])
    # Waits of 0.5 s then 1 s, checked with margins that a loaded machine's stalls do not eat.
    queries.record_failure(store, ["ep2d_diff"], "RuntimeError: boom", retry_seconds=0.5)
    assert queries.queued_descriptions(store, 10) == []  # waiting out its backoff
    time.sleep(0.55)
    assert queries.queued_descriptions(store, 10) == ["ep2d_diff"]
    queries.record_failure(store, ["ep2d_diff"], "RuntimeError: boom again", retry_seconds=0.5)
    time.sleep(0.55)
    assert queries.queued_descriptions(store, 10) == []  # the second wait is twice as long
    time.sleep(0.5)
    assert queries.queued_descriptions(store, 10) == ["ep2d_diff"]

    by_text = {m.description: m for m in queries.mappings(store.engine)}
    assert by_text["t1_mprage"].label == "T1" and by_text["t1_mprage"].status == "mapped"
    assert by_text["ep2d_diff"].status == "queued" and by_text["ep2d_diff"].attempts == 2
    with pytest.raises(ValueError):
        queries.save_predictions(store, ["a", "b"], [Prediction("T1", 0.5, "test-1")])


def test_latest_correction_wins_also_for_series_stored_before(store):
    store.record_instance(record("1.1", series="9.1", description="AX FLAIR"))
    queries.save_predictions(store, ["AX FLAIR"], [Prediction("T2", 0.6, "test-1")])
    assert queries.series_mappings(store.engine, series_uid="9.1")[0].label == "T2"

    correct(store, "AX FLAIR", "FLAIR", who="dr. a", note="fluid suppressed")
    store.record_instance(record("1.2", series="9.2", description="AX FLAIR"))
    views = queries.series_mappings(store.engine, study_uid="1.2.3")
    assert [(v.series_uid, v.label, v.source) for v in views] == [
        ("9.1", "FLAIR", "corrected"),
        ("9.2", "FLAIR", "corrected"),
    ]

    correct(store, " AX FLAIR ", "T2", who="dr. b", note=None)  # outer blanks forgiven
    assert queries.series_mappings(store.engine, series_uid="9.2")[0].label == "T2"
    queries.save_predictions(store, ["AX FLAIR"], [Prediction("T1", 0.99, "test-2")])  # a newer model still loses
    mapping = queries.mappings(store.engine)[0]
    assert (mapping.label, mapping.model_label, mapping.corrected, mapping.series_count) == ("T2", "T1", True, 2)
    assert [c.who for c in queries.corrections(store.engine)] == ["dr. a", "dr. b"]


def test_correct_refuses_unknown_descriptions_and_labels(store):
    store.record_instance(record("1.1", description="T2 TSE"))
    with pytest.raises(UnknownDescription, match="T3 TSE"):
        correct(store, "T3 TSE", "T2", who="me")
    with pytest.raises(ValueError, match="not one of"):
        correct(store, "T2 TSE", "PD", who="me")
    assert queries.corrections(store.engine) == []


def test_mapping_filters(store):
    for i, (text_, label, confidence) in enumerate(
        [
            ("t1_mprage", "T1", 0.95),
            ("t2_tse", "T2", 0.40),
            ("ep2d_diff_b1000", "DWI", 0.70),
            ("100%_scout", "Other", 0.2),
        ]
    ):
        store.record_instance(record(f"1.{i}", series=f"9.{i}", description=text_))
        queries.save_predictions(store, [text_], [Prediction(label, confidence, "test-1")])
    store.record_instance(record("1.9", series="9.9", description="queued one"))
    correct(store, "t2_tse", "FLAIR", who="me")

    def texts(**filters):
        return [m.description for m in queries.mappings(store.engine, **filters)]

    assert texts() == ["100%_scout", "ep2d_diff_b1000", "queued one", "t1_mprage", "t2_tse"]
    assert texts(label="FLAIR") == ["t2_tse"] and texts(label="T2") == []
    assert texts(below=0.5) == ["100%_scout", "t2_tse"]
    assert texts(search="DIFF") == ["ep2d_diff_b1000"]
    assert texts(search="%") == ["100%_scout"]  # LIKE wildcards are taken literally
    assert texts(search="_d") == ["ep2d_diff_b1000"]
    assert texts(unreviewed=True, below=0.5) == ["100%_scout"]
    assert texts(since=datetime(2000, 1, 1)) == texts() and texts(since=datetime(2999, 1, 1)) == []


def v1_store(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        conn.executescript(STORE_V1.read_text())
    return f"sqlite:///{path}"


def schema(url: str) -> dict:
    inspector = inspect(create_engine(url))
    return {
        table: (
            sorted((c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)),
            sorted((i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(table)),
            sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
            sorted((tuple(f["constrained_columns"]), f["referred_table"]) for f in inspector.get_foreign_keys(table)),
        )
        for table in inspector.get_table_names()
    }


@pytest.mark.parametrize("round_", range(10))  # a race: each round is a new chance to lose it
def test_stores_opened_at_once_on_an_empty_database_all_open(url, round_):
    """Nodes started together: one creates the schema, the others wait for it and find it made."""
    opened: list[Store] = []
    start = threading.Barrier(6)

    def open_store(_k):
        start.wait(timeout=30)
        opened.append(Store(url))

    assert at_once(6, open_store) == []
    with opened[0].engine.connect() as conn:
        assert migrations.stored_version(conn) == migrations.LATEST
        assert conn.scalar(select(func.count()).select_from(migrations.version_table)) == 1
    for store in opened:
        store.close()


def test_a_missing_database_driver_names_the_extra_to_install(tmp_path):
    if importlib.util.find_spec("psycopg2") is not None:
        pytest.skip("psycopg2 is installed here")
    with pytest.raises(StoreError) as refused:
        Store("postgresql+psycopg2://slmnode:secret@127.0.0.1:5432/pacs")
    message = str(refused.value)
    assert "needs the database driver 'psycopg2', which is not installed" in message
    assert "pip install 'slmnode[postgres]'" in message and "postgresql+psycopg://" in message
    assert "secret" not in message


@pytest.mark.sqlite_only  # the version 1 store is a SQLite script
def test_an_older_store_is_upgraded_without_losing_rows(tmp_path):
    url = v1_store(tmp_path / "old.sqlite")
    store = Store(url)
    with store.engine.connect() as conn:
        assert migrations.stored_version(conn) == migrations.LATEST
    fresh = f"sqlite:///{tmp_path / 'new.sqlite'}"
    Store(fresh).close()
    assert schema(url) == schema(fresh)
    assert (count_studies(store), count_series(store), count_instances(store)) == (1, 2, 3)
    by_text = {m.description: m for m in queries.mappings(store.engine)}
    assert (by_text["t1_mprage_sag"].label, by_text["t1_mprage_sag"].series_count) == ("T1", 1)
    assert (by_text["ep2d_diff"].label, by_text["ep2d_diff"].corrected, by_text["ep2d_diff"].attempts) == (
        "DWI",
        True,
        2,
    )
    assert queries.queued_descriptions(store, 10) == ["ep2d_diff"]  # an upgraded queue is due at once
    assert store.record_instance(record("1.2.826.0.1.3680043.8.498.11")) is False  # v1 rows still count
    assert store.record_instance(
        record("9.9", series="1.2.826.0.1.3680043.8.498.2", study="1.2.826.0.1.3680043.8.498.1")
    )
    assert queries.series_mappings(store.engine, series_uid="1.2.826.0.1.3680043.8.498.2")[0].instances == 3
    # v1 rows got their spelling: the v1 correction of "ep2d_diff" covers a spelling that arrives now.
    assert store.record_instance(record("9.10", series="9.20", study="9.30", description="EP2D DIFF"))
    assert next(m for m in queries.mappings(store.engine) if m.description == "EP2D DIFF").label == "DWI"


def test_a_store_from_a_newer_slmnode_is_refused(url):
    Store(url).close()
    with create_engine(url).begin() as conn:
        conn.execute(migrations.version_table.update().values(version=migrations.LATEST + 1))
    with pytest.raises(SchemaError, match=f"schema version {migrations.LATEST + 1}, newer"):
        Store(url)


def test_a_database_that_is_not_a_store_is_refused(url):
    with create_engine(url).begin() as conn:
        conn.execute(text("CREATE TABLE instances (x INTEGER)"))
    with pytest.raises(SchemaError, match="not an slmnode store"):
        Store(url)


def test_workers_sharing_a_queue_claim_each_description_once(url):
    """Two stores stand for two nodes' workers: a claimed description is left to its claimer."""
    stores = [Store(url), Store(url)]
    texts = [f"desc {n}" for n in range(40)]
    for n, description in enumerate(texts):
        stores[0].record_instance(record(f"8.{n}", series=f"8.{n}", description=description))
    claimed = []

    def worker(k):
        while batch := queries.claim_descriptions(stores[k % 2], 3, seconds=60):
            claimed.extend(batch)

    assert at_once(4, worker) == []
    assert sorted(claimed) == sorted(texts)
    assert queries.queued_descriptions(stores[1], 50) == []  # all claimed, none mapped yet
    for store in stores:
        store.close()


def test_a_claim_nobody_finished_comes_due_again(store):
    store.record_instance(record("8.1", series="8.1", description="ep2d_diff"))
    assert queries.claim_descriptions(store, 10, seconds=0.3) == ["ep2d_diff"]
    assert queries.claim_descriptions(store, 10, seconds=0.3) == []
    time.sleep(0.4)  # as when the node that claimed it died
    assert queries.claim_descriptions(store, 10, seconds=60) == ["ep2d_diff"]
    queries.save_predictions(store, ["ep2d_diff"], [Prediction("DWI", 0.9, "rules-1")])
    assert count_queued(store) == 0


def test_a_new_description_is_mapped_before_re_harmonized_ones(store):
    store.record_instance(record("1.1", series="9.1", description="t1_mprage"))
    queries.save_predictions(store, ["t1_mprage"], [Prediction("T1", 0.9, "old-1")])
    assert queries.requeue_descriptions(store, except_version="new-2") == 1
    store.record_instance(record("1.2", series="9.2", description="ep2d_diff"))
    assert queries.queued_descriptions(store, 10) == ["ep2d_diff", "t1_mprage"]
    assert next(m for m in queries.mappings(store.engine) if m.description == "t1_mprage").label == "T1"  # meanwhile
