"""The evaluation report end to end on a tiny random model, and its command line."""

import csv
import json
import shutil

import pytest
import yaml
from click.testing import CliRunner

from training.evaluate import main, series_split
from training.data import REAL_SERIES

# Figures that are proportions; every one of them in the report must lie in [0, 1].
PROPORTIONS = {"precision", "recall", "f1", "macro_f1", "macro_f1_findings", "micro_f1", "accuracy", "rouge1",
               "rouge2", "rougeL", "bleu", "p_value"}


def proportions(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in PROPORTIONS and isinstance(value, (int, float)):
                yield f"{path}.{key}", value
            else:
                yield from proportions(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from proportions(value, f"{path}[{i}]")


@pytest.fixture(scope="module")
def tiny_model(tiny_model_folder, tmp_path_factory):
    folder = shutil.copytree(tiny_model_folder, tmp_path_factory.mktemp("tiny") / "model")
    # A loss curve as training.train writes it, so the report draws training curves.
    with open(folder / "loss.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "epoch", "split", "loss", "lr"])
        writer.writeheader()
        writer.writerows([dict(step=s, epoch=1, split="train", loss=5 - s / 10, lr=1e-3) for s in range(1, 6)])
        writer.writerow(dict(step=5, epoch=1, split="dev", loss=4.7, lr=""))
    return folder


@pytest.mark.slow  # the whole report: every figure of three tasks, and its plots
@pytest.mark.needs_data  # the dev split it evaluates on
def test_report_end_to_end(tiny_model, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["--model", str(tiny_model), "--limit", "3", "--out", str(out), "--device", "cpu",
                                         "--impression-max-tokens", "8"])
    assert result.exit_code == 0, result.output
    for name in ("report.md", "figures.json", "predictions.jsonl", "labeling_f1.png", "harmonization_confusion.png",
                 "loss.png"):
        assert (out / name).stat().st_size > 0, name

    figures = json.loads((out / "figures.json").read_text())
    assert figures["split"] == "dev" and figures["model_version"].startswith(tiny_model.name)
    assert figures["labeling"]["gold"]["n"] == 3 and figures["labeling"]["silver"]["n"] == 3
    assert figures["harmonization"]["n"] == 3 and figures["impression"]["n"] == 3
    assert "silver_labeler" in figures["labeling"]["gold"]
    values = list(proportions(figures))
    assert len(values) > 100
    assert all(0 <= value <= 1 for _, value in values), [item for item in values if not 0 <= item[1] <= 1]

    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert {p["task"] for p in predictions} == {"label", "harmonize", "impression"}
    assert all(set(p["model"]) == set(p["gold"]) for p in predictions if p["task"] == "label")

    report = (out / "report.md").read_text()
    for heading in ("## Labeling", "### Against the gold labels", "### Against the silver labels", "## Harmonization",
                    "## Impression", "## Training curves", "McNemar", "t-test"):
        assert heading in report


def test_missing_model_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "Error:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_series_split_follows_the_recipe(tmp_path):
    assert series_split(None) == (REAL_SERIES, 0.3, 0)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({"data": {"series_csv": None, "series_holdout": 0.2, "seed": 7}}))
    assert series_split(tmp_path) == (REAL_SERIES, 0.2, 7)
