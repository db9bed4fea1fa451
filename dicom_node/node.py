"""The running node: the store, the harmonization worker thread, the SCP and the scheduled jobs, wired together.

`Node` is what `slmnode serve` runs and what the tests start on 127.0.0.1; `serve` adds the
harmonizer and the report model that dicom_node.models.choose picks, a startup line and a clean stop on Ctrl-C or SIGTERM.
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
from pathlib import Path

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import make_url

from dicom_node import preflight
from dicom_node.models import choose
from dicom_node.config import Settings
from dicom_node.jobs.reports import ReportJob
from dicom_node.jobs.scheduler import MODELS, PROCESS, RETRAINING, NodeScheduler
from dicom_node.dicom.scp import start_scp
from dicom_node.store.database import Store
from dicom_node.jobs.harmonization import HarmonizationWorker
from dicom_node.jobs.routing import RoutingWorker
from dicom_node.orthanc.labels import LabelWriter
from dicom_node.reports.mllp import start_mllp
from slm.harmonizer import Harmonizer

log = logging.getLogger(__name__)

REPORT_JOB_ID = "reports"
FOLLOW_JOB_ID = "follow-registry"
RETRAIN_JOB_ID = "retrain"


class Node:
    """Store + worker + SCP + scheduled jobs. Use as a context manager; `port` is the port actually bound.

    `model` (an slm.engine.Engine) labels reports and writes their impressions, or `reader` does where
    it is given (choose.pick_reader: the rule labeler's labels with the model's impressions); without
    a model reports wait. A node with a model also follows the model registry: every
    retraining.follow_seconds it switches to a newly promoted (or rolled back) version, see follow_registry.
    """

    def __init__(self, settings: Settings, harmonizer: Harmonizer, model=None, reader=None):
        self.settings = settings
        self.harmonizer = harmonizer
        self.store = Store(settings.store.url, synchronous=settings.store.synchronous)
        self.worker = HarmonizationWorker(self.store, harmonizer, settings.harmonizer)
        self.router = (
            RoutingWorker(self.store, settings.routing, settings.dicom.ae_title) if settings.routing.rules else None
        )
        self.scheduler = NodeScheduler(settings.store.url)
        self.report_job = self._report_job(reader or model)
        self.model_version = (model or harmonizer).version  # what follow_registry compares with the registry
        if model is not None and (harmonizer is model or self.report_job is not None):
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
        self.hl7 = None  # the MLLP listener, when hl7.enabled
        self.label_writer = LabelWriter(self.store, settings.orthanc) if settings.orthanc.url else None
        self.web = None  # the web server (web.enabled), started with the node

    def _report_job(self, model) -> ReportJob | None:
        """The companion job on the scheduler, when there is a model and an interval."""
        interval = self.settings.reports.interval_seconds
        if model is None or not interval:
            log.info("report job off: %s", "no model" if model is None else "reports.interval_seconds is 0")
            return None
        job = ReportJob(self.store, model, self.settings.reports, ingest_busy=self.ingest_busy)
        # A run ends within about one interval, so the next starts on time and a backlog goes on there.
        run = partial(job.run_until_done, seconds=interval)
        self.scheduler.add(REPORT_JOB_ID, run, IntervalTrigger(seconds=interval))
        return job

    def ingest_busy(self) -> bool:
        """Has an instance arrived within reports.ingest_quiet_seconds? The report job then waits."""
        quiet = self.settings.reports.ingest_quiet_seconds
        return quiet > 0 and time.monotonic() - self.store.last_instance_at < quiet

    def use_model(self, model, harmonizer: Harmonizer, reader) -> None:
        """Run `model` from now on: the worker's next batch harmonizes with `harmonizer` (unless
        harmonizer.kind is rules), the report job's next run reads with `reader` (choose.pick_harmonizer
        and choose.pick_reader say which). Associations go on: the C-STORE handler never calls the model."""
        if self.settings.harmonizer.kind != "rules":
            self.harmonizer = self.worker.harmonizer = harmonizer
        if self.report_job is None:
            self.report_job = self._report_job(reader)  # no model at start: reports get one now
        else:
            job = self.report_job  # between two of its runs, so one run's results carry one version
            self.scheduler.run_between_jobs(lambda: setattr(job, "model", reader))
        self.model_version = model.version

    def follow_registry(self) -> str | None:
        """Switch to the registry's active version when it is not the one running; the version switched to.

        The model loads outside any lock while the old one keeps working; a model that does not load
        is logged and the node keeps the one it has.
        """
        choice = choose.choose(self.settings, self.store)
        if choice.version is None or choice.version == self.model_version:
            return None  # nothing promoted (the node runs what it was given), or already running it
        try:
            model = choose.load(choice)
        except Exception as exc:  # missing folder, other weights, out of memory: the node goes on as it is
            log.error("cannot switch to model %s, keeping %s: %s", choice.version, self.model_version, exc)
            return None
        harmonizer = choose.pick_harmonizer(self.settings, choice, model)
        self.use_model(model, harmonizer, choose.pick_reader(self.settings, choice, model))
        log.info("switched to model %s (the registry's active version)", model.version)
        return model.version

    def retrain(self) -> None:
        """The scheduled retraining (retraining.schedule): a new version, promoted if the gate passes;
        follow_registry then switches to it. Trains in this process, with the recipe's threads."""
        from dicom_node.models.retrain import retrain

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

    def start(self, serve_dicom: bool = True) -> Node:
        """Start the workers, the listeners and the jobs; without `serve_dicom` (inside Orthanc) no SCP."""
        self.worker.start()
        try:
            for worker in (self.router, self.label_writer):
                if worker is not None:
                    worker.start()
            if self.settings.hl7.enabled:
                self.hl7 = start_mllp(self.settings.hl7, self.store, self.settings.store.keep_patient_identifiers)
            if serve_dicom:
                self.server = start_scp(self.settings, self.store)
            if self.scheduler.job_ids:
                self.scheduler.start()
            if self.settings.web.enabled:
                from dicom_node.web.app import WebServer  # FastAPI loads only for a node that serves pages

                self.web = WebServer(self.settings, self.store, node=self).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.hl7 is not None:
            self.hl7.stop()
            self.hl7 = None
        if self.web is not None:
            self.web.stop()
            self.web = None
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        if self.report_job is not None:
            self.report_job.stopping.set()  # the current batch ends, the other claims are given back
        self.scheduler.stop()
        self.worker.stop()
        for worker in (self.router, self.label_writer):
            if worker is not None:
                worker.stop()
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
        url = make_url(self.settings.store.url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            url = url.set(database=str(Path(url.database).resolve()))  # where it is, whatever the folder
        url = url.render_as_string(hide_password=True)
        reports = (
            f"every {self.settings.reports.interval_seconds:g} s with {self.report_job.model.version}"
            if self.report_job
            else "off"
        )
        return (
            f"AE {dicom.ae_title} listening on {dicom.bind_address}:{self.port}, TLS {tls}, {where}, "
            f"store {url}, harmonizer {self.harmonizer.version}, report job {reports}, "
            f"routing rules {len(self.settings.routing.rules)}, "
            f"HL7 {f'on {self.settings.hl7.bind_address}:{self.hl7.port}' if self.hl7 else 'off'}, "
            f"web {self.web.url if self.web else 'off'}"
        )


def serve(settings: Settings) -> None:
    """Run the node until Ctrl-C or SIGTERM, with the model dicom_node.models.choose picks; first
    preflight.check, so that a node that cannot work stops before loading a model."""
    preflight.check(settings)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    choice = choose.stored_choice(settings)
    harmonizer = choose.harmonizer(settings, choice)
    model = choose.report_model(settings, choice, harmonizer)
    reader = choose.pick_reader(settings, choice, model) if model is not None else None
    with Node(settings, harmonizer, model, reader) as node:
        log.info("slmnode ready: %s", node.describe())
        while not stop.wait(1.0):
            pass
        log.info("slmnode stopping")
