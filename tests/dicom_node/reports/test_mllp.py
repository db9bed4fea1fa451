"""Live HL7 over MLLP: ORU^R01 in, ACK out only once the report is committed, AE for what is refused."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import yaml
from sqlalchemy import func, select

from dicom_node.node import Node
from dicom_node.reports.mllp import END, frame
from dicom_node.store.database import Store
from dicom_node.store.tables import Report
from tests.support.helpers_dicom import TIMEOUT, KeywordHarmonizer, free_port, node_settings
from tests.support.paths import DATA

FIRST_ORU = (DATA / "oru_r01.hl7").read_text().split("\nMSH")[0].replace("\n", "\r")


def oru(control_id: str) -> str:
    return FIRST_ORU.replace("|RIS000123|", f"|{control_id}|")


def unlinked(control_id: str) -> str:
    """An ORU without Study Instance UID (ZDS) or accession (OBR-18, OBR-3, OBR-2)."""
    message = oru(control_id).split("\rZDS")[0]
    return message.replace("OBR|1|PLC7781|FIL7781|", "OBR|1|||").replace("|ACC7781|", "||")


class Client:
    """An MLLP sender: one connection, a message out, its ACK back (MSA fields split)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""

    def send(self, message: str) -> list[str]:
        self.sock.sendall(frame(message))
        while END not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the listener closed the connection")
            self.buffer += data
        ack, self.buffer = self.buffer.split(END, 1)
        segments = ack.lstrip(b"\x0b").decode().split("\r")
        assert segments[0].startswith("MSH|") and "|ACK" in segments[0]
        return segments[1].split("|")  # MSA, code, control ID, reason

    def close(self) -> None:
        self.sock.close()


def count_reports(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Report))


@pytest.fixture
def node(tmp_path):
    settings = node_settings(tmp_path, hl7={"enabled": True, "port": 0}, reports={"interval_seconds": 0})
    with Node(settings, KeywordHarmonizer()) as node:
        yield node


def test_oru_is_acknowledged_after_it_is_stored_and_a_resend_adds_no_row(node):
    client = Client(node.hl7.port)
    try:
        assert client.send(oru("RIS1")) == ["MSA", "AA", "RIS1"]
        assert count_reports(node.store) == 1  # the ACK came after the commit
        assert client.send(oru("RIS1")) == ["MSA", "AA", "RIS1"]  # a resend: acknowledged, stored once
        assert client.send(oru("RIS2")) == ["MSA", "AA", "RIS2"]
    finally:
        client.close()
    assert count_reports(node.store) == 2
    assert "HL7 on 127.0.0.1:" in node.describe()


@pytest.mark.parametrize(
    "message, reason",
    [
        (oru("RIS3").replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01"), r"not an ORU\S\R01 message but ADT\S\A01"),
        (unlinked("RIS4"), "no Study Instance UID and no Accession Number"),
        ("hello, is this the PACS?", "text before the first MSH segment"),
        (oru("RIS5").replace("|2.5.1|", "|9.9|"), "HL7 version (MSH-12) missing or not supported"),
    ],
    ids=["not ORU", "no link", "not HL7", "bad version"],
)
def test_what_cannot_be_stored_is_answered_ae_with_the_reason(node, message, reason):
    client = Client(node.hl7.port)
    try:
        msa = client.send(message)
        assert msa[1] == "AE" and reason in msa[3]
        assert client.send(oru("RIS6")) == ["MSA", "AA", "RIS6"]  # the connection goes on
    finally:
        client.close()
    assert count_reports(node.store) == 1


def test_a_connection_from_an_address_not_allowed_is_closed(tmp_path):
    settings = node_settings(tmp_path, hl7={"enabled": True, "port": 0, "allowed_addresses": ["10.9.8.7"]})
    with Node(settings, KeywordHarmonizer()) as node:
        client = Client(node.hl7.port)
        with pytest.raises(ConnectionError):
            client.send(oru("RIS7"))
        client.close()
        assert count_reports(node.store) == 0


@pytest.mark.slow  # a node in its own process, killed while a sender streams messages, then started again
def test_kill_9_between_receipt_and_ack_loses_nothing_acknowledged(tmp_path):
    from tests.dicom_node.test_crash import start_serving

    port, hl7_port, messages = free_port(), free_port(), 300
    settings = node_settings(tmp_path, dicom={"port": port}, harmonizer={"kind": "rules"},
                             hl7={"enabled": True, "port": hl7_port}, reports={"interval_seconds": 0})
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump()))
    acknowledged = []

    def stream():
        client = Client(hl7_port)
        try:
            for n in range(messages):
                if client.send(oru(f"RIS{n}"))[1] == "AA":
                    acknowledged.append(n)
        except OSError:
            pass  # the node died under it
        finally:
            client.close()

    node = start_serving(config, port)
    sender = threading.Thread(target=stream)
    sender.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < messages // 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    node.kill()
    node.wait()
    sender.join(TIMEOUT)
    assert messages // 4 <= len(acknowledged) < messages
    store = Store(settings.store.url)
    try:
        with store.engine.connect() as conn:
            stored = set(conn.scalars(select(Report.report_key)))
        assert {f"hl7:GENHOSP:RIS{n}" for n in acknowledged} <= stored
    finally:
        store.close()
    # The sender sends again everything not acknowledged: each is acknowledged, each stored once.
    node = start_serving(config, port)
    try:
        client = Client(hl7_port)
        assert all(client.send(oru(f"RIS{n}"))[1] == "AA" for n in range(len(acknowledged), messages))
        client.close()
        store = Store(settings.store.url)
        assert count_reports(store) == messages
        store.close()
    finally:
        node.kill()
        node.wait()
