"""What the API returns and the pages show, from the store's own queries: one function per view, so both agree.

Nothing here queries the database itself beyond calling store/, reports/ and models/; it sorts,
pages and shapes their rows as JSON-ready dicts. Patient identifiers are never part of a view.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy.engine import make_url

from dicom_node.config import Settings
from dicom_node.models import registry
from dicom_node.reports import queries as report_queries
from dicom_node.store import exchange
from dicom_node.store import mappings as queries
from dicom_node.store.database import Store
from dicom_node.store.times import iso
from dicom_node import metrics
from training import gate

MAPPING_SORTS = ("queue", "description", "label", "confidence", "series_count", "first_seen")


@dataclass(frozen=True)
class MappingFilters:
    """The CLI's filters of `slmnode mappings`."""

    label: str | None = None
    below: float | None = None
    search: str | None = None
    since: datetime | None = None
    unreviewed: bool = False


def _queue_order(row: dict):
    """The review queue: not yet reviewed first, then the least confident (queued ones, without any, last)."""
    return (row["corrected"], row["confidence"] is None, row["confidence"] or 0.0, row["description"])


def mapping_page(
    store: Store, settings: Settings, filters: MappingFilters, sort: str = "queue", descending: bool = False,
    page: int = 1, per_page: int = 50,
) -> dict:
    """One page of mappings, filtered and sorted, each with a few example series; descriptions only other
    modalities than harmonizer.modalities brought are "not harmonized"."""
    found = queries.mappings(
        store.engine, filters.label, filters.below, filters.search, filters.since, filters.unreviewed,
        settings.harmonizer.modalities,
    )
    rows = exchange.mapping_rows(found)
    if sort == "queue":
        rows.sort(key=_queue_order, reverse=descending)
    else:
        present = [row for row in rows if row[sort] is not None]
        present.sort(key=lambda row: row[sort], reverse=descending)
        rows = present + [row for row in rows if row[sort] is None]  # missing values last either way
    total = len(rows)
    items = rows[(page - 1) * per_page : page * per_page]
    examples = queries.example_series(store.engine, [row["description"] for row in items])
    for row in items:
        row["examples"] = [asdict(series) for series in examples[row["description"]]]
    return {"total": total, "page": page, "per_page": per_page, "pages": max(1, -(-total // per_page)), "items": items}


def study(store: Store, settings: Settings, study_uid: str | None = None, accession: str | None = None) -> list[dict]:
    """The series of a study (by Study Instance UID or Accession Number) with their labels; series of
    modalities the harmonizer leaves alone show "not harmonized"."""
    found = queries.series_mappings(
        store.engine, study_uid=study_uid, accession=accession, modalities=settings.harmonizer.modalities
    )
    return [asdict(s) for s in found]


def series(store: Store, settings: Settings, series_uid: str) -> list[dict]:
    found = queries.series_mappings(store.engine, series_uid=series_uid, modalities=settings.harmonizer.modalities)
    return [asdict(s) for s in found]


def running_version(store: Store, node=None) -> str | None:
    """The model version the node runs (this process's node), else the registry's active one."""
    if node is not None:
        return node.model_version
    active = registry.active(store)
    return active.version if active else None


def report_page(store: Store, node=None, page: int = 1, per_page: int = 50, **filters) -> dict:
    """Reports, newest first, with the running version's results (reports/queries.py's list rows)."""
    views = report_queries.reports(store.engine, version=running_version(store, node), **filters)[::-1]
    items = [
        {**report_queries.list_row(view), "own_impression": view.impression}
        for view in views[(page - 1) * per_page : page * per_page]
    ]
    return {"total": len(views), "page": page, "per_page": per_page, "pages": max(1, -(-len(views) // per_page)),
            "items": items}


def report(store: Store, report_id: int, node=None) -> dict | None:
    found = report_queries.reports(store.engine, report_id=report_id, version=running_version(store, node))
    if not found:
        return None
    data = report_queries.show_data(found[0])
    data["positive_findings"] = found[0].positive_findings
    return data


def model_versions(store: Store, settings: Settings) -> list[dict]:
    """Every registered version with its figures and the gate's table against the version it was judged with."""
    rows = []
    for v in reversed(registry.versions(store)):
        compared = v.metrics.get("compared_with") or {}
        table = gate.compare(compared.get("figures", {}), v.metrics.get("figures", {}), settings.retraining.gate.max_drop)
        rows.append(
            {
                "version": v.version,
                "active": v.active,
                "path": v.path,
                "adapter": v.adapter,
                "note": v.note,
                "created_at": iso(v.created_at),
                "promoted_at": iso(v.promoted_at),
                "figures": v.metrics.get("figures", {}),
                "gate": {
                    **(v.metrics.get("gate") or {}),
                    "compared_with": compared.get("version"),
                    "table": [{**asdict(c), "change": c.change, "passed": c.passed} for c in table],
                },
            }
        )
    return rows


def queue_status(store: Store, settings: Settings, node=None) -> dict:
    version = running_version(store, node)
    return {
        "harmonization_queue": queries.queue_depth(store.engine, settings.harmonizer.modalities),
        "report_backlog": report_queries.backlog(store.engine, version),
        "model_version": version,
    }


def _totals(metric, label: str | None = None):
    """A counter's value in this process (by `label` when it has one): the page and /metrics read the same."""
    samples = [sample for sample in metric.collect()[0].samples if sample.name.endswith("_total")]
    if label is not None:
        return {sample.labels[label]: sample.value for sample in samples}
    return samples[0].value if samples else 0.0


def node_status(settings: Settings, store: Store, node=None) -> dict:
    """What runs: the DICOM service (when this process runs the node), the store, the model, counters and queues."""
    dicom, web = settings.dicom, settings.web
    return {
        "dicom": {
            "running": node is not None,
            "ae_title": dicom.ae_title,
            "address": dicom.bind_address,
            "port": node.port if node is not None and node.server is not None else dicom.port,
            "tls": dicom.tls.enabled,
            "client_certificates_required": dicom.tls.enabled and dicom.tls.verify_clients,
            "storage": settings.storage.mode,
        },
        "web": {"address": web.bind_address, "tls": bool(web.tls.certificate and web.tls.private_key)},
        "store": make_url(settings.store.url).render_as_string(hide_password=True),
        "model": {
            "running": running_version(store, node),
            "harmonizer": node.harmonizer.version if node is not None else settings.harmonizer.kind,
            "path": settings.model.path,
        },
        "ingest": {
            "associations_accepted": _totals(metrics.ASSOCIATIONS_ACCEPTED),
            "associations_rejected": _totals(metrics.ASSOCIATIONS_REJECTED, "reason"),
            "instances": _totals(metrics.INSTANCES, "status"),
            "received_bytes": _totals(metrics.RECEIVED_BYTES),
        },
        "queues": queue_status(store, settings, node),
        "recent_associations": list(metrics.RECENT_ASSOCIATIONS),
    }
