"""A running node switches to a newly promoted model version while a sender streams over one association."""

from __future__ import annotations

import threading
import time

import pytest
from tests.support.dicom_factory import mr_instance
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage
from pynetdicom import AE

from dicom_node.store import mappings as queries
from dicom_node.models import registry
from dicom_node.node import Node
from tests.support.helpers_dicom import TIMEOUT, node_settings
from tests.support.store_counts import count_instances
from slm.engine import load_engine


def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def mapped_by(store) -> dict[str, str | None]:
    """description -> the model version that mapped it (None while queued)."""
    return {m.description: m.model_version if m.status == "mapped" else None for m in queries.mappings(store.engine)}


@pytest.mark.slow  # sends until the running node has switched models
def test_a_promotion_reaches_a_running_node_without_dropping_the_association(tmp_path, tiny_model_folders):
    folders = tiny_model_folders
    v1 = load_engine(str(folders[0]), device="cpu")
    settings = node_settings(tmp_path, model={"device": "cpu"}, retraining={"follow_seconds": 0.1})
    with Node(settings, v1, v1) as node:
        for folder in folders:
            registry.register(node.store, load_engine(str(folder), device="cpu").version, str(folder))
        v2 = registry.versions(node.store)[1].version
        registry.promote(node.store, v1.version, who="test")

        ae = AE(ae_title="SCANNER1")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
        ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
        association = ae.associate("127.0.0.1", node.port)
        assert association.is_established
        statuses, sent = [], []

        def send(description: str) -> None:
            answer = association.send_c_store(mr_instance(description, series_number=len(sent) + 1))
            statuses.append(answer.Status if answer else None)
            sent.append(description)

        early = [f"early series {n}" for n in range(4)]
        for description in early:
            send(description)
        wait_until(lambda: all(mapped_by(node.store).get(d) for d in early))

        promotion = threading.Thread(target=registry.promote, args=(node.store, v2, "test", "while streaming"))
        promotion.start()
        deadline = time.monotonic() + 20
        while node.worker.harmonizer.version != v2:  # the same association goes on while the node switches
            assert time.monotonic() < deadline, "the node did not switch"
            send(f"during the switch {len(sent)}")
            time.sleep(0.02)
        promotion.join()
        late = [f"late series {n}" for n in range(4)]
        for description in late:
            send(description)
        assert association.is_established
        association.release()

        assert statuses == [0x0000] * len(sent)
        assert count_instances(node.store) == len(sent)
        wait_until(lambda: all(mapped_by(node.store).values()))
        versions = mapped_by(node.store)
        assert {versions[d] for d in early} == {v1.version}
        assert {versions[d] for d in late} == {v2}
        assert set(versions.values()) == {v1.version, v2}
        wait_until(lambda: node.report_job.model.version == v2)  # the report job too, between two of its runs
        assert node.model_version == v2


def test_a_version_that_does_not_load_leaves_the_node_on_its_model(tmp_path, caplog, tiny_model_folder):
    folder = tiny_model_folder
    v1 = load_engine(str(folder), device="cpu")
    settings = node_settings(tmp_path, model={"device": "cpu"}, retraining={"follow_seconds": 0.1},
                             reports={"interval_seconds": 0})
    with Node(settings, v1, v1) as node:
        registry.register(node.store, "gone-0123456789ab", str(tmp_path / "deleted"))
        registry.register(node.store, "other-0123456789ab", str(folder))  # a folder now holding other weights
        for version in ("gone-0123456789ab", "other-0123456789ab"):
            registry.promote(node.store, version, who="test")
            refusal = f"cannot switch to model {version}, keeping {v1.version}"
            wait_until(lambda: refusal in caplog.text)
            assert node.model_version == node.worker.harmonizer.version == v1.version
    assert f"{folder} holds model {v1.version}, not the registered other-0123456789ab" in caplog.text
