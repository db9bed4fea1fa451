"""Hospital-style Series Descriptions invented from vendor and language conventions (tests/data), read by
the rules and by the shipped model as it answers: a check on the kind of text the product is judged on,
which ../shared/data holds little of (its descriptions are mostly research protocols')."""

from slm.engine import load_engine
from slm.rules import RuleHarmonizer
from tests.support.paths import DATA

ROWS = [line.split("\t") for line in (DATA / "invented_descriptions.tsv").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")]


def test_the_rules_read_every_invented_description_as_labeled():
    texts, labels = zip(*ROWS)
    answers = [p.label for p in RuleHarmonizer().harmonize(texts)]
    assert len(ROWS) > 300 and set(labels) == {"T1", "T2", "FLAIR", "DWI", "ADC", "SWI", "Other"}
    assert [(t, g, a) for t, g, a in zip(texts, labels, answers) if a != g] == []


def test_the_shipped_model_as_it_answers_reads_them_as_well():
    texts, labels = zip(*ROWS)
    answers = [p.label for p in load_engine("embedded", device="cpu").harmonize(texts)]
    wrong = [(t, g, a) for t, g, a in zip(texts, labels, answers) if a != g]
    assert len(wrong) <= len(ROWS) // 100, wrong  # measured: none wrong (embedded-e0a2cbe08911, rules-4 to rules-7)
