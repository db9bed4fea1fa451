"""The rules' error analysis on a hand-made split: scores, misses listed, test refused."""

import csv

from click.testing import CliRunner

from slm.tasks import FINDINGS
from training.rule_errors import main

REPORTS = [  # uid, findings; the gold label says Pneumothorax for both, the rules find it in the first only
    ("1", "Small right pneumothorax."),
    ("2", "The lungs are clear."),
]


def write_data(folder):
    openi = folder / "openi"
    openi.mkdir()
    with open(openi / "reports.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["uid", "split", "indication", "comparison", "findings", "impression", "mesh", "exam"])
        writer.writerows([uid, "train", "", "", findings, "", "", ""] for uid, findings in REPORTS)
    with open(openi / "labels_train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["uid", *FINDINGS])
        writer.writerows([uid, *("Yes" if key == "Pneumothorax" else "No" for key in FINDINGS)] for uid, _ in REPORTS)
    series = folder / "series.csv"
    series.write_text("description,label\nAX T2,T2\nSAG T1,T1\nBRAINSTRYKERt1AX,T1\nfoo,FLAIR\n", encoding="utf-8")
    return openi, series


def test_scores_and_misses_of_the_rules(tmp_path):
    openi, series = write_data(tmp_path)
    result = CliRunner().invoke(main, ["--openi", str(openi), "--series", str(series), "--misses"])
    assert result.exit_code == 0, result.output
    # Pneumothorax: 1 of 2 found, no false alarm: F1 = 2/3; the 12 findings never present score 1.
    assert "| Pneumothorax | 0.667 |" in result.output
    assert "harmonization, train part (4 descriptions), rules: 0.750 (3)" in result.output
    assert "miss\tPneumothorax\t2\tgold Yes\trules No" in result.output
    assert "miss\tseries\t'foo'\tgold FLAIR\trules Other" in result.output


def test_test_split_is_refused(tmp_path):
    openi, series = write_data(tmp_path)
    result = CliRunner().invoke(main, ["--split", "test", "--openi", str(openi), "--series", str(series)])
    assert result.exit_code != 0 and "test" in result.output
