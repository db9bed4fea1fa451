"""A retraining started from the web: one at a time, in a thread of the web process, its phase for the page.

The run is dicom_node.models.retrain.retrain, the same as `slmnode models retrain`; this only keeps
its progress and outcome for the API and the models page.
"""

from __future__ import annotations

import logging
import threading

from dicom_node.config import Settings
from dicom_node.store.database import Store
from dicom_node.store.times import iso
from dicom_node.store.tables import utcnow

log = logging.getLogger(__name__)


class RetrainRun:
    def __init__(self, store: Store, settings: Settings):
        self.store = store
        self.settings = settings
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state: dict = {"state": "idle", "phase": None, "phases": [], "who": None, "started_at": None,
                             "finished_at": None, "result": None, "error": None}

    def status(self) -> dict:
        with self._lock:
            return dict(self._state)  # phases is replaced, never appended to in place, so the copy holds

    def start(self, who: str) -> bool:
        """Start a retraining as `who`; False when one is already running."""
        with self._lock:
            if self._state["state"] == "running":
                return False
            self._state = {"state": "running", "phase": "starting", "phases": ["starting"], "who": who,
                           "started_at": iso(utcnow()), "finished_at": None, "result": None, "error": None}
            self._thread = threading.Thread(target=self._run, args=(who,), name="web-retrain", daemon=True)
            self._thread.start()
            return True

    def _phase(self, phase: str) -> None:
        with self._lock:
            self._state["phase"] = phase
            self._state["phases"] = [*self._state["phases"], phase]  # every phase so far, however fast it went

    def _run(self, who: str) -> None:
        from dicom_node.models.retrain import result_dict, retrain

        try:
            result = retrain(self.store, self.settings, who=who, progress=self._phase)
        except Exception as exc:  # a recipe that does not load, a model that fails: shown on the page
            log.exception("retraining started from the web by %r failed", who)
            outcome = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
        else:
            outcome = {"state": "done", "result": result_dict(result)}
        with self._lock:
            self._state.update(outcome, phase=None, finished_at=iso(utcnow()))

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
