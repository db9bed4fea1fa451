"""harmonizer.kind auto and the report job's labeler follow a model's held-out figures: never worse than the rules."""

import shutil

import pytest

from dicom_node.config import Settings
from dicom_node.models import choose
from slm.engine import Engine
from slm.report_rules import RuleLabeler
from slm.rules import RuleHarmonizer
from training.gate import read_figures, rules_do_better, write_figures

REPORT = "FINDINGS: Small left pleural effusion. The heart is normal."


@pytest.fixture
def folder(tiny_model_folder, tmp_path):
    return shutil.copytree(tiny_model_folder, tmp_path / "model")


def settings_for(folder, kind="auto") -> Settings:
    return Settings.model_validate({"model": {"path": str(folder), "device": "cpu"}, "harmonizer": {"kind": kind}})


def test_rules_do_better_only_where_both_were_judged_and_the_rules_won():
    record = {"model": {"harmonization_accuracy": 0.80, "labeling_macro_f1": 0.95},
              "rules": {"harmonization_accuracy": 0.90, "labeling_macro_f1": 0.93}}
    assert rules_do_better(record, "harmonization_accuracy") and not rules_do_better(record, "labeling_macro_f1")
    assert not rules_do_better(record, "impression_rouge_l")  # the rules write no impressions
    assert not rules_do_better(None, "harmonization_accuracy")  # no figures: the model, as configured
    assert not rules_do_better(record, "harmonization_accuracy", margin=0.1)  # within the gate's allowed drop


def test_auto_picks_rules_when_the_models_figures_are_worse(folder):
    settings = settings_for(folder)
    assert isinstance(choose.harmonizer(settings, choose.Choice(settings.model)), Engine)  # no figures yet
    write_figures(folder, {"harmonization_accuracy": 0.62, "labeling_macro_f1": 0.40},
                  {"harmonization_accuracy": 0.93, "labeling_macro_f1": 0.93}, {"harmonize": 62, "label": 150})
    assert read_figures(folder)["held_out_examples"] == {"harmonize": 62, "label": 150}
    choice = choose.Choice(settings.model)
    assert isinstance(choose.harmonizer(settings, choice), RuleHarmonizer)
    assert isinstance(choose.harmonizer(settings_for(folder, "slm"), choice), Engine)  # slm: the model, always

    model = choose.report_model(settings, choice, RuleHarmonizer())
    reader = choose.pick_reader(settings, choice, model)
    assert reader.version == f"{model.version}+rule-labels"
    assert reader.label([REPORT]) == RuleLabeler().label([REPORT])
    assert reader.impression([REPORT]) == model.impression([REPORT])


@pytest.mark.parametrize("model_figures, rules_figures", [
    ((0.97, 0.95), (0.93, 0.93)),  # better than the rules
    ((0.968, 0.971), (0.984, 0.972)),  # the shipped model's dev figures: 0.016 and 0.001 below, within 0.02
])
def test_auto_keeps_the_model_when_its_figures_are_better_or_no_worse_than_the_gate_allows(
    folder, model_figures, rules_figures
):
    names = ("harmonization_accuracy", "labeling_macro_f1")
    write_figures(folder, dict(zip(names, model_figures)), dict(zip(names, rules_figures)), {"harmonize": 62})
    settings = settings_for(folder)
    choice = choose.Choice(settings.model)
    model = choose.harmonizer(settings, choice)
    assert isinstance(model, Engine) and choose.pick_reader(settings, choice, model) is model


def test_a_version_never_judged_on_reports_labels_them_with_the_rules(folder):
    """A harmonization-only retraining (retrain_harmonize) trained and judged descriptions only."""
    write_figures(folder, {"harmonization_accuracy": 1.0, "corrections_accuracy": 1.0},
                  {"harmonization_accuracy": 0.99}, {"harmonize": 200})
    settings = settings_for(folder)
    choice = choose.Choice(settings.model)
    model = choose.harmonizer(settings, choice)
    assert isinstance(model, Engine)  # it harmonizes: that is what it was judged on
    reader = choose.pick_reader(settings, choice, model)
    assert reader.version == f"{model.version}+rule-labels" and reader.impression == model.impression
