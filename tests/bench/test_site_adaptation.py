"""The site-adaptation benchmark's split: what a site corrects and what it is scored on never share a description."""

from training.data import FIFTHS, fifths
from slm.harmonizer import description_key
from training.data import Example


def test_fifths_keep_spellings_together_and_deal_each_class_out():
    examples = [Example("harmonize", f"AX T{n} FLAIR", "FLAIR") for n in range(10)]
    examples += [Example("harmonize", f"ax_t{n}_flair", "FLAIR") for n in range(10)]  # the same ten, respelt
    examples += [Example("harmonize", f"dwi {n}", "DWI") for n in range(5)]
    parts = fifths(examples)
    assert len(parts) == FIFTHS and sum(map(len, parts)) == len(examples)
    keys = [{description_key(e.text) for e in part} for part in parts]
    assert all(not (a & b) for i, a in enumerate(keys) for b in keys[i + 1:])  # no description in two parts
    assert sorted(len(k) for k in keys) == [3, 3, 3, 3, 3]  # 15 descriptions dealt out evenly
    assert fifths(examples) == parts  # seeded
