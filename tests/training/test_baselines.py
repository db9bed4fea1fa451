"""The rule-based labeler on hand-written reports, and the impression baselines (most frequent, nearest report)."""

import pytest

from slm.tasks import FINDINGS, LABEL_KEYS, NO_FINDING, report_text
from slm.report_rules import RuleLabeler
from training.baselines import MostFrequentImpression, NearestImpression


def yes(findings=None, impression=None, indication=None):
    """The keys the labeler answers Yes for one report."""
    text = report_text({"indication": indication, "findings": findings, "impression": impression})
    labels = RuleLabeler().label([text])[0]
    assert set(labels) == set(LABEL_KEYS) and set(labels.values()) <= {"Yes", "No"}
    return {key for key, value in labels.items() if value == "Yes"}


def test_normal_report_is_no_finding():
    assert yes("The heart is normal in size. The lungs are clear.", "No acute cardiopulmonary abnormality.") == {
        NO_FINDING
    }


@pytest.mark.parametrize(
    "sentence",
    [
        "No pneumothorax.",
        "There is no evidence of pneumothorax.",
        "Negative for pneumothorax.",
        "Lungs are clear of focal airspace disease, pneumothorax or pleural effusion.",
        "No focal consolidation, pleural effusion, or pneumothorax identified.",
        "Without pneumothorax.",
        "Pneumothorax is not seen.",
        "The previously seen pneumothorax has resolved.",
    ],
)
def test_negated_mentions_are_no(sentence):
    assert "Pneumothorax" not in yes(sentence)


@pytest.mark.parametrize(
    "sentence, finding",
    [
        ("Small right pneumothorax.", "Pneumothorax"),
        ("Possible small left pleural effusion.", "Pleural Effusion"),
        ("Left basilar opacity may represent atelectasis or pneumonia.", "Pneumonia"),
        ("A small effusion cannot be excluded.", "Pleural Effusion"),
        ("Questionable right lower lobe nodule.", "Lung Lesion"),
        ("Borderline cardiomegaly.", "Cardiomegaly"),
        ("No change in the small left pleural effusion.", "Pleural Effusion"),
    ],
)
def test_present_and_uncertain_mentions_are_yes(sentence, finding):
    found = yes(sentence)
    assert finding in found and NO_FINDING not in found


def test_negation_stops_at_a_scope_breaker():
    found = yes("No pneumothorax, but there is a small right pleural effusion.")
    assert "Pleural Effusion" in found and "Pneumothorax" not in found


def test_negation_covers_only_what_follows_it():
    found = yes("Mild cardiomegaly without pulmonary edema.")
    assert "Cardiomegaly" in found and "Edema" not in found


def test_indication_alone_does_not_count():
    assert yes("The lungs are clear.", indication="Pneumonia? History of rib fracture.") == {NO_FINDING}


def test_calcified_granuloma_is_not_a_lung_lesion():
    assert yes("Calcified granuloma in the right upper lobe. Calcified left lower lobe nodule.") == {NO_FINDING}


def test_upper_limits_of_normal_heart_is_not_cardiomegaly():
    assert "Cardiomegaly" not in yes("Heart size is at the upper limits of normal.")


def test_devices_and_removed_devices():
    assert yes("Median sternotomy wires. Left chest pacemaker with leads in the right ventricle.") == {"Support Devices"}
    assert "Support Devices" not in yes("The endotracheal tube has been removed.")


def test_pleural_scarring_is_pleural_other_not_lung_opacity():
    found = yes("Biapical pleural thickening and pleural-parenchymal scarring.")
    assert found == {"Pleural Other"}


def test_findings_of_one_report_together():
    found = yes(
        "Stable cardiomegaly. Right lower lobe airspace consolidation. Small right pleural effusion. "
        "Old healed left rib fractures. No pneumothorax.",
        "Right lower lobe pneumonia.",
    )
    # consolidation not described as an opacity is not Lung Opacity (RUBRIC.md, as in labels_train.csv)
    assert found == {"Cardiomegaly", "Consolidation", "Pleural Effusion", "Fracture", "Pneumonia"}


def test_labeler_answers_every_report():
    labels = RuleLabeler().label(["", "FINDINGS: Enlarged heart."])
    assert labels[0][NO_FINDING] == "Yes"
    assert labels[1]["Cardiomegaly"] == "Yes" and labels[1][NO_FINDING] == "No"
    assert all(set(label) == set(FINDINGS) | {NO_FINDING} for label in labels)


def test_most_frequent_impression_groups_spellings():
    train = ["No active disease.", "No active disease", "no  active disease.", "Cardiomegaly.", "Cardiomegaly."]
    baseline = MostFrequentImpression(train)
    # 3 spellings of one answer beat 2 of another; the most common spelling ("No active disease.", first seen) is written
    assert baseline.text == "No active disease."
    assert baseline.impression(["a", "b"]) == ["No active disease.", "No active disease."]


def test_most_frequent_impression_needs_data():
    with pytest.raises(ValueError, match="no training impressions"):
        MostFrequentImpression(["", "  "])


def test_nearest_impression_copies_the_most_similar_training_report():
    train = ["FINDINGS: The heart is enlarged. Lungs are clear.",
             "FINDINGS: Right lower lobe consolidation. Heart normal.",
             "FINDINGS: The lungs are clear. The heart is normal."]
    baseline = NearestImpression(train, ["Cardiomegaly.", "Pneumonia.", "  No acute   disease. "])
    assert baseline.impression([
        "FINDINGS: Enlarged heart.",  # "enlarged" is in one report only: it outweighs the shared words
        "FINDINGS: Consolidation in the right lower lobe.",
        "FINDINGS: Normal heart, clear lungs.",
        "Xyzzy.",  # no known word: ties go to the first report
    ]) == ["Cardiomegaly.", "Pneumonia.", "No acute disease.", "Cardiomegaly."]
    assert baseline.impression([]) == []
    with pytest.raises(ValueError, match="no training impressions"):
        NearestImpression(["FINDINGS: x."], [" "])
