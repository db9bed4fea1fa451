"""The loop the node's background workers share: do a round of work, and wait poll_seconds when it found none."""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class PollingThread:
    """Calls `run_once` (how much it did) on a daemon thread named `name` until stop(); waits `poll_seconds`
    after a round that did nothing. An exception (a store briefly unusable, a peer down) is logged and the
    loop goes on: the work is still queued in the store next time."""

    def __init__(self, name: str, run_once: Callable[[], int], poll_seconds: float):
        self.name, self.run_once, self.poll_seconds = name, run_once, poll_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                done = self.run_once()
            except Exception:
                log.exception("%s: a round failed; retrying", self.name)
                done = 0
            if done == 0:
                self._stopping.wait(self.poll_seconds)
