"""The constant-impression baseline the model must beat.

The rule baselines live with the model, since a hinted model reads them: slm.rules.RuleHarmonizer and
slm.report_rules.RuleLabeler.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence


def _impression_key(text: str) -> str:
    return " ".join(text.split()).lower().rstrip(".")


class MostFrequentImpression:
    """Writes, for every report, the most common training impression.

    Impressions are counted after normalising whitespace, case and a final period, so that
    "No active disease." and "No active disease" are one answer; the most common spelling of the
    winning answer is what is written.
    """

    version = "most-frequent-impression"

    def __init__(self, train_impressions: Sequence[str]):
        spellings = [" ".join(t.split()) for t in train_impressions if t.strip()]
        if not spellings:
            raise ValueError("no training impressions to count")
        key = Counter(map(_impression_key, spellings)).most_common(1)[0][0]
        self.text = Counter(s for s in spellings if _impression_key(s) == key).most_common(1)[0][0]

    def impression(self, texts: Sequence[str]) -> list[str]:
        return [self.text] * len(texts)
