"""A real node on 127.0.0.1 for the DICOM tests: settings in tmp_path, a real store (tests/support/databases.py),
a bound port; `slmnode serve` in a process of its own; and instance records as the SCP hands them to the store."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import select

from dicom_node.config import Settings
from dicom_node.node import Node
from dicom_node.dicom.header import InstanceRecord
from dicom_node.dicom.sender import wait_until_answering
from dicom_node.store.tables import Description, Instance, Series
from slm.harmonizer import Prediction
from tests.support.databases import store_url
from tests.support.dicom_factory import mr_instance

TIMEOUT = 10.0  # seconds any single DICOM exchange in a test may take


class KeywordHarmonizer:
    """Deterministic and instant: T1 when the text says t1, FLAIR for dark-fluid, else Other."""

    version = "keyword-test-1"

    def harmonize(self, descriptions, known=None):
        def label(text: str) -> str:
            text = text.lower()
            return "FLAIR" if "dark-fluid" in text else "T1" if "t1" in text else "Other"

        return [Prediction(label(text), 1.0, self.version) for text in descriptions]


def node_settings(tmp_path: Path, dicom: dict | None = None, storage: dict | None = None, **sections) -> Settings:
    """Settings for a node bound to 127.0.0.1 on a port the system picks, its store in tmp_path."""
    return Settings.model_validate(
        {
            "dicom": {"bind_address": "127.0.0.1", "port": 0, "network_timeout": TIMEOUT, **(dicom or {})},
            "store": {"url": store_url(tmp_path, "node")},
            "storage": {"mode": "metadata", "folder": str(tmp_path / "received"), **(storage or {})},
            "harmonizer": {"poll_seconds": 0.1},
            **sections,
            # The report job yields to ingest for a moment only, so tests that send and wait stay short.
            "reports": {"ingest_quiet_seconds": 0.2, **sections.get("reports", {})},
        }
    )


def start_node(tmp_path: Path, **settings) -> Node:
    return Node(node_settings(tmp_path, **settings), KeywordHarmonizer()).start()


def free_port() -> int:
    """A port free right now on 127.0.0.1 (for a node in another process, which must be told its port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_process(config: Path) -> subprocess.Popen:
    """`slmnode --config CONFIG serve` in its own process; its log (standard error) goes to CONFIG with
    the suffix .log."""
    with open(config.with_suffix(".log"), "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "dicom_node.cli", "--config", str(config), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def answering(node: subprocess.Popen, config: Path, port: int) -> subprocess.Popen:
    """`node` (a serve_process) once it answers a C-ECHO on `port`; killed, and an AssertionError, if it does not."""
    if wait_until_answering("127.0.0.1", port, 60, lambda: node.poll() is None):
        return node
    node.kill()
    node.wait()
    raise AssertionError(f"slmnode serve did not come up: {config.with_suffix('.log').read_text()[-2000:]}")


def start_serving(config: Path, port: int) -> subprocess.Popen:
    return answering(serve_process(config), config, port)


def wait_for(condition, seconds: float) -> bool:
    """condition() once it is true, or when `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)
    return condition()


def stored_instances(node_or_store) -> dict:
    """SOP Instance UID -> row (.description, .modality, .transfer_syntax, .file_path), read back from the store."""
    store = getattr(node_or_store, "store", node_or_store)
    query = (
        select(
            Instance.sop_instance_uid,
            Description.text.label("description"),
            Series.modality,
            Instance.transfer_syntax,
            Instance.file_path,
        )
        .join(Series, Series.id == Instance.series_id)
        .outerjoin(Description, Description.id == Series.description_id)
    )
    with store.engine.connect() as conn:
        return {row.sop_instance_uid: row for row in conn.execute(query)}


def mr_dataset(sop="1.2.3.1", series="1.2.3.100", study="1.2.3", description="T1 MPRAGE SAG"):
    ds = mr_instance(description, study_uid=study, series_uid=series, series_number=3, patient="Doe")
    ds.SOPInstanceUID = sop
    return ds


def record(sop="1.2.3.1", series="1.2.3.100", study="1.2.3", description="T1 MPRAGE SAG") -> InstanceRecord:
    return InstanceRecord.from_dataset(mr_dataset(sop, series, study, description), ExplicitVRLittleEndian)
