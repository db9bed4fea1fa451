"""The node's scheduled jobs: APScheduler, with the jobs kept in the store's own database.

The jobs live in the table apscheduler_jobs, so a schedule survives a restart: a run missed while
no node was up comes once (coalesced) right after the next start. One worker thread runs them, so
no job runs twice at once in one process, and a job never runs on a DICOM association's thread.

Several node processes on one database share the job table, and each one's scheduler may run a
due job: APScheduler 3 does not coordinate schedulers sharing a job store and documents that a job
can then run more than once. That is harmless by design, not by luck: the report job's row claims
make each report processed once, and every job added here must be as harmless when run twice.
"""

from __future__ import annotations

import logging
from datetime import timezone
from typing import Callable

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.base import BaseTrigger
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url

from dicom_node.store.migrations import one_upgrade_at_a_time
from dicom_node.metrics import job_finished

log = logging.getLogger(__name__)

JOB_TABLE = "apscheduler_jobs"
# A job every node process must run for itself (following the model registry) lives in this process's
# memory, not in the shared job table, where another process could take its turn. MODELS is the
# thread that loads models, so a long report run never delays a switch of model; RETRAINING the one
# that trains, so an hour of training delays neither.
PROCESS, MODELS, RETRAINING = "process", "models", "retraining"

# What each scheduled job runs in this process, by registry key; see run_registered.
_targets: dict[str, Callable[[], object]] = {}


def run_registered(key: str) -> None:
    """The one function every stored job names; it runs what this process registered under `key`.

    A persistent job store keeps a job as a reference to a module-level function plus its pickled
    arguments. What a job must run (a ReportJob holding the store and a loaded model) cannot be
    pickled, and the job must reach the running node's own objects; so the stored job holds only
    a key (the job id and the store URL without its password), and each process looks the key up
    here. A process with nothing under the key (no model, or the job turned off in its settings)
    runs nothing.
    """
    target = _targets.get(key)
    if target is None:
        log.debug("scheduled job %s: nothing registered for it in this process", key)
        return
    target()


class _BackgroundScheduler(BackgroundScheduler):
    def _process_jobs(self):
        # APScheduler 3's loop looks for due jobs once more after shutdown(), when the executors are
        # already shut: a job that came due during a long last run would be submitted to a closed
        # pool ("cannot schedule new futures after shutdown", logged with a traceback).
        if self.state == STATE_STOPPED:
            return None
        return super()._process_jobs()


class NodeScheduler:
    """A BackgroundScheduler whose jobs are stored in the database at `url`.

    Add a job with `add(job_id, target, trigger)`, target a callable with no arguments and trigger
    an APScheduler trigger, e.g. IntervalTrigger(seconds=30) or CronTrigger.from_crontab("0 2 * * 6");
    job options (misfire_grace_time, ...) pass through to APScheduler's add_job. The job id is the
    job's stable name in the job table.
    """

    def __init__(self, url: str):
        self.store_key = make_url(url).render_as_string(hide_password=True)
        if not log.isEnabledFor(logging.DEBUG):
            # APScheduler logs each run of each job at INFO, every few seconds for the registry check;
            # the jobs log what they did themselves. Its warnings and errors still come through.
            logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self._job_store = SQLAlchemyJobStore(engine=_job_store_engine(url), tablename=JOB_TABLE)
        self.scheduler = _BackgroundScheduler(
            jobstores={
                "default": self._job_store,
                PROCESS: MemoryJobStore(),
            },
            executors={name: ThreadPoolExecutor(1) for name in ("default", MODELS, RETRAINING)},
            # A late run of a catch-up job beats none; coalesce makes a pile of missed runs one.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=timezone.utc,
        )
        self._jobs: dict[str, tuple[Callable[[], object], BaseTrigger, dict]] = {}
        self.scheduler.add_listener(self._count_run, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)

    def _count_run(self, event) -> None:
        if event.job_id in self._jobs:  # the named jobs, not run_between_jobs' one-offs
            job_finished(event.job_id, failed=event.exception is not None)

    @property
    def job_ids(self) -> list[str]:
        return list(self._jobs)

    def add(self, job_id: str, target: Callable[[], object], trigger: BaseTrigger, **options) -> None:
        """Run target() on trigger from start() on (at once if already started)."""
        self._jobs[job_id] = (target, trigger, options)
        _targets[self._key(job_id)] = target
        if self.scheduler.running:
            self._store_job(job_id)

    def run_between_jobs(self, target: Callable[[], object]) -> None:
        """target() once, as soon as the default thread is free: never during a run of a stored job."""
        self.scheduler.add_job(target, jobstore=PROCESS)

    def start(self) -> None:
        # The job table made here, as the store's tables are made, one process at a time: APScheduler's
        # own check-then-create fails in a node started together with another.
        with self._job_store.engine.begin() as conn:
            one_upgrade_at_a_time(conn)
            self._job_store.jobs_t.create(conn, checkfirst=True)
        self.scheduler.start(paused=True)  # paused: the stored jobs are checked before any runs
        for job_id in self._jobs:
            self._store_job(job_id)
        self.scheduler.resume()

    def stop(self) -> None:
        """Wait for a running job to finish, stop; the stored jobs stay for the next start."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        for job_id, (target, _trigger, _options) in self._jobs.items():
            if _targets.get(self._key(job_id)) is target:
                del _targets[self._key(job_id)]

    def _key(self, job_id: str) -> str:
        return f"{job_id}@{self.store_key}"

    def _store_job(self, job_id: str) -> None:
        """Keep the stored job when it is this one on the same schedule (its next run time goes on), else replace it."""
        _target, trigger, options = self._jobs[job_id]
        key = self._key(job_id)
        stored = self.scheduler.get_job(job_id)
        if (
            stored is not None
            and stored.func is run_registered
            and stored.args == (key,)
            and str(stored.trigger) == str(trigger)
        ):
            log.info("scheduled job %s: %s, next run %s", job_id, trigger, stored.next_run_time)
            return
        job = self.scheduler.add_job(
            run_registered, trigger, args=[key], id=job_id, name=job_id, replace_existing=True, **options
        )
        log.info("scheduled job %s: %s, first run %s", job_id, trigger, job.next_run_time)


def _job_store_engine(url: str) -> Engine:
    """An engine of the job store's own, on the store's database.

    Its own, because the job store disposes of its engine when the scheduler shuts down. On SQLite
    the driver's own transaction handling suits the job store: it begins a transaction at the
    first write statement, so the job store's short writes take the write lock at once and wait
    out the store's writers (timeout) instead of failing on a stale read snapshot, as a deferred
    BEGIN followed by a write can in WAL mode.
    """
    if make_url(url).get_backend_name() == "sqlite":
        return create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
    return create_engine(url, hide_parameters=True)
