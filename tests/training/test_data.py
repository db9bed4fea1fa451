"""Data builders: fixed splits respected, report text as the model reads it, labels, descriptions, corrections."""

import csv
import json
from collections import Counter

import pytest

from slm.tasks import FINDINGS, LABEL_KEYS, NO_FINDING
from training.data import (
    OPENI,
    REAL_SERIES,
    Example,
    corrections_examples,
    description_key,
    mix,
    openi_examples,
    recipe_examples,
    series_csv_examples,
    series_examples,
    split_descriptions,
)
from training.recipe import DataSettings

REPORT_COLUMNS = ["uid", "split", "indication", "comparison", "findings", "impression", "mesh", "exam"]
REPORTS = [
    dict(uid="1", split="train", indication="Chest  pain", comparison="None.", findings="Heart normal.\nLungs clear.",
         impression="No acute disease."),
    dict(uid="2", split="train", indication="", comparison="", findings="", impression=""),  # no text at all
    dict(uid="3", split="train", indication="Cough", comparison="", findings="", impression="Right lower lobe pneumonia."),
    dict(uid="4", split="dev", indication="Fever", comparison="", findings="Small effusion.", impression="Effusion."),
    dict(uid="5", split="test", indication="Trauma", comparison="", findings="Rib fracture.", impression="Fracture."),
]


def write_csv(path, columns, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def label_row(uid, yes=(), no_finding="No"):
    # No Finding is written wrong on purpose for uid 1: the builder must derive it, not read it.
    return {"uid": uid, **{f: "Yes" if f in yes else "No" for f in FINDINGS}, NO_FINDING: no_finding}


@pytest.fixture
def openi(tmp_path):
    write_csv(tmp_path / "reports.csv", REPORT_COLUMNS, REPORTS)
    columns = ["uid", *LABEL_KEYS]
    write_csv(tmp_path / "labels_train.csv", columns, [label_row("1"), label_row("2"), label_row("3", ["Pneumonia"])])
    write_csv(tmp_path / "labels_dev_gold.csv", columns, [label_row("4", ["Pleural Effusion"])])
    return tmp_path


def test_label_examples_read_every_section(openi):
    examples = openi_examples("train", ["label"], openi)
    assert [e.uid for e in examples] == ["1", "3"]  # report 2 has no text
    assert examples[0].text == (
        "INDICATION: Chest pain\nCOMPARISON: None.\nFINDINGS: Heart normal. Lungs clear.\nIMPRESSION: No acute disease."
    )
    assert examples[1].text == "INDICATION: Cough\nIMPRESSION: Right lower lobe pneumonia."


def test_no_finding_is_derived_from_the_13(openi):
    first, third = openi_examples("train", ["label"], openi)
    assert list(first.answer) == list(LABEL_KEYS)
    assert first.answer[NO_FINDING] == "Yes"  # the file says No; all 13 are No
    assert third.answer["Pneumonia"] == "Yes" and third.answer[NO_FINDING] == "No"


def test_impression_examples_need_findings_and_leave_the_impression_out(openi):
    examples = openi_examples("train", ["impression"], openi)
    assert [(e.uid, e.text, e.answer) for e in examples] == [
        ("1", "INDICATION: Chest pain\nCOMPARISON: None.\nFINDINGS: Heart normal. Lungs clear.", "No acute disease.")
    ]


def test_each_split_reads_its_own_rows_and_labels(openi):
    dev = openi_examples("dev", ["label", "impression"], openi)
    assert {e.uid for e in dev} == {"4"}
    assert next(e for e in dev if e.task == "label").answer["Pleural Effusion"] == "Yes"
    assert [e.task for e in openi_examples("test", ["impression"], openi)] == ["impression"]
    with pytest.raises(FileNotFoundError, match="no rubric labels for the test split"):
        openi_examples("test", ["label"], openi)
    with pytest.raises(ValueError, match="split must be one of"):
        openi_examples("validation", ["label"], openi)


@pytest.mark.needs_data
def test_train_examples_of_the_real_data_hold_no_dev_or_test_report():
    with open(OPENI / "reports.csv", newline="", encoding="utf-8") as f:
        split_of = {row["uid"]: row["split"] for row in csv.DictReader(f)}
    train = openi_examples("train", ["label", "impression"], OPENI)
    assert {split_of[e.uid] for e in train} == {"train"}
    counts = Counter(e.task for e in train)
    assert counts["label"] == 2678 and counts["impression"] == 2327
    dev_labels = openi_examples("dev", ["label"], OPENI)
    assert len(dev_labels) == 150 and {split_of[e.uid] for e in dev_labels} == {"dev"}


@pytest.mark.needs_data
def test_descriptions_keep_their_blanks():
    texts = {e.text for e in series_csv_examples(REAL_SERIES)}
    assert "           MPRAGE" in texts and "MPRAGE" in texts


def test_description_split_is_deterministic_disjoint_and_keeps_spellings_together():
    examples = [Example("harmonize", f"AX T2 {i}", "T2") for i in range(20)]
    examples += [Example("harmonize", "ax_t2_flair", "FLAIR"), Example("harmonize", " AX T2 FLAIR", "FLAIR")]
    examples += [Example("harmonize", f"FLAIR {i}", "FLAIR") for i in range(8)]
    parts = split_descriptions(examples, holdout=0.4, seed=3)
    assert parts == split_descriptions(examples, holdout=0.4, seed=3)
    assert parts != split_descriptions(examples, holdout=0.4, seed=4)
    assert sorted(e.text for p in parts.values() for e in p) == sorted(e.text for e in examples)
    t2 = {name: sum(e.answer == "T2" for e in part) for name, part in parts.items()}
    assert t2 == {"train": 12, "dev": 4, "test": 4}  # 0.4 of 20 held out, shared equally
    flair_part = [name for name, part in parts.items() if any(description_key(e.text) == "ax t2 flair" for e in part)]
    assert len(flair_part) == 1 and sum(description_key(e.text) == "ax t2 flair" for e in parts[flair_part[0]]) == 2


@pytest.mark.needs_data
def test_real_description_parts_by_name():
    train, dev, test = (series_examples(REAL_SERIES, part, 0.3, 0) for part in ("train", "dev", "test"))
    assert len(train) + len(dev) + len(test) == len(series_examples(REAL_SERIES, "all"))
    assert not {description_key(e.text) for e in train} & {description_key(e.text) for e in dev + test}
    assert 50 <= len(dev) <= 80 and 50 <= len(test) <= 80


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_a_corrections_export_becomes_training_examples(tmp_path, suffix):
    rows = [
        dict(description="AX T2 FLAIR", label="T2", who="alice", note="", created_at="2024-01-01T10:00:00"),
        dict(description="  sag mprage ", label="T1", who="bob", note="post-contrast", created_at="2024-01-02T09:00:00"),
        dict(description="AX T2 FLAIR", label="FLAIR", who="carol", note="fixed", created_at="2024-01-03T08:00:00"),
    ]
    path = tmp_path / f"corrections{suffix}"
    if suffix == ".csv":
        write_csv(path, list(rows[0]), rows)
    else:
        path.write_text(json.dumps(rows))
    examples = corrections_examples(path)
    assert sorted((e.task, e.text, e.answer) for e in examples) == [
        ("harmonize", "  sag mprage ", "T1"),
        ("harmonize", "AX T2 FLAIR", "FLAIR"),  # the latest correction wins
    ]


def test_a_csv_export_trains_on_descriptions_as_written_not_as_escaped_for_spreadsheets(tmp_path):
    from dicom_node.store.exchange import encode_rows

    rows = [dict(description=text, label="T1", who="a", note="", created_at="1") for text in ("+C AX T1", "'quoted", "T1")]
    path = tmp_path / "corrections.csv"
    path.write_text(encode_rows(rows, list(rows[0]), "csv"))
    assert "'+C AX T1" in path.read_text()  # what a spreadsheet sees
    assert sorted(e.text for e in corrections_examples(path)) == ["'quoted", "+C AX T1", "T1"]


def test_a_correction_with_an_unknown_label_is_refused(tmp_path):
    path = tmp_path / "corrections.json"
    path.write_text(json.dumps([dict(description="AX PD", label="PD", who="x", note=None, created_at="2024")]))
    with pytest.raises(ValueError, match="'PD'"):
        corrections_examples(path)


def test_mix_weights_repeat_or_sample_each_task():
    examples = [Example("label", f"r{i}", {}) for i in range(10)] + [Example("harmonize", f"d{i}", "T1") for i in range(10)]
    mixed = mix(examples, {"harmonize": 2.0, "label": 0.5}, seed=1)
    assert Counter(e.task for e in mixed) == {"harmonize": 20, "label": 5}
    assert Counter(e.text for e in mixed if e.task == "harmonize") == {f"d{i}": 2 for i in range(10)}
    assert mixed == mix(examples, {"harmonize": 2.0, "label": 0.5}, seed=1)
    assert [e.task for e in mixed] != sorted(e.task for e in mixed)  # shuffled, not grouped


RECIPE_DATA = dict(openi=str(OPENI.resolve()), series_csv=str(REAL_SERIES.resolve()), series_holdout=0.3, series_generated=0,
                   corrections=[], weights={}, limit_per_task=None, label_negative_fraction=0.0, seed=0)


@pytest.mark.needs_data
def test_single_task_recipe_and_no_test_split():
    examples = recipe_examples(DataSettings(**RECIPE_DATA, tasks=["harmonize"]), "train")
    assert {e.task for e in examples} == {"harmonize"}
    assert len(examples) == len(series_examples(REAL_SERIES, "train", 0.3, 0))
    with pytest.raises(ValueError, match="never test|test is for the final"):
        recipe_examples(DataSettings(**RECIPE_DATA, tasks=["label"]), "test")
    with pytest.raises(ValueError, match="unknown tasks"):
        recipe_examples(DataSettings(**{**RECIPE_DATA, "tasks": ["label"], "weights": {"labels": 2.0}}), "train")


@pytest.mark.needs_data
def test_corrections_of_held_out_descriptions_are_not_trained_on(tmp_path):
    held_out = series_examples(REAL_SERIES, "test", 0.3, 0)[0]
    path = write_csv(tmp_path / "c.csv", ["description", "label", "who", "note", "created_at"], [
        dict(description=held_out.text.upper() + " ", label=held_out.answer, who="a", note="", created_at="1"),
        dict(description="brand new description", label="SWI", who="a", note="", created_at="1"),
    ])
    examples = recipe_examples(DataSettings(**{**RECIPE_DATA, "tasks": ["harmonize"], "corrections": [str(path)]}), "train")
    texts = {e.text for e in examples}
    assert "brand new description" in texts and held_out.text.upper() + " " not in texts


@pytest.mark.needs_data
def test_a_recipe_saved_before_data_root_still_finds_its_data(monkeypatch):
    from training.recipe import load_config
    from tests.support.paths import ROOT

    monkeypatch.chdir(ROOT)
    # A model folder's recipe.yaml written before data.root named its data from the repository root.
    shipped = load_config(ROOT / "slm" / "default_model" / "recipe.yaml", [
        "output_dir=unused", "data.openi=../shared/data/openi", "data.series_csv=../shared/data/series/real_public.csv"])
    assert shipped.data.root is None
    assert {e.task for e in recipe_examples(shipped.data.model_copy(update={"limit_per_task": 2}), "dev")} == {
        "harmonize", "label", "impression"}
