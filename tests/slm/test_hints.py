"""The rules' reading in the prompt of a model trained with it: the combination of rules and model."""

import shutil

import pytest

from slm.engine import load_engine
from slm.harmonizer import Prediction
from slm.hints import PROMPT_FILE, reads_hints, rule_answers, rule_hint, sure_rules_stand, write_prompt_file
from slm.neighbours import Neighbours
from slm.rules import CONFIDENCE, RuleHarmonizer
from slm.tasks import HARMONIZE, IMPRESSION, LABEL, LABEL_KEYS, label_pieces, report_text
from tests.support.paths import ROOT


def test_hints_say_what_the_rules_read():
    assert rule_hint(HARMONIZE, "t2_tirm_tra_dark-fluid") == "FLAIR"
    assert rule_hint(HARMONIZE, "ep2ddiffusionADC") in ("none", "Other", "DWI", "ADC", "DWI?", "ADC?")
    assert rule_hint(HARMONIZE, "xyzzy") == "none"  # no rule matched: the model is on its own
    report = report_text({"indication": "cardiomegaly?", "findings": "Small left pleural effusion. The heart is normal."})
    assert rule_hint(IMPRESSION, report) == "Pleural Effusion"  # the indication is not what is seen
    assert rule_hint(LABEL, report) is None  # labeling carries the rules' answers in its keys instead
    answers = dict(zip(LABEL_KEYS, rule_answers(report)))
    assert answers["Pleural Effusion"] == "Yes" and answers["Cardiomegaly"] == "No" and answers["No Finding"] == "No"
    pieces = [p for p in label_pieces(rule_answers(report)) if isinstance(p, str)]
    assert pieces[9] == '", "Pleural Effusion" (rules: Yes): "' and pieces[1] == '", "Cardiomegaly" (rules: No): "'
    assert rule_hint(IMPRESSION, report_text({"findings": "Lungs are clear."})) == "none"


def test_an_engine_asks_a_hinted_model_with_the_hint_and_others_without(tiny_model_folder, tmp_path):
    plain = load_engine(str(tiny_model_folder), device="cpu")
    assert not plain.rule_hints and not reads_hints(tiny_model_folder)
    hinted_folder = shutil.copytree(tiny_model_folder, tmp_path / "hinted")
    write_prompt_file(hinted_folder, rule_hints=True)
    hinted = load_engine(str(hinted_folder), device="cpu")
    assert hinted.rule_hints and (hinted_folder / PROMPT_FILE).is_file()
    decode = hinted.tokenizer.decode
    assert "### Rules:\nFLAIR\n" in decode(hinted._harmonize_rows(("AX T2 FLAIR", None)))
    assert "### Rules:" not in decode(plain._harmonize_rows(("AX T2 FLAIR", None)))
    effusion = "FINDINGS: Small left pleural effusion."
    ruled = rule_answers(effusion)
    pieces = hinted._label_pieces(ruled)
    assert decode(hinted._label_rows((effusion, pieces, ruled))).endswith(
        '### Response:\n{"Enlarged Cardiomediastinum" (rules: No): "')
    assert pieces[9] == hinted.tokenizer('", "Pleural Effusion" (rules: Yes): "', add_special_tokens=False)["input_ids"]
    # Answers stay valid and the same shape either way; the hinted model's keep the rules' where they are sure.
    sure = ["AX T2 FLAIR", "t1_mprage_sag", "ep2d_diff_3scan_trace_p2_ADC", "AAHead_Scout"]
    assert [p.label for p in hinted.harmonize(sure)] == [p.label for p in RuleHarmonizer().harmonize(sure)]
    assert len(hinted.harmonize(["AX T2 FLAIR", "xyzzy"])) == 2
    assert set(hinted.label([effusion])[0]) == set(plain.label(["x"])[0])


@pytest.mark.needs_data  # the tiny recipe's training data
def test_a_recipe_with_rule_hints_trains_a_model_that_reads_them(tmp_path, monkeypatch):
    from training.recipe import load_config
    from training.train import train

    monkeypatch.chdir(ROOT)  # the data sets are read from ../shared/data seen from the repository root
    folder = train(load_config("tiny", [f"output_dir={tmp_path / 'm'}", "rule_hints=true"]))
    assert reads_hints(folder) and load_engine(str(folder), device="cpu").rule_hints
    # Fine-tuning keeps the prompt the base was trained with, or says why not.
    with pytest.raises(ValueError, match="trained with rule hints: set rule_hints: true"):
        train(load_config("tiny", [f"output_dir={tmp_path / 'f'}", f"base={folder}"]))


def test_sure_rules_stand_against_the_model_unless_the_site_overruled_them_nearby():
    texts = ["AX T2 FLAIR", "xyzzy", "Ax T1 SE+C", "AXIAL FSE2"]  # sure FLAIR, nothing, sure T1, unsure T2
    model = [Prediction("T2", 0.99, "m"), Prediction("SWI", 0.6, "m"), Prediction("T1", 0.97, "m"),
             Prediction("Other", 0.8, "m")]
    answers = sure_rules_stand(texts, model)
    assert answers == [Prediction("FLAIR", CONFIDENCE["strong"], "m")] + model[1:]
    # A site that corrected a similar description against the sure rules, to the model's answer: the model stands.
    overruled = Neighbours([("Sag T2 FLAIR FS", "T2")])
    assert sure_rules_stand(texts, model, overruled) == model
    # Not when the correction agrees with the rules, says something else, or is far from the description.
    for known in (Neighbours([("Sag T2 FLAIR FS", "FLAIR")]), Neighbours([("Sag T2 FLAIR FS", "Other")]),
                  Neighbours([("t2_swi_tra_p2_2mm", "T2")])):
        assert sure_rules_stand(texts, model, known) == answers
