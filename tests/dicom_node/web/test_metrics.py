"""/metrics scraped from a real node with its web server on (web.enabled): after instances are sent over
real associations, the counters grew by what was sent; no patient identifier appears anywhere in it."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pynetdicom import AE
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import Verification

from dicom_node.dicom.sender import send_files
from dicom_node.store.users import add_user
from tests.support.dicom_factory import brain_study, mr_instance, write_files
from tests.support.helpers_dicom import TIMEOUT, start_node
from tests.support.web import PASSWORD


def scrape(node) -> dict:
    """(sample name, frozen labels) -> value."""
    response = httpx.get(f"{node.web.url}/metrics", auth=("prom", PASSWORD), timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.text, {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def dataset_bytes(path) -> int:
    """What a C-STORE carries of a file: its dataset, after the preamble and file meta."""
    _, offset = split_dataset(path)
    return path.stat().st_size - offset


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_match_what_was_sent(tmp_path):
    study = brain_study(images_per_series=2, patient="Zyxwvut")
    paths = write_files(study, tmp_path / "in")
    with start_node(tmp_path, dicom={"allowed_calling_aes": ["SLMSCU"]}, web={"enabled": True, "port": 0}) as node:
        add_user(node.store, "prom", "viewer", PASSWORD)
        _, before = scrape(node)
        assert [o.status for o in send_files("127.0.0.1", node.port, paths, timeout=TIMEOUT)] == [0] * len(paths)
        stranger = AE(ae_title="STRANGER")
        stranger.add_requested_context(Verification)
        assert stranger.associate("127.0.0.1", node.port).is_rejected
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text, after = scrape(node)
            if value(after, "slmnode_harmonization_queue_depth") == 0:
                break
            time.sleep(0.2)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("slmnode_instances_total", status="success") == len(paths)
    assert grew("slmnode_received_bytes_total") == sum(dataset_bytes(path) for path in paths)
    assert grew("slmnode_cstore_seconds_count") == len(paths)
    assert grew("slmnode_associations_accepted_total") == 1
    assert grew("slmnode_associations_rejected_total", reason="calling_ae_not_recognized") == 1
    assert value(after, "slmnode_harmonization_queue_depth") == 0
    assert grew("slmnode_harmonization_batch_seconds_count") >= 1
    assert value(after, "slmnode_report_backlog") == 0
    assert value(after, "slmnode_model_info", version="keyword-test-1") == 1
    for identifier in ("Zyxwvut", study[0].PatientID, study[0].StudyInstanceUID, study[0].AccessionNumber):
        assert identifier not in text


def test_associations_beyond_the_maximum_count_as_local_limit_exceeded(tmp_path):
    with start_node(tmp_path, dicom={"max_associations": 1}, web={"enabled": True, "port": 0}) as node:
        add_user(node.store, "prom", "viewer", PASSWORD)
        _, before = scrape(node)
        ae = AE(ae_title="SCANNER1")
        ae.add_requested_context(Verification)
        first = ae.associate("127.0.0.1", node.port)
        assert ae.associate("127.0.0.1", node.port).is_rejected
        first.release()
        _, after = scrape(node)
    reason = ("slmnode_associations_rejected_total", (("reason", "local_limit_exceeded"),))
    assert after[reason] - before.get(reason, 0) == 1


def test_a_failure_answered_with_its_error_comment_is_counted_by_its_status_name(tmp_path):
    """0xA900 goes out as a status Dataset (it names the missing UID); /metrics still says which status it was."""
    ds = mr_instance("t1 without its series")
    del ds.SeriesInstanceUID
    paths = write_files([ds], tmp_path / "in")
    with start_node(tmp_path, web={"enabled": True, "port": 0}) as node:
        add_user(node.store, "prom", "viewer", PASSWORD)
        _, before = scrape(node)
        assert [o.status for o in send_files("127.0.0.1", node.port, paths, timeout=TIMEOUT)] == [0xA900]
        _, after = scrape(node)
    refused = ("slmnode_instances_total", (("status", "does_not_match_sop_class"),))
    assert after[refused] - before.get(refused, 0) == 1


def test_metrics_need_a_login(tmp_path):
    with start_node(tmp_path, web={"enabled": True, "port": 0}) as node:
        assert httpx.get(f"{node.web.url}/metrics", timeout=TIMEOUT).status_code == 401
        assert httpx.get(f"{node.web.url}/healthz", timeout=TIMEOUT).json() == {"status": "ok"}
        assert httpx.get(f"{node.web.url}/readyz", timeout=TIMEOUT).json()["status"] == "ready"
        url = node.web.url
    with pytest.raises(httpx.ConnectError):  # stopped with the node
        httpx.get(f"{url}/healthz", timeout=TIMEOUT)
