"""The companion job: every report the current model has not processed gets labels and an impression.

"Not processed by the current model" means no report_results row for (report, model.version), so a
new model version processes every report again, and a restart redoes nothing. Several runners (the
node's scheduler, `slmnode reports process`, other node processes on the same database) share the
work through row claims with a lease:

- a runner claims up to queue_size pending reports in one write transaction (BEGIN IMMEDIATE on
  SQLite, so two processes' claims serialize), the UPDATE re-checking that each row is still
  pending, so on PostgreSQL a row another runner claimed meanwhile is skipped too;
- it writes a result, and clears its claim, in one transaction and only while the claim is still
  its own; the UNIQUE (report_id, model_version) key and an insert-ignore make a second result
  impossible even then;
- a runner that dies leaves claims that expire after claim_seconds, and others take them over.

Model calls go through `run_in_halves` (shared with the harmonization worker): a report that breaks
the model is isolated and waits retry_seconds * 2**(attempts - 1), at most max_retry_seconds, with
its attempts and last error recorded; the others are done.

Only reports of chest radiographs are shown to the model (reports/scope.py decides, from the linked
study or the report's exam line); the others get a result without labels or impression, marked not
applicable, so they count as processed too.

A report with no text for a task is not shown to the model for it: labels need some section
(a report with none gets the labels {}), the impression needs a section other than the impression
(a report that is nothing but an impression gets the generated impression ""). Either way it gets a
result row, so it counts as processed and is not retried forever.

Logs hold counts, the model version and timings, never report text or patient identifiers.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from sqlalchemy import and_, func, or_, select, update

from dicom_node.config import ReportSettings
from dicom_node.reports.queries import linked_study_id
from dicom_node.reports.scope import LinkedSeries, is_chest_radiograph
from dicom_node.store.database import Store, insert_ignore
from dicom_node.store.times import retry_wait
from dicom_node.store.tables import Description, Report, ReportResult, Series, utcnow
from dicom_node.jobs.retry import run_in_halves
from slm.tasks import REPORT_SECTIONS, report_text

log = logging.getLogger(__name__)

ERROR_CHARACTERS = 500  # of an exception's message kept in reports.last_error


def runner_name() -> str:
    """host:pid:random, so that claims say who holds them and two runners in one process differ."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class JobCounts:
    processed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class _Claimed:
    id: int
    sections: dict[str, str | None]
    chest: bool = True  # a chest radiograph's report, which the model reads; else not applicable

    def text(self, include_impression: bool) -> str:
        return report_text(self.sections, include_impression=include_impression)


class ReportJob:
    """Claims pending reports, asks the model for labels and impressions, stores the results.

    reports.threads sets torch's CPU thread count before the model works. torch's setting is process-wide:
    in the node it also applies to the harmonization worker when the model harmonizes too, which is
    the point: the model then leaves the other cores to DICOM ingest.
    """

    def __init__(
        self,
        store: Store,
        model,
        settings: ReportSettings = ReportSettings(),
        runner: str | None = None,
        ingest_busy: Callable[[], bool] | None = None,
    ):
        self.store = store
        self.model = model  # an slm.engine.Engine (or anything with version, label and impression)
        self.settings = settings
        self.runner = runner or runner_name()
        self.stopping = threading.Event()  # set: finish the current batch, give back the other claims
        self.ingest_busy = ingest_busy or (lambda: False)  # true: start no batch, DICOM ingest goes first
        self._insert_result = insert_ignore(store.engine, ReportResult.__table__)

    # -- running

    def run_once(self) -> int:
        """One claim of at most queue_size reports, processed; how many got a result."""
        return self._round(self.settings.queue_size).processed

    def run_until_done(
        self,
        limit: int | None = None,
        progress: Callable[[int], object] | None = None,
        seconds: float | None = None,
    ) -> JobCounts:
        """Claims until nothing is pending (or `limit` reports were tried, or stopping is set).

        Stops early when a whole claim failed: the model is then likely broken, and the failed
        reports wait out their backoff. Stops between two batches while ingest_busy() says DICOM
        ingest is going on: on a machine of a few cores the model would slow it (the next run
        goes on with the rest). progress(n) is called after each batch with its size.
        With `seconds` (the node passes its interval), no claim starts that would likely end after
        that many seconds, so a scheduled run ends before the next is due and other jobs get their
        turn; the next run goes on with the rest.
        """
        total = JobCounts()
        started = time.perf_counter()
        longest = 0.0  # of one claim so far
        while not self.stopping.is_set():
            tried = total.processed + total.failed
            wanted = self.settings.queue_size if limit is None else min(self.settings.queue_size, limit - tried)
            elapsed = time.perf_counter() - started
            if wanted <= 0 or (seconds is not None and tried and elapsed + longest > seconds) or self.ingest_busy():
                break
            counts = self._round(wanted, progress)
            longest = max(longest, time.perf_counter() - started - elapsed)
            total.processed += counts.processed
            total.failed += counts.failed
            if counts.processed == 0:
                break
        return total

    def count_pending(self) -> int:
        with self.store.engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(Report).where(self._pending(utcnow())))

    # -- one claim

    def _pending(self, now):
        """Reports this runner may claim now: no result of this model, no live claim of another, due."""
        processed = (
            select(ReportResult.id)
            .where(ReportResult.report_id == Report.id, ReportResult.model_version == self.model.version)
            .exists()
        )
        unclaimed = or_(Report.claimed_until.is_(None), Report.claimed_until <= now, Report.claimed_by == self.runner)
        due = or_(Report.next_attempt_at.is_(None), Report.next_attempt_at <= now)
        return and_(~processed, unclaimed, due)

    def _round(self, wanted: int, progress: Callable[[int], object] | None = None) -> JobCounts:
        started = time.perf_counter()
        claimed = self._claim(wanted)
        counts = JobCounts()
        not_applicable = sum(not report.chest for report in claimed)
        if not claimed:
            return counts
        import torch  # here: the queries and the CLI's listing commands do without torch

        torch.set_num_threads(self.settings.threads)
        try:
            for start in range(0, len(claimed), self.settings.batch_size):
                if self.stopping.is_set() or (start and self.ingest_busy()):
                    break
                batch = claimed[start : start + self.settings.batch_size]
                done, failures = run_in_halves(batch, self._answer)
                counts.processed += self._save(done)
                counts.failed += self._record_failures(failures)
                if progress is not None:
                    progress(len(batch))
        finally:
            self._release([report.id for report in claimed])
        log.info(
            "report job (model %s): %d of %d claimed reports processed (%d not chest radiographs: not applicable), "
            "%d failed, in %.1f s",
            self.model.version,
            counts.processed,
            len(claimed),
            not_applicable,
            counts.failed,
            time.perf_counter() - started,
        )
        return counts

    def _claim(self, wanted: int) -> list[_Claimed]:
        now = utcnow()
        pending = self._pending(now)
        with self.store.transaction() as conn:
            ids = list(conn.scalars(select(Report.id).where(pending).order_by(Report.id).limit(wanted)))
            if not ids:
                return []
            until = now + timedelta(seconds=self.settings.claim_seconds)
            conn.execute(
                update(Report).where(Report.id.in_(ids), pending).values(claimed_by=self.runner, claimed_until=until)
            )
            # Only the rows whose UPDATE matched are ours (the pending condition counts our own old claims).
            rows = conn.execute(
                select(Report.id, *(getattr(Report, name) for name in REPORT_SECTIONS))
                .where(Report.id.in_(ids), Report.claimed_by == self.runner)
                .order_by(Report.id)
            ).all()
            series = _linked_series(conn, [row.id for row in rows])
        claimed = []
        for row in rows:
            sections = {name: getattr(row, name) for name in REPORT_SECTIONS}
            chest = is_chest_radiograph(series[row.id], report_text(sections), self.settings.scope)
            claimed.append(_Claimed(row.id, sections, chest))
        return claimed

    def _answer(self, reports: list[_Claimed]) -> list[tuple[dict | None, str]]:
        """(labels, impression) per report; (None, "") for one that is not a chest radiograph's (not applicable)."""
        read = [report for report in reports if report.chest]
        labels = _ask(self.model.label, [report.text(include_impression=True) for report in read], {})
        impressions = _ask(self.model.impression, [report.text(include_impression=False) for report in read], "")
        answers = iter(zip(labels, impressions))
        return [next(answers) if report.chest else (None, "") for report in reports]

    def _save(self, done: list[tuple[_Claimed, tuple[dict, str]]]) -> int:
        """Results of the reports still claimed by this runner, and their claims cleared, in one transaction."""
        if not done:
            return 0
        now = utcnow()
        with self.store.transaction() as conn:
            ours = set(
                conn.scalars(
                    select(Report.id).where(Report.id.in_([r.id for r, _ in done]), Report.claimed_by == self.runner)
                )
            )
            rows = [
                {
                    "report_id": report.id,
                    "model_version": self.model.version,
                    "labels": json.dumps(labels, ensure_ascii=False),
                    "impression": impression,
                    "processed_by": self.runner,
                    "processed_at": now,
                }
                for report, (labels, impression) in done
                if report.id in ours
            ]
            if rows:
                conn.execute(self._insert_result, rows)
                conn.execute(
                    update(Report)
                    .where(Report.id.in_(ours))
                    .values(claimed_by=None, claimed_until=None, attempts=0, last_error=None, next_attempt_at=None)
                )
        return len(rows)

    def _record_failures(self, failures: list[tuple[_Claimed, Exception]]) -> int:
        """attempts + 1, the error, the next attempt after exponential backoff; the claim given back."""
        if not failures:
            return 0
        now = utcnow()
        with self.store.transaction() as conn:
            for report, exc in failures:
                ours = and_(Report.id == report.id, Report.claimed_by == self.runner)
                attempts = conn.scalar(select(Report.attempts).where(ours))
                if attempts is None:
                    continue
                wait = retry_wait(attempts, self.settings.retry_seconds, self.settings.max_retry_seconds)
                conn.execute(
                    update(Report)
                    .where(ours)
                    .values(
                        attempts=attempts + 1,
                        last_error=_error_text(exc, report),
                        next_attempt_at=now + wait,
                        claimed_by=None,
                        claimed_until=None,
                    )
                )
        first = failures[0][1]
        log.warning(
            "report job (model %s): the model failed on %d reports (first: %s); they are retried later",
            self.model.version,
            len(failures),
            type(first).__name__,
        )
        return len(failures)

    def _release(self, ids: list[int]) -> None:
        """Give back the claims not finished (stopping, or the store failed), so others need not wait them out."""
        with self.store.transaction() as conn:
            conn.execute(
                update(Report)
                .where(Report.id.in_(ids), Report.claimed_by == self.runner)
                .values(claimed_by=None, claimed_until=None)
            )


def _linked_series(conn, report_ids: list[int]) -> dict[int, list[LinkedSeries]]:
    """The series of each report's linked study (none for a report whose study has not arrived)."""
    query = (
        select(Report.id, Series.modality, Series.body_part, Description.text)
        .select_from(Report)
        .join(Series, Series.study_id == linked_study_id())
        .outerjoin(Description, Description.id == Series.description_id)
        .where(Report.id.in_(report_ids))
    )
    series: dict[int, list[LinkedSeries]] = defaultdict(list)
    for report_id, modality, body_part, description in conn.execute(query):
        series[report_id].append(LinkedSeries(modality, body_part, description))
    return series


def _ask(task: Callable[[list[str]], list], texts: list[str], nothing_to_read):
    """task over the texts that say something; `nothing_to_read` for the empty ones."""
    asked = [text for text in texts if text]
    answers = task(asked) if asked else []
    if len(answers) != len(asked):
        raise ValueError(f"{len(answers)} answers for {len(asked)} reports")
    answers = iter(answers)
    return [next(answers) if text else nothing_to_read for text in texts]


def _error_text(exc: Exception, report: _Claimed) -> str:
    """The exception's type and message, without the report's text (a message may quote its input)."""
    message = str(exc)
    for text in (report.text(True), report.text(False), *report.sections.values()):
        if text:
            message = message.replace(text, "<report text>")
    return f"{type(exc).__name__}: {message}"[:ERROR_CHARACTERS]
