"""Every figure checked against values worked out by hand in the comments."""

import math

import pytest
from scipy import stats

from slm.tasks import FINDINGS, LABEL_KEYS, NO_FINDING
from training.metrics import (
    binary_scores,
    bleu,
    harmonization_metrics,
    impression_metrics,
    labeling_metrics,
    mcnemar,
    mcnemar_labels,
    paired_t_test,
    rouge_per_report,
    scores,
)


def test_scores_from_counts():
    # TP 3, FP 1, FN 2: P = 3/4, R = 3/5, F1 = 2*3 / (6 + 1 + 2) = 6/9
    s = scores(3, 1, 2)
    assert (s.precision, s.recall, s.support) == (0.75, 0.6, 5)
    assert s.f1 == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 * 0.75 * 0.6 / (0.75 + 0.6))


@pytest.mark.parametrize(
    "counts, expected",
    [
        ((0, 0, 0), (1.0, 1.0, 1.0)),  # no positives, none predicted: agreement on the absence
        ((0, 0, 4), (0.0, 0.0, 0.0)),  # positives but no predictions
        ((0, 3, 0), (0.0, 0.0, 0.0)),  # predictions but no positives
    ],
)
def test_f1_edge_cases(counts, expected):
    s = scores(*counts)
    assert (s.precision, s.recall, s.f1) == expected


def test_binary_scores_counts():
    gold = [True, True, False, False, True]
    pred = [True, False, True, False, True]
    # TP at 0 and 4, FP at 2, FN at 1
    s = binary_scores(gold, pred)
    assert (s.tp, s.fp, s.fn) == (2, 1, 1)
    assert s.f1 == pytest.approx(4 / 6)


def _labels(*yes):
    labels = {key: "Yes" if key in yes else "No" for key in FINDINGS}
    labels[NO_FINDING] = "No" if yes else "Yes"
    return labels


def test_labeling_metrics_by_hand():
    gold = [_labels("Cardiomegaly"), _labels(), _labels("Cardiomegaly", "Edema")]
    pred = [_labels("Cardiomegaly"), _labels("Edema"), _labels("Cardiomegaly")]
    m = labeling_metrics(gold, pred)
    # Cardiomegaly: TP 2 -> F1 1. Edema: TP 0, FP 1 (report 2), FN 1 (report 3) -> F1 0.
    # No Finding: gold Y only in report 2, predicted Y nowhere -> FN 1 -> F1 0.
    # The other 11 findings: no positives, no predictions -> F1 1.
    per = m["per_label"]
    assert per["Cardiomegaly"]["f1"] == 1.0
    assert (per["Edema"]["fp"], per["Edema"]["fn"], per["Edema"]["f1"]) == (1, 1, 0.0)
    assert per[NO_FINDING]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx(12 / 14)
    assert m["macro_f1_findings"] == pytest.approx(12 / 13)
    # micro over the 14 keys: TP 2, FP 1, FN 2 -> 4 / (4 + 1 + 2)
    assert m["micro_f1"] == pytest.approx(4 / 7)
    assert m["n"] == 3 and set(per) == set(LABEL_KEYS)


def test_labeling_metrics_lengths_must_match():
    with pytest.raises(ValueError, match="2 gold reports but 1 predictions"):
        labeling_metrics([_labels(), _labels()], [_labels()])


def test_harmonization_metrics_by_hand():
    gold = ["T1", "T1", "T2", "FLAIR", "Other"]
    pred = ["T1", "T2", "T2", "FLAIR", "T1"]
    m = harmonization_metrics(gold, pred)
    assert m["accuracy"] == pytest.approx(3 / 5)
    # T1: TP 1, FP 1 (Other->T1), FN 1 (T1->T2) -> F1 2/4. T2: TP 1, FP 1 -> 2/3. FLAIR 1. Other 0.
    # DWI, ADC, SWI: absent and never predicted -> 1 each.
    per = m["per_class"]
    assert per["T1"]["f1"] == pytest.approx(0.5)
    assert per["T2"]["f1"] == pytest.approx(2 / 3)
    assert per["FLAIR"]["f1"] == 1.0 and per["Other"]["f1"] == 0.0 and per["SWI"]["f1"] == 1.0
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1 + 0 + 3) / 7)
    t1, t2, other = (m["classes"].index(c) for c in ("T1", "T2", "Other"))
    assert m["confusion"][t1][t1] == 1 and m["confusion"][t1][t2] == 1 and m["confusion"][other][t1] == 1
    assert sum(map(sum, m["confusion"])) == 5


def test_rouge_by_hand():
    # reference "no acute disease", hypothesis "no acute findings": unigrams 2/3 both ways -> R1 2/3;
    # bigrams: "no acute" shared of 2 -> R2 1/2; LCS "no acute" = 2 -> RL 2/3.
    r = rouge_per_report(["No acute disease."], ["No acute findings."])
    assert r["rouge1"][0] == pytest.approx(2 / 3)
    assert r["rouge2"][0] == pytest.approx(1 / 2)
    assert r["rougeL"][0] == pytest.approx(2 / 3)


def test_prefix_inflates_rouge():
    # Without the prefix nothing is shared: 0. With "IMPRESSION:" both start with the token "impression":
    # ref "impression normal chest", hyp "impression clear lungs" -> 1 of 3 unigrams -> R1 = 1/3.
    m = impression_metrics(["Normal chest."], ["Clear lungs."])
    assert m["without_prefix"]["rouge1"] == 0.0
    assert m["with_prefix"]["rouge1"] == pytest.approx(1 / 3)
    assert m["with_prefix"]["rougeL"] == pytest.approx(1 / 3)
    assert m["without_prefix"]["bleu"] == 0.0


def test_bleu_identical_and_by_hand():
    assert bleu(["the heart is normal in size ."], ["the heart is normal in size ."]) == pytest.approx(1.0)
    # 5 tokens vs a 6-token reference, all n-grams of the hypothesis match (1..4-gram precisions 1):
    # BLEU = brevity penalty = exp(1 - 6/5)
    assert bleu(["the heart is normal in size"], ["the heart is normal in"]) == pytest.approx(math.exp(1 - 6 / 5), abs=1e-4)


def test_mcnemar_exact_by_hand():
    # A right on 6 items B gets wrong (b = 6), B right on 1 that A gets wrong (c = 1); 3 concordant.
    a = [True] * 6 + [False] + [True, True, False]
    b = [False] * 6 + [True] + [True, True, False]
    result = mcnemar(a, b)
    assert (result["b"], result["c"], result["method"]) == (6, 1, "exact")
    # two-sided exact: 2 * P(X <= 1 | n=7, p=1/2) = 2 * (1 + 7) / 128 = 0.125
    assert result["p_value"] == pytest.approx(0.125)


def test_mcnemar_chi2_by_hand():
    a = [True] * 30 + [False] * 10
    b = [False] * 30 + [True] * 10
    result = mcnemar(a, b)
    # (|30 - 10| - 1)^2 / 40 = 361 / 40
    assert result["method"] == "chi2"
    assert result["statistic"] == pytest.approx(9.025)
    assert result["p_value"] == pytest.approx(stats.chi2.sf(9.025, 1))


def test_mcnemar_no_discordance():
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0


def test_mcnemar_labels_per_key():
    gold = [_labels("Edema"), _labels()]
    a = [_labels("Edema"), _labels()]
    b = [_labels(), _labels()]
    result = mcnemar_labels(gold, a, b)
    # Edema: A right on report 1, B wrong there -> b 1; No Finding likewise (gold No, B says Yes).
    assert result["Edema"]["b"] == 1 and result[NO_FINDING]["b"] == 1
    assert result["Cardiomegaly"]["p_value"] == 1.0


def test_paired_t_test_matches_hand_and_scipy():
    a = [0.5, 0.7, 0.9, 0.6]
    b = [0.4, 0.7, 0.6, 0.6]
    # differences 0.1, 0, 0.3, 0: mean 0.1, sd (n-1) = sqrt(((0)^2+(.1)^2+(.2)^2+(.1)^2)/3) = sqrt(0.02)
    # t = 0.1 / (sqrt(0.02) / 2) = 1.41421...
    result = paired_t_test(a, b)
    assert result["mean_difference"] == pytest.approx(0.1)
    assert result["t"] == pytest.approx(math.sqrt(2))
    assert result["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_paired_t_test_degenerate():
    assert paired_t_test([0.3, 0.4], [0.3, 0.4])["p_value"] == 1.0
    assert paired_t_test([0.5, 0.6], [0.3, 0.4])["p_value"] == 0.0
