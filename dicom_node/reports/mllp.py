"""Live HL7: an MLLP listener that stores each ORU^R01 as `slmnode reports import` does and acknowledges it.

MLLP frames each message as <VT> message <FS><CR>; the sender waits for our ACK before the next one
and sends again what was not acknowledged. So the ACK is the promise: AA (application accept) goes
out only after the report's row is committed (a resent message, same sending facility and control ID,
is acknowledged AA again and stored once); AE (application error) says, in MSA-3, why a message was
refused, never with its content. A small threaded socketserver, one thread per connection: a RIS
keeps one or two connections open, and every report is one short store transaction.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import count

from dicom_node.config import HL7Settings
from dicom_node.reports.importers import Refused, decoded, hl7_reports
from dicom_node.store.database import Store
from dicom_node.store.reports import record_report

log = logging.getLogger(__name__)

START, END = b"\x0b", b"\x1c\x0d"  # MLLP block start, block end + carriage return
ACCEPT, ERROR = "AA", "AE"


def frame(message: str) -> bytes:
    """One message as MLLP sends it (segments separated by CR)."""
    return START + message.encode("utf-8") + END


@dataclass(frozen=True)
class Answer:
    """What the listener makes of one framed message: the ACK code and, for AE, why."""

    code: str
    reason: str = ""


def answer(payload: bytes, store: Store, keep_patient_identifiers: bool, where: str) -> Answer:
    """Store the report of one message; AA once it is committed (or was already), AE with the reason otherwise."""
    reads = list(hl7_reports([decoded(payload)], where, keep_patient_identifiers))
    if len(reads) != 1:
        return Answer(ERROR, "one HL7 message per MLLP block" if reads else "empty message")
    read = reads[0][1]
    if isinstance(read, Refused):
        log.warning("HL7 refused %s: %s", where, read)
        return Answer(ERROR, str(read))
    try:
        added = record_report(store, read)
    except Exception as exc:  # the store failed: the sender keeps the message and sends it again
        log.error("HL7 %s: could not store the report: %s", where, getattr(exc, "orig", None) or type(exc).__name__)
        return Answer(ERROR, "the report could not be stored; send it again later")
    log.debug("HL7 %s: report %s", where, "stored" if added else "already stored")
    return Answer(ACCEPT)


_ack_ids = count(1)


def acknowledgement(payload: bytes, result: Answer) -> str:
    """The ACK of a message: its MSH turned round (sender and receiver swapped), MSA with the code and
    the message's control ID, and the reason for an AE. Read by hand from the raw MSH, so that even a
    message hl7apy cannot parse gets an answer the sender can match."""
    first = decoded(payload).lstrip("\x0b").split("\r")[0].split("\n")[0]
    separator = first[3] if first.startswith("MSH") and len(first) > 3 else "|"
    fields = first.split(separator) if first.startswith("MSH") else ["MSH", "^~\\&"]
    fields += [""] * (12 - len(fields))
    encoding = fields[1] or "^~\\&"
    trigger = fields[8].split(encoding[0])[1] if encoding[0] in fields[8] else ""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    control_id = f"SLMACK{stamp}{next(_ack_ids)}"
    reason = _escaped(result.reason, separator, encoding)
    msh = [
        "MSH", encoding, fields[4], fields[5], fields[2], fields[3], stamp, "",
        encoding[0].join(["ACK", trigger, "ACK"]) if trigger else "ACK", control_id, fields[10] or "P",
        fields[11] or "2.5.1",
    ]
    msa = ["MSA", result.code, fields[9]] + ([reason] if reason else [])
    return separator.join(msh) + "\r" + separator.join(msa) + "\r"


def _escaped(text: str, separator: str, encoding: str) -> str:
    """`text` as an HL7 field value: delimiters as the escape sequences \\F\\, \\S\\, \\R\\, \\E\\, \\T\\."""
    escape = encoding[2] if len(encoding) > 2 else "\\"
    names = dict(zip(encoding, "SRET")) | {separator: "F"}
    return "".join(f"{escape}{names[char]}{escape}" if char in names else " " if char in "\r\n" else char for char in text)


class _Connection(socketserver.BaseRequestHandler):
    """One sender's connection: read blocks, answer each once it is stored, until the sender closes."""

    server: "MLLPServer"

    def handle(self) -> None:
        peer = self.client_address[0]
        sock: socket.socket = self.request
        sock.settimeout(self.server.settings.network_timeout)
        limit = self.server.settings.max_message_bytes
        buffer = b""
        number = 0
        while True:
            try:
                data = sock.recv(65536)
            except OSError:  # timeout, reset
                return
            if not data:
                return
            buffer += data
            while END in buffer:
                block, buffer = buffer.split(END, 1)
                payload = block[block.find(START) + 1 :] if START in block else block
                number += 1
                result = answer(payload, self.server.store, self.server.keep_patient_identifiers,
                                f"from {peer}, message {number} on its connection")
                sock.sendall(frame(acknowledgement(payload, result)))
            if len(buffer) > limit:
                log.warning("HL7 from %s: a message over %d bytes; connection closed", peer, limit)
                sock.sendall(frame(acknowledgement(buffer[buffer.find(START) + 1 :], Answer(
                    ERROR, f"message longer than hl7.max_message_bytes ({limit})"))))
                return


class MLLPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, settings: HL7Settings, store: Store, keep_patient_identifiers: bool):
        self.settings, self.store, self.keep_patient_identifiers = settings, store, keep_patient_identifiers
        super().__init__((settings.bind_address, settings.port), _Connection)

    def verify_request(self, request, client_address) -> bool:
        allowed = self.settings.allowed_addresses
        if allowed and client_address[0] not in allowed:
            log.warning("HL7: refused a connection from %s (not in hl7.allowed_addresses)", client_address[0])
            return False
        return True

    @property
    def port(self) -> int:
        return self.server_address[1]

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def start_mllp(settings: HL7Settings, store: Store, keep_patient_identifiers: bool = False) -> MLLPServer:
    """Listen on hl7.bind_address:hl7.port in a background thread; .stop() ends it."""
    server = MLLPServer(settings, store, keep_patient_identifiers)
    threading.Thread(target=server.serve_forever, name="hl7-mllp", daemon=True).start()
    return server
