"""Retraining from corrections with `slmnode models retrain`, on tiny models trained in seconds.

The recipe is harmonization only, on the real descriptions with 90 % held out: the training part
is some 43 descriptions, which a tiny model learns in a few seconds on one thread; the dev part
judges the versions. A correction is learned; a model trained on poisoned data is refused.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from tests.support.databases import store_url
from tests.support.dicom_factory import mr_instance
from pydicom.uid import ExplicitVRLittleEndian

from dicom_node.models import registry
from dicom_node.models import choose
from dicom_node.cli.main import cli
from dicom_node.config import Settings, load_settings
from dicom_node.node import Node
from dicom_node.dicom.header import InstanceRecord
from dicom_node.store.database import Store
from slm.engine import load_engine
from slm.tasks import SERIES_LABELS
from training.data import REAL_SERIES, series_examples
from dicom_node.models.retrain import RetrainResult
from training.gate import NOTHING_TO_COMPARE
from training.recipe import recipe_file

HOLDOUT = 0.9
CORRECTED = "MY_PROTO_77 weird seq"  # a site's own name for a sequence, unlike any training description
RECIPE = {  # over the shipped tiny recipe
    "data": {"tasks": ["harmonize"], "openi": None, "series_csv": str(REAL_SERIES.resolve()), "series_holdout": HOLDOUT,
             "series_generated": 0, "limit_per_task": None},
    "max_length": 160, "epochs": 12, "max_steps": None, "batch_size": 8, "grad_accum": 1, "lr": 1.0e-2,
    "warmup_steps": 5, "dev_loss": False, "save_every": 0, "log_every": 10,
}


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_model_folder):
    """A store, a configuration naming an untrained tiny model as model.path, and `slmnode` on them."""
    folder = tmp_path_factory.mktemp("retrain")
    recipe = yaml.safe_load(recipe_file("tiny").read_text())
    recipe["data"].update(RECIPE["data"])
    recipe.update({k: v for k, v in RECIPE.items() if k != "data"})
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    config = {
        "store": {"url": store_url(folder)},
        "model": {"path": str(tiny_model_folder), "device": "cpu"},
        "retraining": {"recipe": str(folder / "recipe.yaml"), "models_folder": str(folder / "models"),
                       "corrections_weight": 30.0, "eval_limit": 60},
    }
    (folder / "node.yaml").write_text(yaml.safe_dump(config))
    store = Store(config["store"]["url"])
    store.record_instance(InstanceRecord.from_dataset(mr_instance(CORRECTED), ExplicitVRLittleEndian))

    def slmnode(*args):
        return CliRunner().invoke(cli, ["--config", str(folder / "node.yaml"), *map(str, args)])

    yield folder, store, load_settings(folder / "node.yaml"), slmnode
    store.close()


def harmonize(registered, settings, text: str) -> str:
    return choose.load(choose.Choice.of(registered, settings.model)).harmonize([text])[0].label


@pytest.mark.needs_data
@pytest.mark.slow  # trains and judges a model
def test_corrections_change_predictions_after_retraining(site):
    folder, store, settings, slmnode = site
    configured = load_engine(settings.model.path, device="cpu")
    before = configured.harmonize([CORRECTED])[0].label
    correction = next(label for label in ("SWI", "ADC") if label != before)
    assert slmnode("correct", CORRECTED, correction, "--who", "ana").exit_code == 0

    result = slmnode("models", "retrain")
    print(result.output)
    assert result.exit_code == 0, result.output
    assert f"current:   {configured.version}" in result.output
    assert "corrections_accuracy    0.000    1.000" in result.output and "gate passed" in result.output
    active = registry.active(store)
    after = harmonize(active, settings, CORRECTED)
    print(f"{CORRECTED!r}: {before} before retraining ({configured.version}), corrected to {correction}, "
          f"{after} after ({active.version})")
    assert after == correction != before

    # The configured model was registered and promoted first, so a rollback has somewhere to go.
    first, candidate = registry.versions(store)
    assert (first.version, first.path, first.active) == (configured.version, settings.model.path, False)
    assert candidate.active and candidate.metrics["gate"]["passed"] and candidate.metrics["corrections"] == 1
    version_folder = folder / "models" / candidate.path.rsplit("/", 1)[-1]
    (kept,) = json.loads((version_folder / "corrections.json").read_text())
    assert list(kept) == ["description", "label", "who", "note", "created_at"]
    assert not (version_folder / "checkpoint").exists()


@pytest.mark.needs_data
@pytest.mark.slow  # trains and judges one or two models
def test_the_gate_refuses_a_model_trained_on_poisoned_data(site, tmp_path):
    folder, store, settings, slmnode = site
    if registry.active(store) is None:  # run alone: first a version trained on clean data
        assert slmnode("models", "retrain").exit_code == 0
    clean = registry.active(store)
    # Poison: every training description once more, with the next label (T1 -> T2, ..., Other -> T1), twice.
    rotated = dict(zip(SERIES_LABELS, SERIES_LABELS[1:] + SERIES_LABELS[:1]))
    poison = tmp_path / "poison.csv"
    with open(poison, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["description", "label", "who", "note", "created_at"])
        for example in series_examples(REAL_SERIES, "train", HOLDOUT):
            writer.writerow([example.text, rotated[example.answer], "mallory", "", "2025-01-01T00:00:00+00:00"])

    result = slmnode("models", "retrain", f"data.corrections=[{poison}]", "data.corrections_weight=2")
    print(result.output)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "gate refused: harmonization_accuracy" in result.output and "REFUSED" in result.output
    poisoned = registry.versions(store)[-1]
    assert not poisoned.active and not poisoned.metrics["gate"]["passed"]
    figures = poisoned.metrics["figures"]["harmonization_accuracy"], clean.metrics["figures"]["harmonization_accuracy"]
    assert figures[0] < figures[1]
    assert registry.active(store).version == clean.version
    listed = json.loads(slmnode("models", "list", "--format", "json").output)
    assert [(v["version"], v["active"]) for v in listed][-2:] == [(clean.version, True), (poisoned.version, False)]


@pytest.mark.needs_data
def test_bad_recipes_are_clear_errors_and_leave_no_version_folder(site):
    folder, store, settings, slmnode = site
    before = sorted((folder / "models").iterdir()) if (folder / "models").exists() else []
    typo = slmnode("models", "retrain", "epoch=3")
    assert typo.exit_code == 1 and "epoch" in typo.output and "Traceback" not in typo.output
    missing = slmnode("models", "retrain", "data.series_csv=/nowhere/series.csv")
    assert missing.exit_code == 1 and "/nowhere/series.csv" in missing.output and "Traceback" not in missing.output
    assert (sorted((folder / "models").iterdir()) if (folder / "models").exists() else []) == before


@pytest.mark.needs_data
@pytest.mark.slow  # trains and judges a model in a running node
def test_scheduled_retraining_runs_inside_the_node_and_the_node_follows(site, caplog):
    folder, store, settings, slmnode = site
    caplog.set_level(logging.INFO, logger="dicom_node.node")
    config = yaml.safe_load((folder / "node.yaml").read_text())
    config["dicom"] = {"bind_address": "127.0.0.1", "port": 0}
    config["reports"] = {"interval_seconds": 0}
    config["retraining"].update(schedule="0 3 * * 6", follow_seconds=0.1,
                                gate={"max_drop": {"harmonization_accuracy": 1.0, "corrections_accuracy": 1.0}})
    settings = Settings.model_validate(config)
    running = registry.active(store)
    engine = choose.load(choose.Choice.of(running, settings.model)) if running else load_engine(settings.model.path)
    with Node(settings, engine, engine) as node:
        job = node.scheduler.scheduler.get_job("retrain")
        assert str(job.trigger) == "cron[month='*', day='*', day_of_week='6', hour='3', minute='0']"
        node.retrain()  # what the schedule runs, without waiting for Saturday
        newest = registry.versions(store)[-1]
        assert f"scheduled retraining: {newest.version} promoted" in caplog.text
        assert newest.active and newest.version != engine.version
        deadline = time.monotonic() + 20
        while node.model_version != newest.version:
            assert time.monotonic() < deadline, "the node did not follow the scheduled promotion"
            time.sleep(0.05)


def test_no_figure_to_compare_is_no_pass():
    result = RetrainResult("v1", "v2", Path("models/v2"), 0, [], {}, {}, promoted=False)
    assert not result.passed and result.reasons == [NOTHING_TO_COMPARE]


def test_a_fine_tuning_recipe_goes_on_from_the_running_version():
    from datetime import datetime

    from dicom_node.models.registry import RegisteredVersion
    from dicom_node.models.retrain import from_running
    from training.recipe import TrainConfig

    def running(path, adapter=None):
        return RegisteredVersion("v1-abc", path, adapter, {}, None, datetime(2026, 1, 1), active=True)

    fine_tune = TrainConfig(output_dir="models/v2", base="embedded")
    assert from_running(fine_tune, running("/models/v1")).base == "/models/v1"
    assert from_running(fine_tune, running("embedded")).base == "embedded"  # the first retraining
    assert from_running(fine_tune, running("facebook/opt-350m", "/models/v1/adapter")).base == "embedded"
    scratch = TrainConfig(output_dir="models/v2", base="scratch")
    assert from_running(scratch, running("/models/v1")).base == "scratch"


def test_a_version_that_reads_no_neighbours_is_fine_tuned_without_them(tmp_path):
    from datetime import datetime

    from dicom_node.models.registry import RegisteredVersion
    from dicom_node.models.retrain import from_running
    from slm.hints import write_prompt_file
    from training.recipe import load_config

    recipe = load_config("retrain_harmonize", ["output_dir=unused"])
    assert recipe.data.neighbours and recipe.data.dialects
    for reads in (True, False):
        folder = tmp_path / str(reads)
        folder.mkdir()
        write_prompt_file(folder, rule_hints=True, neighbours=reads)
        version = RegisteredVersion("v1-abc", str(folder), None, {}, None, datetime(2026, 1, 1), active=True)
        data = from_running(recipe, version).data
        assert (data.neighbours, data.dialects) == ((recipe.data.neighbours, recipe.data.dialects) if reads else (0, 0))


@pytest.mark.needs_data  # the site's recipe reads the data sets, as the tests above
@pytest.mark.slow  # trains and judges a model
def test_a_retraining_started_from_the_web_shows_its_phases_and_registers_the_version(site):
    from fastapi.testclient import TestClient

    from dicom_node.store.users import add_user, open_session
    from dicom_node.web.app import make_app

    _folder, store, settings, _slmnode = site
    add_user(store, "ann-web", "admin", "long-enough-1")
    headers = {"Authorization": f"Bearer {open_session(store, 'ann-web', 'api', hours=1)[0]}"}
    app = make_app(settings, store)
    client = TestClient(app)
    assert client.post("/api/v1/models/retrain", headers=headers).status_code == 202
    assert client.post("/api/v1/models/retrain", headers=headers).status_code == 409  # one at a time
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = client.get("/api/v1/models/retrain", headers=headers).json()
        if status["state"] != "running":
            break
        time.sleep(0.2)
    assert status["state"] == "done", status
    assert [phase.split()[0] for phase in status["phases"]] == ["starting", "exporting", "judging", "training", "judging"]
    assert status["result"]["candidate"] == registry.versions(store)[-1].version
    assert status["who"] == "ann-web"
def test_the_default_recipe_ships_with_the_package_and_needs_no_data(tmp_path, monkeypatch):
    from training.data import recipe_examples
    from training.recipe import load_config

    monkeypatch.chdir(tmp_path)  # any folder: nothing is read relative to it
    monkeypatch.setenv("SLMNODE_DATA", str(tmp_path / "nothing here"))
    config = load_config(Settings().retraining.recipe, [f"output_dir={tmp_path / 'v'}"])
    assert config.data.tasks == ["harmonize"] and config.data.openi is None and config.data.series_csv is None
    assert {e.task for e in recipe_examples(config.data, "dev")} == {"harmonize"}  # the gate has descriptions


def test_missing_training_data_names_the_setting_before_any_model_loads(tmp_path):
    (tmp_path / "node.yaml").write_text(yaml.safe_dump({
        "model": {"path": str(tmp_path / "no model here")},  # would fail to load, later
        "retraining": {"recipe": "retrain_embedded", "data": "data"},
    }))
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "node.yaml"), "models", "retrain"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"data.openi: {tmp_path / 'data' / 'openi'} not found; set retraining.data" in result.output
    assert "Data for training" in result.output and not (tmp_path / "models").exists()
    unknown = CliRunner().invoke(cli, ["--config", str(tmp_path / "node.yaml"), "models", "retrain", "--recipe", "nosuch"])
    assert unknown.exit_code == 1 and "recipe nosuch: no such file, and no shipped recipe of that name" in unknown.output
    assert "retrain_embedded, retrain_harmonize" in unknown.output
