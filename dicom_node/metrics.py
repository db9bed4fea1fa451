"""Prometheus metrics of the node, and the hooks the DICOM handlers and the jobs call: one call per event.

Counters and histograms live here, process-wide, unregistered: each web app registers them in a
registry of its own, with a collector that reads the store's queue depths when /metrics is scraped.
Labels are reasons, statuses, job names and the model version only: no UID, AE title or patient
identifier ever becomes a label (a calling AE appears only in the node page's recent associations).
"""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime, timezone
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

from dicom_node.dicom.status import StoreStatus

ASSOCIATIONS_ACCEPTED = Counter("slmnode_associations_accepted", "DICOM associations accepted", registry=None)
ASSOCIATIONS_REJECTED = Counter(
    "slmnode_associations_rejected", "DICOM associations rejected, by reason", ["reason"], registry=None
)
INSTANCES = Counter("slmnode_instances", "C-STORE requests answered, by status", ["status"], registry=None)
RECEIVED_BYTES = Counter("slmnode_received_bytes", "Bytes of datasets received over C-STORE", registry=None)
STORE_SECONDS = Histogram(
    "slmnode_cstore_seconds",
    "Time to handle one C-STORE request: header, record, commit (and file)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=None,
)
HARMONIZATION_BATCH_SECONDS = Histogram(
    "slmnode_harmonization_batch_seconds",
    "Time to harmonize one batch of queued descriptions",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=None,
)
JOB_RUNS = Counter("slmnode_job_runs", "Scheduled job runs, by job", ["job"], registry=None)
JOB_FAILURES = Counter("slmnode_job_failures", "Scheduled job runs that raised, by job", ["job"], registry=None)
OWN_METRICS = (
    ASSOCIATIONS_ACCEPTED, ASSOCIATIONS_REJECTED, INSTANCES, RECEIVED_BYTES, STORE_SECONDS,
    HARMONIZATION_BATCH_SECONDS, JOB_RUNS, JOB_FAILURES,
)

# The node page's recent associations: when, who called, from where, what became of it.
RECENT_ASSOCIATIONS: deque[dict] = deque(maxlen=20)


def _remember(event, outcome: str) -> None:
    requestor = event.assoc.requestor
    RECENT_ASSOCIATIONS.appendleft(
        {
            "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "calling_ae": requestor.primitive.calling_ae_title if requestor.primitive else requestor.ae_title,
            "address": requestor.address,
            "outcome": outcome,
        }
    )


# ---- hooks ------------------------------------------------------------------------------------


def association_accepted(event) -> None:
    """EVT_ACCEPTED."""
    ASSOCIATIONS_ACCEPTED.inc()
    _remember(event, "accepted")


def association_rejected(event, reason: str) -> None:
    """An association our allow-lists rejected (dicom/scp.py names the reason)."""
    ASSOCIATIONS_REJECTED.labels(reason).inc()
    _remember(event, f"rejected: {reason}")


def association_rejected_by_pynetdicom(event) -> None:
    """EVT_REJECTED: pynetdicom rejected it itself, almost always for max_associations."""
    ae = event.assoc.ae
    busy = sum(1 for assoc in ae.active_associations if assoc.is_acceptor) > ae.maximum_associations
    association_rejected(event, "local_limit_exceeded" if busy else "protocol")


def observed(handler: Callable[..., int]) -> Callable[..., int]:
    """The C-STORE handler, timed, its answer counted by status name and its bytes added up."""

    def handle(event, *args):
        started = time.perf_counter()
        status = handler(event, *args)
        STORE_SECONDS.observe(time.perf_counter() - started)
        INSTANCES.labels(_status_name(status)).inc()
        RECEIVED_BYTES.inc(len(event.request.DataSet.getbuffer()))
        return status

    return handle


def _status_name(status) -> str:
    """A C-STORE answer's label: its StoreStatus name, whether the handler answered the code or a status
    Dataset (one with an Error Comment); else its code."""
    code = int(getattr(status, "Status", status))
    try:
        return StoreStatus(code).name.lower()
    except ValueError:
        return f"0x{code:04x}"


def job_finished(job: str, failed: bool) -> None:
    JOB_RUNS.labels(job).inc()
    if failed:
        JOB_FAILURES.labels(job).inc()


# ---- what is read from the store at scrape time ---------------------------------------------


class StoreCollector:
    """Gauges read when scraped: the harmonization queue, the report backlog, the running model version."""

    def __init__(self, status: Callable[[], dict]):
        self.status = status  # web.views.queue_status, bound to the app's store and node

    def collect(self):
        status = self.status()
        queue = GaugeMetricFamily("slmnode_harmonization_queue_depth", "Series descriptions waiting to be harmonized")
        queue.add_metric([], status["harmonization_queue"])
        backlog = GaugeMetricFamily(
            "slmnode_report_backlog", "Reports the running model version has not processed yet"
        )
        backlog.add_metric([], status["report_backlog"])
        model = InfoMetricFamily("slmnode_model", "The model version the node runs")
        model.add_metric([], {"version": status["model_version"] or "unknown"})
        return [queue, backlog, model]


def registry_for(status: Callable[[], dict]) -> CollectorRegistry:
    """A registry with this process's counters and the store's gauges, for one web app's /metrics."""
    registry = CollectorRegistry()
    for metric in OWN_METRICS:
        registry.register(metric)
    registry.register(StoreCollector(status))
    return registry
