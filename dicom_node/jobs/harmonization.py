"""The harmonization queue's consumer: queued descriptions in, the harmonizer's labels out.

The C-STORE handler only queues a new description; this worker maps queued ones in batches, off the
association threads, with the site's corrections as the labeled neighbours a model may read. The queue
lives in the store, so work queued before a crash is done after the restart. When the harmonizer
raises, the batch is halved until the failing descriptions are isolated
(`run_in_halves`, shared with the report job); each failing description is recorded and retried later
with exponential backoff.
"""

from __future__ import annotations

import logging
import time

from dicom_node.config import HarmonizerSettings
from dicom_node.jobs.polling import PollingThread
from dicom_node.jobs.retry import run_in_halves
from dicom_node.store import mappings
from dicom_node.store.database import Store
from dicom_node.metrics import HARMONIZATION_BATCH_SECONDS
from slm.harmonizer import Harmonizer
from slm.neighbours import Neighbours

log = logging.getLogger(__name__)


class HarmonizationWorker:
    def __init__(self, store: Store, harmonizer: Harmonizer, settings: HarmonizerSettings = HarmonizerSettings()):
        self.store = store
        self.harmonizer = harmonizer
        self.settings = settings
        self._thread = PollingThread("harmonization-worker", self.run_once, settings.poll_seconds)

    def run_once(self) -> int:
        """Harmonize one batch of due descriptions; how many got mapped."""
        texts = mappings.claim_descriptions(
            self.store, self.settings.batch_size, self.settings.claim_seconds, self.settings.modalities
        )
        if not texts:
            return 0
        started = time.perf_counter()
        with HARMONIZATION_BATCH_SECONDS.time():
            known = Neighbours(mappings.corrected_labels(self.store.engine))  # read anew: corrections count at once
            done, failures = run_in_halves(texts, lambda batch: self.harmonizer.harmonize(batch, known))
        if done:
            mapped, predictions = zip(*done)
            mappings.save_predictions(self.store, list(mapped), list(predictions))
        # The audit trail: counts, the version and the time, never the descriptions.
        log.info("harmonized %d of %d queued descriptions with %s in %.2f s",
                 len(done), len(texts), self.harmonizer.version, time.perf_counter() - started)
        if failures:
            # Counts and the error only: descriptions stay out of the log.
            log.warning(
                "harmonizer %s failed on %d of %d descriptions (%s); they stay queued and are retried later",
                self.harmonizer.version,
                len(failures),
                len(texts),
                _describe(failures[0][1]),
            )
            for text, exc in failures:
                mappings.record_failure(
                    self.store, [text], _describe(exc), self.settings.retry_seconds, self.settings.max_retry_seconds
                )
        return len(done)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._thread.stop(timeout)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
