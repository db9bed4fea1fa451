"""Ablation commands on a tiny recipe (two short runs), and the poisoning transform they rely on."""

import json

import pytest
import yaml
from click.testing import CliRunner

from slm.tasks import FINDINGS, NO_FINDING
from training.ablations import cli
from training.data import OPENI, REAL_SERIES, recipe_examples
from training.recipe import DataSettings

TINY_DATA = {
    "tasks": ["harmonize", "label", "impression"],
    "openi": str(OPENI.resolve()),
    "series_csv": str(REAL_SERIES.resolve()),
    "limit_per_task": 8,
    "seed": 0,
}
TINY_RECIPE = {
    "output_dir": "unused",
    "base": "scratch",
    "size": "tiny",
    "vocab_size": 300,
    "data": TINY_DATA,
    "max_length": 512,
    "epochs": 1,
    "max_steps": 2,
    "batch_size": 4,
    "dev_loss": False,
}


@pytest.mark.needs_data
@pytest.mark.slow
def test_poison_command_tabulates_each_run(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    workdir = tmp_path / "poison"
    args = ["poison", "--recipe", str(recipe), "--fractions", "0,1", "--workdir", str(workdir), "--limit", "2",
            "--impression-max-tokens", "4"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((workdir / "table.json").read_text())
    assert [row["variant"] for row in rows] == ["0", "1"]
    for row in rows:
        assert set(row) >= {"macro_f1", "no_finding_rate", "harmonization_accuracy", "rougeL", "bleu"}
        assert all(0 <= value <= 1 for key, value in row.items() if key != "variant")
    assert "| labeling examples set negative |" in (workdir / "table.md").read_text()
    assert (workdir / "negative-1" / "evaluation" / "report.md").is_file()
    assert yaml.safe_load((workdir / "negative-1" / "recipe.yaml").read_text())["data"]["label_negative_fraction"] == 1


@pytest.mark.needs_data
def test_poisoning_touches_only_labeling_examples():
    clean = recipe_examples(DataSettings(**TINY_DATA), "train")
    poisoned = recipe_examples(DataSettings(**TINY_DATA, label_negative_fraction=0.5), "train")
    negative = {**{key: "No" for key in FINDINGS}, NO_FINDING: "Yes"}

    def by_task(examples, task):
        return sorted((e.text, str(e.answer)) for e in examples if e.task == task)

    for task in ("harmonize", "impression"):
        assert by_task(poisoned, task) == by_task(clean, task)
    clean_answers = {e.text: e.answer for e in clean if e.task == "label"}
    changed = [e for e in poisoned if e.task == "label" and e.answer != clean_answers[e.text]]
    set_negative = [e for e in poisoned if e.task == "label" and e.answer == negative]
    assert all(e.answer == negative for e in changed)
    assert len(set_negative) >= 4  # half of the 8 labeling examples, plus any that were negative already


def test_bad_fractions_are_refused(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    result = CliRunner().invoke(cli, ["poison", "--recipe", str(recipe), "--fractions", "0.5,2"])
    assert result.exit_code == 2 and "fractions must lie in [0, 1]" in result.output
