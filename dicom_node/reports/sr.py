"""Radiology reports sent as DICOM Structured Reports: their text by section, linked to the study.

A text SR is a tree of content items under one root CONTAINER. The text is in TEXT items; which section
it belongs to is said by the item's own concept name ("Impression") or, when that name says nothing
("Text", none at all), by the nearest enclosing CONTAINER's ("Findings"). Items that describe the
observation context (observer, subject) are not report text and are skipped: they may name people.
"""

from __future__ import annotations

from typing import Iterator

from pydicom.uid import BasicTextSRStorage, ComprehensiveSRStorage, EnhancedSRStorage

from dicom_node.reports.record import ReportRecord
from dicom_node.reports.sections import Sections, dicom_date, section_coded

TEXT_SR_CLASSES = frozenset({BasicTextSRStorage, EnhancedSRStorage, ComprehensiveSRStorage})
# Relationships whose items describe the report rather than carry its text (PS3.3 C.17.3.2.4).
CONTEXT_RELATIONSHIPS = {"HAS OBS CONTEXT", "HAS ACQ CONTEXT", "HAS CONCEPT MOD"}


class NotTextSR(ValueError):
    """The dataset is not a Basic, Enhanced or Comprehensive Text SR."""


def report_from_sr(ds, keep_patient_identifiers: bool = False) -> ReportRecord | None:
    """The report a text SR carries; None when it has no text at all.

    Odd values (no concept names, empty sequences, text that cannot be decoded) are skipped, never
    raised; only a dataset of another SOP class raises NotTextSR.
    """
    sop_class = _string(ds, "SOPClassUID")
    if sop_class not in TEXT_SR_CLASSES:
        raise NotTextSR(f"SOP class {sop_class} is not a text SR")
    sections = Sections()
    for section, text in _texts(ds, _section(ds) or "findings"):
        sections.add(section, text)
    if not sections:
        return None
    return ReportRecord(
        report_key=f"sr:{_string(ds, 'SOPInstanceUID')}",
        source="sr",
        study_uid=_string(ds, "StudyInstanceUID"),
        accession_number=_string(ds, "AccessionNumber"),
        report_date=dicom_date(_string(ds, "ContentDate")) or dicom_date(_string(ds, "StudyDate")),
        patient_id=_string(ds, "PatientID") if keep_patient_identifiers else None,
        patient_name=_string(ds, "PatientName") if keep_patient_identifiers else None,
        **sections.as_dict(),
    )


def _texts(container, section: str) -> Iterator[tuple[str, str]]:
    """(section, text) of every TEXT item under `container`, in document order."""
    for item in _value(container, "ContentSequence") or ():
        if _string(item, "RelationshipType") in CONTEXT_RELATIONSHIPS:
            continue
        own = _section(item)
        kind = _string(item, "ValueType")
        if kind == "TEXT":
            text = _string(item, "TextValue")
            if text:
                yield own or section, text
        elif kind == "CONTAINER":
            yield from _texts(item, own or section)


def _section(item) -> str | None:
    """The section the item's concept name stands for, if it names one."""
    for code in _value(item, "ConceptNameCodeSequence") or ():
        return section_coded(
            _string(code, "CodingSchemeDesignator"), _string(code, "CodeValue"), _string(code, "CodeMeaning")
        )
    return None


def _value(ds, keyword: str):
    # A value pydicom cannot decode (bad character set, wrong VR, truncated) counts as absent.
    try:
        return ds.get(keyword)
    except Exception:
        return None


def _string(ds, keyword: str) -> str | None:
    text = str(_value(ds, keyword) or "").strip("\0 \r\n")
    return text or None
