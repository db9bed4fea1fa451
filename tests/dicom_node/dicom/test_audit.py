"""The audit trail: one INFO line per association and per harmonization batch, never a patient identifier."""

import logging
import re
import time

from pynetdicom.dsutils import split_dataset

from dicom_node.dicom.sender import send_files
from tests.support.dicom_factory import mr_instance, write_files
from tests.support.helpers_dicom import TIMEOUT, start_node


def test_one_line_per_association_and_per_harmonization_batch(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    without_uid = mr_instance("t2_no_sop_uid", patient="Auditpatient")
    del without_uid.SOPInstanceUID  # 0xA900
    datasets = [mr_instance(f"t1 {i}", patient="Auditpatient") for i in range(3)] + [without_uid]
    paths = write_files(datasets, tmp_path / "in")
    sizes = sum(path.stat().st_size - split_dataset(path)[1] for path in paths)  # the datasets, not the file meta
    with start_node(tmp_path, dicom={"ae_title": "SLMNODE"}) as node:
        send_files("127.0.0.1", node.port, paths + paths[:1], calling_aet="SCANNER1", called_aet="SLMNODE",
                   timeout=TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while len(audit_lines(caplog)) < 1 or harmonized(caplog) < 3:  # the line comes as the connection closes
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
    [line] = audit_lines(caplog)
    size = sizes + paths[0].stat().st_size - split_dataset(paths[0])[1]  # the duplicate counts too
    assert re.fullmatch(
        rf"association from SCANNER1 at 127\.0\.0\.1:\d+ to SLMNODE: 5 instances, statuses 0x0000 x4, 0xA900 x1, "
        rf"{size} bytes, \d+\.\d\d s, released",
        line,
    ), line
    batches = [r.getMessage() for r in caplog.records if r.getMessage().startswith("harmonized")]
    assert all(re.fullmatch(r"harmonized (\d) of \1 queued descriptions with keyword-test-1 in \d+\.\d\d s", b)
               for b in batches), batches
    assert "Auditpatient" not in caplog.text and datasets[0].PatientID not in caplog.text


def audit_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "dicom_node.audit"]


def harmonized(caplog) -> int:
    """Descriptions the worker's batch lines say it harmonized."""
    return sum(int(m[1]) for r in caplog.records if (m := re.match(r"harmonized (\d+) of", r.getMessage())))
