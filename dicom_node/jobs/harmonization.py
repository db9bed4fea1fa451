"""The harmonization queue's consumer: queued descriptions in, the harmonizer's labels out.

The C-STORE handler only queues a new description; this worker maps queued ones in batches, off the
association threads. The queue lives in the store, so work queued before a crash is done after the
restart. When the harmonizer raises, the batch is halved until the failing descriptions are isolated
(`run_in_halves`, shared with the report job); each failing description is recorded and retried later
with exponential backoff.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Sequence, TypeVar

from dicom_node.config import HarmonizerSettings
from dicom_node.store.database import Store
from slm.harmonizer import Harmonizer

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Answer = TypeVar("Answer")


def run_in_halves(
    items: Sequence[Item], answer: Callable[[list[Item]], Sequence[Answer]]
) -> tuple[list[tuple[Item, Answer]], list[tuple[Item, Exception]]]:
    """answer(batch) over items; when it raises, over each half, down to single items.

    One input that breaks the model must not hold back the others, and a batch too large for the
    GPU succeeds in halves. Returns each item with its answer, and each item that failed on its own
    with the exception.
    """
    try:
        answers = answer(list(items))
        if len(answers) != len(items):
            raise ValueError(f"{len(answers)} answers for {len(items)} inputs")
        return list(zip(items, answers)), []
    except Exception as exc:
        if len(items) == 1:
            return [], [(items[0], exc)]
        half = len(items) // 2
        done_first, failed_first = run_in_halves(items[:half], answer)
        done_second, failed_second = run_in_halves(items[half:], answer)
        return done_first + done_second, failed_first + failed_second


class HarmonizationWorker:
    def __init__(self, store: Store, harmonizer: Harmonizer, settings: HarmonizerSettings = HarmonizerSettings()):
        self.store = store
        self.harmonizer = harmonizer
        self.settings = settings
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Harmonize one batch of due descriptions; how many got mapped."""
        texts = self.store.queued_descriptions(self.settings.batch_size)
        if not texts:
            return 0
        done, failures = run_in_halves(texts, self.harmonizer.harmonize)
        if done:
            mapped, predictions = zip(*done)
            self.store.save_predictions(list(mapped), list(predictions))
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
                self.store.record_failure([text], _describe(exc), self.settings.retry_seconds, self.settings.max_retry_seconds)
        return len(done)

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="harmonization-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                mapped = self.run_once()
            except Exception:
                # A store that is briefly unusable (disk full, locked too long) must not end the worker.
                log.exception("harmonization worker: could not read or write the store; retrying")
                mapped = 0
            if mapped == 0:
                self._stopping.wait(self.settings.poll_seconds)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
