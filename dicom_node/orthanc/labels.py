"""Harmonized labels written back to Orthanc: each series' label as Orthanc metadata (orthanc.metadata,
SeriesClass by default), so that Orthanc users find series by class and Orthanc's own rules route on it.

A thread of its own polls the store for series whose label is new or was corrected since it was last
written (store/writeback.py keeps what was written), asks Orthanc for the series by its UID and sets the
metadata. Orthanc down: nothing is recorded, the next round tries again.
"""

from __future__ import annotations

import logging

from dicom_node.config import OrthancSettings
from dicom_node.jobs.polling import PollingThread
from dicom_node.orthanc.rest import OrthancClient, OrthancError
from dicom_node.store import writeback
from dicom_node.store.database import Store

log = logging.getLogger(__name__)

BATCH = 100


class LabelWriter:
    def __init__(self, store: Store, settings: OrthancSettings):
        self.store = store
        self.settings = settings
        self.client = OrthancClient(settings)
        self._thread = PollingThread("orthanc-labels", self.run_once, settings.poll_seconds)

    def run_once(self) -> int:
        """Write one batch of labels; how many series Orthanc was told about."""
        written = 0
        for series in writeback.series_to_write(self.store.engine, BATCH):
            try:
                orthanc_id = self.client.find_series(series.series_uid)
                if orthanc_id is not None:
                    self.client.set_series_metadata(orthanc_id, self.settings.metadata, series.label)
            except OrthancError as exc:
                log.warning("labels not written to Orthanc (retried in %g s): %s", self.settings.poll_seconds, exc)
                return written
            writeback.record_written(self.store, series.series_id, series.label, orthanc_id)
            written += 1
        return written

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()
