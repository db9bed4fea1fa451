"""The companion job: claims, results with the model version, retries with backoff, exactly once
across restarts, runners, threads and processes, and inside a running node on its schedule."""

import json
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support.databases import store_url
from tests.support.dicom_factory import cr_instance, mr_instance, sr_instance, write_files
from tests.support.helpers_dicom import TIMEOUT, KeywordHarmonizer, node_settings
from tests.support.store_counts import count_instances
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select, text

from dicom_node.models import registry
from dicom_node.config import ReportSettings
from dicom_node.cli.main import cli
from dicom_node.node import REPORT_JOB_ID, Node
from dicom_node.jobs.reports import ReportJob
from dicom_node.jobs.scheduler import JOB_TABLE, NodeScheduler
from dicom_node.dicom.sender import send_files
from dicom_node.reports.record import ReportRecord
from dicom_node.store.database import Store
from dicom_node.store.reports import record_report
from dicom_node.store.tables import Report, ReportResult, utcnow
from slm.engine import load_engine
from slm.tasks import LABEL_KEYS
from tests.support.paths import ROOT


@pytest.fixture(scope="module")
def model_folder(tiny_model_folder) -> Path:
    return tiny_model_folder


@pytest.fixture(scope="module")
def tiny(model_folder):
    return load_engine(str(model_folder), impression_max_tokens=8)


class CountingEngine:
    """The tiny engine, keeping every text it was asked about (one model call at a time)."""

    lock = threading.Lock()  # one real model shared by several runners: its calls take turns

    def __init__(self, engine, poison: str | None = None):
        self.engine = engine
        self.version = engine.version
        self.poison = poison
        self.labeled: list[str] = []
        self.impressed: list[str] = []

    def label(self, texts):
        if self.poison and any(self.poison in t for t in texts):
            poisoned = next(t for t in texts if self.poison in t)
            raise RuntimeError(f"the model cannot read: {poisoned}")  # quotes its input, as some errors do
        with self.lock:
            self.labeled += texts
            return self.engine.label(texts)

    def impression(self, texts):
        with self.lock:
            self.impressed += texts
            return self.engine.impression(texts)


def add_reports(store: Store, count: int, start: int = 0) -> list[str]:
    """Reports with distinct findings; returns the report keys."""
    keys = []
    for i in range(start, start + count):
        keys.append(f"text:report-{i}")
        record_report(
            store,
            ReportRecord(
                keys[-1], "text", f"1.2.826.0.1.3680043.8.498.{1000 + i}", None,
                indication="Cough", findings=f"Case {i}: small left pleural effusion.",
            ),
        )
    return keys


def results(store: Store) -> list:
    with store.engine.connect() as conn:
        return conn.execute(select(ReportResult).order_by(ReportResult.report_id)).all()


def report_rows(store: Store) -> dict:
    with store.engine.connect() as conn:
        return {row.report_key: row for row in conn.execute(select(Report))}


def test_reports_get_labels_and_an_impression_with_the_model_version(url, tiny):
    store = Store(url)
    add_reports(store, 5)
    record_report(store, ReportRecord("text:only-impression", "text", "1.2.3", None, impression="No acute disease."))
    record_report(store, ReportRecord("text:empty", "text", "1.2.4", None))
    engine = CountingEngine(tiny)
    job = ReportJob(store, engine, ReportSettings(batch_size=2, queue_size=4))

    assert job.count_pending() == 7
    assert [job.run_once(), job.run_once(), job.run_once()] == [4, 3, 0]
    done = results(store)
    assert len(done) == 7 and {r.model_version for r in done} == {tiny.version}
    assert {r.processed_by for r in done} == {job.runner}
    by_key = {key: row.id for key, row in report_rows(store).items()}
    result_of = {r.report_id: r for r in done}
    for i in range(5):
        result = result_of[by_key[f"text:report-{i}"]]
        assert set(json.loads(result.labels)) == set(LABEL_KEYS)
        assert isinstance(result.impression, str)
    # Nothing to write an impression from, nothing to label: the model is not asked, the result says so.
    only_impression = result_of[by_key["text:only-impression"]]
    assert set(json.loads(only_impression.labels)) == set(LABEL_KEYS) and only_impression.impression == ""
    empty = result_of[by_key["text:empty"]]
    assert json.loads(empty.labels) == {} and empty.impression == ""
    assert len(engine.labeled) == 6 and len(engine.impressed) == 5
    assert all(row.claimed_by is None for row in report_rows(store).values())  # claims cleared with the result


def test_a_report_is_processed_once_across_a_restart(url, tiny):
    store = Store(url)
    add_reports(store, 4)
    assert ReportJob(store, CountingEngine(tiny)).run_until_done().processed == 4
    store.close()

    reopened = Store(url)
    engine = CountingEngine(tiny)
    assert ReportJob(reopened, engine).run_until_done().processed == 0
    assert engine.labeled == [] and engine.impressed == []
    assert len(results(reopened)) == 4
    add_reports(reopened, 1, start=4)  # a report arriving after the restart is done, only it
    assert ReportJob(reopened, engine).run_until_done().processed == 1
    assert len(engine.labeled) == 1 and len(results(reopened)) == 5


def test_two_runners_on_one_store_process_each_report_once(url, tiny):
    add_reports(Store(url), 24)
    stores = [Store(url), Store(url)]  # two Store objects: two connection pools, as two processes have
    engines = [CountingEngine(tiny), CountingEngine(tiny)]
    jobs = [ReportJob(store, engine, ReportSettings(batch_size=2, queue_size=3)) for store, engine in zip(stores, engines)]
    start = threading.Barrier(2)
    counts = {}

    def run(job):
        start.wait()
        counts[job.runner] = job.run_until_done()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    done = results(stores[0])
    assert len(done) == 24 and len({r.report_id for r in done}) == 24
    asked = engines[0].labeled + engines[1].labeled
    assert len(asked) == 24 and len(set(asked)) == 24  # no report went to the model twice
    assert sum(c.processed for c in counts.values()) == 24
    assert {r.processed_by for r in done} <= {job.runner for job in jobs}


def test_a_dead_runners_claims_expire(url, tiny):
    store = Store(url)
    add_reports(store, 3)
    dead = ReportJob(store, CountingEngine(tiny), ReportSettings(claim_seconds=0.5))
    assert len(dead._claim(10)) == 3  # claims, then dies before processing them
    alive = ReportJob(store, CountingEngine(tiny))
    assert alive.run_once() == 0  # their claims are live
    deadline = time.monotonic() + 5
    processed = 0
    while processed < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
        processed += alive.run_once()
    assert processed == 3 and len(results(store)) == 3


@pytest.mark.slow  # sleeps through two retry delays
def test_a_report_that_breaks_the_model_is_retried_with_backoff(url, tiny, caplog):
    store = Store(url)
    add_reports(store, 4)
    record_report(store, ReportRecord("text:poison", "text", "1.2.9", None, findings="POISON pill."))
    broken = CountingEngine(tiny, poison="POISON")
    job = ReportJob(store, broken, ReportSettings(batch_size=8, retry_seconds=0.4, max_retry_seconds=0.6))

    with caplog.at_level(logging.INFO, logger="dicom_node.jobs.reports"):
        before = utcnow()
        assert job.run_once() == 4  # the others are done
    poison = report_rows(store)["text:poison"]
    assert poison.attempts == 1 and poison.claimed_by is None
    assert poison.last_error == "RuntimeError: the model cannot read: <report text>"
    assert timedelta(seconds=0.4) <= poison.next_attempt_at - before < timedelta(seconds=1.4)
    assert "POISON" not in caplog.text and "effusion" not in caplog.text  # counts, never text
    assert "failed on 1 reports" in caplog.text

    assert job.run_once() == 0  # backing off
    time.sleep(0.5)
    before = utcnow()
    assert job.run_once() == 0  # the second failure waits twice as long, capped at max_retry_seconds
    poison = report_rows(store)["text:poison"]
    assert poison.attempts == 2
    assert timedelta(seconds=0.6) <= poison.next_attempt_at - before < timedelta(seconds=1.6)

    job.model = CountingEngine(tiny)  # the model is fixed
    deadline = time.monotonic() + 5
    while not job.run_once() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(results(store)) == 5
    poison = report_rows(store)["text:poison"]
    assert poison.attempts == 0 and poison.last_error is None and poison.next_attempt_at is None


def test_a_run_with_a_time_budget_leaves_the_rest_for_the_next(url, tiny):
    store = Store(url)
    add_reports(store, 12)

    class SlowEngine(CountingEngine):
        def label(self, texts):
            time.sleep(0.1)
            return super().label(texts)

    job = ReportJob(store, SlowEngine(tiny), ReportSettings(batch_size=2, queue_size=2))
    first = job.run_until_done(seconds=0.25)
    assert 2 <= first.processed <= 4  # a claim of 2 takes over 0.1 s: no third one within 0.25 s
    assert first.processed + job.run_until_done().processed == 12


def write_config(tmp_path: Path, model_folder: Path, **reports) -> Path:
    config = tmp_path / "node.yaml"
    config.write_text(
        f"store:\n  url: {store_url(tmp_path)}\n"
        f"model:\n  path: {model_folder}\n  impression_max_tokens: 8\n"
        + ("reports:\n" + "".join(f"  {key}: {value}\n" for key, value in reports.items()) if reports else "")
    )
    return config


@pytest.mark.slow  # two interpreters importing torch: most of its time
def test_two_process_commands_at_once_process_each_report_once(tmp_path, model_folder):
    store = Store(store_url(tmp_path))
    add_reports(store, 30)
    config = write_config(tmp_path, model_folder, batch_size=2, queue_size=3, threads=1)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "dicom_node.cli", "--config", str(config), "reports", "process"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    processed = [int(out.strip().splitlines()[-1].split()[0]) for out, _ in outputs]  # "N reports processed, ..."
    assert sum(processed) == 30
    done = results(store)
    assert len(done) == 30 and len({r.report_id for r in done}) == 30
    assert len({r.processed_by for r in done}) == sum(1 for n in processed if n)


def test_process_without_a_model_is_a_clear_error(tmp_path):
    config = write_config(tmp_path, tmp_path / "no-such-model")
    result = CliRunner().invoke(cli, ["--config", str(config), "reports", "process"])
    assert result.exit_code == 1
    assert "Error: no model to process reports with" in result.output and "Traceback" not in result.output


def test_process_uses_the_registrys_active_version(tmp_path, model_folder, tiny, tiny_model_folders):
    promoted_folder = tiny_model_folders[1]
    promoted = load_engine(str(promoted_folder), impression_max_tokens=8).version
    store = Store(store_url(tmp_path))
    add_reports(store, 2)
    registry.register(store, promoted, str(promoted_folder))
    registry.promote(store, promoted, who="test")
    config = write_config(tmp_path, model_folder)  # model.path names the first model
    result = CliRunner().invoke(cli, ["--config", str(config), "reports", "process"])
    assert result.exit_code == 0, result.output
    assert f"2 reports processed, 0 failed (model {promoted})" in result.output
    assert {r.model_version for r in results(store)} == {promoted} != {tiny.version}


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_the_node_runs_the_job_on_schedule(tmp_path, tiny):
    settings = node_settings(tmp_path, reports={"interval_seconds": 0.2, "threads": 1})
    with Node(settings, KeywordHarmonizer(), model=tiny) as node:
        assert "report job every 0.2 s" in node.describe()
        add_reports(node.store, 3)
        assert wait_for(lambda: len(results(node.store)) == 3)
        add_reports(node.store, 2, start=3)  # later reports: a later run
        assert wait_for(lambda: len(results(node.store)) == 5)


@pytest.mark.slow  # a second of steady ingest before the job may start
def test_the_job_in_the_node_yields_to_dicom_ingest(tmp_path, tiny):
    """While instances keep arriving the job starts no batch; once ingest is quiet it does the backlog."""
    engine = CountingEngine(tiny)
    # Quiet means 3 s without an instance: margin for a loaded machine, where one association can take a second.
    reports = {"interval_seconds": 0.1, "batch_size": 2, "ingest_quiet_seconds": 3.0}
    with Node(node_settings(tmp_path, reports=reports), KeywordHarmonizer(), model=engine) as node:
        files = write_files([mr_instance(f"t1 series {n}") for n in range(40)], tmp_path / "dicom")
        sending = threading.Event()

        def send_for_a_while():
            for start in range(0, len(files), 4):  # a short association every 0.1 s, about 1 s in all
                send_files("127.0.0.1", node.port, files[start : start + 4], timeout=TIMEOUT)
                sending.set()
                time.sleep(0.1)

        sender = threading.Thread(target=send_for_a_while)
        sender.start()
        assert sending.wait(TIMEOUT)
        add_reports(node.store, 6)
        sender.join(TIMEOUT * 3)
        assert engine.labeled == []  # nothing while the instances came in
        assert wait_for(lambda: len(results(node.store)) == 6)
        assert count_instances(node.store) == 40


@pytest.mark.slow  # a slow engine works in a node until it stops
def test_a_node_stops_cleanly_in_the_middle_of_a_long_run(tmp_path, tiny, caplog):
    class SlowEngine(CountingEngine):
        def label(self, texts):
            time.sleep(0.3)
            return super().label(texts)

    engine = SlowEngine(tiny)
    settings = node_settings(tmp_path, reports={"interval_seconds": 0.1, "batch_size": 1})
    with caplog.at_level(logging.WARNING), Node(settings, KeywordHarmonizer(), model=engine) as node:
        add_reports(node.store, 20)
        assert wait_for(lambda: len(engine.labeled) >= 2)  # runs are overdue while this one works
    # The run ends after its batch, gives its other claims back, and nothing is submitted after the stop.
    assert "Error submitting job" not in caplog.text and "after shutdown" not in caplog.text
    store = Store(settings.store.url)
    assert 2 <= len(results(store)) < 20
    assert not any(row.claimed_by for row in report_rows(store).values())


def test_a_node_without_a_model_or_interval_runs_no_job(tmp_path, tiny):
    for engine, reports in ((None, {}), (tiny, {"interval_seconds": 0})):
        with Node(node_settings(tmp_path, reports=reports), KeywordHarmonizer(), model=engine) as node:
            assert node.report_job is None and not node.scheduler.scheduler.running
            assert "report job off" in node.describe()


def stored_job(tmp_path) -> tuple:
    store = Store(store_url(tmp_path, "node"))
    with store.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT id, next_run_time FROM {JOB_TABLE}")).all()
    store.close()
    return rows


@pytest.mark.slow  # three node starts and stops
def test_the_schedule_persists_across_a_restart(tmp_path, tiny):
    settings = node_settings(tmp_path, reports={"interval_seconds": 3600})
    with Node(settings, KeywordHarmonizer(), model=tiny):
        pass
    [(job_id, next_run)] = stored_job(tmp_path)
    assert job_id == REPORT_JOB_ID and next_run > time.time() + 3500

    time.sleep(0.05)
    with Node(settings, KeywordHarmonizer(), model=tiny):
        pass
    assert stored_job(tmp_path) == [(job_id, next_run)]  # the same schedule went on

    hourly = node_settings(tmp_path, reports={"interval_seconds": 60})
    with Node(hourly, KeywordHarmonizer(), model=tiny):
        pass
    [(_, rescheduled)] = stored_job(tmp_path)
    assert rescheduled < next_run - 3000  # a new interval replaces the stored job


@pytest.mark.slow  # waits out a two-second interval
def test_a_run_missed_while_no_node_was_up_comes_at_the_next_start(tmp_path, tiny):
    settings = node_settings(tmp_path, reports={"interval_seconds": 2})
    with Node(settings, KeywordHarmonizer(), model=tiny):
        started = time.monotonic()
    store = Store(store_url(tmp_path, "node"))
    add_reports(store, 2)
    store.close()
    time.sleep(max(0.0, started + 2.1 - time.monotonic()))  # the run was due while no node was up
    with Node(settings, KeywordHarmonizer(), model=tiny) as node:
        # Overdue, it runs at once, not a whole interval after the start as a new schedule would.
        assert wait_for(lambda: len(results(node.store)) == 2, seconds=1.5)


def test_schedulers_started_at_once_on_one_database_all_start(url):
    """Nodes started together: their schedulers make the job table once, between them."""
    Store(url).close()  # the store's own tables, made as a node makes them before its scheduler starts
    schedulers = [NodeScheduler(url) for _ in range(4)]
    for scheduler in schedulers:
        scheduler.add(REPORT_JOB_ID, lambda: None, IntervalTrigger(seconds=3600))
    together = threading.Barrier(len(schedulers))
    errors = []

    def start(scheduler):
        together.wait(timeout=30)
        try:
            scheduler.start()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(scheduler,)) for scheduler in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for scheduler in schedulers:
        scheduler.stop()
    assert errors == []


def test_a_new_model_version_processes_every_report_again_once(url, tiny):
    store = Store(url)
    add_reports(store, 2)
    ReportJob(store, tiny).run_until_done()
    with store.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ReportResult)) == 2

    newer = CountingEngine(tiny)
    newer.version = "tiny-v2"
    job = ReportJob(store, newer)
    assert job.count_pending() == 2 and job.run_until_done().processed == 2 and job.count_pending() == 0


@pytest.mark.parametrize("exam, status", [("chest radiograph", "processed"), ("brain MRI", "not applicable")])
def test_an_sr_sent_to_the_node_is_listed_with_its_study_and_processed(tmp_path, tiny, exam, status):
    """Only a chest radiograph's report is labeled; a brain MRI's is marked not applicable, without labels."""
    study = "1.2.826.0.1.3680043.8.498.77"
    image = cr_instance(study_uid=study) if exam == "chest radiograph" else mr_instance("t1_mprage", study_uid=study)
    # images first, as a PACS sends them: a report that comes before any image and names no exam is read
    # as scope.unknown says, and the job may take it up before the image arrives
    paths = write_files([image, sr_instance(study_uid=study)], tmp_path / "in")
    settings = node_settings(tmp_path, reports={"interval_seconds": 0.2})
    with Node(settings, KeywordHarmonizer(), model=tiny) as node:
        outcomes = send_files("127.0.0.1", node.port, paths, timeout=TIMEOUT)
        assert [outcome.status for outcome in outcomes] == [0x0000, 0x0000]
        assert wait_for(lambda: len(results(node.store)) == 1)

    config = tmp_path / "node.yaml"
    config.write_text(f"store:\n  url: {settings.store.url}\n")
    listing = CliRunner().invoke(
        cli, ["--config", str(config), "reports", "list", "--study", study, "--format", "json"]
    )
    [row] = json.loads(listing.output)
    assert (row["study_uid"], row["source"], row["status"]) == (study, "sr", status)
    assert row["model_version"] == tiny.version
    shown = CliRunner().invoke(cli, ["--config", str(config), "reports", "show", str(row["id"]), "--format", "json"])
    [report] = json.loads(shown.output)
    assert report["sections"]["findings"] == "No acute intracranial abnormality."
    assert report["linked_study"] == {"study_uid": study, "series_count": 2}  # the image series and the SR's own
    if status == "processed":
        assert set(report["labels"]) == set(LABEL_KEYS) and isinstance(report["generated_impression"], str)
    else:
        assert report["labels"] is None and report["generated_impression"] == "" and row["findings"] == ""
