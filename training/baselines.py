"""The impression baselines the model must beat: a constant, and the impression of the nearest training report.

The rule baselines live with the model, since a hinted model reads them: slm.rules.RuleHarmonizer and
slm.report_rules.RuleLabeler.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

import numpy as np
from scipy import sparse

from slm.neighbours import count_matrix


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


class NearestImpression:
    """Writes, for every report, the impression of the most similar training report: words weighted by
    TF-IDF (sublinear counts, smoothed idf), cosine similarity, ties to the first. What copying a known report's
    impression scores, so a model's figure can be read against retrieval as well as a constant.
    (scikit-learn's TfidfVectorizer does this too; scipy is already a dependency, and this is all of it.)
    """

    version = "nearest-impression"

    def __init__(self, train_texts: Sequence[str], train_impressions: Sequence[str]):
        pairs = [(text, " ".join(imp.split())) for text, imp in zip(train_texts, train_impressions) if imp.strip()]
        if not pairs:
            raise ValueError("no training impressions to copy")
        self.impressions = [imp for _, imp in pairs]
        self._vocabulary: dict[str, int] = {}
        counts = self._counts([text for text, _ in pairs], grow=True)
        documents = np.bincount(counts.indices, minlength=counts.shape[1])  # reports each word is in
        self._idf = (np.log((1.0 + len(pairs)) / (1.0 + documents)) + 1.0).astype(np.float32)  # smoothed, > 0
        self._matrix = self._weighted(counts)

    def impression(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        similarity = (self._weighted(self._counts(texts)) @ self._matrix.T).toarray()
        return [self.impressions[int(i)] for i in similarity.argmax(axis=1)]

    def _counts(self, texts: Sequence[str], grow: bool = False) -> sparse.csr_matrix:
        words = [Counter(re.findall(r"[a-z]+", text.lower())) for text in texts]
        return count_matrix(words, self._vocabulary, grow)

    def _weighted(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        """(1 + log count) x idf, each row scaled to unit length."""
        weighted = counts.copy()
        weighted.data = (1.0 + np.log(weighted.data)) * self._idf[weighted.indices]
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        return sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ weighted
