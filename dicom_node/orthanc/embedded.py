"""slmnode inside Orthanc (plugin mode): Orthanc receives and keeps the instances; slmnode records each one's
header in its store as Orthanc stores it, and its harmonization worker, report job and label writer run
on background threads of the Orthanc process. plugin.py connects this to Orthanc's callbacks.

Recording never calls the model: it is the same header read and store commit as the node's C-STORE
handler, so Orthanc's store callback stays a few milliseconds long. Orthanc has already stored the
instance when the callback runs, so a failure here is logged (the instance is in Orthanc, not in
slmnode's store) and never fails Orthanc's own store.
"""

from __future__ import annotations

import dataclasses
import logging
from io import BytesIO

from pydicom import dcmread

from dicom_node.config import Settings
from dicom_node.dicom.header import InstanceRecord
from dicom_node.models import choose
from dicom_node.node import Node
from dicom_node.reports.sr import TEXT_SR_CLASSES, report_from_sr
from dicom_node.store.reports import record_report

log = logging.getLogger(__name__)


class EmbeddedNode:
    def __init__(self, settings: Settings):
        self.settings = settings
        choice = choose.stored_choice(settings)
        harmonizer = choose.harmonizer(settings, choice)
        model = choose.report_model(settings, choice, harmonizer)
        reader = choose.pick_reader(settings, choice, model) if model is not None else None
        self.node = Node(settings, harmonizer, model, reader)

    def start(self) -> EmbeddedNode:
        self.node.start(serve_dicom=False)
        log.info("slmnode plugin started: store with harmonizer %s", self.node.harmonizer.version)
        return self

    def record(self, part10: bytes, calling_ae: str | None) -> bool:
        """Record one instance Orthanc stored (its DICOM file as bytes); False when it was already recorded."""
        header = dcmread(BytesIO(part10), stop_before_pixels=True)
        keep = self.settings.store.keep_patient_identifiers
        record = InstanceRecord.from_dataset(header, str(header.file_meta.TransferSyntaxUID), keep)
        record = dataclasses.replace(record, calling_ae=calling_ae or None)
        added = self.node.store.record_instance(record)
        if record.sop_class_uid in TEXT_SR_CLASSES and (report := report_from_sr(header, keep)) is not None:
            record_report(self.node.store, report)
        return added

    def stop(self) -> None:
        self.node.stop()
        log.info("slmnode plugin stopped")
