"""The one small interface between the node and whatever maps descriptions to labels.

A harmonizer takes a batch of Series Descriptions and returns, for each, a label among
SERIES_LABELS, a confidence in [0, 1] and the version of what produced it. The node only ever
talks to this interface, so the rule-based baseline and the language model are interchangeable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence

from slm.tasks import SERIES_LABELS

if TYPE_CHECKING:
    from dicom_node.config import Settings

log = logging.getLogger(__name__)


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

    def harmonize(self, descriptions: Sequence[str]) -> list[Prediction]: ...


def load_harmonizer(settings: Settings, kind: str | None = None) -> Harmonizer:
    """The harmonizer the settings ask for: "slm" (the model or an error), "rules", or "auto" (model, else rules)."""
    kind = kind or settings.harmonizer.kind
    if kind not in ("auto", "rules", "slm"):
        raise ValueError(f"unknown harmonizer kind {kind!r}: auto, rules or slm")
    if kind != "rules":
        from slm.engine import ModelUnavailable, load_engine

        try:
            return load_engine(**settings.model.model_dump())
        except ModelUnavailable as exc:
            if kind == "slm":
                raise
            log.warning("no language model (%s); harmonizing with rules instead", exc)
    from slm.rules import RuleHarmonizer

    return RuleHarmonizer()
