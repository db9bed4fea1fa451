"""The evidence behind "sure rules stand": the tally by rule confidence, counted by hand on a tiny model."""

import shutil

from click.testing import CliRunner

from slm.engine import load_engine
from slm.hints import write_prompt_file
from slm.rules import decide
from training.series_generator import generate
from training.sure_rules import main, tally


def test_the_tally_counts_each_description_once_under_its_rule_confidence(tiny_model_folder, tmp_path):
    samples = generate(60, 3)
    hinted_folder = shutil.copytree(tiny_model_folder, tmp_path / "hinted")
    write_prompt_file(hinted_folder, rule_hints=True)
    for folder in (tiny_model_folder, hinted_folder):
        engine = load_engine(str(folder), device="cpu")
        table = tally(engine, samples)
        assert sum(row["descriptions"] for row in table.values()) == len(samples)
        for confidence, row in table.items():
            here = [(text, gold) for text, gold, _ in samples if decide(text).confidence == confidence]
            assert row["descriptions"] == len(here)
            assert row["rules right"] == sum(decide(text).label == gold for text, gold in here)
            assert row["model alone right there"] + row["rules right there"] <= row["disagree"]
            if engine.rule_hints and confidence >= 0.85:  # sure: the model answers as the rules
                assert row["model as it answers right"] == row["rules right"]
            elif not engine.rule_hints:  # a model without hints answers alone
                assert row["model as it answers right"] == row["model alone right"]


def test_the_command_prints_a_row_per_rule_confidence_and_a_total(tiny_model_folder):
    result = CliRunner().invoke(main, ["--model", str(tiny_model_folder), "--seeds", "5", "--n", "30"])
    assert result.exit_code == 0, result.output
    assert "30 generated descriptions (seeds 5)" in result.output
    assert result.output.strip().splitlines()[-1].startswith("| all | 30 |")
