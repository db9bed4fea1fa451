"""Eight senders at once, racing to create the same study, series and descriptions: nothing is lost."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydicom.uid import generate_uid

from tests.support.dicom_factory import brain_study, mr_instance, write_files
from dicom_node.dicom.sender import send_files
from tests.support.helpers_dicom import TIMEOUT, start_node, stored_instances
from tests.support.store_counts import count_queued, count_series

SENDERS = 8


@pytest.mark.slow  # eight senders for about a second, then the queue drains
def test_eight_senders_at_once_store_every_instance(tmp_path):
    shared_study, shared_series = generate_uid(), generate_uid()
    batches = []
    for sender in range(SENDERS):
        # Each sender: its own brain study (the same six descriptions as everyone else's) plus three
        # images of one series that all senders add to at the same time.
        datasets = brain_study(images_per_series=4, patient=f"Sender{sender}") + [
            mr_instance("t1_shared_series", study_uid=shared_study, series_uid=shared_series, instance_number=n)
            for n in range(3)
        ]
        batches.append((datasets, write_files(datasets, tmp_path / f"sender{sender}")))

    with start_node(tmp_path, dicom={"max_associations": SENDERS}) as node:
        with ThreadPoolExecutor(SENDERS) as pool:
            results = list(
                pool.map(
                    lambda batch: send_files("127.0.0.1", node.port, batch[1], calling_aet="SCANNER", timeout=TIMEOUT),
                    batches,
                )
            )
        stored = stored_instances(node)
        series = count_series(node.store)
        deadline = time.monotonic() + TIMEOUT
        while count_queued(node.store) and time.monotonic() < deadline:
            time.sleep(0.1)
        queued = count_queued(node.store)

    assert [outcome.status for outcomes in results for outcome in outcomes] == [0x0000] * (SENDERS * 27)
    sent = {ds.SOPInstanceUID: ds.SeriesDescription for datasets, _ in batches for ds in datasets}
    assert {uid: row.description for uid, row in stored.items()} == sent
    assert series == SENDERS * 6 + 1
    assert queued == 0  # the worker mapped all seven distinct descriptions
