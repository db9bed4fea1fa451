import json
import logging

import pytest
from click.testing import CliRunner

from dicom_node.cli.main import cli
from slm.engine import load_engine
from slm.tasks import LABEL_KEYS, SERIES_LABELS
from tests.support.tiny_model import DESCRIPTIONS, REPORTS


@pytest.fixture(scope="module")
def folder(tiny_model_folder):
    return tiny_model_folder


@pytest.fixture(scope="module")
def version(folder):
    return load_engine(str(folder), device="cpu").version


def jsonl(records) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def predict(args, lines: str):
    return CliRunner().invoke(cli, ["predict", *args], input=lines)


def outputs(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_harmonize_keeps_the_input_fields(folder, version):
    records = [{"id": i, "text": text} for i, text in enumerate(DESCRIPTIONS)]
    result = predict(["--task", "harmonize", "--model", str(folder), "--device", "cpu", "--batch-size", "3"],
                     jsonl(records))
    assert result.exit_code == 0, result.output
    lines = outputs(result)
    assert [(line["id"], line["text"]) for line in lines] == [(r["id"], r["text"]) for r in records]
    assert all(line["label"] in SERIES_LABELS and 0 < line["confidence"] <= 1 for line in lines)
    assert {line["model_version"] for line in lines} == {version}


def test_label_answers_all_fourteen_keys(folder, version):
    result = predict(["--task", "label", "--model", str(folder), "--device", "cpu"],
                     jsonl({"text": text} for text in REPORTS))
    assert result.exit_code == 0, result.output
    lines = outputs(result)
    assert len(lines) == len(REPORTS)
    for line in lines:
        assert list(line["labels"]) == list(LABEL_KEYS)
        assert set(line["labels"].values()) <= {"Yes", "No"}
        assert line["model_version"] == version


def test_impression_is_text_without_its_prefix(folder, version):
    result = predict(["--task", "impression", "--model", str(folder)], jsonl({"text": text} for text in REPORTS))
    assert result.exit_code == 0, result.output
    lines = outputs(result)
    assert len(lines) == len(REPORTS)
    assert all(line["impression"] and not line["impression"].startswith("IMPRESSION:") for line in lines)
    assert {line["model_version"] for line in lines} == {version}


def test_rules_harmonizer_needs_no_model():
    result = predict(["--task", "harmonize", "--harmonizer", "rules"],
                     jsonl([{"text": "t1_mprage_sag"}, {"text": "Ax FLAIR"}]))
    assert result.exit_code == 0, result.output
    lines = outputs(result)
    assert [line["label"] for line in lines] == ["T1", "FLAIR"]
    assert all(line["model_version"].startswith("rules-") for line in lines)


def test_auto_falls_back_to_rules_when_no_model_loads(tmp_path, caplog):
    config = tmp_path / "node.yaml"
    config.write_text(f"model:\n  path: {tmp_path / 'missing'}\n")
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(cli, ["--config", str(config), "predict", "--task", "harmonize"],
                                    input=jsonl([{"text": "dADC"}]))
    assert result.exit_code == 0, result.output
    assert outputs(result)[0]["model_version"].startswith("rules-")
    assert "harmonizing with rules" in caplog.text


@pytest.mark.parametrize(
    "bad, message",
    [("{not json\n", "line 3: not JSON"), ('{"txt": "Ax T2"}\n', 'line 3: expected an object with a string "text"'),
     ('["Ax T2"]\n', "line 3: expected an object")],
)
def test_a_bad_line_stops_after_the_lines_before_it(folder, bad, message):
    lines = jsonl([{"text": "Ax T2"}, {"text": "dADC"}]) + bad + jsonl([{"text": "SWI"}])
    result = predict(["--task", "harmonize", "--model", str(folder)], lines)
    assert result.exit_code == 1
    assert [line["text"] for line in outputs(result)] == ["Ax T2", "dADC"]
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_missing_model_is_a_clear_error(tmp_path):
    result = predict(["--task", "label", "--model", str(tmp_path / "nope")], jsonl([{"text": "FINDINGS: clear"}]))
    assert result.exit_code == 1
    assert "nope" in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""


def test_harmonizer_choice_is_for_harmonize_only(folder):
    result = predict(["--task", "label", "--model", str(folder), "--harmonizer", "rules"], "")
    assert result.exit_code == 2
    assert "--task harmonize only" in result.stderr


def test_unknown_device_is_a_clear_error(folder):
    result = predict(["--task", "label", "--model", str(folder), "--device", "tpu9"], jsonl([{"text": "x"}]))
    assert result.exit_code == 1
    assert "unknown device 'tpu9'" in result.stderr and "Traceback" not in result.output


def test_the_shipped_model_reads_the_stores_corrections_as_the_node_does(tmp_path):
    """A correction in the store helps another spelling of the site's word, in predict as in the node."""
    from dicom_node.store.corrections import add_correction
    from dicom_node.store.database import Store
    from dicom_node.store.tables import utcnow
    from tests.support.databases import store_url

    if not load_engine("embedded", device="cpu").neighbours:
        pytest.skip("the embedded model was not trained with neighbours")
    config = tmp_path / "node.yaml"
    config.write_text(f"store:\n  url: {store_url(tmp_path)}\nharmonizer:\n  kind: slm\n")

    def label() -> str:
        result = CliRunner().invoke(cli, ["--config", str(config), "predict", "--task", "harmonize"],
                                    input=jsonl([{"text": "TRA_ZORBEX_2"}]))
        assert result.exit_code == 0, result.output
        return outputs(result)[0]["label"]

    store = Store(store_url(tmp_path))
    for corrected in ("SWI", "DWI"):
        add_correction(store, "SAG ZORBEX", corrected, "pacs-admin", None, utcnow())
        assert label() == corrected
    store.close()
