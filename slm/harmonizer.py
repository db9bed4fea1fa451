"""The one small interface between the node and whatever maps descriptions to labels.

A harmonizer takes a batch of Series Descriptions and returns, for each, a label among
SERIES_LABELS, a confidence in [0, 1] and the version of what produced it. The node only ever
talks to this interface, so the rule-based baseline and the language model are interchangeable.
Which one runs is the node's decision (dicom_node.models.choose), not this package's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence

from slm.tasks import SERIES_LABELS

if TYPE_CHECKING:
    from slm.neighbours import Neighbours


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    model_version: str

    def __post_init__(self):
        if self.label not in SERIES_LABELS:
            raise ValueError(f"label {self.label!r} is not one of {SERIES_LABELS}")


class Harmonizer(Protocol):
    version: str

    def harmonize(self, descriptions: Sequence[str], known: Neighbours | None = None) -> list[Prediction]:
        """`known`: labeled descriptions (the site's corrections); a model trained with neighbours reads
        the nearest one (slm/neighbours.py), any other harmonizer ignores them."""


def description_key(description: str) -> str:
    """Spellings of one description that differ only in case, blanks or underscores share a key:
    "AX_T2_FLAIR", "ax t2 flair" and " Ax T2  FLAIR" are one description to a person correcting it."""
    return " ".join(description.replace("_", " ").lower().split())
