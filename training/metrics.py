"""Figures that judge a model on the three tasks, and the tests that compare two models.

Pure functions of gold and predicted values; nothing here loads a model or a file.

F1 convention: F1 = 2·TP / (2·TP + FP + FN). When a label has no gold positives and no predicted
positives (TP = FP = FN = 0) the model agreed perfectly with the absence, and precision, recall and
F1 are all 1.0. Otherwise an empty denominator gives 0.0 (no predictions but some positives: precision
0.0, recall 0.0; predictions but no positives: recall 0.0). Macro averages include such labels, so a
label absent from a small gold set neither rescues nor sinks a model that also never predicts it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from slm.tasks import FINDINGS, IMPRESSION_PREFIX, LABEL_KEYS, SERIES_LABELS

YES = "Yes"
# Below this many discordant pairs McNemar's chi-square is a poor approximation: use the exact binomial.
EXACT_MCNEMAR_BELOW = 25
# Reliability-table bins: wide where a 7-way softmax rarely answers, fine near the top where it usually does.
CALIBRATION_EDGES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float
    support: int  # gold positives
    tp: int
    fp: int
    fn: int


def scores(tp: int, fp: int, fn: int) -> Scores:
    """Precision, recall and F1 from counts, with the convention of the module docstring."""
    if tp + fp + fn == 0:
        return Scores(1.0, 1.0, 1.0, 0, 0, 0, 0)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return Scores(precision, recall, 2 * tp / (2 * tp + fp + fn), tp + fn, tp, fp, fn)


def binary_scores(gold: Sequence[bool], predicted: Sequence[bool]) -> Scores:
    gold, predicted = np.asarray(gold, bool), np.asarray(predicted, bool)
    if gold.shape != predicted.shape:
        raise ValueError(f"{gold.shape[0]} gold values but {predicted.shape[0]} predictions")
    return scores(int((gold & predicted).sum()), int((~gold & predicted).sum()), int((gold & ~predicted).sum()))


def labeling_metrics(gold: Sequence[Mapping[str, str]], predicted: Sequence[Mapping[str, str]]) -> dict:
    """Per-label scores, macro-F1 over the 14 keys (the study's headline), over the 13 findings, and micro-F1.

    Micro-F1 pools the TP/FP/FN counts of the 14 keys.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold reports but {len(predicted)} predictions")
    per_label = {
        key: binary_scores([g[key] == YES for g in gold], [p[key] == YES for p in predicted]) for key in LABEL_KEYS
    }
    pooled = [sum(getattr(s, name) for s in per_label.values()) for name in ("tp", "fp", "fn")]
    return {
        "n": len(gold),
        "macro_f1": float(np.mean([per_label[k].f1 for k in LABEL_KEYS])),
        "macro_f1_findings": float(np.mean([per_label[k].f1 for k in FINDINGS])),
        "micro_f1": scores(*pooled).f1,
        "per_label": {key: asdict(s) for key, s in per_label.items()},
    }


def harmonization_metrics(gold: Sequence[str], predicted: Sequence[str], classes: Sequence[str] = SERIES_LABELS) -> dict:
    """Accuracy, per-class scores, macro-F1 and the confusion matrix (rows gold, columns predicted, in `classes` order)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), int)
    for g, p in zip(gold, predicted):
        confusion[index[g], index[p]] += 1
    per_class = {}
    for c, i in index.items():
        tp = int(confusion[i, i])
        per_class[c] = scores(tp, int(confusion[:, i].sum()) - tp, int(confusion[i].sum()) - tp)
    return {
        "n": len(gold),
        "accuracy": float(np.trace(confusion) / len(gold)) if len(gold) else 0.0,
        "macro_f1": float(np.mean([s.f1 for s in per_class.values()])),
        "per_class": {c: asdict(s) for c, s in per_class.items()},
        "classes": list(classes),
        "confusion": confusion.tolist(),
    }


def calibration(confidences: Sequence[float], correct: Sequence[bool], edges: Sequence[float] = CALIBRATION_EDGES) -> dict:
    """Does a confidence mean what it says? The reliability table and the expected calibration error.

    Answers fall in bins by confidence (a bin holds edges[i] <= c < edges[i+1], the last one includes 1.0);
    each bin's accuracy is set against its mean confidence. ECE is the answers-weighted mean of
    |accuracy - confidence| over the bins. `at_least_0.9` is the accuracy of the answers given with
    confidence >= 0.9, the figure `mappings --below 0.9` relies on.
    """
    if len(confidences) != len(correct):
        raise ValueError(f"{len(confidences)} confidences but {len(correct)} answers")
    c, ok = np.asarray(confidences, float), np.asarray(correct, bool)
    bins, ece = [], 0.0
    for i, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        inside = (c >= low) & ((c < high) if i < len(edges) - 2 else (c <= high))
        n = int(inside.sum())
        if not n:
            continue
        accuracy, confidence = float(ok[inside].mean()), float(c[inside].mean())
        bins.append({"low": low, "high": high, "n": n, "accuracy": accuracy, "confidence": confidence})
        ece += n / len(c) * abs(accuracy - confidence)
    sure = c >= 0.9
    return {
        "n": len(c),
        "ece": ece,
        "bins": bins,
        "at_least_0.9": {"n": int(sure.sum()), "accuracy": float(ok[sure].mean()) if sure.any() else None},
    }


def _with_prefix(text: str) -> str:
    return f"{IMPRESSION_PREFIX} {text}"


def rouge_per_report(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, list[float]]:
    """ROUGE-1/2/L F-measures per report (rouge-score's tokenizer: lower case, alphanumeric tokens, no stemming)."""
    from rouge_score import rouge_scorer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    per_report = [scorer.score(r, h) for r, h in zip(references, hypotheses)]
    return {name: [s[name].fmeasure for s in per_report] for name in ("rouge1", "rouge2", "rougeL")}


def bleu(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus BLEU-4 (sacrebleu, 13a tokenization, one reference per report), scaled to [0, 1]."""
    import sacrebleu

    return sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score / 100


def impression_metrics(references: Sequence[str], hypotheses: Sequence[str]) -> dict:
    """Mean ROUGE-1/2/L and corpus BLEU, without the "IMPRESSION:" prefix and with it.

    Texts are given without the prefix. The study scored texts that both start with "IMPRESSION:",
    a shared token that lifts every figure (most of all on short impressions): "with_prefix" is
    there only to compare with its numbers.
    """
    figures = {}
    for name, wrap in (("without_prefix", lambda t: t), ("with_prefix", _with_prefix)):
        refs, hyps = [wrap(r) for r in references], [wrap(h) for h in hypotheses]
        rouge = rouge_per_report(refs, hyps)
        figures[name] = {key: float(np.mean(values)) if values else 0.0 for key, values in rouge.items()}
        figures[name]["bleu"] = bleu(refs, hyps) if refs else 0.0
    return {"n": len(references), **figures}


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict:
    """McNemar's test on paired right/wrong outcomes of two models on the same items.

    b counts items only A got right, c items only B got right. Below EXACT_MCNEMAR_BELOW discordant
    pairs the two-sided exact binomial test (b ~ Binomial(b + c, 1/2)); otherwise chi-square with
    continuity correction, (|b - c| - 1)^2 / (b + c), one degree of freedom.
    """
    a, b_ = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b_.shape:
        raise ValueError(f"{a.shape[0]} outcomes for A but {b_.shape[0]} for B")
    b, c = int((a & ~b_).sum()), int((~a & b_).sum())
    if b + c == 0:
        return {"b": 0, "c": 0, "method": "none", "statistic": 0.0, "p_value": 1.0}
    if b + c < EXACT_MCNEMAR_BELOW:
        p = stats.binomtest(b, b + c, 0.5).pvalue
        return {"b": b, "c": c, "method": "exact", "statistic": float(min(b, c)), "p_value": float(min(1.0, p))}
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    return {"b": b, "c": c, "method": "chi2", "statistic": float(statistic), "p_value": float(stats.chi2.sf(statistic, 1))}


def mcnemar_labels(
    gold: Sequence[Mapping[str, str]], predicted_a: Sequence[Mapping[str, str]], predicted_b: Sequence[Mapping[str, str]]
) -> dict[str, dict]:
    """McNemar per label key: is model A right on each report more often than model B?"""
    return {
        key: mcnemar([a[key] == g[key] for g, a in zip(gold, predicted_a)], [b[key] == g[key] for g, b in zip(gold, predicted_b)])
        for key in LABEL_KEYS
    }


def paired_t_test(scores_a: Sequence[float], scores_b: Sequence[float]) -> dict:
    """Paired t-test on per-item scores (per-report ROUGE-L); identical scores give t = 0, p = 1."""
    a, b = np.asarray(scores_a, float), np.asarray(scores_b, float)
    if a.shape != b.shape:
        raise ValueError(f"{a.shape[0]} scores for A but {b.shape[0]} for B")
    diff = a - b
    if len(diff) < 2 or not diff.any():
        return {"n": len(diff), "mean_difference": float(diff.mean()) if len(diff) else 0.0, "t": 0.0, "p_value": 1.0}
    if np.ptp(diff) < 1e-12:  # a constant non-zero difference (up to rounding): no variance, the difference is certain
        return {"n": len(diff), "mean_difference": float(diff[0]), "t": float(np.sign(diff[0]) * np.inf), "p_value": 0.0}
    result = stats.ttest_rel(a, b)
    return {"n": len(diff), "mean_difference": float(diff.mean()), "t": float(result.statistic), "p_value": float(result.pvalue)}

