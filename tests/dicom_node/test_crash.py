"""Crash safety: SIGKILL `slmnode serve` while a sender streams 1,000 instances, then restart it.

Every instance the node acknowledged with Success must be in the store (row and file), and the
descriptions it had queued but not yet harmonized must get mapped after the restart.
"""

from __future__ import annotations

import threading

import pydicom
import pytest
import yaml

from tests.support.databases import store_url
from tests.support.dicom_factory import mr_instance, write_files
from dicom_node.dicom.sender import send_files
from dicom_node.store.database import Store
from tests.support.helpers_dicom import TIMEOUT, free_port, start_serving, stored_instances, wait_for
from tests.support.store_counts import count_queued

INSTANCES, PER_SERIES = 1000, 10
KILL_AFTER = 200  # acknowledged instances
SENDER_TIMEOUT = 5.0  # pynetdicom notices the dead peer only when a response is this late


def write_config(path, port, folder, poll_seconds):
    settings = {
        "dicom": {"bind_address": "127.0.0.1", "port": port, "network_timeout": TIMEOUT},
        "storage": {"mode": "files", "folder": str(folder / "received")},
        "store": {"url": store_url(folder, "node")},
        "harmonizer": {"kind": "rules", "poll_seconds": poll_seconds},
    }
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.mark.slow  # a node in its own process, 1,000 instances, a kill and a restart
def test_sigkill_mid_stream_loses_no_acknowledged_instance(tmp_path):
    port = free_port()
    datasets = [
        mr_instance(f"t2_tse_tra_{n // PER_SERIES:03d}", series_number=n // PER_SERIES, instance_number=n % PER_SERIES)
        for n in range(INSTANCES)
    ]
    # One series UID per description, so the node sees 100 series being built as it dies.
    for n, ds in enumerate(datasets):
        ds.StudyInstanceUID = datasets[0].StudyInstanceUID
        ds.SeriesInstanceUID = datasets[n - n % PER_SERIES].SeriesInstanceUID
    paths = write_files(datasets, tmp_path / "in")
    # A slow first worker: whatever is queued when the node dies is left for the restarted one.
    node = start_serving(write_config(tmp_path / "node.yaml", port, tmp_path, poll_seconds=600), port)

    acknowledged = []
    sender = threading.Thread(
        target=send_files,
        args=("127.0.0.1", port, paths),
        kwargs={"timeout": SENDER_TIMEOUT, "on_outcome": lambda o: o.status == 0 and acknowledged.append(o.path)},
    )
    sender.start()
    assert wait_for(lambda: len(acknowledged) >= KILL_AFTER, 120), "the sender stalled"
    node.kill()  # SIGKILL
    node.wait()
    sender.join(SENDER_TIMEOUT * 3)
    assert not sender.is_alive()
    assert KILL_AFTER <= len(acknowledged) < INSTANCES, "the node died after the stream ended"

    store = Store(store_url(tmp_path, "node"))
    stored = stored_instances(store)
    by_path = dict(zip(paths, datasets))
    for path in acknowledged:
        ds = by_path[path]
        row = stored[ds.SOPInstanceUID]
        assert row.description == ds.SeriesDescription
        assert pydicom.dcmread(row.file_path).SOPInstanceUID == ds.SOPInstanceUID
    assert count_queued(store) > 0  # the first worker never ran: queued work must survive the crash

    node = start_serving(write_config(tmp_path / "node.yaml", port, tmp_path, poll_seconds=0.2), port)
    try:
        assert wait_for(lambda: count_queued(store) == 0, 60), "queued descriptions were not mapped"
    finally:
        store.close()
        node.terminate()  # SIGTERM: a clean stop
        assert node.wait(30) == 0
