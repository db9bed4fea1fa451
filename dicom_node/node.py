"""The running node: the store, the harmonization worker thread, the SCP and the scheduled jobs, wired together.

`Node` is what `slmnode serve` runs and what the tests start on 127.0.0.1; `serve` adds the
harmonizer and the report model from the settings, a startup line and a clean stop on Ctrl-C or SIGTERM.
The report job runs on the scheduler's own thread and claims at most reports.queue_size reports at
a time, so it never holds up a C-STORE; and it starts a batch only when no instance has arrived for
reports.ingest_quiet_seconds, so its model does not take the CPU from a study coming in.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from functools import partial

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import make_url

from dicom_node.models import registry
from dicom_node.config import Settings
from dicom_node.jobs.reports import ReportJob
from dicom_node.jobs.scheduler import MODELS, PROCESS, RETRAINING, NodeScheduler
from dicom_node.dicom.scp import start_scp
from dicom_node.store.database import Store
from dicom_node.jobs.harmonization import HarmonizationWorker
from slm.harmonizer import Harmonizer, load_harmonizer

log = logging.getLogger(__name__)

REPORT_JOB_ID = "reports"
FOLLOW_JOB_ID = "follow-registry"
RETRAIN_JOB_ID = "retrain"


class Node:
    """Store + worker + SCP + scheduled jobs. Use as a context manager; `port` is the port actually bound.

    `engine` (the model) labels reports and writes their impressions; without it reports wait. A node
    with a model also follows the model registry: every retraining.follow_seconds it switches to a
    newly promoted (or rolled back) version, see follow_registry.
    """

    def __init__(self, settings: Settings, harmonizer: Harmonizer, engine=None):
        self.settings = settings
        self.harmonizer = harmonizer
        self.store = Store(settings.store.url, synchronous=settings.store.synchronous)
        self.worker = HarmonizationWorker(
            self.store,
            harmonizer,
            batch_size=settings.harmonizer.batch_size,
            poll_seconds=settings.harmonizer.poll_seconds,
        )
        self.scheduler = NodeScheduler(settings.store.url)
        self.report_job = self._report_job(engine)
        self.model_version = (engine or harmonizer).version  # what follow_registry compares with the registry
        if engine is not None and (harmonizer is engine or self.report_job is not None):
            # A node that runs a model follows the registry's promotions and rollbacks.
            self.scheduler.add(
                FOLLOW_JOB_ID,
                self.follow_registry,
                IntervalTrigger(seconds=settings.retraining.follow_seconds),
                jobstore=PROCESS,
                executor=MODELS,
            )
        if settings.retraining.schedule:
            trigger = CronTrigger.from_crontab(settings.retraining.schedule)  # the machine's local time
            self.scheduler.add(RETRAIN_JOB_ID, self.retrain, trigger, executor=RETRAINING)
        self.server = None

    def _report_job(self, engine) -> ReportJob | None:
        """The companion job on the scheduler, when there is a model and an interval."""
        interval = self.settings.reports.interval_seconds
        if engine is None or not interval:
            log.info("report job off: %s", "no model" if engine is None else "reports.interval_seconds is 0")
            return None
        job = ReportJob.from_settings(self.store, engine, self.settings.reports, ingest_busy=self.ingest_busy)
        # A run ends within about one interval, so the next starts on time and a backlog goes on there.
        run = partial(job.run_until_done, seconds=interval)
        self.scheduler.add(REPORT_JOB_ID, run, IntervalTrigger(seconds=interval))
        return job

    def ingest_busy(self) -> bool:
        """Has an instance arrived within reports.ingest_quiet_seconds? The report job then waits."""
        quiet = self.settings.reports.ingest_quiet_seconds
        return quiet > 0 and time.monotonic() - self.store.last_instance_at < quiet

    def use_model(self, engine) -> None:
        """Run `engine` from now on: the worker's next batch harmonizes with it (unless harmonizer.kind is
        rules), the report job's next run labels with it. Associations go on: the C-STORE handler never
        calls the model."""
        if self.settings.harmonizer.kind != "rules":
            self.harmonizer = self.worker.harmonizer = engine
        if self.report_job is None:
            self.report_job = self._report_job(engine)  # no model at start: reports get one now
        else:
            job = self.report_job  # between two of its runs, so one run's results carry one version
            self.scheduler.run_between_jobs(lambda: setattr(job, "engine", engine))
        self.model_version = engine.version

    def follow_registry(self) -> str | None:
        """Switch to the registry's active version when it is not the one running; the version switched to.

        The model loads outside any lock while the old one keeps working; a model that does not load
        is logged and the node keeps the one it has.
        """
        active = registry.active(self.store)
        if active is None or active.version == self.model_version:
            return None
        try:
            engine = registry.load_version(active, self.settings.model)
        except Exception as exc:  # missing folder, other weights, out of memory: the node goes on as it is
            log.error("cannot switch to model %s, keeping %s: %s", active.version, self.model_version, exc)
            return None
        self.use_model(engine)
        log.info("switched to model %s (the registry's active version)", engine.version)
        return engine.version

    def retrain(self) -> None:
        """The scheduled retraining (retraining.schedule): a new version, promoted if the gate passes;
        follow_registry then switches to it. Trains in this process, with the recipe's threads."""
        from training.retrain import retrain

        try:
            result = retrain(self.store, self.settings, who="schedule")
        except Exception:
            log.exception("scheduled retraining failed; the node keeps model %s", self.model_version)
            return
        log.info(
            "scheduled retraining: %s %s against %s (%s)",
            result.candidate,
            "promoted" if result.promoted else "passed, not promoted" if result.passed else "refused",
            result.current,
            "; ".join(result.reasons),
        )

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> Node:
        self.worker.start()
        try:
            self.server = start_scp(self.settings, self.store)
            if self.scheduler.job_ids:
                self.scheduler.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        if self.report_job is not None:
            self.report_job.stopping.set()  # the current batch ends, the other claims are given back
        self.scheduler.stop()
        self.worker.stop()
        self.store.close()

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def describe(self) -> str:
        """One line for the log: who, where, how; the store's password left out."""
        dicom, storage = self.settings.dicom, self.settings.storage
        tls = (
            "on" + (", client certificates required" if dicom.tls.verify_clients else "")
            if dicom.tls.enabled
            else "off"
        )
        where = f"storage=files in {storage.folder}" if storage.mode == "files" else "storage=metadata only"
        url = make_url(self.settings.store.url).render_as_string(hide_password=True)
        reports = (
            f"every {self.settings.reports.interval_seconds:g} s with {self.report_job.engine.version}"
            if self.report_job
            else "off"
        )
        return (
            f"AE {dicom.ae_title} listening on {dicom.bind_address}:{self.port}, TLS {tls}, {where}, "
            f"store {url}, harmonizer {self.harmonizer.version}, report job {reports}"
        )


def serve(settings: Settings) -> None:
    """Run the node until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    settings = with_active_model(settings)
    harmonizer = load_harmonizer(settings)
    with Node(settings, harmonizer, report_engine(settings, harmonizer)) as node:
        log.info("slmnode ready: %s", node.describe())
        while not stop.wait(1.0):
            pass
        log.info("slmnode stopping")


def report_engine(settings: Settings, harmonizer: Harmonizer):
    """The model for the report job: the harmonizer when it is the model, else the configured model if it loads."""
    from slm.engine import Engine, ModelUnavailable, load_engine

    if isinstance(harmonizer, Engine):
        return harmonizer
    if not settings.reports.interval_seconds:
        return None  # no report job to load a model for
    try:
        return load_engine(**settings.model.model_dump())
    except ModelUnavailable as exc:
        log.warning("no model for reports (%s): reports are stored and wait for one; DICOM ingest is not affected", exc)
        return None


def with_active_model(settings: Settings) -> Settings:
    """`settings` with the registry's active version as model.path, when one was promoted."""
    store = Store(settings.store.url, synchronous=settings.store.synchronous)
    try:
        return registry.active_settings(settings, store)
    finally:
        store.close()
