"""Bad input over one real association: every instance gets a proper status and the node stays up."""

from __future__ import annotations

import logging
import tracemalloc

import pytest
from pydicom import dcmwrite

from tests.support.dicom_factory import deflate_bomb, mr_instance, write_files
from dicom_node.dicom.status import StoreStatus
from dicom_node.dicom.sender import echo, send_files
from tests.support.helpers_dicom import TIMEOUT, start_node, stored_instances

LATIN_1 = "Séquence T1 Gd+ Schädel coronal"
UTF_8 = "T1 轴位 增强 – Kopf äöü"
JAPANESE = "頭部ＭＲＡ T1強調"

# pydicom warns, writing the test files, that LO holds 64 characters and a UI 64: both cases are on purpose.
pytestmark = [pytest.mark.filterwarnings("ignore:The value length"), pytest.mark.filterwarnings("ignore:Invalid value")]


def truncated(path, keep: int):
    """The file cut to its first `keep` bytes (negative: all but the last -keep)."""
    path.write_bytes(path.read_bytes()[:keep])
    return path


def in_the_middle_of(path, text: str):
    """The file cut halfway through the bytes of `text`."""
    data = path.read_bytes()
    return truncated(path, data.index(text.encode()) + len(text) // 2)


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    """Send every kind of bad input over one association; keep statuses, stored rows and logs."""
    folder = tmp_path_factory.mktemp("bad_input")
    without_uid = mr_instance("t2_no_sop_uid")
    del without_uid.SOPInstanceUID  # the request still names it, from the file meta
    long_uid = mr_instance("t1_long_uid")
    long_uid.SOPInstanceUID = "1.2." + "3" * 296
    cases = {
        "missing description": mr_instance(None),
        "empty description": mr_instance(""),
        "10,000 characters": mr_instance("t1 " + "x" * 9997),
        "ISO_IR 100": mr_instance(LATIN_1, character_set="ISO_IR 100"),
        "ISO_IR 192": mr_instance(UTF_8, character_set="ISO_IR 192"),
        "ISO 2022 IR 87": mr_instance(JAPANESE, character_set=["", "ISO 2022 IR 87"]),
        "truncated pixel data": mr_instance("t1_cut_in_pixels"),
        "truncated header": mr_instance("t1_cut_in_description"),
        "missing SOP Instance UID": without_uid,
        "300-character SOP Instance UID": long_uid,
        "duplicate": mr_instance("t1_sent_twice"),
        "after all that": mr_instance("t1_still_up"),
    }
    paths = dict(zip(cases, write_files(list(cases.values()), folder)))
    assert b"\x1b$B" in paths["ISO 2022 IR 87"].read_bytes()  # JIS X 0208 really is escape-coded
    long_uid.preamble = bytes(128)  # written as it is: the file meta (and so the request) keeps a valid UID
    dcmwrite(paths["300-character SOP Instance UID"], long_uid, enforce_file_format=False)
    truncated(paths["truncated pixel data"], -10)
    in_the_middle_of(paths["truncated header"], "t1_cut_in_description")
    order = list(cases)
    order.insert(order.index("duplicate"), "duplicate")
    logs = logging.getLogger()
    with start_node(folder) as node, CapturedLogs(logs) as captured:
        sent = send_files("127.0.0.1", node.port, [paths[name] for name in order], timeout=TIMEOUT)
        still_answers = echo("127.0.0.1", node.port, timeout=TIMEOUT)
        stored = stored_instances(node)
    statuses = {}
    for name, result in zip(order, sent):
        statuses.setdefault(name, []).append(result.status)
    return {"cases": cases, "statuses": statuses, "stored": stored, "echo": still_answers, "logs": captured.text}


class CapturedLogs(logging.Handler):
    """Every log record from every thread while in use (the SCP logs from its association threads)."""

    def __init__(self, logger):
        super().__init__(logging.DEBUG)
        self.logger, self.lines = logger, []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def __enter__(self):
        self.logger.addHandler(self)
        self.level_before = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *_):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level_before)

    @property
    def text(self):
        return "\n".join(self.lines)


SUCCESS = StoreStatus.SUCCESS


@pytest.mark.parametrize(
    "case, description",
    [
        ("missing description", None),
        ("empty description", None),
        ("10,000 characters", "t1 " + "x" * 9997),
        ("ISO_IR 100", LATIN_1),
        ("ISO_IR 192", UTF_8),
        ("ISO 2022 IR 87", JAPANESE),
    ],
)
def test_odd_descriptions_are_stored_decoded(outcome, case, description):
    assert outcome["statuses"][case] == [SUCCESS]
    assert outcome["stored"][outcome["cases"][case].SOPInstanceUID].description == description


@pytest.mark.parametrize(
    "case, status",
    [
        ("truncated pixel data", StoreStatus.CANNOT_UNDERSTAND),
        ("truncated header", StoreStatus.CANNOT_UNDERSTAND),
        ("missing SOP Instance UID", StoreStatus.DOES_NOT_MATCH_SOP_CLASS),
        ("300-character SOP Instance UID", StoreStatus.DOES_NOT_MATCH_SOP_CLASS),  # permanent: not 0xA700
    ],
)
def test_unusable_datasets_get_a_failure_status_and_no_row(outcome, case, status):
    assert outcome["statuses"][case] == [status]
    uid = outcome["cases"][case].get("SOPInstanceUID", outcome["cases"][case].file_meta.MediaStorageSOPInstanceUID)
    assert uid not in outcome["stored"]


def test_a_duplicate_instance_is_success_and_stored_once(outcome):
    assert outcome["statuses"]["duplicate"] == [SUCCESS, SUCCESS]
    assert outcome["cases"]["duplicate"].SOPInstanceUID in outcome["stored"]


def test_the_association_and_the_node_go_on(outcome):
    assert outcome["statuses"]["after all that"] == [SUCCESS]
    assert outcome["echo"] == SUCCESS
    assert len(outcome["stored"]) == 8


def test_failures_are_logged_without_patient_identifiers(outcome):
    logs = outcome["logs"]
    assert "truncated" in logs and "SOPInstanceUID" in logs
    for ds in outcome["cases"].values():
        for identifier in (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate):
            assert identifier not in logs


def test_a_store_that_cannot_write_answers_out_of_resources(tmp_path):
    (tmp_path / "received").write_text("a file where the storage folder should be")
    paths = write_files([mr_instance("t1_disk_trouble")], tmp_path / "in")
    with start_node(tmp_path, storage={"mode": "files"}) as node:
        (result,) = send_files("127.0.0.1", node.port, paths, timeout=TIMEOUT)
        assert result.status == StoreStatus.OUT_OF_RESOURCES
        assert stored_instances(node) == {}
        assert echo("127.0.0.1", node.port, timeout=TIMEOUT) == SUCCESS


def test_a_deflate_bomb_is_refused_with_bounded_memory(tmp_path):
    """200 KB on the wire that would inflate to 200 MB, against a node that inflates 8 MB at most."""
    bomb = deflate_bomb(mr_instance("t1_bomb"), 200 * 2**20, tmp_path / "bomb.dcm")
    assert bomb.stat().st_size < 2**20
    with start_node(tmp_path, dicom={"max_inflated_megabytes": 8}) as node:
        tracemalloc.start()
        try:
            (result,) = send_files("127.0.0.1", node.port, [bomb], timeout=TIMEOUT)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert result.status == StoreStatus.CANNOT_UNDERSTAND
        assert peak < 40 * 2**20
        assert stored_instances(node) == {}


def test_a_300_character_uid_is_refused_for_good_in_files_mode_too(tmp_path):
    """Its file name would be too long for the file system: once 0xA700 (retry later), which never helps."""
    ds = mr_instance("t1_long_uid_files")
    ds.SOPInstanceUID = "1.2." + "3" * 296
    ds.preamble = bytes(128)
    (tmp_path / "in").mkdir()
    dcmwrite(tmp_path / "in" / "long.dcm", ds, enforce_file_format=False)  # the file meta keeps a valid UID
    with start_node(tmp_path, storage={"mode": "files"}) as node:
        (result,) = send_files("127.0.0.1", node.port, [tmp_path / "in" / "long.dcm"], timeout=TIMEOUT)
        assert result.status == StoreStatus.DOES_NOT_MATCH_SOP_CLASS
        assert stored_instances(node) == {}
