import csv
import io
import json

import pytest
from click.testing import CliRunner
from tests.support.databases import store_url
from tests.support.dicom_factory import mr_instance
from pydicom.uid import ExplicitVRLittleEndian

from dicom_node.cli.main import cli
from dicom_node.store import mappings
from dicom_node.dicom.header import InstanceRecord
from dicom_node.store.database import Store
from slm.harmonizer import Prediction

STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES = [  # series UID, description, model label, confidence
    ("1.2.826.0.1.3680043.8.498.11", "t1_mprage_sag", "T1", 0.97),
    ("1.2.826.0.1.3680043.8.498.12", "AX T2 FLAIR", "T2", 0.41),
    ("1.2.826.0.1.3680043.8.498.13", "ep2d_diff_3scan", "DWI", 0.88),
    ("1.2.826.0.1.3680043.8.498.14", "Ax SWAN", None, None),  # still queued
]


def fill(url: str) -> Store:
    store = Store(url)
    for number, (series_uid, description, label, confidence) in enumerate(SERIES, start=1):
        instance = mr_instance(description, study_uid=STUDY, series_uid=series_uid, series_number=number)
        store.record_instance(InstanceRecord.from_dataset(instance, ExplicitVRLittleEndian))
        if label:
            mappings.save_predictions(store, [description], [Prediction(label, confidence, "rules-1")])
    return store


@pytest.fixture
def node(tmp_path):
    """Run `slmnode --config <a config naming a store in tmp_path> ...` and return the result."""

    def run(*args, config="node.yaml", store=None):
        (tmp_path / config).write_text(f"store:\n  url: {store or store_url(tmp_path)}\n")
        return CliRunner().invoke(cli, ["--config", str(tmp_path / config), *map(str, args)])

    fill(store_url(tmp_path))
    return run


def ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def test_mappings_table_and_filters(node):
    table = ok(node("mappings"))
    header = table.splitlines()[0].split()
    assert header == ["description", "label", "source", "confidence", "series_count", "first_seen"]
    assert "AX T2 FLAIR" in table and "queued" in table and "0.41" in table

    def listed(*filters):
        return [row["description"] for row in json.loads(ok(node("mappings", "--format", "json", *filters)))]

    assert listed() == ["AX T2 FLAIR", "Ax SWAN", "ep2d_diff_3scan", "t1_mprage_sag"]
    assert listed("--label", "t1") == ["t1_mprage_sag"]
    assert listed("--below", "0.5") == ["AX T2 FLAIR"]
    assert listed("--search", "ax ") == ["AX T2 FLAIR", "Ax SWAN"]
    assert listed("--since", "2000-01-01") == listed() and listed("--since", "2999-01-01") == []
    ok(node("correct", "AX T2 FLAIR", "FLAIR", "--who", "dr. a"))
    assert listed("--unreviewed") == ["Ax SWAN", "ep2d_diff_3scan", "t1_mprage_sag"]
    assert listed("--label", "FLAIR") == ["AX T2 FLAIR"]

    rows = list(csv.DictReader(io.StringIO(ok(node("mappings", "--format", "csv", "--label", "FLAIR")))))
    assert rows == [
        {
            "description": "AX T2 FLAIR",
            "label": "FLAIR",
            "confidence": "0.41",
            "model_version": "rules-1",
            "mapped_at": rows[0]["mapped_at"],
            "corrected": "true",
            "series_count": "1",
        }
    ]
    assert "--below" in node("mappings", "--below", "2").output  # out of range: a usage error
    assert node("mappings", "--since", "yesterday").exit_code == 2


def test_show_study_and_series(node):
    table = ok(node("show", "--study", STUDY))
    assert [line.split()[0] for line in table.splitlines()[2:]] == ["1", "2", "3", "4"]
    one = json.loads(ok(node("show", "--series", SERIES[2][0], "--format", "json")))
    assert one == [
        {
            "study_uid": STUDY,
            "series_uid": SERIES[2][0],
            "series_number": 3,
            "modality": "MR",
            "description": "ep2d_diff_3scan",
            "label": "DWI",
            "confidence": 0.88,
            "model_version": "rules-1",
            "source": "model",
            "instances": 1,
        }
    ]
    missing = node("show", "--series", "1.2.3.4")
    assert missing.exit_code == 1 and "no series 1.2.3.4 in the store" in missing.output
    assert node("show").exit_code == 2
    assert node("show", "--study", STUDY, "--series", SERIES[0][0]).exit_code == 2


def test_correct_wins_for_stored_series_and_refuses_unknowns(node):
    out = ok(node("correct", "ep2d_diff_3scan", "adc", "--note", "it is the ADC map", "--who", "dr. b"))
    assert "is now ADC" in out
    shown = json.loads(ok(node("show", "--series", SERIES[2][0], "--format", "json")))[0]
    assert (shown["label"], shown["source"]) == ("ADC", "corrected")

    unknown = node("correct", "t3_space", "T2", "--who", "dr. b")
    assert unknown.exit_code == 1
    assert "no series description 't3_space' in the store" in unknown.output
    assert "Traceback" not in unknown.output
    bad_label = node("correct", "ep2d_diff_3scan", "PD")
    assert bad_label.exit_code == 2 and "'PD' is not one of" in bad_label.output


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_import_round_trip(node, tmp_path, fmt):
    ok(node("correct", "AX T2 FLAIR", "FLAIR", "--who", "dr. a", "--note", "fluid, suppressed"))
    ok(node("correct", "Ax SWAN", "SWI", "--who", "dr. b"))
    for what in ("mappings", "corrections"):
        ok(node("export", what, "--format", fmt, "-o", tmp_path / f"{what}.{fmt}"))

    other = {"config": "other.yaml", "store": store_url(tmp_path, "other")}  # a second node, empty
    assert "mappings: 2 added, 0 already there, 2 skipped" in ok(node("import", tmp_path / f"mappings.{fmt}", **other))
    assert "corrections: 2 added, 0 already there" in ok(node("import", tmp_path / f"corrections.{fmt}", **other))
    for what in ("mappings", "corrections"):  # importing again changes nothing
        assert "0 added" in ok(node("import", tmp_path / f"{what}.{fmt}", **other))

    assert ok(node("export", "corrections", "--format", fmt, **other)) == (tmp_path / f"corrections.{fmt}").read_text()
    here = json.loads(ok(node("export", "mappings", "--format", "json")))
    there = json.loads(ok(node("export", "mappings", "--format", "json", **other)))
    model_fields = ("description", "label", "confidence", "model_version", "mapped_at")
    assert [[r[f] for f in model_fields] for r in here if not r["corrected"]] == [
        [r[f] for f in model_fields] for r in there if not r["corrected"]
    ]
    assert {r["description"]: r["label"] for r in there if r["corrected"]} == {"AX T2 FLAIR": "FLAIR", "Ax SWAN": "SWI"}


FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tT1", "'=quoted"]


def test_csv_exports_escape_formula_cells_and_import_reads_them_back(node, tmp_path):
    store = Store(store_url(tmp_path))
    for number, description in enumerate(FORMULAS, start=10):
        instance = mr_instance(description, study_uid=STUDY, series_uid=f"{STUDY}.{number}", series_number=number)
        store.record_instance(InstanceRecord.from_dataset(instance, ExplicitVRLittleEndian))
        mappings.save_predictions(store, [description], [Prediction("T1", 0.5, "rules-1")])
    store.close()
    ok(node("correct", FORMULAS[0], "Other", "--who", "=cmd()", "--note", "@note"))
    for what in ("mappings", "corrections"):
        ok(node("export", what, "--format", "csv", "-o", tmp_path / f"{what}.csv"))
        for row in csv.DictReader(io.StringIO((tmp_path / f"{what}.csv").read_text())):
            for value in row.values():  # what a spreadsheet would run: none of it
                assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value

    other = {"config": "other.yaml", "store": store_url(tmp_path, "other")}
    ok(node("import", tmp_path / "mappings.csv", **other))
    ok(node("import", tmp_path / "corrections.csv", **other))
    there = {row["description"] for row in json.loads(ok(node("export", "mappings", "--format", "json", **other)))}
    assert set(FORMULAS) <= there
    (correction,) = json.loads(ok(node("export", "corrections", "--format", "json", **other)))
    assert (correction["description"], correction["who"], correction["note"]) == (FORMULAS[0], "=cmd()", "@note")


def test_the_table_shows_control_characters_escaped(node, tmp_path):
    store = Store(store_url(tmp_path))
    instance = mr_instance("t1\x07bell\x08\x7f\x1b[2J", study_uid=STUDY, series_uid=f"{STUDY}.99", series_number=99)
    store.record_instance(InstanceRecord.from_dataset(instance, ExplicitVRLittleEndian))
    store.close()
    table = ok(node("mappings"))
    assert "t1\\x07bell\\x08\\x7f\\x1b[2J" in table
    assert not any(control in table for control in "\x07\x08\x7f\x1b")


def test_import_refuses_a_bad_file_naming_the_row(node, tmp_path):
    bad = tmp_path / "corrections.csv"
    bad.write_text(
        "description,label,who,note,created_at\n"
        "t1_mprage_sag,T1,dr. a,,2024-01-05T10:00:00+00:00\n"
        "AX T2 FLAIR,PD,dr. a,,2024-01-05T10:00:00+00:00\n"
    )
    result = node("import", bad)
    assert result.exit_code == 1 and "row 2: label 'PD' is not one of" in result.output
    assert json.loads(ok(node("export", "corrections", "--format", "json"))) == []  # nothing half-imported

    (tmp_path / "other.json").write_text('[{"text": "t1"}]')
    assert "not an export" in node("import", tmp_path / "other.json").output


@pytest.mark.sqlite_only  # files that are not a database
def test_a_store_that_cannot_be_opened_is_a_clear_error(node, tmp_path):
    (tmp_path / "notes.txt").write_text("not a database, but long enough to look like a header" * 10)
    for store, why in [("no/such/folder/store.sqlite", "unable to open"), ("notes.txt", "not a database")]:
        result = node("mappings", store=f"sqlite:///{tmp_path / store}")
        assert result.exit_code == 1
        assert f"cannot open the store sqlite:///{tmp_path / store}: " in result.output and why in result.output
        assert "Traceback" not in result.output
