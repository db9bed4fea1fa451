"""What both ends of our associations share: socket options, TLS contexts, quiet pynetdicom logging.

pynetdicom never sets TCP_NODELAY. A DIMSE exchange is a run of small PDUs; with Nagle's algorithm on,
each small write waits for the peer's delayed acknowledgement (~40 ms on Linux), and a loopback sender
drops from ~185 to ~20 instances/s. `set_tcp_nodelay` is bound to EVT_CONN_OPEN on both sides, which
fires once the socket is connected (accepted, or connected by the requestor) and before any PDU is sent.
"""

from __future__ import annotations

import logging
import socket
import ssl

from pydicom import config as pydicom_config
from pynetdicom import _config as pynetdicom_config
from pynetdicom import evt

from dicom_node.config import ConfigError, TLSSettings


def set_tcp_nodelay(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler: send each PDU at once instead of waiting for the peer's ACK."""
    sock = event.assoc.dul.socket.socket if event.assoc.dul.socket else None
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


NODELAY_HANDLERS = [(evt.EVT_CONN_OPEN, set_tcp_nodelay)]


def quiet_dicom_libraries() -> None:
    """Turn off pynetdicom's per-message logging and pydicom's value validation, process-wide.

    Both cost time on every message and neither tells the node anything it acts on: odd values (a
    10,000-character description) are tolerated and stored as they came, and pydicom would otherwise
    log a warning for each such instance.
    """
    pynetdicom_config.LOG_HANDLER_LEVEL = "none"
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE


def server_tls_context(tls: TLSSettings) -> ssl.SSLContext:
    """The SCP's TLS context from settings.dicom.tls; a missing file is a ConfigError naming the key."""
    if not tls.certificate or not tls.private_key:
        raise ConfigError("dicom.tls.certificate and dicom.tls.private_key are required when dicom.tls.enabled is true")
    if tls.verify_clients and not tls.ca_certificates:
        raise ConfigError("dicom.tls.ca_certificates is required when dicom.tls.verify_clients is true")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.certificate, tls.private_key)
        if tls.ca_certificates:
            context.load_verify_locations(tls.ca_certificates)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"dicom.tls: cannot load certificate or key: {exc}") from None
    if tls.verify_clients:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_tls_context(
    ca_certificates: str | None = None,
    certificate: str | None = None,
    private_key: str | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """A requestor's TLS context: verify the node against `ca_certificates` (or the system store),
    and present `certificate` when the node asks for a client certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_certificates)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if certificate:
        context.load_cert_chain(certificate, private_key)
    return context
