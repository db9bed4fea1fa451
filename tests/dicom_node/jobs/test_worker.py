import logging

import pytest
import time

import json

from click.testing import CliRunner

from dicom_node.cli.main import cli
from tests.support.dicom_factory import ct_instance, mr_instance, sr_instance
from pydicom.uid import ExplicitVRLittleEndian

from dicom_node.config import HarmonizerSettings
from dicom_node.store import mappings as queries
from dicom_node.dicom.header import InstanceRecord
from dicom_node.store.database import Store
from dicom_node.jobs.harmonization import HarmonizationWorker
from tests.support.store_counts import count_queued
from slm.harmonizer import Prediction


class KeywordHarmonizer:
    """A deterministic stand-in for the model: the first keyword found decides the label."""

    version = "keywords-1"
    keywords = {"flair": "FLAIR", "t1": "T1", "t2": "T2", "diff": "DWI", "adc": "ADC", "swi": "SWI"}

    def __init__(self):
        self.batches: list[list[str]] = []

    def harmonize(self, descriptions, known=None):
        self.batches.append(list(descriptions))
        labels = [next((v for k, v in self.keywords.items() if k in d.lower()), "Other") for d in descriptions]
        return [Prediction(label, 0.8, self.version) for label in labels]


class BrokenHarmonizer(KeywordHarmonizer):
    """Raises on any batch holding a description that contains `poison` (everything, by default)."""

    version = "broken-1"

    def __init__(self, poison: str = ""):
        super().__init__()
        self.poison = poison

    def harmonize(self, descriptions, known=None):
        if any(self.poison in d for d in descriptions):
            self.batches.append(list(descriptions))
            raise RuntimeError("CUDA out of memory")
        return super().harmonize(descriptions)


def receive(store: Store, *descriptions: str) -> None:
    """One instance of a new series for each description."""
    for description in descriptions:
        store.record_instance(InstanceRecord.from_dataset(mr_instance(description), ExplicitVRLittleEndian))


def labels(store: Store) -> dict[str, str | None]:
    return {m.description: m.label for m in queries.mappings(store.engine)}


def test_run_once_maps_queued_descriptions_in_batches(url):
    store = Store(url)
    receive(store, "t1_mprage", "AX FLAIR", "ep2d_diff", "SWI_mag", "localizer")
    harmonizer = KeywordHarmonizer()
    worker = HarmonizationWorker(store, harmonizer, HarmonizerSettings(batch_size=2))
    assert [worker.run_once() for _ in range(4)] == [2, 2, 1, 0]
    assert [len(batch) for batch in harmonizer.batches] == [2, 2, 1]
    assert labels(store) == {
        "t1_mprage": "T1",
        "AX FLAIR": "FLAIR",
        "ep2d_diff": "DWI",
        "SWI_mag": "SWI",
        "localizer": "Other",
    }
    receive(store, "AX FLAIR")  # known already: not queued again
    assert worker.run_once() == 0 and count_queued(store) == 0


def test_the_worker_gives_the_harmonizer_the_corrections_as_labeled_neighbours(url):
    from dicom_node.store.corrections import add_correction
    from dicom_node.store.tables import utcnow

    store = Store(url)
    receive(store, "SAG VOREX")
    add_correction(store, "SAG VOREX", "SWI", "pacs-admin", None, utcnow())
    seen = []

    class Reading(KeywordHarmonizer):
        def harmonize(self, descriptions, known=None):
            seen.extend(zip(descriptions, known.nearest(list(descriptions))))
            return super().harmonize(descriptions)

    receive(store, "vorex_ax_2")
    assert HarmonizationWorker(store, Reading()).run_once() == 2
    # The new spelling's nearest known description is the corrected one; the corrected one has none but itself.
    nearest = dict(seen)
    assert nearest["vorex_ax_2"][0] == "SWI" and nearest["SAG VOREX"] is None


def test_after_a_correction_the_shipped_model_maps_a_stored_similar_description_anew(url):
    from dicom_node.store.corrections import correct
    from slm.engine import load_engine

    engine = load_engine("embedded", device="cpu")
    if not engine.neighbours:
        pytest.skip("the embedded model was not trained with neighbours")
    store = Store(url)
    receive(store, "SAG ZORBEX", "tra_zorbex_2")
    worker = HarmonizationWorker(store, engine)
    assert worker.run_once() == 2 and labels(store)["tra_zorbex_2"] != "SWI"
    assert correct(store, "SAG ZORBEX", "SWI", who="pacs-admin") == 1
    assert worker.run_once() == 1 and labels(store) == {"SAG ZORBEX": "SWI", "tra_zorbex_2": "SWI"}


def test_a_failing_harmonizer_is_recorded_and_retried_with_backoff(url, caplog):
    store = Store(url)
    receive(store, "t2_tse", "ep2d_diff")
    broken = BrokenHarmonizer()
    worker = HarmonizationWorker(store, broken, HarmonizerSettings(retry_seconds=0.3))
    with caplog.at_level(logging.WARNING, logger="dicom_node.jobs.harmonization"):
        assert worker.run_once() == 0
    assert "failed on 2 of 2 descriptions (RuntimeError: CUDA out of memory)" in caplog.text
    assert "t2_tse" not in caplog.text  # counts and the error only

    calls = len(broken.batches)
    assert worker.run_once() == 0 and len(broken.batches) == calls  # backing off: the model is not asked
    failed = {m.description: m for m in queries.mappings(store.engine)}
    assert failed["t2_tse"].status == "queued" and failed["t2_tse"].attempts == 1

    worker.harmonizer = KeywordHarmonizer()  # the model is back
    deadline = time.monotonic() + 5
    while count_queued(store) and time.monotonic() < deadline:
        worker.run_once()
        time.sleep(0.05)
    assert labels(store) == {"t2_tse": "T2", "ep2d_diff": "DWI"}


def test_one_description_that_breaks_the_model_does_not_hold_back_the_others(url):
    store = Store(url)
    receive(store, "t1_se", "t2_tse", "POISON", "AX FLAIR", "adc map")
    worker = HarmonizationWorker(store, BrokenHarmonizer(poison="POISON"), HarmonizerSettings(retry_seconds=60))
    assert worker.run_once() == 4
    assert labels(store) == {"t1_se": "T1", "t2_tse": "T2", "POISON": None, "AX FLAIR": "FLAIR", "adc map": "ADC"}
    assert queries.queued_descriptions(store, 10) == []  # POISON waits out its backoff
    assert count_queued(store) == 1


def test_queued_work_survives_a_restart(url):
    before = Store(url)
    receive(before, "t1_mprage", "AX FLAIR", "ep2d_diff")
    before.close()  # the node stops before the worker got to them

    after = Store(url)
    assert count_queued(after) == 3
    worker = HarmonizationWorker(after, KeywordHarmonizer(), HarmonizerSettings(batch_size=64, poll_seconds=0.05))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while count_queued(after) and time.monotonic() < deadline:
            time.sleep(0.05)
        receive(after, "t2 blade")  # arriving while the worker runs
        while count_queued(after) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert labels(after) == {"t1_mprage": "T1", "AX FLAIR": "FLAIR", "ep2d_diff": "DWI", "t2 blade": "T2"}


def test_only_mr_series_are_harmonized_the_others_are_stored_and_shown_not_harmonized(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    study = "1.2.826.0.1.3680043.8.498.5"
    datasets = [mr_instance("ax t2 flair", study_uid=study), ct_instance(study_uid=study), sr_instance(study_uid=study)]
    for ds in datasets:
        store.record_instance(InstanceRecord.from_dataset(ds, ExplicitVRLittleEndian))
    harmonizer = KeywordHarmonizer()
    worker = HarmonizationWorker(store, harmonizer)  # harmonizer.modalities: [MR] by default
    assert worker.run_once() == 1 and worker.run_once() == 0
    assert harmonizer.batches == [["ax t2 flair"]]  # never "Head 5.0 Std" (CT) nor the SR's description
    store.close()

    (tmp_path / "node.yaml").write_text("store:\n  url: sqlite:///store.sqlite\n")
    slmnode = lambda *args: CliRunner().invoke(cli, ["--config", str(tmp_path / "node.yaml"), *args])
    shown = {row["modality"]: row for row in json.loads(slmnode("show", "--study", study, "--format", "json").output)}
    assert {m: (row["label"], row["source"]) for m, row in shown.items()} == {
        "MR": ("FLAIR", "model"), "CT": (None, "not harmonized"), "SR": (None, "not harmonized"),
    }
    table = slmnode("show", "--study", study).output
    assert all(ds.SeriesInstanceUID in table for ds in datasets)  # whole UIDs, to paste back
    listed = [line.split("  ")[0] for line in slmnode("mappings").output.splitlines() if "not harmonized" in line]
    assert sorted(listed) == sorted(ds.SeriesDescription for ds in datasets[1:])
    queue = json.loads(slmnode("mappings", "--unreviewed", "--format", "json").output)
    assert [row["description"] for row in queue] == ["ax t2 flair"]  # nothing to review in what is not read

    # A site that harmonizes CT too says so; the CT description is queued for the worker again.
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    worker = HarmonizationWorker(store, harmonizer, HarmonizerSettings(modalities=["MR", "CT"]))
    assert worker.run_once() == 1 and harmonizer.batches[-1] == ["Head 5.0 Std"]
    store.close()
