"""Which section of a report a piece of text belongs to, whoever wrote it down.

A DICOM SR names its sections with coded concepts, an HL7 ORU with OBX-3 observation identifiers, a text
report with headings; all of them name the same four sections the model reads (slm.tasks.REPORT_SECTIONS)
in words like "Clinical History", "Prior studies" or "Conclusions". One vocabulary serves them all.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Iterable

from slm.tasks import REPORT_SECTIONS

# Coded section names: (coding scheme, code value) -> section. DCM from PS3.16 (TID 2000 and its
# neighbours), LN the LOINC codes radiology reports use for the same sections.
SECTION_CODES = {
    ("DCM", "121060"): "indication",  # History
    ("DCM", "121062"): "indication",  # Request
    ("DCM", "121109"): "indication",  # Indications for Procedure
    ("DCM", "121110"): "indication",  # Patient Presentation
    ("DCM", "121070"): "findings",  # Findings
    ("DCM", "121071"): "findings",  # Finding
    ("DCM", "121072"): "impression",  # Impressions
    ("DCM", "121073"): "impression",  # Impression
    ("DCM", "121076"): "impression",  # Conclusions
    ("DCM", "121077"): "impression",  # Conclusion
    ("DCM", "121111"): "impression",  # Summary
    ("LN", "18785-6"): "indication",  # Radiology Reason for study
    ("LN", "11329-0"): "indication",  # History general
    ("LN", "18834-2"): "comparison",  # Radiology Comparison study
    ("LN", "18782-3"): "findings",  # Radiology Study observation
    ("LN", "19005-8"): "impression",  # Radiology Impression
}

# Words in a section's name, first match wins: "Previous findings" is a comparison, not findings.
SECTION_WORDS = (
    ("comparison", ("comparison", "prior stud", "previous")),
    ("indication", ("indication", "history", "reason for", "clinical information", "request")),
    ("impression", ("impression", "conclusion", "summary")),
    ("findings", ("finding",)),
)

# "FINDINGS: ..." at the start of a line: up to four words, then a colon.
HEADING = re.compile(r"^\s*([A-Za-z][A-Za-z ]{0,40}?)\s*:\s*(.*)$")
MAX_HEADING_WORDS = 4


def section_named(name: str | None) -> str | None:
    """The section a name such as "Clinical History" or "IMPRESSIONS" stands for; None if none."""
    name = " ".join((name or "").lower().split())
    for section, words in SECTION_WORDS:
        if any(word in name for word in words):
            return section
    return None


def section_coded(scheme: str | None, value: str | None, meaning: str | None) -> str | None:
    """The section a coded concept stands for: by its code when known, else by its meaning."""
    code = ((scheme or "").strip().upper(), (value or "").strip())
    return SECTION_CODES.get(code) or section_named(meaning)


def heading(line: str) -> tuple[str, str] | None:
    """(section, rest of the line) when the line starts with a section heading such as "IMPRESSION:"."""
    match = HEADING.match(line)
    if not match or len(match[1].split()) > MAX_HEADING_WORDS:
        return None
    section = section_named(match[1])
    return (section, match[2]) if section else None


class Sections:
    """Text gathered section by section, in the order it comes; the rest of a report goes to findings."""

    def __init__(self) -> None:
        self.parts: dict[str, list[str]] = {name: [] for name in REPORT_SECTIONS}

    def add(self, section: str | None, text: str | None) -> None:
        text = (text or "").replace("\0", "").strip()  # no database keeps a NUL (PostgreSQL refuses it)
        if text:
            self.parts[section or "findings"].append(text)

    def add_lines(self, lines: Iterable[str], section: str | None = None) -> str | None:
        """Lines of free text, a heading switching the section until the next one; returns the
        section the last line was in, so that text cut in pieces (HL7 OBX segments) reads on."""
        for line in lines:
            found = heading(line)
            if found:
                section, line = found
            self.add(section, line)
        return section

    def as_dict(self) -> dict[str, str | None]:
        return {name: "\n".join(parts) or None for name, parts in self.parts.items()}

    def __bool__(self) -> bool:
        return any(self.parts.values())


def dicom_date(text: str | None) -> str | None:
    """A date as DICOM writes it (YYYYMMDD, like the studies' Study Date) from "20240611",
    "2024-06-11" or an HL7 timestamp "20240611093000"; None when it is not a date."""
    digits = re.sub(r"\D", "", text or "")[:8]
    try:
        datetime.strptime(digits, "%Y%m%d")
    except ValueError:
        return None
    return digits
