"""The series description generator: deterministic, balanced, labelled by its tables, and read alike by the rules."""

import csv
import random
import subprocess
import sys
from collections import Counter

import pytest
from click.testing import CliRunner

from slm.rules import RuleHarmonizer
from slm.tasks import SERIES_LABELS
from training.series_generator import LANGUAGES, ORIENTATIONS, TEMPLATES, VENDORS, Habits, _fill, generate, main


def test_same_seed_same_descriptions():
    assert generate(300, seed=7) == generate(300, seed=7)
    assert generate(300, seed=7) != generate(300, seed=8)


def test_classes_equal_by_default_and_weighted_on_request():
    counts = Counter(label for _, label, _ in generate(703, seed=0))
    assert set(counts) == set(SERIES_LABELS)
    assert sum(counts.values()) == 703 and max(counts.values()) - min(counts.values()) <= 1
    weights = {label: 1.0 for label in SERIES_LABELS} | {"Other": 3.0, "SWI": 0.0}
    counts = Counter(label for _, label, _ in generate(800, seed=0, class_weights=weights))
    assert counts["Other"] == 300 and counts["T1"] == 100 and "SWI" not in counts


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="class weights"):
        generate(10, class_weights={"T3": 1.0})


def test_every_label_vendor_and_language_has_names_and_every_slot_fills():
    rng = random.Random(0)
    for tables, styles in ((TEMPLATES, VENDORS), (LANGUAGES, LANGUAGES)):
        assert set(tables) == set(styles) and set(ORIENTATIONS) >= set(styles)
        for style, table in tables.items():
            assert set(table) == set(SERIES_LABELS), style
            for label, templates in table.items():
                for template in templates:
                    text = _fill(rng, template, "GE" if tables is LANGUAGES else style, style)
                    assert text.strip() and "{" not in text, (style, label, template)


def test_samples_are_valid_triples():
    samples = generate(500, seed=3)
    assert all(label in SERIES_LABELS and vendor in VENDORS and isinstance(d, str) for d, label, vendor in samples)
    assert len({d for d, _, _ in samples}) > 250  # varied, not a handful of names


def test_habits_apply_when_asked():
    padded = generate(100, seed=1, habits=Habits(padding=1.0))
    assert all(d != d.strip() for d, _, _ in padded)
    plain = generate(200, seed=1, habits=Habits(language=0, upper=0, lower=0, underscores=0, spaces=0, prefix=0,
                                                 suffix=0, padding=0, typo=0))
    assert all(d == d.strip() for d, _, _ in plain)


def test_hard_cases_are_labelled_by_their_tables():
    assert "{o} T1 FLAIR{c}" in TEMPLATES["GE"]["T1"]
    assert "{acq}_MPR_{O}" in TEMPLATES["Siemens"]["Other"]
    assert "{o} T2* GRE" in TEMPLATES["GE"]["Other"]
    assert "ep2d_diff_3scan_trace_p2_TRACEW" in TEMPLATES["Siemens"]["DWI"]
    assert "{o} PD FSE" in TEMPLATES["GE"]["Other"]


def test_rules_agree_with_generated_labels():
    samples = generate(3000, seed=11)
    predictions = RuleHarmonizer().harmonize([d for d, _, _ in samples])
    agreement = sum(p.label == label for p, (_, label, _) in zip(predictions, samples)) / len(samples)
    # Measured 0.991 on 20,000 (seed 0); every miss is a typo; 1.000 with typos turned off.
    assert agreement >= 0.97


def test_cli_writes_csv(tmp_path):
    out = tmp_path / "series.csv"
    result = CliRunner().invoke(main, ["--n", "50", "--seed", "2", "--weight", "Other=2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with out.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [tuple(row.values()) for row in rows] == generate(50, 2, class_weights={**dict.fromkeys(SERIES_LABELS, 1.0),
                                                                                    "Other": 2.0})


def test_cli_refuses_a_bad_weight():
    result = CliRunner().invoke(main, ["--weight", "T3=1"])
    assert result.exit_code != 0 and "T3" in result.output


def test_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "training.series_generator", "--n", "5", "--seed", "0"],
                            capture_output=True, text=True, timeout=60, check=True)
    lines = result.stdout.splitlines()
    assert lines[0] == '"description","label","vendor"' and len(lines) == 6
