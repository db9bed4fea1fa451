"""Chest radiograph report sentences invented for the tests (tests/data/invented_findings.tsv), read by the
rule labeler, and by the shipped model in short reports: each sentence beside a normal one, where a small
model had been talked out of what the report plainly says (slm.hints.stated_findings_stand)."""

import itertools

from slm.engine import load_engine
from slm.report_rules import RuleLabeler
from slm.tasks import FINDINGS, report_text
from tests.support.paths import DATA

ROWS = [(sentence, set(filter(None, findings.split(","))))
        for sentence, findings in (line.split("\t") for line in
                                   (DATA / "invented_findings.tsv").read_text(encoding="utf-8").splitlines()
                                   if line and not line.startswith("#"))]
NORMAL = {  # a normal sentence, and the findings it denies (never paired with a sentence stating them)
    "Heart size normal.": {"Cardiomegaly"},
    "The lungs are clear.": {"Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis"},
    "No pleural effusion.": {"Pleural Effusion"},
    "No acute bony abnormality.": {"Fracture"},
    "Normal mediastinal contours.": {"Enlarged Cardiomediastinum"},
    "No pneumothorax.": {"Pneumothorax"},
}


def stated(labels: dict[str, str]) -> set[str]:
    return {key for key in FINDINGS if labels[key] == "Yes"}


def short_reports() -> list[tuple[str, set[str]]]:
    """Each sentence stating a finding beside each normal sentence that does not deny it, before it or after it
    by turns (both orders for every pair took a minute on 2 cores)."""
    pairs = [(sentence, findings, normal) for (sentence, findings), (normal, denied)
             in itertools.product(ROWS, NORMAL.items()) if findings and not findings & denied]
    return [(report_text({"findings": " ".join((s, n) if i % 2 else (n, s)), "impression": ""}), findings)
            for i, (s, findings, n) in enumerate(pairs)]


def test_the_rule_labeler_reads_each_sentence_as_labeled():
    texts = [report_text({"findings": sentence, "impression": ""}) for sentence, _ in ROWS]
    assert len(ROWS) > 300 and set().union(*(findings for _, findings in ROWS)) == set(FINDINGS)
    wrong = [(s, f, stated(labels)) for (s, f), labels in zip(ROWS, RuleLabeler().label(texts)) if stated(labels) != f]
    assert wrong == []


def test_the_shipped_model_answers_yes_to_every_finding_a_short_report_states():
    reports = short_reports()
    answers = load_engine("embedded", device="cpu").label([text for text, _ in reports])
    missed = [(text, sorted(findings - stated(labels))) for (text, findings), labels in zip(reports, answers)
              if not findings <= stated(labels)]
    assert len(reports) > 2000 and missed == []  # measured: 0 of 8,156 missed; 189 without stated_findings_stand
