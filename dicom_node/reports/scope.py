"""Which reports the companion job labels: those of chest radiographs.

The model learned its 13 findings and its impressions from chest X-ray reports (Open-i); on a brain MRI
report it would invent them ("No Finding", "No acute cardiopulmonary findings"). So a report is read
only when its exam is a chest radiograph, decided (reports.scope) from:

1. its linked study, when one with images was received: a series of `modalities` (CR, DX) whose Body
   Part Examined is one of `body_parts` or whose Series Description has one of `words`;
2. else its own exam line ("EXAM: XR CHEST PA AND LATERAL"): one of `words` and none of `other_words`
   (a chest CT is not a radiograph);
3. else `unknown`: label (the job's reports are chest radiographs unless they say otherwise) or skip.

Reports the job does not read get a result marked not applicable, without labels or impression.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from dicom_node.config import ReportScopeSettings

DOCUMENTS = {"SR", "KO", "PR", "DOC"}  # series that carry documents or notes about a study, not its images
# "EXAM: ...", "Examination: ...", "Procedure: ..." to the end of its line, also after a section heading.
EXAM_LINE = re.compile(r"\b(?:exam(?:ination)?|procedure)(?:\s+type)?\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class LinkedSeries:
    """What the store keeps of one series of the report's linked study."""

    modality: str | None
    body_part: str | None
    description: str | None


def is_chest_radiograph(series: Iterable[LinkedSeries], text: str, scope: ReportScopeSettings) -> bool:
    """Is the report (its linked study's series, its text) one of a chest radiograph? See the module docstring."""
    images = [s for s in series if (s.modality or "").upper() not in DOCUMENTS]
    words, modalities, body_parts = set(scope.words), set(scope.modalities), set(scope.body_parts)
    if images:
        return any(
            (s.modality or "").upper() in modalities
            and ((s.body_part or "").upper() in body_parts or bool(_words(s.description) & words))
            for s in images
        )
    exam = EXAM_LINE.search(text or "")
    if exam:
        said = _words(exam[1])
        return bool(said & words) and not said & set(scope.other_words)
    return scope.unknown == "label"


def _words(text: str | None) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", (text or "").lower()))
