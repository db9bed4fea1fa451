"""A second DICOM node for the routing tests and bench: a plain pynetdicom SCP on 127.0.0.1 that
keeps the SOP Instance UID of every instance it acknowledged, duplicates included."""

from __future__ import annotations

import time

from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, AllStoragePresentationContexts, evt

from dicom_node.dicom.network import NODELAY_HANDLERS


class Destination:
    """Use as a context manager; `received` lists acknowledged SOP Instance UIDs in arrival order.
    With another `status` than Success it answers that to every instance and keeps none."""

    def __init__(self, port: int = 0, ae_title: str = "DEST", delay: float = 0.0, status: int = 0x0000):
        self.port, self.ae_title, self.delay, self.status = port, ae_title, delay, status
        self.received: list[str] = []
        self.server = None

    def _store(self, event: evt.Event) -> int:
        if self.delay:
            time.sleep(self.delay)
        if self.status == 0x0000:
            self.received.append(event.request.AffectedSOPInstanceUID)
        return self.status

    def __enter__(self) -> Destination:
        ae = AE(ae_title=self.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        handlers = [*NODELAY_HANDLERS, (evt.EVT_C_STORE, self._store)]
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)
        self.port = self.server.server_address[1]
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
