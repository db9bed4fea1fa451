"""The listening port under a hostile peer on the same network: idle sockets, half a ClientHello, junk
connections by the dozen. Legitimate senders must keep getting through (dicom/server.py)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time

from pynetdicom import AE
from pynetdicom.sop_class import Verification

from dicom_node.dicom.network import client_tls_context
from dicom_node.dicom.sender import echo
from tests.support.helpers_dicom import TIMEOUT, start_node

JUNK = b"GET / HTTP/1.1\r\n\r\n"
CLIENT_HELLO_START = bytes.fromhex("160301020001")  # a TLS record header and the handshake type, then nothing
STALLED_REQUEST = bytes.fromhex("010000001000")  # an A-ASSOCIATE-RQ PDU header promising 4 KiB, then nothing


def tls_settings(pki) -> dict:
    return {
        "enabled": True,
        "certificate": pki["server"][0],
        "private_key": pki["server"][1],
        "ca_certificates": pki["ca"],
        "verify_clients": True,
    }


@contextlib.contextmanager
def idle_connections(port: int, count: int, first_bytes: bytes = b""):
    """`count` connections that send `first_bytes` (maybe nothing) and then stay silent."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(count)]
    try:
        for sock in sockets:
            sock.sendall(first_bytes)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def tls_echo(port: int, client: ssl.SSLContext) -> int | None:
    """A C-ECHO with a client certificate, every wait (the TLS handshake too) bounded by TIMEOUT."""
    ae = AE(ae_title="SCANNER1")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = TIMEOUT
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, tls_args=(client, "127.0.0.1"))
    if not assoc.is_established:
        return None
    status = assoc.send_c_echo().Status
    assoc.release()
    return status


def test_an_idle_socket_or_half_a_client_hello_does_not_stall_the_tls_port(tmp_path, pki):
    client = client_tls_context(pki["ca"], *pki["client"])
    with start_node(tmp_path, dicom={"tls": tls_settings(pki)}) as node:
        with idle_connections(node.port, 1), idle_connections(node.port, 1, CLIENT_HELLO_START):
            time.sleep(0.2)  # both are accepted before the echo connects
            assert tls_echo(node.port, client) == 0x0000


def test_a_connection_that_never_asks_is_closed_after_the_acse_timeout(tmp_path, pki):
    with start_node(tmp_path, dicom={"tls": tls_settings(pki), "acse_timeout": 0.5}) as node:
        with idle_connections(node.port, 1) as (sock,):
            started = time.monotonic()
            assert sock.recv(1) == b""  # the node hung up
            assert time.monotonic() - started < 5


def test_junk_connections_take_no_association_slot(tmp_path):
    """A bounded flood: 40 junk connections that leave at once, 20 idle ones and 20 that send the start
    of an association request and stall, against a node with 2 slots and room for 8 pending
    connections; echoes keep succeeding meanwhile."""
    dicom = {"max_associations": 2, "max_pending_connections": 8, "acse_timeout": 30}
    with start_node(tmp_path, dicom=dicom) as node:
        threads_before = threading.active_count()
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", node.port), timeout=TIMEOUT) as sock:
                sock.sendall(JUNK)
        with idle_connections(node.port, 20), idle_connections(node.port, 20, STALLED_REQUEST):
            time.sleep(0.5)
            for _ in range(3):
                assert echo("127.0.0.1", node.port, timeout=TIMEOUT) == 0x0000
            assert node.server.guard.counts[0] <= 8  # pending
            deadline = time.monotonic() + TIMEOUT
            while node.server.guard.counts[1] and time.monotonic() < deadline:
                time.sleep(0.05)  # the last echo's association ends just after the echo returns
            assert node.server.guard.counts[1] == 0
            # a thread per pending connection; none reached pynetdicom (two threads each)
            assert threading.active_count() - threads_before <= 8
