"""The audit trail of what was received: one INFO line per association when it ends.

Who (calling AE title, address, the AE title it called), how much (instances, bytes of their datasets),
with what outcome (C-STORE statuses by code) and how long, so a PACS administrator can answer "did the
scanner send that study, and did we accept it?" from the log alone. No patient identifier and no UID
of a study is in the line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from pynetdicom import evt

log = logging.getLogger("dicom_node.audit")


@dataclass
class _Tally:
    calling_ae: str
    address: str
    called_ae: str
    started: float = field(default_factory=time.monotonic)
    statuses: Counter = field(default_factory=Counter)
    bytes: int = 0
    aborted: bool = False


class AssociationAudit:
    """Counts each association's C-STOREs and logs them when its connection closes.

    Bound to pynetdicom's events by `handlers`; `counting` wraps the C-STORE handler.
    """

    def __init__(self) -> None:
        self._open: dict[int, _Tally] = {}
        self._lock = threading.Lock()

    def handlers(self) -> list:
        return [
            (evt.EVT_ESTABLISHED, self._established),
            (evt.EVT_ABORTED, self._aborted),
            (evt.EVT_CONN_CLOSE, self._closed),
        ]

    def counting(self, handle_store):
        """`handle_store` (an EVT_C_STORE handler), each status and dataset size counted for the audit line."""

        def handle(event: evt.Event, *args) -> int:
            status = handle_store(event, *args)
            size = event.request.DataSet.getbuffer().nbytes
            with self._lock:
                tally = self._open.get(id(event.assoc))
                if tally is not None:
                    tally.statuses[int(getattr(status, "Status", status))] += 1  # a code, or a status Dataset
                    tally.bytes += size
            return status

        return handle

    def _established(self, event: evt.Event) -> None:
        requestor = event.assoc.requestor
        tally = _Tally(requestor.ae_title, f"{requestor.address}:{requestor.port}",
                       requestor.primitive.called_ae_title.strip())
        with self._lock:
            self._open[id(event.assoc)] = tally

    def _aborted(self, event: evt.Event) -> None:
        with self._lock:
            if id(event.assoc) in self._open:
                self._open[id(event.assoc)].aborted = True

    def _closed(self, event: evt.Event) -> None:
        with self._lock:
            tally = self._open.pop(id(event.assoc), None)
        if tally is None:
            return  # rejected or never established: its warning is logged where it was refused
        statuses = ", ".join(f"0x{code:04X} x{n}" for code, n in sorted(tally.statuses.items())) or "none"
        log.info(
            "association from %s at %s to %s: %d instances, statuses %s, %d bytes, %.2f s, %s",
            tally.calling_ae,
            tally.address,
            tally.called_ae,
            sum(tally.statuses.values()),
            statuses,
            tally.bytes,
            time.monotonic() - tally.started,
            "aborted" if tally.aborted else "released",
        )
