"""Labeled neighbours: the known description most like a new one, shown to a model trained with it.

A site names its series its own way ("DarkFluid T2 COR", "NEURO_vorex_ax"); once a person corrects one
of them, the other spellings of that naming should follow at once, before any retraining. A model
trained with neighbours (prompt.json {"neighbours": true}) reads, next to the rules' reading, the label
of the most similar known description and how similar it is (`FLAIR 0.8`), and learns when that
neighbour is the better guide. Known descriptions are the training set's at training time and the
site's corrections at run time (dicom_node.store.mappings.corrected_labels).

Similarity is the Jaccard index of character trigrams of the normalized description (slm.rules.normalize,
glued words cut) without its plane words and plain numbers, which name no sequence: it sees through case,
separators, order of words, glued spellings, planes and repeat numbers ("SAG ZORBEX", "TRA_ZORBEX_2"). A
description never counts as its own neighbour: spellings of it (slm.harmonizer.description_key) are
skipped, since a correction of any spelling already wins outright in the store.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import sparse

from slm.harmonizer import description_key
from slm.rules import GLUE_BOUNDARY, normalize

MIN_SIMILARITY = 0.3  # below this a neighbour says nothing a model can use; the prompt shows none
CHUNK = 512  # descriptions compared with every known one at a time (a dense [chunk, known] array)


PLANES = frozenset("ax axi axial sag sagittal cor coronal tra trans transverse transversal obl oblique".split())


def grams(description: str) -> set[str]:
    """Character trigrams of the description as the rules read it, glued words cut, planes and numbers left out
    (unless nothing else is left)."""
    words = normalize(GLUE_BOUNDARY.sub(" ", description)).split()
    text = " ".join(w for w in words if w not in PLANES and not w.isdigit()) or " ".join(words)
    text = f" {text} "
    return {text[i: i + 3] for i in range(len(text) - 2)}


def count_matrix(bags: Sequence[Mapping[str, float]], vocabulary: dict[str, int],
                 grow: bool = False) -> sparse.csr_matrix:
    """One row per bag of features, each feature's count in its column of `vocabulary`; a feature not in
    it gets a new column when `grow`, else is left out."""
    rows, cols, values = [], [], []
    for row, bag in enumerate(bags):
        for feature, count in bag.items():
            column = vocabulary.get(feature)
            if column is None and grow:
                column = vocabulary[feature] = len(vocabulary)
            if column is not None:
                rows.append(row)
                cols.append(column)
                values.append(count)
    shape = (len(bags), max(1, len(vocabulary)))
    return sparse.csr_matrix((np.asarray(values, dtype=np.float32), (rows, cols)), shape=shape)


class Neighbours:
    """Known (description, label) pairs and, for a new description, the nearest one's label and similarity."""

    def __init__(self, known: Iterable[tuple[str, str]]):
        known = list(known)
        self.texts = [text for text, _ in known]
        self.labels = [label for _, label in known]
        self.keys = [description_key(text) for text in self.texts]
        self._vocabulary: dict[str, int] = {}
        self._matrix, self._sizes = self._encode(self.texts, grow=True)  # [known, trigrams], 0/1

    def __len__(self) -> int:
        return len(self.texts)

    def _encode(self, texts: Sequence[str], grow: bool = False) -> tuple[sparse.csr_matrix, np.ndarray]:
        """The texts' trigrams as a 0/1 matrix over the known vocabulary (grown when `grow`), and how many
        trigrams each text has, known or not (what the Jaccard index divides by)."""
        found = [grams(text) for text in texts]
        matrix = count_matrix([dict.fromkeys(trigrams, 1) for trigrams in found], self._vocabulary, grow)
        return matrix, np.asarray([len(trigrams) for trigrams in found], dtype=np.float32)

    def nearest(self, texts: Sequence[str]) -> list[tuple[str, float] | None]:
        """For each text, (label, similarity) of the most similar known description that is not a
        spelling of it, or None when there is none at MIN_SIMILARITY or above. Ties go to the first known."""
        if not self.texts or not texts:
            return [None] * len(texts)
        answers: list[tuple[str, float] | None] = []
        for start in range(0, len(texts), CHUNK):
            answers += self._nearest(texts[start: start + CHUNK])
        return answers

    def _nearest(self, texts: Sequence[str]) -> list[tuple[str, float] | None]:
        encoded, sizes = self._encode(texts)
        shared = (encoded @ self._matrix.T).toarray()  # [texts, known] trigrams in common
        similarity = shared / np.maximum(sizes[:, None] + self._sizes[None, :] - shared, 1)
        answers: list[tuple[str, float] | None] = []
        for text, row in zip(texts, similarity):
            own = description_key(text)
            for j in np.argsort(-row, kind="stable"):
                if row[j] < MIN_SIMILARITY:
                    answers.append(None)
                    break
                if self.keys[j] != own:
                    answers.append((self.labels[j], float(row[j])))
                    break
            else:
                answers.append(None)
        return answers

    def hints(self, texts: Sequence[str]) -> list[str | None]:
        """What the prompt shows of each text's nearest neighbour: `FLAIR 0.8` (similarity rounded down
        to a tenth, one token a small model reads), or None."""
        return [neighbour_hint(*found) if found else None for found in self.nearest(texts)]


def neighbour_hint(label: str, similarity: float) -> str:
    return f"{label} {int(similarity * 10 + 1e-9) / 10:.1f}"
