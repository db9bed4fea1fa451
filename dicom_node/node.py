"""The running node: the store, the harmonization worker thread and the SCP, wired together.

`Node` is what `slmnode serve` runs and what the tests start on 127.0.0.1; `serve` adds the
harmonizer from the settings, a startup line and a clean stop on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import threading

from sqlalchemy.engine import make_url

from dicom_node.config import Settings
from dicom_node.scp import start_scp
from dicom_node.store import Store
from dicom_node.worker import HarmonizationWorker
from slm.harmonizer import Harmonizer, load_harmonizer

log = logging.getLogger(__name__)


class Node:
    """Store + worker + SCP. Use as a context manager; `port` is the port actually bound."""

    def __init__(self, settings: Settings, harmonizer: Harmonizer):
        self.settings = settings
        self.harmonizer = harmonizer
        self.store = Store(settings.store.url, synchronous=settings.store.synchronous)
        self.worker = HarmonizationWorker(
            self.store,
            harmonizer,
            batch_size=settings.harmonizer.batch_size,
            poll_seconds=settings.harmonizer.poll_seconds,
        )
        self.server = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> Node:
        self.worker.start()
        try:
            self.server = start_scp(self.settings, self.store)
        except BaseException:
            self.worker.stop()
            self.store.close()
            raise
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        self.worker.stop()
        self.store.close()

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def describe(self) -> str:
        """One line for the log: who, where, how; the store's password left out."""
        dicom, storage = self.settings.dicom, self.settings.storage
        tls = (
            "on" + (", client certificates required" if dicom.tls.verify_clients else "")
            if dicom.tls.enabled
            else "off"
        )
        where = f"storage=files in {storage.folder}" if storage.mode == "files" else "storage=metadata only"
        url = make_url(self.settings.store.url).render_as_string(hide_password=True)
        return (
            f"AE {dicom.ae_title} listening on {dicom.bind_address}:{self.port}, TLS {tls}, {where}, "
            f"store {url}, harmonizer {self.harmonizer.version}"
        )


def serve(settings: Settings) -> None:
    """Run the node until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with Node(settings, load_harmonizer(settings)) as node:
        log.info("slmnode ready: %s", node.describe())
        while not stop.wait(1.0):
            pass
        log.info("slmnode stopping")
