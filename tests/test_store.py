import threading

import pytest
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import text

from dicom_node.store import InstanceRecord, MissingTag, Store

MR = "1.2.840.10008.5.1.4.1.1.4"


def mr_dataset(sop="1.2.3.1", series="1.2.3.100", study="1.2.3", description="T1 MPRAGE SAG"):
    ds = Dataset()
    ds.SOPClassUID = MR
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.Modality = "MR"
    ds.SeriesDescription = description
    ds.SeriesNumber = 3
    ds.Manufacturer = "SIEMENS"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P-123"
    return ds


def record(sop="1.2.3.1", series="1.2.3.100", study="1.2.3", description="T1 MPRAGE SAG") -> InstanceRecord:
    return InstanceRecord.from_dataset(mr_dataset(sop, series, study, description), ExplicitVRLittleEndian)


@pytest.fixture
def store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    yield store
    store.close()


def test_from_dataset_reads_tags_and_leaves_patient_out():
    rec = InstanceRecord.from_dataset(mr_dataset(description="  t2 tse  "), ExplicitVRLittleEndian)
    assert rec.sop_instance_uid == "1.2.3.1" and rec.series_uid == "1.2.3.100" and rec.study_uid == "1.2.3"
    assert rec.series_description == "  t2 tse  "
    assert rec.series_number == 3 and rec.manufacturer == "SIEMENS" and rec.modality == "MR"
    assert rec.transfer_syntax == ExplicitVRLittleEndian
    assert rec.patient_id is None and rec.patient_name is None

    kept = InstanceRecord.from_dataset(mr_dataset(), ExplicitVRLittleEndian, keep_patient_identifiers=True)
    assert kept.patient_id == "P-123" and kept.patient_name == "Doe^Jane"


def test_from_dataset_tolerates_missing_empty_and_odd_values():
    ds = mr_dataset()
    del ds.SeriesDescription
    ds.Manufacturer = ""
    ds.ProtocolName = ["AX", "T2"]  # multi-valued
    rec = InstanceRecord.from_dataset(ds, ExplicitVRLittleEndian)
    assert rec.series_description is None and rec.manufacturer is None
    assert rec.protocol_name == "AX\\T2"
    assert rec.accession_number is None and rec.body_part is None


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
    assert store.count_instances() == 5
    assert store.count_series() == 4
    assert store.count_studies() == 1
    assert store.count_queued() == 2  # blank descriptions are not queued; repeats are queued once


def test_a_second_store_on_the_same_file_sees_committed_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    first = Store(url)
    first.record_instance(record("1.1"))
    second = Store(url)  # as after a restart: nothing cached
    assert second.record_instance(record("1.1")) is False
    assert second.record_instance(record("1.2")) is True
    assert first.count_instances() == second.count_instances() == 2


def test_sqlite_store_is_in_wal_mode_with_full_sync(store):
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def test_eight_threads_at_once_all_stored(store):
    errors = []

    def sender(k):
        try:
            for i in range(40):
                assert store.record_instance(record(f"2.{k}.{i}", series=f"2.{k}", study=f"2.{k % 3}"))
        except Exception as exc:  # surfaced below: a thread's assert does not fail the test by itself
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert store.count_instances() == 320
    assert store.count_series() == 8
    assert store.count_studies() == 3
